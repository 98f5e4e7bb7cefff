# A first policy for Portcullis: who may call which tool of the integrations API.
# The proxy asks for data.portcullis.decision on every call; input is the call (tool,
# arguments, caller). docs/first-policy.md walks through it; docs/policy.md is the
# reference.
package portcullis

# How many integrations an agent may create a minute.
create_limit := 5

# Anything no rule below allows is denied, with this reason.
default decision := {"action": "deny", "reason": "no rule allows this call"}

# Rule 1: any caller with an org may read (tools named get_* or list_*).
decision := {"action": "allow", "reason": "reads are open to every org member"} if {
	input.caller.org != ""
	some prefix in ["get_", "list_"]
	startswith(input.tool, prefix)
}

# Rule 2: agents may create integrations, at most create_limit a minute each.
decision := {
	"action": "rate_limit",
	"reason": sprintf("agents may create integrations (limit %d a minute)", [create_limit]),
	"rate_limit": {"max": create_limit, "window": "60s"},
} if {
	input.caller.org != ""
	input.tool == "create_integration"
	"agent" in input.caller.roles
}
