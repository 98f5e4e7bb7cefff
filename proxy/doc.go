// Package proxy is Portcullis's request path: a Fiber app that admits a request (recover,
// request id, body limit, timeouts, per-IP pre-auth limit), authenticates the caller's JWT,
// identifies the action (an MCP tools/call or a REST route mapped to the same tool names),
// asks policy, enforces the decision (allow, deny, rate limit, human approval), writes the
// decision to the audit trail before acting, and forwards exactly the evaluated bytes upstream
// with the proxy's own identity assertion in place of the caller's token.
package proxy
