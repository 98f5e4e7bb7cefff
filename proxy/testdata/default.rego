# testPolicy covers every decision kind and the ways evaluation can fail.
package portcullis

import rego.v1

default decision := {"action": "deny", "reason": "no rule allows this tool"}

decision := {"action": "allow", "reason": "ok"} if input.tool in {"echo", "get_integration", "list_integrations", "create_integration", "visible"}

decision := {"action": "deny", "reason": "forbidden: ask a human operator"} if input.tool in {"forbidden", "hidden"}

decision := {"action": "rate_limit", "reason": "limited", "rate_limit": {"max": 2, "window": "60s"}} if input.tool == "limited"

decision := {"action": "require_approval", "reason": "deletes need a human", "approval": {"approvers": ["role:security"], "ttl": "15m"}} if input.tool in {"sensitive", "delete_integration"}

decision := {"action": "allow"} if input.tool == "conflict"

decision := {"action": "deny"} if input.tool == "conflict"

decision := {"action": "allow"} if {
	input.tool == "slow"
	count([x | some x in numbers.range(1, 100000000)]) > 0
}
