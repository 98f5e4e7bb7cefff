# Unit tests for policy.example.rego. Run with `portcullis policy test` or `go test .`.
package portcullis_test

import data.portcullis

# Callers, as the proxy builds them from verified JWT claims.
agent := {"sub": "agent-7", "org": "acme", "workspace": "ws-1", "roles": ["agent"], "session": "s-1"}

operator := {"sub": "olga", "org": "acme", "workspace": "ws-1", "roles": ["operator"], "session": "s-2"}

admin := {"sub": "ada", "org": "acme", "workspace": "ws-1", "roles": ["admin"], "session": "s-3"}

security := {"sub": "sam", "org": "acme", "workspace": "ws-1", "roles": ["security"], "session": "s-4"}

no_org := {"sub": "stray", "org": "", "workspace": "", "roles": ["admin"], "session": "s-5"}

call(tool, caller, args) := {
	"surface": "mcp",
	"tool": tool,
	"arguments": args,
	"http": {"method": "POST", "path": "/mcp"},
	"caller": caller,
	"tool_info": {"category": category(tool), "risk": "medium"},
	"upstream": "integrations",
	"mode": "call",
}

# The category the proxy's route table gives each tool.
category(tool) := "read" if {
	some prefix in ["get_", "list_"]
	startswith(tool, prefix)
} else := "destructive" if {
	startswith(tool, "delete_")
} else := "write"

list_mode(tool, caller) := object.union(call(tool, caller, {}), {"mode": "list"})

decide(req) := d if {
	d := portcullis.decision with input as req
}

# --- reads -----------------------------------------------------------------------------

test_reads_allowed_for_every_role if {
	every tool in ["get_integration", "list_integrations", "list_providers", "list_integration_models", "list_integration_workspaces"] {
		every caller in [agent, operator, admin, security] {
			decide(call(tool, caller, {"slug": "prod-openai"})).action == "allow"
		}
	}
}

test_read_ignores_workspace_argument if {
	# Reads are org-scoped by the backend; a workspace filter is not an escalation.
	decide(call("list_integrations", agent, {"workspace_id": "ws-2"})).action == "allow"
}

test_read_category_from_route_table_allowed if {
	req := object.union(call("http:GET /v1/providers/{key}", agent, {}), {"tool_info": {"category": "read", "risk": "low"}})
	decide(req).action == "allow"
}

test_read_name_with_write_category_not_auto_allowed if {
	req := object.union(call("list_and_purge_integrations", admin, {}), {"tool_info": {"category": "destructive", "risk": "high"}})
	d := decide(req)
	d.action == "deny"
	d.reason == "no rule allows tool list_and_purge_integrations"
}

test_read_name_with_unknown_category_allowed if {
	req := object.union(call("list_integrations", agent, {}), {"tool_info": {"category": "other", "risk": "low"}})
	decide(req).action == "allow"
}

# --- identity ----------------------------------------------------------------------------

test_no_org_denies_everything if {
	every tool in ["get_integration", "list_providers", "create_integration", "delete_integration", "http:GET /v1/whatever"] {
		d := decide(call(tool, no_org, {}))
		d.action == "deny"
		contains(d.reason, "has no org")
	}
}

test_missing_org_field_denied if {
	caller := object.remove(agent, ["org"])
	decide(call("get_integration", caller, {})).action == "deny"
}

test_no_subject_denied if {
	caller := object.union(agent, {"sub": ""})
	d := decide(call("list_integrations", caller, {}))
	d.action == "deny"
	contains(d.reason, "no subject")
}

# --- create_integration ------------------------------------------------------------------

test_create_agent_rate_limited if {
	d := decide(call("create_integration", agent, {"name": "prod openai", "ai_provider_id": "openai", "key": "<redacted>"}))
	d.action == "rate_limit"
	d.rate_limit == {"max": 10, "window": "60s"} # no key: the proxy's default (caller + session + tool)
}

test_create_admin_rate_limited if {
	decide(call("create_integration", admin, {"name": "x", "ai_provider_id": "openai"})).action == "rate_limit"
}

