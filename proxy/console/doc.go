// Package console is the web console for people: approvers decide held calls, auditors
// search the trail and follow a request from decision to outcome, policy authors see the
// live policy, try inputs against a candidate and replay a candidate over the trail.
//
// It is plain HTML and JavaScript modules embedded in the binary (assets/), served under
// /console by `portcullis serve`, on the proxy's listener or its own (console.listen).
// People sign in with OIDC (authorization code + PKCE) or, when enabled, by pasting a
// token minted by `portcullis token`. A sign-in makes a server-side session behind a
// Secure, HttpOnly, SameSite=Strict cookie with idle and absolute timeouts; every state
// change needs the session's CSRF token and a same-origin Origin header.
// Sessions and OIDC sign-ins in flight are kept in memory, or, with a database URL, in
// PostgreSQL shared by replicas (store.go, pgstore.go), filed under hashes only.
//
// Console users are held to the admin API's rules: the approver role (or the policy's
// approvers) to decide, the auditor role to read the trail, their own org only, and
// never their own call. Handlers return *apierror.Error, which the proxy's error handler
// renders as the one error envelope.
//
// Page safety: every value is put in the page with textContent (never innerHTML), the
// Content-Security-Policy allows scripts and styles from the console's own origin only
// (no inline script, no eval), and framing is refused (X-Frame-Options: DENY,
// frame-ancestors 'none').
package console
