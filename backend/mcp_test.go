package backend

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/portcullis/portcullis/audit/redact"
)

type headerRT struct {
	h    map[string]string
	next http.RoundTripper
}

func (h headerRT) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range h.h {
		r.Header.Set(k, v)
	}
	return h.next.RoundTrip(r)
}

type mcpTestClient struct {
	s *mcp.ClientSession
}

type callResult struct {
	res  *mcp.CallToolResult
	raw  []byte
	env  map[string]any
	data map[string]any
}

func (e *testEnv) mcpClient(t *testing.T, hdr map[string]string) *mcpTestClient {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, nil)
	tr := &mcp.StreamableClientTransport{Endpoint: e.ts.URL + "/mcp", DisableStandaloneSSE: true,
		HTTPClient: &http.Client{Transport: headerRT{h: hdr, next: http.DefaultTransport}}}
	s, err := c.Connect(context.Background(), tr, nil)
	if err != nil {
		t.Fatalf("mcp connect: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return &mcpTestClient{s: s}
}

func (m *mcpTestClient) call(t *testing.T, name string, args map[string]any) callResult {
	t.Helper()
	res, err := m.s.CallTool(context.Background(), &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("call %s: %v", name, err)
	}
	raw, _ := json.Marshal(res)
	tr := callResult{res: res, raw: raw}
	sc, _ := json.Marshal(res.StructuredContent)
	_ = json.Unmarshal(sc, &tr.env)
	tr.data, _ = tr.env["data"].(map[string]any)
	return tr
}

func TestMCPToolsListSchemasAndAnnotations(t *testing.T) {
	e := newEnv(t)
	m := e.mcpClient(t, e.as("acme", ""))
	lt, err := m.s.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	tools := map[string]*mcp.Tool{}
	for _, tl := range lt.Tools {
		tools[tl.Name] = tl
	}
	cases := []struct {
		name        string
		required    []string
		props       []string
		readOnly    bool
		destructive bool
	}{
		{"create_integration", []string{"ai_provider_id", "name"}, []string{"key", "slug", "description", "workspace_id", "custom_host", "api_version",
			"resource_name", "deployment_name", "aws_region", "aws_access_key_id", "aws_secret_access_key", "vertex_project_id", "vertex_region"}, false, false},
		{"list_integrations", nil, []string{"current_page", "page_size", "workspace_id", "type"}, true, false},
		{"get_integration", []string{"slug"}, nil, true, false},
		{"update_integration", []string{"slug"}, []string{"name", "key", "description", "aws_region", "custom_host"}, false, true},
		{"delete_integration", []string{"slug"}, nil, false, true},
		{"list_integration_models", []string{"slug"}, []string{"current_page", "page_size"}, true, false},
		{"update_integration_models", []string{"models", "slug"}, []string{"allow_all_models"}, false, true},
		{"delete_integration_model", []string{"model_slug", "slug"}, nil, false, true},
		{"list_integration_workspaces", []string{"slug"}, []string{"current_page", "page_size"}, true, false},
		{"update_integration_workspaces", []string{"slug", "workspaces"}, []string{"global_workspace_access_enabled", "override_existing_workspace_access"}, false, true},
		{"list_providers", nil, nil, true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tl := tools[tc.name]
			if tl == nil {
				t.Fatalf("tool missing from tools/list")
			}
			b, _ := json.Marshal(tl.InputSchema)
			var sc struct {
				Required   []string       `json:"required"`
				Properties map[string]any `json:"properties"`
			}
			_ = json.Unmarshal(b, &sc)
			slices.Sort(sc.Required)
			if !slices.Equal(sc.Required, tc.required) {
				t.Errorf("required = %v, want %v", sc.Required, tc.required)
			}
			for _, p := range tc.props {
				if _, ok := sc.Properties[p]; !ok {
					t.Errorf("property %s missing: %s", p, b)
				}
			}
			a := tl.Annotations
			if a == nil || a.ReadOnlyHint != tc.readOnly || (a.DestructiveHint != nil && *a.DestructiveHint) != tc.destructive {
				t.Errorf("annotations = %+v", a)
			}
			if tl.OutputSchema == nil {
				t.Errorf("no output schema")
			}
		})
	}
	b, _ := json.Marshal(tools["list_integrations"].InputSchema)
	if !strings.Contains(string(b), `"maximum":100`) {
		t.Errorf("page_size max missing: %s", b)
	}
}

