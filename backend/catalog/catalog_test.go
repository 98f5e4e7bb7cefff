package catalog

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDefaultCatalogShipsRequiredProviders(t *testing.T) {
	c, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"openai", "anthropic", "azure-openai", "aws-bedrock", "vertex-ai", "google", "postgresql", "sftp", "aws_ses"} {
		p, ok := c.Get(k)
		if !ok {
			t.Fatalf("provider %s missing", k)
		}
		if p.Name == "" || p.Category == "" || p.Description == "" || p.CredentialLabel == "" || p.HelpURL == "" || len(p.AuthTypes) == 0 {
			t.Fatalf("provider %s lacks display fields: %+v", k, p)
		}
	}
	az, _ := c.Get("azure-openai")
	if got := strings.Join(az.Required(""), ","); got != "key,resource_name,deployment_name,api_version" {
		t.Fatalf("azure required = %s", got)
	}
	sftp, _ := c.Get("sftp")
	if got := strings.Join(sftp.Required("key_file"), ","); got != "host,username,private_key" {
		t.Fatalf("sftp key_file required = %s", got)
	}
	if p, ok := c.ByAlias("AWS"); !ok || p.Key != "aws-bedrock" {
		t.Fatalf("alias AWS -> %v", p)
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	bad := `providers:
  - key: "Bad Key"
    name: ""
    auth_types: []
  - key: ok
    name: OK
    auth_types: [api_key]
    connection: tcp
    base_url: "ftp://x"
    required_by_auth:
      oauth2: [token]
`
	_, err := Parse([]byte(bad))
	if err == nil {
		t.Fatal("want error")
	}
	for _, want := range []string{"key: must match", "name: required", "auth_types: at least one", "default_port", "base_url", `required_by_auth: "oauth2"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if _, err := Parse([]byte("providers:\n  - key: x\n    name: X\n    auth_types: [api_key]\n    colour: red\n")); err == nil || !strings.Contains(err.Error(), "colour") {
		t.Fatalf("unknown field not refused: %v", err)
	}
}

func TestLoadFileAddsProviderWithoutCode(t *testing.T) {
	p := filepath.Join(t.TempDir(), "cat.yaml")
	row := "providers:\n  - key: mailchimp\n    name: Mailchimp\n    category: Email\n    auth_types: [api_key]\n    required_fields: [key, server_prefix]\n    url_fields: [webhook_url]\n"
	if err := os.WriteFile(p, []byte(row), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := c.Get("mailchimp")
	if !ok || !m.IsURL("webhook_url") || !m.Knows("server_prefix") || !m.IsSecret("key") {
		t.Fatalf("row not loaded as written: %+v", m)
	}
}

// A provider's secret fields are its row's and every name the shared rule
// (redact.IsSecretName) reads as secret: the proxy redacts by the same rule.
func TestProviderSecretsFollowTheSharedNameRule(t *testing.T) {
	c, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	p, _ := c.Get("openai")
	cases := map[string]bool{
		"key": true, "aws_secret_access_key": true, "AWS_Secret-Access-Key": true, "clientSecret": true,
		"X-Api-Key": true, "Authorization": true, "password": true, "private_key": true, "refresh_token": true,
		"connection_string": true, "access_key": true,
		"aws_access_key_id": false, "client_id": false, "resource_name": false, "custom_host": false, "aws_region": false,
	}
	for name, want := range cases {
		if got := p.IsSecret(name); got != want {
			t.Errorf("IsSecret(%q) = %v, want %v", name, got, want)
		}
	}
}
