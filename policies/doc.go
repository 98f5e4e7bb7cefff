// Package policies is Portcullis's decision engine: it loads Rego policy from a file or
// directory, compiles it once, evaluates the prepared query data.portcullis.decision per
// request under a deadline, and turns the result into a Decision. Anything that is not a
// well-formed decision (undefined, error, timeout, panic) is a deny. Reloads swap the
// compiled query atomically and a policy that fails to compile never replaces a good one.
package policies
