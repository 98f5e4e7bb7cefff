# A policy for tests: every call of an identified caller in an org is allowed, except the
# writes of a caller with role "held", which need security's approval.
package portcullis

default decision := {"action": "deny", "reason": "no org"}

decision := {
	"action": "require_approval",
	"reason": "held for review",
	"approval": {"approvers": ["role:security"], "ttl": "15m"},
} if {
	input.caller.org != ""
	"held" in input.caller.roles
	not startswith(input.tool, "get_")
	not startswith(input.tool, "list_")
} else := {"action": "allow", "reason": "test policy allows it"} if {
	input.caller.org != ""
}
