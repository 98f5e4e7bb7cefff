package backend

import (
	"strings"
	"testing"
)

// A masked value sent back is refused rather than stored over the secret it stands for,
// for the key and for configuration secrets alike.
func TestMaskedValueSentBackIsRefused(t *testing.T) {
	e := newEnv(t)
	h := e.as("acme", "")
	_, slug := e.mustCreate(h, map[string]any{"name": "prod", "ai_provider_id": "openai", "key": "sk-proj-abcdefghijklmnopQRST"})
	if r := e.do("PUT", "/v1/integrations/"+slug, h, map[string]any{"key": "sk-****QRST"}); r.status != 400 || r.errField() != "key" || !strings.Contains(r.errMessage(), "masked") ||
		strings.Count(r.errMessage(), "masked value") != 1 {
		t.Fatalf("masked key sent back: %d %s", r.status, r.body)
	}
	if r := e.do("GET", "/v1/integrations/"+slug, h, nil); r.json["masked_key"] != "sk-****QRST" {
		t.Fatalf("the stored key changed: %s", r.body)
	}
	_, br := e.mustCreate(h, map[string]any{"name": "br", "ai_provider_id": "aws-bedrock", "configurations": map[string]any{
		"aws_region": "eu-west-1", "aws_access_key_id": "AKIAEXAMPLE", "aws_secret_access_key": "SECRETabcdefghijklmnop"}})
	if r := e.do("PUT", "/v1/integrations/"+br, h, map[string]any{"configurations": map[string]any{"aws_secret_access_key": "SEC****mnop"}}); r.status != 400 ||
		r.errField() != "configurations.aws_secret_access_key" {
		t.Fatalf("masked configuration secret sent back: %d %s", r.status, r.body)
	}
}

// Configuration keys the provider does not know are sealed and shown masked.
func TestUnknownConfigurationKeysAreSealed(t *testing.T) {
	e := newEnv(t)
	h := e.as("acme", "")
	_, un := e.mustCreate(h, map[string]any{"name": "unknown", "ai_provider_id": "openai", "key": "sk-proj-abcdefghijklmnop1234",
		"configurations": map[string]any{"vendor_blob": "opaque-credential-value-1234"}})
	got := e.do("GET", "/v1/integrations/"+un, h, nil)
	if strings.Contains(string(got.body), "opaque-credential-value-1234") || got.json["configurations"].(map[string]any)["masked_vendor_blob"] == nil {
		t.Fatalf("a configuration key the provider does not know was shown in clear: %s", got.body)
	}
}

// Model configurations are sealed like integration configurations: a key nobody
// described (creds), names with token or signature and every header value are stored
// encrypted and shown masked; custom_host stays plain.
func TestModelConfigurationsAreSealedLikeIntegrations(t *testing.T) {
	e := newEnv(t)
	h := e.as("acme", "")
	_, slug := e.mustCreate(h, map[string]any{"name": "m", "ai_provider_id": "openai", "key": "sk-proj-abcdefghijklmnop1234"})
	r := e.do("PUT", "/v1/integrations/"+slug+"/models", h, map[string]any{"models": []any{map[string]any{"slug": "gpt-x", "enabled": true,
		"configurations": map[string]any{"creds": "model-canary-creds-0001", "session_token": "model-canary-token-0002",
			"x-signature": "model-canary-sig-0003", "custom_headers": map[string]any{"X-Plain-Name": "model-canary-hdr-0004"},
			"custom_host": "https://models.example.com"}}}})
	if r.status != 200 {
		t.Fatalf("put models: %d %s", r.status, r.body)
	}
	got := e.do("GET", "/v1/integrations/"+slug+"/models", h, nil)
	for _, c := range []string{"model-canary-creds-0001", "model-canary-token-0002", "model-canary-sig-0003", "model-canary-hdr-0004"} {
		if strings.Contains(string(got.body), c) {
			t.Errorf("%s shown in clear: %s", c, got.body)
		}
	}
	for _, want := range []string{"masked_creds", "masked_session_token", "masked_x-signature", "masked_X-Plain-Name", "https://models.example.com"} {
		if !strings.Contains(string(got.body), want) {
			t.Errorf("read lacks %s: %s", want, got.body)
		}
	}
	raw := e.rawDBBytes(t)
	for _, c := range []string{"model-canary-creds-0001", "model-canary-hdr-0004"} {
		if strings.Contains(raw, c) {
			t.Errorf("%s stored in clear", c)
		}
	}
}
