package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/portcullis/portcullis/policies"
)

// Route maps a REST method and path template to a tool name, so one policy governs the
// MCP and REST surfaces alike.
type Route struct {
	Method string `yaml:"method"`
	// Path is a template: literal segments and {param} segments, e.g. /v1/integrations/{slug}.
	Path string `yaml:"path"`
	Tool string `yaml:"tool"`
	// Category is read, write, destructive or other; Risk is low, medium or high.
	Category string `yaml:"category"`
	Risk     string `yaml:"risk"`
	// Args renames arguments as the policy (and the audit row) sees them, so one policy
	// reads one name on every route of a tool: {"workspaceId": "workspace_id"} for a
	// route whose body spells it differently. Names are exact (the bundled backend reads
	// keys case-sensitively); a request that gives both names is refused (400
	// ambiguous_argument). The upstream still receives the bytes as sent.
	Args map[string]string `yaml:"args"`
	// Schema is a JSON Schema (as JSON text) of the request body whose secret marks
	// (writeOnly: true, format: password) are redacted from policy input, the audit
	// trail and approvals, whatever the fields are called. The marks of every route of a
	// tool, and of the tool's inputSchema in the MCP upstream's tools/list, apply to the
	// tool on both surfaces.
	Schema string `yaml:"schema"`
	// Ref names the path parameter that identifies the resource the call acts on, e.g.
	// "slug" for /v1/integrations/{slug}. A tool listed in proxy.resources is resolved
	// from it (input.resource); only the path counts, as it is what the upstream acts on.
	Ref string `yaml:"ref"`
}

func (r Route) validate() error {
	var errs []error
	switch r.Method {
	case "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD":
	default:
		errs = append(errs, fmt.Errorf("method: unsupported %q", r.Method))
	}
	if !strings.HasPrefix(r.Path, "/") {
		errs = append(errs, fmt.Errorf("path: must start with '/', got %q", r.Path))
	}
	if r.Tool == "" {
		errs = append(errs, errors.New("tool: must be set"))
	}
	if r.Schema != "" {
		var v any
		if err := json.Unmarshal([]byte(r.Schema), &v); err != nil {
			errs = append(errs, fmt.Errorf("schema: not JSON: %v", err))
		} else if _, ok := v.(map[string]any); !ok {
			errs = append(errs, errors.New("schema: must be a JSON object (a JSON Schema)"))
		}
	}
	for from, to := range r.Args {
		if from == "" || to == "" || from == to {
			errs = append(errs, fmt.Errorf("args: %q -> %q: both names must be set and differ", from, to))
		}
	}
	if r.Ref != "" && !strings.Contains(r.Path, "{"+r.Ref+"}") {
		errs = append(errs, fmt.Errorf("ref: %q is not a parameter of path %q", r.Ref, r.Path))
	}
	return errors.Join(errs...)
}

// The bundled backend's secret marks, as the REST bodies spell its fields. Free-form
// configuration objects are the backend's safe default: every value is secret except
// custom_host, the one field every provider knows as not secret; header values are
// always secret.
const (
	confSchema      = `{"type":"object","properties":{"custom_host":{"type":"string"},"custom_headers":{"type":"object","additionalProperties":{"type":"string","writeOnly":true}}},"additionalProperties":{"writeOnly":true}}`
	integrationBody = `{"type":"object","properties":{"key":{"type":"string","writeOnly":true},"configurations":` + confSchema + `}}`
	modelsBody      = `{"type":"object","properties":{"models":{"type":"array","items":{"type":"object","properties":{"configurations":` + confSchema + `}}}}}`
	aiLLMBody       = `{"type":"object","properties":{"key":{"type":"string","writeOnly":true},"secret":{"type":"string","writeOnly":true}}}`
	credentialsBody = `{"type":"object","properties":{"credentials":{"type":"object","writeOnly":true},"config":` + confSchema + `}}`
)

