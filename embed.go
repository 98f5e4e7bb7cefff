// Package portcullis holds what the whole module shares: the example policy, embedded so
// `portcullis serve` and `portcullis policy test` work with no files on disk.
package portcullis

import _ "embed"

// ExamplePolicy is policy.example.rego, the policy `portcullis serve` uses by default.
//
//go:embed policy.example.rego
var ExamplePolicy string

// ExamplePolicyTests is policy.example_test.rego, the Rego unit tests of ExamplePolicy.
//
//go:embed policy.example_test.rego
var ExamplePolicyTests string