func TestMCPLifecycleAndEnvelope(t *testing.T) {
	e := newEnv(t)
	m := e.mcpClient(t, e.as("acme", ""))
	r := m.call(t, "create_integration", map[string]any{"name": "Azure prod", "ai_provider_id": "azure-openai", "key": "azure-key-0123456789abcdef",
		"resource_name": "myres", "deployment_name": "gpt4o", "api_version": "2024-06-01"})
	if r.res.IsError || r.env["ok"] != true || r.data["slug"] != "azure-prod" || r.data["id"] == "" {
		t.Fatalf("create: %s", r.raw)
	}
	g := m.call(t, "get_integration", map[string]any{"slug": "azure-prod"})
	conf, _ := g.data["configurations"].(map[string]any)
	if g.data["masked_key"] != "azu****cdef" || conf["resource_name"] != "myres" || conf["api_version"] != "2024-06-01" {
		t.Fatalf("get: %s", g.raw)
	}
	u := m.call(t, "update_integration", map[string]any{"slug": "azure-prod", "description": "updated"})
	if u.res.IsError || u.data["description"] != "updated" || u.data["masked_key"] != "azu****cdef" {
		t.Fatalf("update: %s", u.raw)
	}
	l := m.call(t, "list_integrations", map[string]any{"page_size": 10})
	if l.data["total"] != float64(1) || l.data["object"] != "list" {
		t.Fatalf("list: %s", l.raw)
	}
	if p := m.call(t, "list_providers", nil); p.res.IsError || p.data["total"].(float64) < 9 {
		t.Fatalf("providers: %s", p.raw)
	}
	mm := m.call(t, "update_integration_models", map[string]any{"slug": "azure-prod", "models": []any{
		map[string]any{"slug": "gpt-4o", "enabled": true, "configurations": map[string]any{"custom_headers": map[string]any{"api-key": "header-secret-value-123456"}}}}})
	if mm.res.IsError || strings.Contains(string(mm.raw), "header-secret-value") {
		t.Fatalf("models: %s", mm.raw)
	}
	lm := m.call(t, "list_integration_models", map[string]any{"slug": "azure-prod"})
	if lm.data["total"] != float64(1) || strings.Contains(string(lm.raw), "header-secret-value") || !strings.Contains(string(lm.raw), "masked_api-key") {
		t.Fatalf("list models: %s", lm.raw)
	}
	if d := m.call(t, "delete_integration_model", map[string]any{"slug": "azure-prod", "model_slug": "gpt-4o"}); d.res.IsError {
		t.Fatalf("delete model: %s", d.raw)
	}
	w := m.call(t, "update_integration_workspaces", map[string]any{"slug": "azure-prod", "global_workspace_access_enabled": false,
		"workspaces": []any{map[string]any{"id": "ws-1", "enabled": true, "credit_limit": 100, "alert_threshold": 80, "rate_limit_rpm": 60}}})
	if w.res.IsError {
		t.Fatalf("workspaces: %s", w.raw)
	}
	lw := m.call(t, "list_integration_workspaces", map[string]any{"slug": "azure-prod"})
	if lw.data["total"] != float64(1) || !strings.Contains(string(lw.raw), `"rpm"`) {
		t.Fatalf("list workspaces: %s", lw.raw)
	}
	if d := m.call(t, "delete_integration", map[string]any{"slug": "azure-prod"}); d.res.IsError {
		t.Fatalf("delete: %s", d.raw)
	}

	// Error envelope: isError, ok:false, error names the field and the rule.
	bad := m.call(t, "create_integration", map[string]any{"name": "bedrock", "ai_provider_id": "aws-bedrock"})
	errObj, _ := bad.env["error"].(map[string]any)
	if !bad.res.IsError || bad.env["ok"] != false || errObj["field"] != "configurations.aws_region" || !strings.Contains(errObj["message"].(string), "required") {
		t.Fatalf("error envelope: %s", bad.raw)
	}
	nf := m.call(t, "get_integration", map[string]any{"slug": "azure-prod"})
	if !nf.res.IsError || nf.env["error"].(map[string]any)["code"] != "not_found" {
		t.Fatalf("not found: %s", nf.raw)
	}
	// Schema validation by the SDK names the argument too.
	res, err := m.s.CallTool(context.Background(), &mcp.CallToolParams{Name: "list_integrations", Arguments: map[string]any{"page_size": 1000}})
	if err == nil && (!res.IsError || !strings.Contains(string(mustJSON(res)), "page_size")) {
		t.Fatalf("page_size 1000 accepted: %s", mustJSON(res))
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func TestMCPRequiresAuthAndScopesByOrg(t *testing.T) {
	e := newEnv(t)
	// No credentials: the HTTP layer refuses before the SDK.
	r := e.do("POST", "/mcp", map[string]string{"Accept": "application/json, text/event-stream"},
		`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	if r.status != 401 {
		t.Fatalf("unauthenticated mcp: %d %s", r.status, r.body)
	}
	a := e.mcpClient(t, e.as("acme", ""))
	if c := a.call(t, "create_integration", map[string]any{"name": "mine", "ai_provider_id": "openai", "key": "sk-0123456789abcdefghij"}); c.res.IsError {
		t.Fatalf("%s", c.raw)
	}
	b := e.mcpClient(t, e.as("globex", ""))
	for _, tool := range []string{"get_integration", "delete_integration", "list_integration_models"} {
		res := b.call(t, tool, map[string]any{"slug": "mine"})
		if !res.res.IsError || res.env["error"].(map[string]any)["code"] != "not_found" {
			t.Fatalf("%s across orgs: %s", tool, res.raw)
		}
	}
	if l := b.call(t, "list_integrations", nil); l.data["total"] != float64(0) {
		t.Fatalf("other org lists: %s", l.raw)
	}
}

// Argument errors come back in the envelope too, naming the argument and the rule.
func TestMCPArgumentErrorsUseEnvelope(t *testing.T) {
	e := newEnv(t)
	m := e.mcpClient(t, e.as("acme", ""))
	m.call(t, "create_integration", map[string]any{"name": "x", "ai_provider_id": "openai", "key": "sk-0123456789abcdefghij"})
	cases := []struct {
		name  string
		tool  string
		args  map[string]any
		field string
		rule  string
	}{
		{"missing required", "create_integration", map[string]any{"ai_provider_id": "openai"}, "name", "is required"},
		{"unknown argument", "get_integration", map[string]any{"slug": "x", "org": "globex"}, "org", "unknown field"},
		{"wrong type", "get_integration", map[string]any{"slug": 5}, "slug", "must be a string"},
		{"page_size over 100", "list_integrations", map[string]any{"page_size": 1000}, "page_size", "schema"},
		{"type not in enum", "list_integrations", map[string]any{"type": "team"}, "type", "schema"},
		{"alert_threshold over 100", "update_integration_workspaces", map[string]any{"slug": "x",
			"workspaces": []any{map[string]any{"id": "w", "enabled": true, "alert_threshold": 150}}}, "workspaces[].alert_threshold", "must be at most 100"},
		{"unknown provider", "create_integration", map[string]any{"name": "n", "ai_provider_id": "nope"}, "ai_provider_id", "must be one of: "},
		{"provider rule", "create_integration", map[string]any{"name": "n", "ai_provider_id": "azure-openai", "key": "k"}, "configurations.resource_name", "is required"},
		{"bad custom_host", "update_integration", map[string]any{"slug": "x", "custom_host": "gopher://x"}, "configurations.custom_host", "http or https"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := m.call(t, tc.tool, tc.args)
			errObj, _ := r.env["error"].(map[string]any)
			if !r.res.IsError || r.env["ok"] != false || errObj["field"] != tc.field || !strings.Contains(errObj["message"].(string), tc.rule) {
				t.Fatalf("got %s", r.raw)
			}
		})
	}
}

// A provider field given both flat and in configurations is refused, never one silently
// chosen over the other.
func TestMergeConfigurations(t *testing.T) {
	got, ae := mergeConfigurations(map[string]any{"aws_region": "us-east-1"}, map[string]any{"host": "db"})
	if ae != nil || got["aws_region"] != "us-east-1" || got["host"] != "db" {
		t.Fatalf("merge: %v %v", got, ae)
	}
	if _, ae := mergeConfigurations(map[string]any{"custom_host": "https://a"}, map[string]any{"custom_host": "https://b"}); ae == nil || asAPIError(ae).Field != "configurations.custom_host" {
		t.Fatalf("a field given twice: %+v", ae)
	}
}

// Every field the backend seals is marked in tools/list (writeOnly), so the proxy, which
// reads the marks, redacts exactly what the backend treats as write-only; fields the
// catalog knows as plain stay unmarked.
func TestToolSchemasMarkEverySecretTheBackendSeals(t *testing.T) {
	e := newEnv(t)
	m := e.mcpClient(t, e.as("acme", ""))
	lt, err := m.s.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	marks := map[string][]string{}
	for _, tl := range lt.Tools {
		b, _ := json.Marshal(tl.InputSchema)
		marks[tl.Name] = redact.CompileSchema(b).Paths()
	}
	want := map[string][]string{
		"create_integration":        {"aws_secret_access_key", "configurations.*", "configurations.custom_headers.*", "key"},
		"update_integration":        {"aws_secret_access_key", "configurations.*", "configurations.custom_headers.*", "key"},
		"update_integration_models": {"models[].configurations.custom_headers.*"},
		"get_integration":           nil,
	}
	for tool, w := range want {
		if !slices.Equal(marks[tool], w) {
			t.Errorf("%s marks %v, want %v", tool, marks[tool], w)
		}
	}
}

// A secret pasted into the wrong argument never comes back in the error: the error
// names the argument and the rule, whichever rule it breaks.
func TestArgumentErrorsNeverEchoTheValue(t *testing.T) {
	e := newEnv(t)
	m := e.mcpClient(t, e.as("acme", ""))
	const secret = "sk-proj-CANARYabcdefghijklmnop0123456789"
	long := strings.Repeat("A", 300) + secret
	cases := []struct {
		name, tool string
		args       map[string]any
		field      string
	}{
		{"enum", "create_integration", map[string]any{"name": "n", "ai_provider_id": secret}, "ai_provider_id"},
		{"enum on a list filter", "list_integrations", map[string]any{"type": secret}, "type"},
		{"maxLength", "create_integration", map[string]any{"name": long, "ai_provider_id": "openai", "key": "k"}, "name"},
		{"type", "list_integrations", map[string]any{"page_size": secret}, "page_size"},
		{"nested type", "update_integration_workspaces", map[string]any{"slug": "x",
			"workspaces": []any{map[string]any{"id": "w", "enabled": secret}}}, "workspaces"},
		{"duplicate model slug", "update_integration_models", map[string]any{"slug": "x",
			"models": []any{map[string]any{"slug": secret[:20], "enabled": true}, map[string]any{"slug": secret[:20], "enabled": true}}}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := m.call(t, tc.tool, tc.args)
			if !r.res.IsError {
				t.Fatalf("accepted: %s", r.raw)
			}
			if strings.Contains(string(r.raw), secret[:20]) || strings.Contains(string(r.raw), "CANARY") {
				t.Fatalf("the value came back: %s", r.raw)
			}
			errObj, _ := r.env["error"].(map[string]any)
			if f, _ := errObj["field"].(string); tc.field != "" && !strings.HasPrefix(f, tc.field) {
				t.Fatalf("field %q, want %s...: %s", f, tc.field, r.raw)
			}
		})
	}
}