// DefaultRoutes is the route table for the bundled integrations backend: Portkey's
// /v1/integrations API and the seed 003/004 shapes that map onto the same resource.
var DefaultRoutes = []Route{
	{Method: "GET", Path: "/v1/providers", Tool: "list_providers", Category: "read", Risk: "low"},
	{Method: "GET", Path: "/v1/providers/{key}", Tool: "list_providers", Category: "read", Risk: "low"},
	{Method: "GET", Path: "/v1/integrations", Tool: "list_integrations", Category: "read", Risk: "low"},
	{Method: "POST", Path: "/v1/integrations", Tool: "create_integration", Category: "write", Risk: "medium", Schema: integrationBody},
	{Method: "GET", Path: "/v1/integrations/{slug}", Tool: "get_integration", Category: "read", Risk: "low", Ref: "slug"},
	{Method: "PUT", Path: "/v1/integrations/{slug}", Tool: "update_integration", Category: "destructive", Risk: "medium", Schema: integrationBody, Ref: "slug"},
	{Method: "DELETE", Path: "/v1/integrations/{slug}", Tool: "delete_integration", Category: "destructive", Risk: "high", Ref: "slug"},
	{Method: "GET", Path: "/v1/integrations/{slug}/models", Tool: "list_integration_models", Category: "read", Risk: "low", Ref: "slug"},
	{Method: "PUT", Path: "/v1/integrations/{slug}/models", Tool: "update_integration_models", Category: "destructive", Risk: "medium", Schema: modelsBody, Ref: "slug"},
	{Method: "DELETE", Path: "/v1/integrations/{slug}/models", Tool: "delete_integration_model", Category: "destructive", Risk: "high", Ref: "slug"},
	{Method: "GET", Path: "/v1/integrations/{slug}/workspaces", Tool: "list_integration_workspaces", Category: "read", Risk: "low", Ref: "slug"},
	{Method: "GET", Path: "/v1/integrations/{slug}/scope", Tool: "get_integration_scope", Category: "read", Risk: "low", Ref: "slug"},
	{Method: "PUT", Path: "/v1/integrations/{slug}/workspaces", Tool: "update_integration_workspaces", Category: "destructive", Risk: "medium", Ref: "slug"},
	{Method: "POST", Path: "/v1/integrations/{slug}/test", Tool: "test_integration", Category: "other", Risk: "low", Ref: "slug"},
	{Method: "POST", Path: "/ai/llm", Tool: "create_integration", Category: "write", Risk: "medium", Args: map[string]string{"workspaceId": "workspace_id"}, Schema: aiLLMBody},
	{Method: "POST", Path: "/ai/llm/{id}/validate", Tool: "test_integration", Category: "other", Risk: "low", Schema: aiLLMBody, Ref: "id"},
	{Method: "GET", Path: "/integrations/credentials", Tool: "list_integrations", Category: "read", Risk: "low"},
	{Method: "POST", Path: "/integrations/credentials", Tool: "create_integration", Category: "write", Risk: "medium", Schema: credentialsBody},
	{Method: "GET", Path: "/integrations/credentials/{id}", Tool: "get_integration", Category: "read", Risk: "low", Ref: "id"},
	{Method: "PATCH", Path: "/integrations/credentials/{id}", Tool: "update_integration", Category: "destructive", Risk: "medium", Schema: credentialsBody, Ref: "id"},
	{Method: "DELETE", Path: "/integrations/credentials/{id}", Tool: "delete_integration", Category: "destructive", Risk: "high", Ref: "id"},
	{Method: "POST", Path: "/integrations/credentials/{id}/test-connection", Tool: "test_integration", Category: "other", Risk: "low", Schema: credentialsBody, Ref: "id"},
	{Method: "POST", Path: "/integrations/{provider}/test-connection", Tool: "test_integration", Category: "other", Risk: "low", Schema: credentialsBody},
}

// toolInfoFor is the ToolInfo the policy sees for a category and risk.
func toolInfoFor(category, risk string) policies.ToolInfo {
	ti := policies.ToolInfo{Category: category, Risk: risk}
	switch category {
	case "read":
		ti.Annotations = map[string]any{"readOnlyHint": true, "destructiveHint": false}
	case "destructive":
		ti.Annotations = map[string]any{"readOnlyHint": false, "destructiveHint": true}
	default:
		ti.Annotations = map[string]any{"readOnlyHint": false, "destructiveHint": false}
	}
	return ti
}

type compiledRoute struct {
	method   string
	segments []string // "{x}" marks a parameter
	tool     string
	info     policies.ToolInfo
	args     map[string]string // renames, Route.Args
	ref      string            // Route.Ref
}

// routeTable matches method + path to a route. Later routes (configured ones) win over
// earlier ones with the same method and template.
type routeTable struct {
	routes []compiledRoute
	byTool map[string]policies.ToolInfo // the first route naming each tool
}

func newRouteTable(extra []Route) *routeTable {
	t := &routeTable{}
	for _, r := range append(append([]Route(nil), DefaultRoutes...), extra...) {
		cr := compiledRoute{method: r.Method, segments: splitPath(r.Path), tool: r.Tool, info: toolInfoFor(r.Category, r.Risk), args: r.Args, ref: r.Ref}
		replaced := false
		for i := range t.routes {
			if t.routes[i].method == cr.method && strings.Join(t.routes[i].segments, "/") == strings.Join(cr.segments, "/") {
				t.routes[i], replaced = cr, true
			}
		}
		if !replaced {
			t.routes = append(t.routes, cr)
		}
	}
	t.byTool = make(map[string]policies.ToolInfo, len(t.routes))
	for _, r := range t.routes {
		if _, ok := t.byTool[r.tool]; !ok {
			t.byTool[r.tool] = r.info
		}
	}
	return t
}

func splitPath(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

// match returns the tool, its info, the path parameters, the route's argument renames and
// the value of its ref parameter ("" without one). An unmapped route gets the tool name
// "http:METHOD /path", which the example policy denies.
func (t *routeTable) match(method, path string) (tool string, info policies.ToolInfo, params, renames map[string]string, ref string) {
	segs := splitPath(path)
	for i := range t.routes {
		r := &t.routes[i]
		if r.method != method || len(r.segments) != len(segs) {
			continue
		}
		var params map[string]string
		ok := true
		for j, s := range r.segments {
			if strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") {
				if segs[j] == "" {
					ok = false
					break
				}
				if params == nil {
					params = make(map[string]string, 2)
				}
				params[s[1:len(s)-1]] = segs[j]
				continue
			}
			if s != segs[j] {
				ok = false
				break
			}
		}
		if ok {
			return r.tool, r.info, params, r.args, params[r.ref]
		}
	}
	return "http:" + method + " " + path, toolInfoFor("other", "high"), nil, nil, ""
}
