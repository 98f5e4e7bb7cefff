package proxy

import (
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
	return errors.Join(errs...)
}

// DefaultRoutes is the route table for the bundled integrations backend: Portkey's
// /v1/integrations API and the seed 003/004 shapes that map onto the same resource.
var DefaultRoutes = []Route{
	{"GET", "/v1/providers", "list_providers", "read", "low"},
	{"GET", "/v1/providers/{key}", "list_providers", "read", "low"},
	{"GET", "/v1/integrations", "list_integrations", "read", "low"},
	{"POST", "/v1/integrations", "create_integration", "write", "medium"},
	{"GET", "/v1/integrations/{slug}", "get_integration", "read", "low"},
	{"PUT", "/v1/integrations/{slug}", "update_integration", "destructive", "medium"},
	{"DELETE", "/v1/integrations/{slug}", "delete_integration", "destructive", "high"},
	{"GET", "/v1/integrations/{slug}/models", "list_integration_models", "read", "low"},
	{"PUT", "/v1/integrations/{slug}/models", "update_integration_models", "destructive", "medium"},
	{"DELETE", "/v1/integrations/{slug}/models", "delete_integration_model", "destructive", "high"},
	{"GET", "/v1/integrations/{slug}/workspaces", "list_integration_workspaces", "read", "low"},
	{"PUT", "/v1/integrations/{slug}/workspaces", "update_integration_workspaces", "destructive", "medium"},
	{"POST", "/v1/integrations/{slug}/test", "test_integration", "other", "low"},
	{"POST", "/ai/llm", "create_integration", "write", "medium"},
	{"POST", "/ai/llm/{id}/validate", "test_integration", "other", "low"},
	{"GET", "/integrations/credentials", "list_integrations", "read", "low"},
	{"POST", "/integrations/credentials", "create_integration", "write", "medium"},
	{"GET", "/integrations/credentials/{id}", "get_integration", "read", "low"},
	{"PATCH", "/integrations/credentials/{id}", "update_integration", "destructive", "medium"},
	{"DELETE", "/integrations/credentials/{id}", "delete_integration", "destructive", "high"},
	{"POST", "/integrations/credentials/{id}/test-connection", "test_integration", "other", "low"},
	{"POST", "/integrations/{provider}/test-connection", "test_integration", "other", "low"},
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
		cr := compiledRoute{method: r.Method, segments: splitPath(r.Path), tool: r.Tool, info: toolInfoFor(r.Category, r.Risk)}
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

// match returns the tool, its info and the path parameters. An unmapped route gets the
// tool name "http:METHOD /path", which the example policy denies.
func (t *routeTable) match(method, path string) (string, policies.ToolInfo, map[string]string) {
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
			return r.tool, r.info, params
		}
	}
	return "http:" + method + " " + path, toolInfoFor("other", "high"), nil
}
