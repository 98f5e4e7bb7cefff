package backend

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestPanicBecomes500AndServerStaysUp(t *testing.T) {
	e := newEnv(t)
	h := e.srv.recoverAndLog(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/x", nil))
	if rec.Code != 500 || !strings.Contains(rec.Body.String(), `"code":"internal"`) || strings.Contains(rec.Body.String(), "boom") {
		t.Fatalf("panic response: %d %s", rec.Code, rec.Body.String())
	}
	if !strings.Contains(e.logs.String(), "boom") {
		t.Fatal("panic not logged")
	}
	if r := e.do("GET", "/healthz", nil, nil); r.status != 200 {
		t.Fatalf("server down after panic: %d", r.status)
	}
}

func TestAccessLogAndUnknownRoutes(t *testing.T) {
	e := newEnv(t)
	h := e.as("acme", "")
	r := e.do("GET", "/v1/integrations?page_size=7&workspace_id=secret-looking-query", h, nil)
	if r.status != 200 {
		t.Fatal(r.status)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, `"path":"/v1/integrations"`) || !strings.Contains(logs, `"org":"acme"`) || strings.Contains(logs, "secret-looking-query") {
		t.Fatalf("access log: %s", logs)
	}
	if r := e.do("GET", "/v2/nothing", h, nil); r.status != 404 || r.json["error"] == nil {
		t.Fatalf("unknown route: %d %s", r.status, r.body)
	}
	// A method the route does not serve is a JSON 405 naming the methods it does.
	if r := e.do("PATCH", "/v1/integrations/x", h, nil); r.status != 405 || r.json["error"] == nil || !strings.Contains(r.errMessage(), "use GET, PUT, DELETE") {
		t.Fatalf("wrong method: %d %s", r.status, r.body)
	}
}
