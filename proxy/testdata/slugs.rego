package portcullis

import rego.v1

default decision := {"action": "deny", "reason": "no"}

decision := {"action": "allow", "reason": "harmless only"} if {
	input.tool == "delete_integration_model"
	input.arguments.slugs == "harmless"
}
