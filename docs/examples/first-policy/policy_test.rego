# Tests for policy.rego: `portcullis policy test -v my-policy` runs every test_* rule.
package portcullis_test

import data.portcullis

agent := {"sub": "agent-1", "org": "acme", "workspace": "", "roles": ["agent"], "session": ""}

# An input as the proxy builds it, reduced to what the policy reads.
call(tool, caller) := {"surface": "rest", "tool": tool, "arguments": {}, "caller": caller}

test_agent_may_list if {
	d := portcullis.decision with input as call("list_integrations", agent)
	d.action == "allow"
}

test_agent_create_is_rate_limited if {
	d := portcullis.decision with input as call("create_integration", agent)
	d.action == "rate_limit"
	d.rate_limit.max == portcullis.create_limit
	d.rate_limit.window == "60s"
}

test_agent_may_not_delete if {
	d := portcullis.decision with input as call("delete_integration", agent)
	d.action == "deny"
}

test_caller_without_org_may_not_read if {
	d := portcullis.decision with input as call("list_integrations", object.union(agent, {"org": ""}))
	d.action == "deny"
}
