# Unit tests for policy.example.rego. Run with `portcullis policy test` or `go test .`.
package portcullis_test

import data.portcullis

# Callers, as the proxy builds them from verified JWT claims.
agent := {"sub": "agent-7", "org": "acme", "workspace": "ws-1", "roles": ["agent"], "session": "s-1"}

operator := {"sub": "olga", "org": "acme", "workspace": "ws-1", "roles": ["operator"], "session": "s-2"}

admin := {"sub": "ada", "org": "acme", "workspace": "ws-1", "roles": ["admin"], "session": "s-3"}

security := {"sub": "sam", "org": "acme", "workspace": "ws-1", "roles": ["security"], "session": "s-4"}

no_org := {"sub": "stray", "org": "", "workspace": "", "roles": ["admin"], "session": "s-5"}

# Callers bound to no workspace: they act for the whole org.
org_agent := {"sub": "agent-9", "org": "acme", "workspace": "", "roles": ["agent"], "session": "s-6"}

org_operator := {"sub": "otto", "org": "acme", "workspace": "", "roles": ["operator"], "session": "s-7"}

org_admin := {"sub": "ava", "org": "acme", "workspace": "", "roles": ["admin"], "session": "s-8"}

# The tools the proxy resolves by default (proxy.resources): a call that names its
# integration carries it as input.resource. Unless a test says otherwise it is one of the
# caller's own workspace (organisation-level for an org-wide caller), granted to no one.
resolved_tools := {"update_integration", "delete_integration", "update_integration_models", "delete_integration_model", "update_integration_workspaces"}

call(tool, caller, args) := on(plain_call(tool, caller, args), integration(args.slug, owner_of(caller), [])) if {
	tool in resolved_tools
	is_string(args.slug)
} else := plain_call(tool, caller, args)

owner_of(caller) := caller.workspace if caller.workspace != ""

else := null

# The integration input.resource describes, as the bundled backend's scope answer reads.
integration(slug, owner, grants) := {
	"type": "integration", "ref": slug, "found": true, "id": "0b6c1f5e-2f0a-4d4e-9a51-1f0c2b3d4e5f",
	"slug": slug, "org": "acme", "workspace_id": owner, "global_workspace_access": false, "workspaces": grants,
}

on(req, resource) := object.union(object.remove(req, ["resource"]), {"resource": resource})

plain_call(tool, caller, args) := {
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
	d := decide(call("create_integration", agent, {"name": "prod openai", "ai_provider_id": "openai", "key": "<redacted>", "workspace_id": "ws-1"}))
	d.action == "rate_limit"
	d.rate_limit == {"max": 10, "window": "60s"} # no key: the proxy's default (org + sub + tool)
}

test_create_admin_rate_limited if {
	decide(call("create_integration", admin, {"name": "x", "ai_provider_id": "openai", "workspace_id": "ws-1"})).action == "rate_limit"
}

test_create_operator_denied if {
	d := decide(call("create_integration", operator, {"name": "x", "ai_provider_id": "openai", "workspace_id": "ws-1"}))
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
	d.reason == `create_integration: workspace_id is not the caller's workspace "ws-1"`
}

test_create_workspace_not_a_string_denied if {
	d := decide(call("create_integration", agent, {"name": "x", "ai_provider_id": "openai", "workspace_id": 5}))
	d.action == "deny"
	d.reason == "create_integration: workspace_id must be a string, got number"
}

test_update_workspaces_other_workspace_denied if {
	d := decide(call("update_integration_workspaces", agent, {"slug": "victim", "workspaces": [{"id": "ws-1", "enabled": true}, {"id": "ws-victim", "enabled": true}]}))
	d.action == "deny"
	d.reason == `update_integration_workspaces: workspaces[1].id is not the caller's workspace "ws-1"`
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
	contains(d.reason, `workspace_id is not the caller's workspace ""`)
}

