package redact

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func decode(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// A value the tool's schema marks (writeOnly, format: password) is redacted whatever its
// name; what the schema knows as a plain property stays readable, even beside an
// additionalProperties that marks everything else.
func TestSchemaMarksRedactValuesWhateverTheirName(t *testing.T) {
	r := New(testKey)
	sch := CompileSchema([]byte(`{
		"type": "object",
		"$defs": {"cred": {"type": "string", "writeOnly": true}},
		"properties": {
			"creds": {"type": "string", "writeOnly": true},
			"pin_code_x": {"type": "string", "format": "password"},
			"blob": {"$ref": "#/$defs/cred"},
			"configurations": {"type": "object",
				"properties": {"custom_host": {"type": "string"}},
				"additionalProperties": {"writeOnly": true}},
			"models": {"type": "array", "items": {"type": "object",
				"properties": {"configurations": {"type": "object", "additionalProperties": {"writeOnly": true}}}}},
			"either": {"oneOf": [
				{"type": "object", "properties": {"host": {"type": "string"}}, "additionalProperties": {"writeOnly": true}},
				{"type": "object", "properties": {"port": {"type": "string"}}, "additionalProperties": {"writeOnly": true}}]}
		}}`))
	if sch == nil {
		t.Fatal("marked schema compiled to nil")
	}
	in := decode(t, `{"creds": "canary-1", "PIN_CODE_X": "canary-2", "blob": "canary-3", "name": "prod",
		"configurations": {"custom_host": "https://api.example.com", "mystery": "canary-4", "nested": {"a": "canary-5"}},
		"models": [{"slug": "gpt", "configurations": {"x": "canary-6"}}],
		"either": {"host": "canary-7", "port": "canary-8"}}`)
	out, _ := json.Marshal(r.ValueSchema(in, sch))
	for i := 1; i <= 8; i++ {
		c := "canary-" + string(rune('0'+i))
		if strings.Contains(string(out), c) {
			t.Errorf("%s survived: %s", c, out)
		}
	}
	for _, keep := range []string{`"custom_host":"https://api.example.com"`, `"name":"prod"`, `"slug":"gpt"`} {
		if !strings.Contains(string(out), keep) {
			t.Errorf("%s was redacted: %s", keep, out)
		}
	}
	// Without the schema, only names and value patterns count: creds is not a secret name.
	plain, _ := json.Marshal(r.Value(in))
	if !strings.Contains(string(plain), "canary-1") {
		t.Fatalf("the name rule alone now catches creds; the schema test proves nothing: %s", plain)
	}
}

func TestUnmarkedSchemaCompilesToNil(t *testing.T) {
	for _, s := range []string{`{"type":"object","properties":{"name":{"type":"string"}}}`, `[]`, `not json`, `{"$ref":"#/nowhere"}`,
		`{"$ref":"#","properties":{"a":{"$ref":"#"}}}`} {
		if got := CompileSchema([]byte(s)); got != nil {
			t.Errorf("%s: got marks %v", s, got.Paths())
		}
	}
}

func TestSchemaPathsListTheMarks(t *testing.T) {
	sch := CompileSchema([]byte(`{"properties":{"key":{"writeOnly":true},"configurations":{"properties":{"custom_host":{}},"additionalProperties":{"writeOnly":true}},
		"models":{"items":{"properties":{"configurations":{"properties":{"custom_headers":{"additionalProperties":{"format":"password"}}}}}}}}}`))
	want := []string{"configurations.*", "key", "models[].configurations.custom_headers.*"}
	if got := sch.Paths(); !reflect.DeepEqual(got, want) {
		t.Fatalf("paths %v, want %v", got, want)
	}
}

// Header values are secret under any headers field, whatever the header's name, as an
// object or as a list of name/value pairs (the backend seals them the same way).
func TestHeaderValuesAreSecretWhateverTheirName(t *testing.T) {
	r := New(testKey)
	in := decode(t, `{"custom_headers": {"X-Tenant-Creds": "canary-h1", "x-plain": "canary-h2"},
		"configurations": {"Extra_Headers": {"anything": "canary-h3"}}, "headers": [{"name": "X-Trace", "value": "canary-h4"}]}`)
	out, _ := json.Marshal(r.Value(in))
	for _, c := range []string{"canary-h1", "canary-h2", "canary-h3", "canary-h4"} {
		if strings.Contains(string(out), c) {
			t.Errorf("%s survived: %s", c, out)
		}
	}
	if !strings.Contains(string(out), `"x-plain":"hmac-sha256:`) {
		t.Errorf("header names should stay readable: %s", out)
	}
}

// The name rule is shared with the backend's sealing: token and signature names are
// secret, counts and identifiers are not.
func TestSecretNamesCoverTokensAndSignatures(t *testing.T) {
	for name, want := range map[string]bool{
		"session_token": true, "tokenValue": true, "x-signature": true, "signature_v4": true, "webhook_signing_key": true,
		"max_tokens": false, "max_output_tokens": false, "token_url": false, "client_id": false, "credential_id": false,
		"aws_access_key_id": false, "auth_type": false,
	} {
		if got := IsSecretName(name); got != want {
			t.Errorf("IsSecretName(%q) = %v, want %v", name, got, want)
		}
	}
}
