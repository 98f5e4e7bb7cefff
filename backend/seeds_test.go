package backend

import (
	"strings"
	"testing"
)

func TestSeed003AILLM(t *testing.T) {
	e := newEnv(t)
	h := e.as("acme", "ws-1")
	ok := e.do("POST", "/ai/llm", h, map[string]any{"name": "My OpenAI Config", "aiType": "OPENAI", "endpoint": "https://api.openai.com/v1",
		"key": "optional-access-key-123456", "secret": "sk-proj-xxxxxxxxxxxxxxxxwxyz", "workspaceId": "ws-1"})
	if ok.status != 200 || ok.json["success"] != true || ok.json["message"] != "AI LLM configuration created successfully" {
		t.Fatalf("create: %d %s", ok.status, ok.body)
	}
	id := ok.json["aiLlmId"].(string)
	// The same resource, seen through the Portkey surface, masked.
	g := e.do("GET", "/v1/integrations/"+id, h, nil)
	conf := g.json["configurations"].(map[string]any)
	if g.json["ai_provider_id"] != "openai" || g.json["masked_key"] != "sk-****wxyz" || g.json["workspace_id"] != "ws-1" ||
		conf["custom_host"] != "https://api.openai.com/v1" || conf["masked_access_key"] == nil {
		t.Fatalf("as integration: %s", g.body)
	}
	aws := e.do("POST", "/ai/llm", h, map[string]any{"name": "bedrock", "aiType": "AWS", "endpoint": "https://bedrock-runtime.eu-west-1.amazonaws.com",
		"key": "AKIAEXAMPLE", "secret": "aws-secret-aaaaaaaaaaaaaaaa", "workspaceId": "ws-1"})
	if aws.status != 200 {
		t.Fatalf("aws: %s", aws.body)
	}
	ag := e.do("GET", "/v1/integrations/"+aws.json["aiLlmId"].(string), h, nil)
	ac := ag.json["configurations"].(map[string]any)
	if ac["aws_region"] != "eu-west-1" || ac["aws_access_key_id"] != "AKIAEXAMPLE" || ac["masked_aws_secret_access_key"] == nil {
		t.Fatalf("aws mapping: %s", ag.body)
	}
	cases := []struct {
		name   string
		body   any
		status int
		field  string
	}{
		{"bad aiType", map[string]any{"name": "n", "aiType": "MISTRAL", "endpoint": "https://x.example", "secret": "s", "workspaceId": "ws-1"}, 400, "aiType"},
		{"endpoint not URL", map[string]any{"name": "n", "aiType": "OPENAI", "endpoint": "api.openai.com", "secret": "s", "workspaceId": "ws-1"}, 400, "endpoint"},
		{"missing secret", map[string]any{"name": "n", "aiType": "OPENAI", "endpoint": "https://x.example", "workspaceId": "ws-1"}, 400, "secret"},
		{"missing workspace", map[string]any{"name": "n", "aiType": "OPENAI", "endpoint": "https://x.example", "secret": "s"}, 400, "workspaceId"},
		{"aws without region in endpoint", map[string]any{"name": "n", "aiType": "AWS", "endpoint": "https://example.com", "secret": "s", "workspaceId": "ws-1"}, 400, "endpoint"},
		{"duplicate name in workspace", map[string]any{"name": "My OpenAI Config", "aiType": "OPENAI", "endpoint": "https://x.example", "secret": "s", "workspaceId": "ws-1"}, 409, "name"},
		{"other workspace", map[string]any{"name": "n", "aiType": "OPENAI", "endpoint": "https://x.example", "secret": "s", "workspaceId": "ws-2"}, 403, "workspaceId"},
		{"unknown field", `{"name":"n","aiType":"OPENAI","endpoint":"https://x.example","secret":"s","workspaceId":"ws-1","extra":1}`, 400, "extra"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("POST", "/ai/llm", h, tc.body)
			if r.status != tc.status || r.json["success"] != false || r.json["field"] != tc.field || !strings.Contains(r.json["message"].(string), tc.field) {
				t.Fatalf("got %d %s", r.status, r.body)
			}
		})
	}
}

