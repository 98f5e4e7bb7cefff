# METADATA
# title: Portcullis example policy
# description: |
#   Governs the integrations admin API (MCP tools and REST routes share the same tool
#   names). Two styles side by side:
#     - rules written in Rego for what cuts across tools (identity, reads, scope), and
#     - a per-tool table (`tools`) saying what each write does once a caller is admitted:
#       its action, limits, approvers and the roles that may ask for it.
#   The answer is always exactly one object at data.portcullis.decision, chosen by an
#   ordered else chain, so two rules can never disagree at runtime.
package portcullis

# Per-tool table. Keys: action (allow | rate_limit | require_approval), the action's
# parameters (max + window, approvers + ttl), roles (any one of them admits the caller),
# workspace_scoped (a workspace_id argument must be the caller's own workspace) and
# denied_reason (what a caller without the roles is told).
#
# Reads (get_*, list_*, or tool_info.category "read") are not listed: the `is_read` rule
# below admits them for any caller with an org. A tool that is neither a read nor listed
# here is denied.
tools := {
	"create_integration": {
		"action": "rate_limit",
		"max": 10,
		"window": "60s",
		"roles": ["agent", "admin"],
		"workspace_scoped": true,
	},
	"update_integration": {
		"action": "rate_limit",
		"max": 30,
		"window": "60s",
		"roles": ["agent", "operator", "admin"],
		"workspace_scoped": true,
	},
	"update_integration_models": {
		"action": "rate_limit",
		"max": 30,
		"window": "60s",
		"roles": ["agent", "operator", "admin"],
		"workspace_scoped": true,
	},
	"update_integration_workspaces": {
		"action": "rate_limit",
		"max": 30,
		"window": "60s",
		"roles": ["agent", "operator", "admin"],
		"workspace_scoped": true,
	},
	"test_integration": {
		"action": "rate_limit",
		"max": 5,
		"window": "60s",
		"roles": ["agent", "operator", "admin"],
	},
	"delete_integration": {
		"action": "require_approval",
		"approvers": ["role:security"],
		"ttl": "15m",
		"roles": ["operator", "admin"],
		"denied_reason": "agents may not delete integrations; an operator's delete needs security approval",
	},
	"delete_integration_model": {
		"action": "require_approval",
		"approvers": ["role:security"],
		"ttl": "15m",
		"roles": ["operator", "admin"],
		"denied_reason": "agents may not delete integration models; an operator's delete needs security approval",
	},
}

# Fallback if input is so malformed that no branch below applies (e.g. no tool name).
default decision := {"action": "deny", "reason": "no rule allows this call"}

# The decision, first match wins.
decision := {
	"action": "deny",
	"reason": "caller has no subject; every call must come from an identified caller",
} if {
	not caller_sub
} else := {
	"action": "deny",
	"reason": sprintf("caller %s has no org; every call must be scoped to an org", [input.caller.sub]),
} if {
	not caller_org
} else := {
	"action": "allow",
	"reason": sprintf("%s is a read; allowed within org %s", [input.tool, input.caller.org]),
} if {
	is_read
} else := {
	"action": "deny",
	"reason": concat("; ", sort(denials)),
} if {
	count(denials) > 0
} else := granted if {
	granted := grant(tools[input.tool])
} else := {
	"action": "deny",
	"reason": sprintf("no rule allows tool %s", [input.tool]),
}

caller_sub := input.caller.sub if input.caller.sub != ""

caller_org := input.caller.org if input.caller.org != ""

# A read changes nothing: classified "read" by the route table, or named get_* / list_*
# unless the table says the tool writes (a name is a convention, not a guarantee).
is_read if input.tool_info.category == "read"

is_read if {
	some prefix in ["get_", "list_"]
	startswith(input.tool, prefix)
	not input.tool_info.category in {"write", "destructive"}
}

# Why a listed tool is refused to this caller. Several reasons can hold at once; the
# decision reports them all, sorted, so the message is stable.
denials contains reason if {
	rule := tools[input.tool]
	not has_any_role(rule.roles)
	reason := object.get(rule, "denied_reason", sprintf("%s needs one of the roles %s", [input.tool, concat(", ", rule.roles)]))
}

# Scope checks read arguments, so they never apply in list mode: tools/list must hide
# only what the caller can never call, and arguments are empty there.
denials contains reason if {
	not list_mode
	tools[input.tool].workspace_scoped
	ws := input.arguments.workspace_id
	is_string(ws)
	ws != input.caller.workspace
	reason := sprintf("%s: workspace_id %q is not the caller's workspace %q", [input.tool, ws, input.caller.workspace])
}

denials contains reason if {
	not list_mode
	tools[input.tool].workspace_scoped
	ws := input.arguments.workspace_id
	not is_string(ws)
	reason := sprintf("%s: workspace_id must be a string, got %s", [input.tool, type_name(ws)])
}

# A workspaces list (update_integration_workspaces) names workspaces too: each entry must
# be the caller's own workspace, as a workspace_id must.
denials contains reason if {
	not list_mode
	tools[input.tool].workspace_scoped
	some entry in input.arguments.workspaces
	ws := entry.id
	ws != input.caller.workspace
	reason := sprintf("%s: workspaces entry %v is not the caller's workspace %q", [input.tool, ws, input.caller.workspace])
}

# Global workspace access opens an integration to every workspace of the org: an
# org-wide change, for admins only. REST names it global_workspace_access, the MCP tool
# global_workspace_access_enabled.
denials contains reason if {
	not list_mode
	tools[input.tool].workspace_scoped
	some key in ["global_workspace_access", "global_workspace_access_settings", "global_workspace_access_enabled"]
	key in object.keys(input.arguments)
	not "admin" in input.caller.roles
	reason := sprintf("%s: %s opens the integration to every workspace; only role admin may set it", [input.tool, key])
}

# tools/list filtering asks "could this caller ever call the tool?" with empty arguments.
# Any other mode, or none, is a real call, so the scope checks apply by default.
list_mode if input.mode == "list"

has_any_role(roles) if {
	some role in roles
	role in input.caller.roles
}

# What the table entry grants an admitted caller.
grant(rule) := {
	"action": "rate_limit",
	"reason": sprintf("%s allowed for %s, at most %d per %s", [input.tool, input.caller.sub, rule.max, rule.window]),
	"rate_limit": {"max": rule.max, "window": rule.window},
} if rule.action == "rate_limit"

grant(rule) := {
	"action": "require_approval",
	"reason": sprintf("%s needs approval from %s within %s", [input.tool, concat(" or ", rule.approvers), rule.ttl]),
	"approval": {"approvers": rule.approvers, "ttl": rule.ttl},
} if rule.action == "require_approval"

grant(rule) := {
	"action": "allow",
	"reason": sprintf("%s allowed for %s", [input.tool, input.caller.sub]),
} if rule.action == "allow"
