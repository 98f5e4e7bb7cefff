package portcullis

import rego.v1

default decision := {"action": "deny", "reason": "no"}

decision := {"action": "allow", "reason": "ok"} if input.tool == "echo"

decision := {"action": "deny", "reason": sprintf("saw %v", [input.arguments])} if input.tool == "create_integration"
