package proxy

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/policies"
	"github.com/portcullis/portcullis/policies/principal"
)

// InputRebuilder turns a recorded decision row back into the policy input it was decided
// on, for the console's playground and policy replay. Tool info comes from the route
// table, as it does on the request path; the caller is the one recorded (claims beyond
// sub, org, workspace, roles and session are not recorded), and the arguments are the
// recorded, redacted ones.
type InputRebuilder struct {
	routes            *routeTable
	mcpName, restName string
}

// NewInputRebuilder builds a rebuilder for cfg (after SetDefaults).
func NewInputRebuilder(cfg Config) *InputRebuilder {
	return &InputRebuilder{routes: newRouteTable(cfg.REST.Routes), mcpName: cfg.MCP.Upstream.Name, restName: cfg.REST.Upstream.Name}
}

// Input rebuilds the input of ev; false when ev is not a call the policy decided.
func (r *InputRebuilder) Input(ev *audit.Event) (policies.Input, bool) {
	if ev.Kind != audit.KindDecision || ev.Tool == "" || (ev.Surface != "mcp" && ev.Surface != "rest") {
		return policies.Input{}, false
	}
	in := policies.Input{
		Surface: ev.Surface, Tool: ev.Tool, HTTP: policies.HTTPInfo{Method: ev.Method, Path: ev.Path},
		Caller: principal.Caller{Sub: ev.Caller.Sub, Org: ev.Caller.Org, Workspace: ev.Caller.Workspace,
			Roles: ev.Caller.Roles, Session: ev.Caller.Session},
		Mode: "call", Arguments: map[string]any{},
	}
	switch {
	case strings.HasPrefix(ev.Tool, "mcp:"):
		in.ToolInfo = toolInfoFor("read", "low")
	case strings.HasPrefix(ev.Tool, "http:"):
		in.ToolInfo = toolInfoFor("other", "high")
	default:
		info, ok := r.routes.byTool[ev.Tool]
		if !ok {
			info = unknownToolInfo
		}
		in.ToolInfo = info
	}
	if ev.Surface == "mcp" {
		in.Upstream = r.mcpName
	} else {
		in.Upstream = r.restName
	}
	if len(bytes.TrimSpace(ev.Arguments)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(ev.Arguments))
		dec.UseNumber()
		var args map[string]any
		if err := dec.Decode(&args); err == nil && args != nil {
			in.Arguments = args
		}
	}
	return in, true
}
