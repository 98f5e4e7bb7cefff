// Package policies is Portcullis's decision engine: it loads Rego policy from a file or
// directory, compiles it once, evaluates the prepared query data.portcullis.decision per
// request under a deadline, and turns the result into a Decision. Anything that is not a
// well-formed decision (undefined, error, timeout, panic) is a deny. Reloads swap the
// compiled query atomically and a policy that fails to compile never replaces a good one.
//
// Built-ins that reach the network are removed unless the operator enables them, built-in
// errors fail the evaluation (strict mode), and the same rules apply when RunTests runs a
// policy's Rego unit tests. An optional shadow policy is evaluated beside the live one so a
// candidate can be compared on real traffic before it decides anything.
package policies