test_create_wrong_role_and_workspace_reports_both if {
	d := decide(call("create_integration", operator, {"name": "x", "workspace_id": "ws-9"}))
	d.action == "deny"
	contains(d.reason, "needs one of the roles")
	contains(d.reason, "workspace_id is not the caller's workspace")
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
	contains(d.reason, "workspace_id is not the caller's workspace")
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

# --- the integration a call changes (input.resource) -------------------------------------

test_workspace_caller_cannot_change_an_org_level_integration if {
	# Replacing the key and custom_host of an integration every workspace uses.
	args := {"slug": "shared", "key": "<redacted>", "custom_host": "https://attacker.example"}
	every caller in [agent, operator, admin] {
		d := decide(on(call("update_integration", caller, args), integration("shared", null, ["ws-1", "ws-2"])))
		d.action == "deny"
		contains(d.reason, `update_integration: the integration is organisation-level; a caller bound to workspace "ws-1" may not change it`)
	}
}

test_workspace_caller_cannot_change_another_workspaces_integration if {
	every tool in resolved_tools {
		d := decide(on(call(tool, operator, {"slug": "theirs"}), integration("theirs", "ws-2", [])))
		d.action == "deny"
		contains(d.reason, sprintf(`%s: the integration is not in the caller's workspace "ws-1"`, [tool]))
	}
}

test_workspace_caller_cannot_grant_itself_an_org_level_integration if {
	d := decide(on(
		call("update_integration_workspaces", agent, {"slug": "shared", "workspaces": [{"id": "ws-1", "enabled": true}]}),
		integration("shared", null, ["ws-2"]),
	))
	d.action == "deny"
	contains(d.reason, "is organisation-level")
}

test_workspace_caller_change_without_resource_denied if {
	req := object.remove(call("update_integration", agent, {"slug": "mine"}), ["resource"])
	d := decide(req)
	d.action == "deny"
	d.reason == "update_integration: the integration it changes was not resolved (no input.resource), so its workspace cannot be checked"
}

test_workspace_caller_missing_integration_left_to_the_backend if {
	req := on(call("update_integration", agent, {"slug": "ghost"}), {"type": "integration", "ref": "ghost", "found": false})
	decide(req).action == "rate_limit"
}

test_workspace_caller_changes_its_own_integration if {
	every tool in ["update_integration", "update_integration_models"] {
		d := decide(on(call(tool, agent, {"slug": "mine"}), integration("mine", "ws-1", ["ws-1", "ws-2"])))
		d.action == "rate_limit"
	}
}

test_org_caller_changes_an_org_level_integration if {
	every caller in [org_agent, org_operator, org_admin] {
		decide(on(call("update_integration", caller, {"slug": "shared", "key": "<redacted>"}), integration("shared", null, ["ws-1"]))).action == "rate_limit"
	}
}

test_workspace_override_removing_other_grants_denied if {
	req := on(
		call("update_integration_workspaces", agent, {"slug": "mine", "override_existing_workspace_access": true, "workspaces": [{"id": "ws-1", "enabled": true}]}),
		integration("mine", "ws-1", ["ws-1", "ws-2", "ws-3"]),
	)
	d := decide(req)
	d.action == "deny"
	d.reason == `update_integration_workspaces: override_existing_workspace_access would remove the grants of ws-2, ws-3; a caller bound to workspace "ws-1" may replace only its own`
}

test_workspace_admin_override_removing_other_grants_denied if {
	req := on(
		call("update_integration_workspaces", admin, {"slug": "mine", "override_existing_workspace_access": true, "workspaces": []}),
		integration("mine", "ws-1", ["ws-2"]),
	)
	d := decide(req)
	d.action == "deny"
	contains(d.reason, "would remove the grants of ws-2")
}

test_workspace_override_of_its_own_grant_needs_approval if {
	req := on(
		call("update_integration_workspaces", agent, {"slug": "mine", "override_existing_workspace_access": true, "workspaces": [{"id": "ws-1", "enabled": true}]}),
		integration("mine", "ws-1", ["ws-1"]),
	)
	d := decide(req)
	d.action == "require_approval"
	d.approval == {"approvers": ["role:security"], "ttl": "15m"}
	contains(d.reason, "override_existing_workspace_access replaces every existing grant")
}

test_workspace_empty_list_needs_approval if {
	d := decide(call("update_integration_workspaces", agent, {"slug": "mine", "workspaces": []}))
	d.action == "require_approval"
	d.reason == "update_integration_workspaces takes workspace access away (an empty workspaces list); it needs approval from role:security within 15m unless an admin makes it"
}

test_workspace_revoking_another_workspace_denied if {
	req := on(
		call("update_integration_workspaces", agent, {"slug": "mine", "workspaces": [{"id": "ws-2", "enabled": false}]}),
		integration("mine", "ws-1", ["ws-1", "ws-2"]),
	)
	d := decide(req)
	d.action == "deny"
	contains(d.reason, `workspaces[0].id is not the caller's workspace "ws-1"`)
}

test_workspace_revoking_its_own_grant_allowed if {
	req := on(
		call("update_integration_workspaces", agent, {"slug": "mine", "workspaces": [{"id": "ws-1", "enabled": false}]}),
		integration("mine", "ws-1", ["ws-1", "ws-2"]),
	)
	decide(req).action == "rate_limit"
}

test_org_agent_wiping_grants_needs_approval if {
	every args in [
		{"slug": "shared", "workspaces": []},
		{"slug": "shared", "override_existing_workspace_access": true, "workspaces": []},
		{"slug": "shared", "override_existing_workspace_access": true, "workspaces": [{"id": "ws-1", "enabled": true}]},
	] {
		every caller in [org_agent, org_operator] {
			d := decide(on(call("update_integration_workspaces", caller, args), integration("shared", null, ["ws-1", "ws-2"])))
			d.action == "require_approval"
			d.approval == {"approvers": ["role:security"], "ttl": "15m"}
		}
	}
}

test_org_agent_revoking_a_workspace_needs_approval if {
	d := decide(call("update_integration_workspaces", org_agent, {"slug": "shared", "workspaces": [{"id": "ws-1", "enabled": true}, {"id": "ws-2", "enabled": false}]}))
	d.action == "require_approval"
	contains(d.reason, "workspaces[1] revokes a workspace's access")
}

test_org_admin_makes_destructive_grant_changes if {
	every args in [
		{"slug": "shared", "workspaces": []},
		{"slug": "shared", "override_existing_workspace_access": true, "workspaces": []},
		{"slug": "shared", "workspaces": [{"id": "ws-2", "enabled": false}]},
	] {
		d := decide(on(call("update_integration_workspaces", org_admin, args), integration("shared", null, ["ws-1", "ws-2"])))
		d.action == "rate_limit"
		d.rate_limit == {"max": 30, "window": "60s"}
	}
}

test_org_agent_adding_a_grant_is_not_destructive if {
	args := {"slug": "shared", "override_existing_workspace_access": false, "workspaces": [{"id": "ws-3", "enabled": true}]}
	decide(call("update_integration_workspaces", org_agent, args)).action == "rate_limit"
}

test_malformed_override_counts_as_an_override if {
	every v in [null, "true", 1] {
		args := {"slug": "shared", "override_existing_workspace_access": v, "workspaces": [{"id": "ws-3", "enabled": true}]}
		decide(call("update_integration_workspaces", org_agent, args)).action == "require_approval"
	}
}

test_list_mode_ignores_the_resource_rules if {
	decide(list_mode("update_integration_workspaces", agent)).action == "rate_limit"
	decide(list_mode("update_integration", agent)).action == "rate_limit"
	req := object.union(list_mode("update_integration_workspaces", org_agent), {"arguments": {"workspaces": []}})
	decide(req).action == "rate_limit"
}

# A caller bound to a workspace creates in it: without a workspace_id the integration would
# be organisation-level.
test_workspace_caller_create_without_workspace_denied if {
	d := decide(call("create_integration", agent, {"name": "sneaky", "ai_provider_id": "openai"}))
	d.action == "deny"
	contains(d.reason, "workspace_id is required for a caller bound to workspace")
}

test_org_caller_creates_organisation_level_integrations if {
	caller := object.union(agent, {"workspace": ""})
	decide(call("create_integration", caller, {"name": "shared", "ai_provider_id": "openai"})).action == "rate_limit"
}

# Rewriting another workspace's existing grant (clearing or choking its limits) takes
# access away: it needs approval like a revocation.
test_org_agent_rewriting_another_workspaces_limits_needs_approval if {
	caller := object.union(agent, {"workspace": ""})
	req := on(
		call("update_integration_workspaces", caller, {"slug": "shared", "workspaces": [{"id": "ws-2", "enabled": true, "usage_limits": {"credit_limit": 0.0001}}]}),
		integration("shared", null, ["ws-1", "ws-2"]),
	)
	d := decide(req)
	d.action == "require_approval"
	contains(d.reason, "workspaces[0] rewrites the limits of another workspace's grant")
}

# A deny never quotes an argument's value (it may be a secret sent in the wrong field):
# it names the field and the rule.
test_denial_reasons_never_quote_argument_values if {
	canary := "sk-canary-0123456789abcdef"
	reasons := [
		decide(call("create_integration", agent, {"name": "x", "ai_provider_id": "openai", "workspace_id": canary})).reason,
		decide(call("update_integration_workspaces", agent, {"slug": "mine", "workspaces": [{"id": canary, "enabled": false}]})).reason,
	]
	every r in reasons {
		not contains(r, canary)
		contains(r, "workspace")
	}
}
