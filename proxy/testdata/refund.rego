package portcullis

import rego.v1

decision := {"action": "rate_limit", "reason": "one at a time", "rate_limit": {"max": 1, "window": "60s", "refund_on_error": input.arguments.refund}}
