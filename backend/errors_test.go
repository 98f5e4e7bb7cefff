package backend

import (
	"errors"
	"testing"
)

// No problems is no error: a nil, not a nil *apiError inside a non-nil error, which a
// handler's `if err != nil` would take for a failure.
func TestNoProblemsIsANilError(t *testing.T) {
	var p problems
	var err error = p.err()
	if err != nil {
		t.Fatalf("no problems gave a non-nil error %#v", err)
	}
	p.add("name", "is required")
	if err = p.err(); err == nil || asAPIError(err).Field != "name" {
		t.Fatalf("a problem gave %v", err)
	}
	if ae := asAPIError(errors.New("disk on fire")); ae.Status != 500 || ae.Message == "disk on fire" {
		t.Fatalf("an unknown error reaches the client as %+v", ae)
	}
}
