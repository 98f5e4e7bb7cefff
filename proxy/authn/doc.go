// Package authn authenticates callers of the proxy from an "Authorization: Bearer <JWT>"
// header and maps verified claims to a principal.Caller.
//
// Verification is deliberately strict: the header is inspected before any signature work
// (no alg "none", no crit, no key-by-URL or embedded keys, a short, plain kid), the
// algorithm must match the type of the key that verifies it, and exp is required. Keys come
// from an HS256 secret, PEM public key files, and/or a JWKS URL refreshed in the
// background, with an unknown kid triggering at most one refresh per configured interval.
// Verified tokens are cached by SHA-256 of the token until their exp, so the hot path
// costs one hash and one map lookup.
//
// The package also owns the development signing key and token minting used by
// `portcullis serve` (default config) and `portcullis token`.
package authn
