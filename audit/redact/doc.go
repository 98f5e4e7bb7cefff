// Package redact is the one definition of a secret in Portcullis. IsSecretName says
// which field names hold secrets, Schema reads the secret marks (writeOnly: true,
// format: password) of a tool's JSON Schema, and Redactor replaces secret values with a
// keyed HMAC ("hmac-sha256:<16 hex>") so they stay correlatable but unreadable. The
// proxy redacts policy input, audit rows and logs with it, and the bundled backend
// seals and masks exactly what it classifies as secret, so the two never drift apart.
// It imports nothing of ours.
package redact
