package portcullis

decision := {"action": "allow", "reason": "test policy allows every call"}