test_create_operator_denied if {
	d := decide(call("create_integration", operator, {"name": "x", "ai_provider_id": "openai"}))
	d.action == "deny"
	d.reason == "create_integration needs one of the roles agent, admin"
}

test_create_security_denied if {
	decide(call("create_integration", security, {"name": "x", "ai_provider_id": "openai"})).action == "deny"
}

test_create_own_workspace_allowed if {
	d := decide(call("create_integration", agent, {"name": "x", "ai_provider_id": "openai", "workspace_id": "ws-1"}))
	d.action == "rate_limit"
}

test_create_other_workspace_denied if {
	d := decide(call("create_integration", agent, {"name": "x", "ai_provider_id": "openai", "workspace_id": "ws-2"}))
	d.action == "deny"
	d.reason == `create_integration: workspace_id "ws-2" is not the caller's workspace "ws-1"`
}

test_create_workspace_not_a_string_denied if {
	d := decide(call("create_integration", agent, {"name": "x", "ai_provider_id": "openai", "workspace_id": 5}))
	d.action == "deny"
	d.reason == "create_integration: workspace_id must be a string, got number"
}

test_update_workspaces_other_workspace_denied if {
	d := decide(call("update_integration_workspaces", agent, {"slug": "victim", "workspaces": [{"id": "ws-1", "enabled": true}, {"id": "ws-victim", "enabled": true}]}))
	d.action == "deny"
	d.reason == `update_integration_workspaces: workspaces entry ws-victim is not the caller's workspace "ws-1"`
}

test_update_workspaces_own_workspace_allowed if {
	d := decide(call("update_integration_workspaces", agent, {"slug": "mine", "workspaces": [{"id": "ws-1", "enabled": false}]}))
	d.action == "rate_limit"
}

test_global_workspace_access_needs_admin if {
	d := decide(call("update_integration_workspaces", agent, {"slug": "mine", "workspaces": [], "global_workspace_access": true}))
	d.action == "deny"
	contains(d.reason, "global_workspace_access opens the integration to every workspace")
	admin := object.union(agent, {"roles": ["admin"]})
	decide(call("update_integration_workspaces", admin, {"slug": "mine", "workspaces": [], "global_workspace_access": true})).action == "rate_limit"
}

# The MCP tool spells it global_workspace_access_enabled.
test_global_workspace_access_over_mcp_needs_admin if {
	d := decide(call("update_integration_workspaces", agent, {"slug": "mine", "workspaces": [], "global_workspace_access_enabled": true}))
	d.action == "deny"
	contains(d.reason, "global_workspace_access_enabled opens the integration to every workspace")
}

test_create_workspace_when_caller_has_none_denied if {
	caller := object.union(agent, {"workspace": ""})
	d := decide(call("create_integration", caller, {"name": "x", "workspace_id": "ws-1"}))
	d.action == "deny"
	contains(d.reason, `"ws-1"`)
}

test_create_wrong_role_and_workspace_reports_both if {
	d := decide(call("create_integration", operator, {"name": "x", "workspace_id": "ws-9"}))
	d.action == "deny"
	contains(d.reason, "needs one of the roles")
	contains(d.reason, `"ws-9"`)
}

# --- update_* ----------------------------------------------------------------------------

test_updates_rate_limited_for_writers if {
	every tool in ["update_integration", "update_integration_models", "update_integration_workspaces"] {
		every caller in [agent, operator, admin] {
			d := decide(call(tool, caller, {"slug": "prod-openai"}))
			d.action == "rate_limit"
			d.rate_limit == {"max": 30, "window": "60s"}
		}
	}
}

test_update_security_denied if {
	decide(call("update_integration", security, {"slug": "prod-openai"})).action == "deny"
}

test_update_other_workspace_denied if {
	d := decide(call("update_integration", operator, {"slug": "prod-openai", "workspace_id": "ws-2"}))
	d.action == "deny"
	contains(d.reason, `workspace_id "ws-2"`)
}

# --- delete_integration -----------------------------------------------------------------

