// Package backend is Portcullis's bundled integrations admin API: a drop-in for
// Portkey's /v1/integrations REST surface and its MCP tools, plus the seed shapes
// POST /ai/llm and /integrations/credentials, all over one resource (the integration)
// stored in SQLite (the default) or PostgreSQL (backend.database_url) with every secret
// field sealed by envelope encryption. It trusts two
// kinds of caller: a service key (x-portkey-api-key, stored hashed, bound to an org) and
// the proxy's signed identity assertion (X-Portcullis-Identity); every query is scoped
// by the caller's org, and no response, log line or database byte holds a secret.
package backend
