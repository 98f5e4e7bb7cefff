// Package principal holds the caller: who is calling, in which org and workspace, with
// which roles. Authentication produces it; policy, approvals, rate limits and the proxy
// read it. It imports nothing, so authentication does not pull in the policy engine to
// borrow one struct.
package principal
