package backend

import (
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/portcullis/portcullis/audit/redact"

	"github.com/portcullis/portcullis/backend/catalog"
	"github.com/portcullis/portcullis/backend/store"
)

// Mask shows a short prefix and the last 4 characters of long secrets, only the last 4
// of medium ones, and nothing of short ones, so a mask never reveals most of a value.
func Mask(s string) string {
	r := []rune(s)
	n := len(r)
	switch {
	case n < 12:
		return "****"
	case n < 20:
		return "****" + string(r[n-4:])
	default:
		return string(r[:3]) + "****" + string(r[n-4:])
	}
}

// maskFor masks the secret v held in field k. Passwords and passphrases are guessable
// from a few characters, so none of theirs is shown, and neither is anything of a whole
// object or array sealed as one (its JSON ends in a nested value's last characters); API
// keys and the like follow Mask.
func maskFor(k string, v any, raw string) string {
	if _, isString := v.(string); !isString {
		return "****"
	}
	n := catalog.NormalizeName(k)
	for _, w := range []string{"password", "passphrase", "passwd", "pwd", "passcode"} {
		if strings.Contains(n, w) {
			return "****"
		}
	}
	return Mask(raw)
}

const maskedPrefix = "masked_"

func escapeSeg(k string) string { return store.EscapeSegment(k) }

type sealedValue struct {
	field string // path, e.g. configurations.custom_headers.x-api-key
	value []byte
}

// extractSecrets walks a JSON value under path, replacing every secret k: v by
// masked_k: Mask(v) and collecting v for sealing. What is secret is decided by
// redact.Field, the rule the proxy's redactor follows too: the schema's marks (sch:
// the provider's secret fields, and every key it does not know), secret names at any
// depth, secret name/value pairs and the values of headers objects.
func extractSecrets(path string, v any, sch *redact.Schema, out *[]sealedValue) any {
	switch t := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, child := range t {
			p := path + "." + escapeSeg(k)
			secret, below := redact.Field(t, k, sch)
			if secret || below.Secret() {
				if child == nil {
					continue
				}
				raw := secretBytes(child)
				*out = append(*out, sealedValue{field: p, value: raw})
				m[maskedPrefix+k] = maskFor(k, child, string(raw))
				continue
			}
			m[k] = extractSecrets(p, child, below, out)
		}
		return m
	case []any:
		a := make([]any, len(t))
		for i, child := range t {
			a[i] = extractSecrets(path+"."+strconv.Itoa(i), child, sch.Items(), out)
		}
		return a
	default:
		return v
	}
}

// configSchema marks a provider's configurations: its secret fields, the keys the
// caller marked secret (seed 004 credentials), and every key it does not know (a field
// nobody described is not shown in clear). The fields it knows as not secret are
// plain; custom_headers' values are secret as every headers object's are.
func configSchema(prov *catalog.Provider, force map[string]bool) *redact.Schema {
	props := map[string]*redact.Schema{}
	for _, f := range prov.ConfigFields() {
		if prov.IsSecret(f) {
			props[f] = redact.Marked()
		} else {
			props[f] = nil
		}
	}
	for k := range force {
		props[k] = redact.Marked()
	}
	return redact.Object(props, redact.Marked())
}

// modelConfSchema marks a model's configurations as configSchema does an
// integration's: custom_host is plain, header values and every other key are secret.
var modelConfSchema = redact.Object(map[string]*redact.Schema{"custom_host": nil, "custom_headers": nil}, redact.Marked())

func secretBytes(v any) []byte {
	if s, ok := v.(string); ok {
		return []byte(s)
	}
	b, _ := json.Marshal(v)
	return b
}

// reservedMasked finds keys that would be confused with our masked_ forms.
func reservedMasked(path string, v any) string {
	switch t := v.(type) {
	case map[string]any:
		for k, c := range t {
			if strings.HasPrefix(strings.ToLower(k), maskedPrefix) {
				return path + "." + k
			}
			if p := reservedMasked(path+"."+k, c); p != "" {
				return p
			}
		}
	case []any:
		for i, c := range t {
			if p := reservedMasked(path+"."+strconv.Itoa(i), c); p != "" {
				return p
			}
		}
	}
	return ""
}

// jsonDepth and jsonSize bound what configurations may hold.
func jsonShape(v any, depth int) (maxDepth, nodes int) {
	switch t := v.(type) {
	case map[string]any:
		maxDepth = depth
		for _, c := range t {
			d, n := jsonShape(c, depth+1)
			maxDepth, nodes = max(maxDepth, d), nodes+n+1
		}
	case []any:
		maxDepth = depth
		for _, c := range t {
			d, n := jsonShape(c, depth+1)
			maxDepth, nodes = max(maxDepth, d), nodes+n+1
		}
	case string:
		if !utf8.ValidString(t) {
			return depth, 1 << 30
		}
	}
	return maxDepth, nodes
}
