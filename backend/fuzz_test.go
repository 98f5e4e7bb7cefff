package backend

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/portcullis/portcullis/audit/redact"
	"github.com/portcullis/portcullis/backend/catalog"
)

// FuzzExtractSecrets: whatever shape configurations take, a value stored under a
// secret-looking name never survives in the stored (masked) form, and every such value
// is collected for sealing.
func FuzzExtractSecrets(f *testing.F) {
	f.Add(`{"AWS_Secret-Access-Key":"%s","custom_headers":{"x":"%s"},"a":[{"clientSecret":"%s"}]}`)
	f.Add(`{"nested":{"deeper":{"PassWord":"%s","list":[1,"x",{"api_key":"%s"}]}}}`)
	f.Add(`{"headers":{"Authorization":"%s"},"token":{"v":"%s"}}`)
	cat, _ := catalog.Default()
	prov, _ := cat.Get("aws-bedrock")
	f.Fuzz(func(t *testing.T, tmpl string) {
		doc := strings.ReplaceAll(tmpl, "%s", canary)
		var conf map[string]any
		if json.Unmarshal([]byte(doc), &conf) != nil || conf == nil || reservedMasked("c", conf) != "" {
			return // not JSON, or refused by validation before extraction
		}
		var vals []sealedValue
		out := extractSecrets("configurations", conf, configSchema(prov, nil), &vals)
		if p := unmaskedSecret(out, false); p != "" {
			t.Fatalf("secret-named key %q kept its value: %v", p, out)
		}
		for _, v := range vals {
			if m := Mask(string(v.value)); utf8.RuneCountInString(m) > 11 {
				t.Fatalf("mask %q too revealing", m)
			}
		}
	})
}

// unmaskedSecret returns a key that reads as a secret (or sits under headers) but was
// left with its value instead of being replaced by masked_<key>.
func unmaskedSecret(v any, underHeaders bool) string {
	switch t := v.(type) {
	case map[string]any:
		for k, c := range t {
			if strings.HasPrefix(k, maskedPrefix) {
				if _, ok := c.(string); !ok {
					return k
				}
				continue
			}
			if underHeaders || redact.IsSecretName(k) {
				return k
			}
			if p := unmaskedSecret(c, redact.IsSecretContainer(k)); p != "" {
				return k + "." + p
			}
		}
	case []any:
		for _, c := range t {
			if p := unmaskedSecret(c, underHeaders); p != "" {
				return p
			}
		}
	}
	return ""
}
