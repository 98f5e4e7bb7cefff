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
# workspace_scoped (a workspace_id argument must be the caller's own workspace),
# resource_scoped (the call changes one existing integration, which the proxy resolves as
# input.resource; a caller bound to a workspace may change only its own workspace's) and
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
		"resource_scoped": true,
	},
	"update_integration_models": {
		"action": "rate_limit",
		"max": 30,
		"window": "60s",
		"roles": ["agent", "operator", "admin"],
		"workspace_scoped": true,
		"resource_scoped": true,
	},
	"update_integration_workspaces": {
		"action": "rate_limit",
		"max": 30,
		"window": "60s",
		"roles": ["agent", "operator", "admin"],
		"workspace_scoped": true,
		"resource_scoped": true,
	},
	"test_integration": {
		"action": "rate_limit",
		"max": 5,
		"window": "60s",
		"roles": ["agent", "operator", "admin"],
	},
	"delete_integration": {
		"action": "require_approval",
		"resource_scoped": true,
		"approvers": ["role:security"],
		"ttl": "15m",
		"roles": ["operator", "admin"],
		"denied_reason": "agents may not delete integrations; an operator's delete needs security approval",
	},
	"delete_integration_model": {
		"action": "require_approval",
		"resource_scoped": true,
		"approvers": ["role:security"],
		"ttl": "15m",
		"roles": ["operator", "admin"],
		"denied_reason": "agents may not delete integration models; an operator's delete needs security approval",
	},
}

# A grant change that takes workspaces' access away (see grant_removals) is not covered
# by update_integration_workspaces' own entry: an admin makes it like any other update,
# anyone else needs this approval.
grant_removal_approval := {"approvers": ["role:security"], "ttl": "15m"}

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
} else := {
	"action": "require_approval",
	"reason": sprintf("%s takes workspace access away (%s); it needs approval from %s within %s unless an admin makes it", [
		input.tool, concat("; ", sort(grant_removals)),
		concat(" or ", grant_removal_approval.approvers), grant_removal_approval.ttl,
	]),
	"approval": grant_removal_approval,
} if {
	count(grant_removals) > 0
	not "admin" in input.caller.roles
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
	reason := sprintf("%s: workspace_id is not the caller's workspace %q", [input.tool, input.caller.workspace])
}

# A caller bound to a workspace creates in it: without a workspace_id the integration
# would be organisation-level, which only an org-wide caller may create.
denials contains reason if {
	not list_mode
	input.tool == "create_integration"
	caller_workspace
	not input.arguments.workspace_id
	reason := sprintf("create_integration: workspace_id is required for a caller bound to workspace %q (it must be that workspace)", [input.caller.workspace])
}

denials contains reason if {
	not list_mode
	tools[input.tool].workspace_scoped
	ws := input.arguments.workspace_id
	not is_string(ws)
	reason := sprintf("%s: workspace_id must be a string, got %s", [input.tool, type_name(ws)])
}

# A workspaces list (update_integration_workspaces) names workspaces too: a caller bound
# to a workspace may name only its own, as with a workspace_id. An org-wide caller manages
# every workspace's grant; taking access away needs approval (grant_removals).
denials contains reason if {
	not list_mode
	tools[input.tool].workspace_scoped
	caller_workspace
	some i, entry in input.arguments.workspaces
	entry.id != input.caller.workspace
	reason := sprintf("%s: workspaces[%d].id is not the caller's workspace %q", [input.tool, i, input.caller.workspace])
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

# --- the integration a call changes --------------------------------------------------------
#
# For the resource_scoped tools the proxy reads the integration the call names (its slug
# or id; over REST, the path) and passes it as input.resource: {"type": "integration",
# "ref", "found", "id", "slug", "org", "workspace_id" (null: organisation-level),
# "global_workspace_access", "workspaces" (the workspaces holding a grant)}. If it cannot
# read it, the proxy denies the call itself. found == false means there is no such
# integration: the call goes on and the backend answers 404.

# A caller bound to a workspace changes only its own workspace's integrations: an
# organisation-level one is used by every workspace (its key and custom_host included),
# and another workspace's is not its business. The role does not matter: the token is
# bound to the workspace.
denials contains reason if {
	not list_mode
	tools[input.tool].resource_scoped
	caller_workspace
	input.resource.found == true
	input.resource.workspace_id != input.caller.workspace
	reason := outside_workspace(input.resource)
}

outside_workspace(res) := sprintf("%s: the integration is organisation-level; a caller bound to workspace %q may not change it", [input.tool, input.caller.workspace]) if {
	res.workspace_id == null
} else := sprintf("%s: the integration is not in the caller's workspace %q", [input.tool, input.caller.workspace])

# Without input.resource the owner cannot be checked, so a caller bound to a workspace is
# refused (the proxy resolves these tools by default; see proxy.resources).
denials contains reason if {
	not list_mode
	tools[input.tool].resource_scoped
	caller_workspace
	not input.resource
	reason := sprintf("%s: the integration it changes was not resolved (no input.resource), so its workspace cannot be checked", [input.tool])
}

# An override deletes every grant the list does not name. A caller bound to a workspace
# may replace only its own: not while another workspace holds a grant.
denials contains reason if {
	not list_mode
	input.tool == "update_integration_workspaces"
	caller_workspace
	overrides_grants
	others := {ws | some ws in input.resource.workspaces; ws != input.caller.workspace}
	count(others) > 0
	reason := sprintf("%s: override_existing_workspace_access would remove the grants of %s; a caller bound to workspace %q may replace only its own", [input.tool, concat(", ", sort(others)), input.caller.workspace])
}

# What in a grant change takes access away from a workspace: replacing the grants, an
# empty list, or revoking another workspace. Admins make such changes; others need
# grant_removal_approval.
grant_removals contains "override_existing_workspace_access replaces every existing grant" if {
	not list_mode
	input.tool == "update_integration_workspaces"
	overrides_grants
}

grant_removals contains "an empty workspaces list" if {
	not list_mode
	input.tool == "update_integration_workspaces"
	is_array(input.arguments.workspaces)
	count(input.arguments.workspaces) == 0
}

grant_removals contains sprintf("workspaces[%d] revokes a workspace's access", [i]) if {
	not list_mode
	input.tool == "update_integration_workspaces"
	some i, entry in input.arguments.workspaces
	entry.enabled != true
	entry.id != input.caller.workspace
}

# Rewriting an existing grant of another workspace replaces its usage and rate limits
# (an entry without them clears them; a tiny limit chokes the workspace): that takes
# access away as surely as revoking it.
grant_removals contains sprintf("workspaces[%d] rewrites the limits of another workspace's grant", [i]) if {
	not list_mode
	input.tool == "update_integration_workspaces"
	some i, entry in input.arguments.workspaces
	entry.enabled == true
	entry.id != input.caller.workspace
	some granted in input.resource.workspaces
	granted == entry.id
}

# Anything but an explicit false counts: a malformed value is read as the worst case.
overrides_grants if input.arguments.override_existing_workspace_access != false

caller_workspace := input.caller.workspace if input.caller.workspace != ""

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