func TestSeed004Credentials(t *testing.T) {
	e := newEnv(t)
	h := e.as("acme", "")
	c := e.do("POST", "/integrations/credentials", h, map[string]any{"name": "files", "provider": "sftp", "auth_type": "key_file",
		"config":      map[string]any{"host": "sftp.example.com", "port": 22, "username": "bot"},
		"credentials": map[string]any{"private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----", "passphrase": "pass-phrase-value-1234"}})
	if c.status != 201 {
		t.Fatalf("create: %d %s", c.status, c.body)
	}
	id := c.json["id"].(string)
	g := e.do("GET", "/integrations/credentials/"+id, h, nil)
	if strings.Contains(string(g.body), "OPENSSH") || strings.Contains(string(g.body), "masked") || strings.Contains(string(g.body), "pass-phrase") {
		t.Fatalf("credential retrievable: %s", g.body)
	}
	if f := g.json["credential_fields"].([]any); len(f) != 2 || f[0] != "passphrase" || f[1] != "private_key" {
		t.Fatalf("credential_fields: %s", g.body)
	}
	if g.json["config"].(map[string]any)["host"] != "sftp.example.com" || g.json["auth_type"] != "key_file" {
		t.Fatalf("config: %s", g.body)
	}
	p := e.do("PATCH", "/integrations/credentials/"+id, h, map[string]any{"name": "files2", "credentials": map[string]any{"passphrase": "new-pass-phrase-5678"}})
	if p.status != 200 || p.json["name"] != "files2" {
		t.Fatalf("patch: %d %s", p.status, p.body)
	}
	if l := e.do("GET", "/integrations/credentials?provider=sftp", h, nil); l.json["total"] != float64(1) {
		t.Fatalf("list: %s", l.body)
	}
	cases := []struct {
		name  string
		body  map[string]any
		field string
	}{
		{"unknown provider", map[string]any{"name": "x", "provider": "dropbox", "auth_type": "api_key", "credentials": map[string]any{}}, "provider"},
		{"auth type not offered", map[string]any{"name": "x", "provider": "postgresql", "auth_type": "oauth2", "credentials": map[string]any{"password": "p"}}, "auth_type"},
		{"user_password needs password", map[string]any{"name": "x", "provider": "postgresql", "auth_type": "user_password",
			"config": map[string]any{"host": "h", "database": "d", "username": "u"}, "credentials": map[string]any{}}, "configurations.password"},
		{"key_file needs private_key", map[string]any{"name": "x", "provider": "sftp", "auth_type": "key_file",
			"config": map[string]any{"host": "h", "username": "u"}, "credentials": map[string]any{"password": "p"}}, "configurations.private_key"},
		{"missing credentials", map[string]any{"name": "x", "provider": "sftp", "auth_type": "key_file"}, "credentials"},
		{"field both config and credential", map[string]any{"name": "x", "provider": "sftp", "auth_type": "user_password",
			"config": map[string]any{"password": "p"}, "credentials": map[string]any{"password": "p"}}, "credentials.password"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("POST", "/integrations/credentials", h, tc.body)
			if r.status != 400 || r.errField() != tc.field {
				t.Fatalf("got %d %s", r.status, r.body)
			}
		})
	}
	// aws_ses row: all three fields required, the secret masked.
	r := e.do("POST", "/integrations/credentials", h, map[string]any{"name": "ses", "provider": "aws_ses", "auth_type": "api_key",
		"config": map[string]any{"aws_region": "us-east-1", "aws_access_key_id": "AKIA1"}, "credentials": map[string]any{"aws_secret_access_key": "s-aaaaaaaaaaaaaaaaaaaaa"}})
	if r.status != 201 {
		t.Fatalf("ses: %s", r.body)
	}
	if d := e.do("DELETE", "/integrations/credentials/"+id, h, nil); d.status != 200 || d.json["deleted"] != true {
		t.Fatalf("delete: %s", d.body)
	}
	if g := e.do("GET", "/integrations/credentials/"+id, h, nil); g.status != 404 {
		t.Fatalf("after delete: %d", g.status)
	}
}