test_delete_agent_denied if {
	d := decide(call("delete_integration", agent, {"slug": "prod-openai"}))
	d.action == "deny"
	d.reason == "agents may not delete integrations; an operator's delete needs security approval"
}

test_delete_operator_needs_approval if {
	d := decide(call("delete_integration", operator, {"slug": "prod-openai"}))
	d.action == "require_approval"
	d.approval == {"approvers": ["role:security"], "ttl": "15m"}
}

test_delete_admin_needs_approval if {
	d := decide(call("delete_integration", admin, {"slug": "prod-openai"}))
	d.action == "require_approval"
	d.approval.approvers == ["role:security"]
}

test_delete_agent_with_operator_role_needs_approval if {
	caller := object.union(agent, {"roles": ["agent", "operator"]})
	decide(call("delete_integration", caller, {"slug": "prod-openai"})).action == "require_approval"
}

# --- delete_integration_model -----------------------------------------------------------

test_delete_model_agent_denied if {
	d := decide(call("delete_integration_model", agent, {"slug": "prod-openai", "model_slug": "gpt-4o"}))
	d.action == "deny"
	contains(d.reason, "agents may not delete integration models")
}

test_delete_model_operator_needs_approval if {
	d := decide(call("delete_integration_model", operator, {"slug": "prod-openai", "model_slug": "gpt-4o"}))
	d.action == "require_approval"
	d.approval == {"approvers": ["role:security"], "ttl": "15m"}
}

# --- anything else ----------------------------------------------------------------------

test_unknown_tool_denied if {
	d := decide(call("drop_database", admin, {}))
	d.action == "deny"
	d.reason == "no rule allows tool drop_database"
}

test_unmapped_route_denied if {
	d := decide(call("http:POST /v1/admin/reset", admin, {}))
	d.action == "deny"
	d.reason == "no rule allows tool http:POST /v1/admin/reset"
}

test_missing_tool_falls_back_to_default_deny if {
	req := object.remove(call("x", admin, {}), ["tool"])
	d := decide(req)
	d.action == "deny"
}

# --- tools/list filtering ---------------------------------------------------------------

test_list_mode_hides_only_never_callable_tools if {
	decide(list_mode("delete_integration", agent)).action == "deny"
	decide(list_mode("delete_integration_model", agent)).action == "deny"
	decide(list_mode("create_integration", operator)).action == "deny"
	decide(list_mode("drop_database", admin)).action == "deny"
	decide(list_mode("create_integration", agent)).action != "deny"
	decide(list_mode("delete_integration", operator)).action != "deny"
	decide(list_mode("update_integration", agent)).action != "deny"
	decide(list_mode("list_integrations", security)).action == "allow"
}

test_list_mode_ignores_argument_scope if {
	# Even if a client sent arguments in list mode, scope checks must not hide the tool.
	req := object.union(list_mode("create_integration", agent), {"arguments": {"workspace_id": "ws-2"}})
	decide(req).action == "rate_limit"
}

test_missing_mode_is_a_call if {
	req := object.remove(call("create_integration", agent, {"workspace_id": "ws-2"}), ["mode"])
	decide(req).action == "deny"
}

test_list_mode_no_org_denied if {
	decide(list_mode("list_integrations", no_org)).action == "deny"
}

# --- shape --------------------------------------------------------------------------------

test_every_decision_has_action_and_reason if {
	every tool in object.keys(portcullis.tools) {
		every caller in [agent, operator, admin, security, no_org] {
			d := decide(call(tool, caller, {}))
			d.action in {"allow", "deny", "rate_limit", "require_approval"}
			d.reason != ""
		}
	}
}

test_test_integration_rate_limited_for_writers if {
	every caller in [agent, operator, admin] {
		d := decide(call("test_integration", caller, {"slug": "prod"}))
		d.action == "rate_limit"
		d.rate_limit == {"max": 5, "window": "60s"}
	}
}

test_test_integration_security_denied if {
	d := decide(call("test_integration", security, {"slug": "prod"}))
	d.action == "deny"
}
