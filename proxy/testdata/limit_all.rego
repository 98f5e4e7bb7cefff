package portcullis

import rego.v1

decision := {"action": "rate_limit", "reason": "limited", "rate_limit": {"max": 1, "window": "60s"}}
