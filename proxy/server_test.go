package proxy_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/proxy/authn"
)

// The resource metadata holds no made-up documentation link; a configured one, and the
// token issuer when it is an OAuth issuer identifier, are advertised.
func TestResourceMetadata(t *testing.T) {
	meta := func(g *gateway) map[string]any {
		t.Helper()
		resp, body := g.do("GET", "/.well-known/oauth-protected-resource", "", "", "")
		var m map[string]any
		if err := json.Unmarshal([]byte(body), &m); err != nil || resp.StatusCode != 200 {
			t.Fatalf("metadata: %d %s", resp.StatusCode, body)
		}
		return m
	}
	m := meta(newGateway(t, gwOptions{}))
	if _, ok := m["resource_documentation"]; ok {
		t.Fatalf("default metadata has resource_documentation: %v", m)
	}
	if _, ok := m["authorization_servers"]; ok {
		t.Fatalf("issuer %q is not an issuer identifier, yet authorization_servers is set: %v", "test", m)
	}
	m = meta(newGateway(t, gwOptions{
		cfg:     func(c *proxy.Config) { c.ResourceDocumentation = "https://docs.example.com/gateway" },
		authCfg: func(c *authn.Config) { c.Issuer = "https://idp.example.com/realms/acme" },
	}))
	if m["resource_documentation"] != "https://docs.example.com/gateway" {
		t.Fatalf("resource_documentation = %v", m["resource_documentation"])
	}
	if as, _ := m["authorization_servers"].([]any); len(as) != 1 || as[0] != "https://idp.example.com/realms/acme" {
		t.Fatalf("authorization_servers = %v", m["authorization_servers"])
	}

	cfg := proxy.Config{ResourceDocumentation: "/docs"}
	cfg.MCP.Upstream.URL, cfg.REST.Upstream.URL = "http://127.0.0.1:1/mcp", "http://127.0.0.1:1"
	cfg.SetDefaults(t.TempDir())
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "proxy.resource_documentation: must be an absolute http(s) URL") {
		t.Fatalf("Validate with a relative resource_documentation = %v", err)
	}
}
