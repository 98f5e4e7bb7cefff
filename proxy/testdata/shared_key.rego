package portcullis

import rego.v1

decision := {"action": "rate_limit", "reason": "per org", "rate_limit": {"max": 2, "window": "60s", "key": input.caller.org}} if input.tool == "echo"

decision := {"action": "rate_limit", "reason": "per org", "rate_limit": {"max": 100, "window": "30s", "key": input.caller.org}} if input.tool == "cheap"
