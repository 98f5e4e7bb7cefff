package backend

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// A type error or an unknown field inside an array is named with its index.
func TestDecodeErrorsNameTheArrayIndex(t *testing.T) {
	for _, tc := range []struct{ body, field string }{
		{`{"models":[{"slug":"a","enabled":true},{"slug":"b","enabled":"yes"}]}`, "models[1].enabled"},
		{`{"models":[{"slug":"a","enabled":true,"extra":1}]}`, "models[0].extra"},
		{`{"models":[{"slug":"a","enabled":true},{"slug":{"x":1},"enabled":true}]}`, "models[1].slug"},
		{`{"models":"nope"}`, "models"},
	} {
		var req modelsReq
		r := httptest.NewRequest("PUT", "/", strings.NewReader(tc.body))
		ae := decodeStrict(r, &req)
		if ae == nil || asAPIError(ae).Field != tc.field {
			t.Errorf("%s: %+v, want field %s", tc.body, ae, tc.field)
		}
	}
	raw := []byte(`{"a":[1,2,{"b":[true,"x"]}]}`)
	if p := pathAt(raw, int64(strings.Index(string(raw), `"x"`)+3)); p != "a[2].b[1]" {
		t.Errorf("pathAt = %q, want a[2].b[1]", p)
	}
}

// Workspace limits must be an object or a list, not a bare word or number.
func TestWorkspaceLimitsShape(t *testing.T) {
	e := newEnv(t)
	h := e.as("acme", "")
	_, slug := e.mustCreate(h, map[string]any{"name": "ws", "ai_provider_id": "openai", "key": "sk-proj-abcdefghijklmnop1234"})
	r := e.do("PUT", "/v1/integrations/"+slug+"/workspaces", h, map[string]any{"workspaces": []any{
		map[string]any{"id": "ws-1", "enabled": true, "usage_limits": "banana"},
		map[string]any{"id": "ws-2", "enabled": true, "rate_limits": -5},
	}})
	if r.status != 400 || !strings.Contains(string(r.body), "workspaces[0].usage_limits") || !strings.Contains(string(r.body), "workspaces[1].rate_limits") {
		t.Fatalf("bad limits: %d %s", r.status, r.body)
	}
	if r := e.do("PUT", "/v1/integrations/"+slug+"/workspaces", h, map[string]any{"workspaces": []any{
		map[string]any{"id": "ws-1", "enabled": true, "usage_limits": map[string]any{"credit_limit": 10}},
	}}); r.status != 200 {
		t.Fatalf("good limits: %d %s", r.status, r.body)
	}
}

// Filtering a list by an unknown provider is an error naming the parameter, not an empty list.
func TestListByUnknownProvider(t *testing.T) {
	e := newEnv(t)
	h := e.as("acme", "")
	if r := e.do("GET", "/v1/integrations?ai_provider_id=nope", h, nil); r.status != 400 || r.errField() != "ai_provider_id" {
		t.Fatalf("unknown provider filter: %d %s", r.status, r.body)
	}
	if r := e.do("GET", "/integrations/credentials?provider=nope", h, nil); r.status != 400 || r.errField() != "provider" {
		t.Fatalf("unknown provider filter (credentials): %d %s", r.status, r.body)
	}
	if r := e.do("GET", "/v1/integrations?ai_provider_id=openai", h, nil); r.status != 200 {
		t.Fatalf("known provider filter: %d %s", r.status, r.body)
	}
}

// A body must be a JSON object: null or an array is not an update that changes nothing.
func TestBodyMustBeAnObject(t *testing.T) {
	e := newEnv(t)
	h := e.as("acme", "")
	_, slug := e.mustCreate(h, map[string]any{"name": "obj", "ai_provider_id": "openai", "key": "sk-proj-abcdefghijklmnop1234"})
	for _, body := range []string{`null`, `[]`, `"x"`} {
		if r := e.do("PUT", "/v1/integrations/"+slug, h, body); r.status != 400 || r.errField() != "body" {
			t.Errorf("PUT %s: %d %s", body, r.status, r.body)
		}
	}
}
