package backend

import (
	"strings"
	"testing"
)

// A slug never takes an id's shape: a slug argument shaped like an id is refused, a name
// shaped like one gets a prefixed slug, and an id still finds its integration.
func TestSlugNeverTakesAnIDsShape(t *testing.T) {
	e := newEnv(t)
	h := e.as("acme", "")
	id, slug := e.mustCreate(h, map[string]any{"name": "prod", "ai_provider_id": "openai", "key": "sk-proj-abcdefghijklmnopQRST"})
	if r := e.create(h, map[string]any{"name": "shadow", "ai_provider_id": "openai", "key": "sk-proj-shadowshadowshadow", "slug": id}); r.status != 400 || r.errField() != "slug" {
		t.Fatalf("slug shaped like an id: %d %s", r.status, r.body)
	}
	if _, s2 := e.mustCreate(h, map[string]any{"name": id, "ai_provider_id": "openai", "key": "sk-proj-shadowshadowshadow"}); s2 != "integration-"+id {
		t.Fatalf("a name shaped like an id gave slug %q", s2)
	}
	if r := e.do("GET", "/v1/integrations/"+id, h, nil); r.status != 200 || r.json["slug"] != slug {
		t.Fatalf("get by id: %d %s", r.status, r.body)
	}
}

// URL fields carry no query string (a credential hides there); the error does not quote it.
func TestURLFieldsCarryNoQueryString(t *testing.T) {
	e := newEnv(t)
	h := e.as("acme", "")
	if r := e.create(h, map[string]any{"name": "q", "ai_provider_id": "openai", "key": "sk-proj-abcdefghijklmnop1234",
		"configurations": map[string]any{"custom_host": "https://api.example.com/v1?api_key=QUERYCANARY"}}); r.status != 400 ||
		r.errField() != "configurations.custom_host" || strings.Contains(string(r.body), "QUERYCANARY") {
		t.Fatalf("custom_host with a query string: %d %s", r.status, r.body)
	}
}
