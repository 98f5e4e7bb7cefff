package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/policies/principal"
	"github.com/portcullis/portcullis/proxy/approvals"
)

// approvalsTestServer runs serve (the real approvals admin API behind real
// authentication) and opens its approvals database beside it, so a test can file
// approvals directly and read what the API did. It returns the tokens of alice
// (approver), agent-7 (an approver too) and bob (developer), all of org acme.
func approvalsTestServer(t *testing.T) (svc *approvals.Service, base string, tokAlice, tokAgent, tokBob string) {
	t.Helper()
	base, dir, _ := startServe(t)
	svc, err := approvals.Open(context.Background(), approvals.Config{DBPath: filepath.Join(dir, "approvals.db")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	tokAlice = mintToken(t, dir, "--sub", "alice", "--org", "acme", "--roles", "approver")
	tokAgent = mintToken(t, dir, "--sub", "agent-7", "--org", "acme", "--roles", "approver")
	tokBob = mintToken(t, dir, "--sub", "bob", "--org", "acme", "--roles", "developer")
	return svc, base, tokAlice, tokAgent, tokBob
}

func fileApproval(t *testing.T, svc *approvals.Service, args string) *approvals.Approval {
	t.Helper()
	caller := principal.Caller{Sub: "agent-7", Org: "acme", Session: "s1"}
	h, err := approvals.CanonicalHash(caller, "delete_integration", "rest DELETE /v1/integrations/prod rest", []byte(args), "rev")
	if err != nil {
		t.Fatal(err)
	}
	a, _, err := svc.Request(context.Background(), approvals.Request{Caller: caller, Tool: "delete_integration",
		Surface: "rest", Arguments: json.RawMessage(args), Hash: h, Reason: "destructive\nchange", PolicyRevision: "rev"})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestApprovalsCommand(t *testing.T) {
	svc, base, tokAlice, tokAgent, tokBob := approvalsTestServer(t)
	ctx := context.Background()
	a1 := fileApproval(t, svc, `{"slug":"one"}`)
	a2 := fileApproval(t, svc, `{"slug":"two"}`)
	a3 := fileApproval(t, svc, `{"slug":"three"}`)

	cases := []struct {
		name       string
		args       []string
		env        map[string]string
		wantCode   int
		wantOut    []string
		wantErr    []string
		wantStatus map[string]approvals.Status
	}{
		{name: "list pending", args: []string{"list", "--url", base, "--token", tokAlice}, wantCode: 0,
			wantOut: []string{"ID", "STATUS", a1.ID, a2.ID, a3.ID, "delete_integration", "agent-7", "destructive change"}},
		{name: "url and token from the environment", args: []string{"list"},
			env: map[string]string{"PORTCULLIS_URL": base, "PORTCULLIS_TOKEN": tokAlice}, wantCode: 0, wantOut: []string{a1.ID}},
		{name: "list as a non-approver shows nothing", args: []string{"list", "--url", base, "--token", tokBob}, wantCode: 0,
			wantOut: []string{"no approvals (status pending)"}},
		{name: "bad token", args: []string{"list", "--url", base, "--token", "nope"}, wantCode: 1,
			wantErr: []string{"token is malformed (unauthorized, HTTP 401)", "HTTP 401"}},
		{name: "self-approval refused", args: []string{"approve", a1.ID, "--url", base, "--token", tokAgent}, wantCode: 1,
			wantErr: []string{"cannot decide", "self_approval"}, wantStatus: map[string]approvals.Status{a1.ID: approvals.StatusPending}},
		{name: "approve, flags after the id", args: []string{"approve", a1.ID, "--url", base, "--token", tokAlice, "--comment", "ok"}, wantCode: 0,
			wantOut: []string{a1.ID + ": approved", "agent-7"}, wantStatus: map[string]approvals.Status{a1.ID: approvals.StatusApproved}},
		{name: "flags before the subcommand", args: []string{"--url", base, "approve", a1.ID}, wantCode: 2, wantErr: []string{"unknown subcommand"}},
		{name: "approve twice", args: []string{"approve", "--url", base, "--token", tokAlice, a1.ID}, wantCode: 1,
			wantErr: []string{"already been decided", "HTTP 409"}},
		{name: "deny needs a comment", args: []string{"deny", a2.ID, "--url", base, "--token", tokAlice}, wantCode: 2,
			wantErr: []string{"--comment is required"}, wantStatus: map[string]approvals.Status{a2.ID: approvals.StatusPending}},
		{name: "deny", args: []string{"deny", a2.ID, "--comment", "use staging", "--url", base, "--token", tokAlice}, wantCode: 0,
			wantOut: []string{a2.ID + ": denied"}, wantStatus: map[string]approvals.Status{a2.ID: approvals.StatusDenied}},
		{name: "unknown id", args: []string{"approve", "no-such-id", "--url", base, "--token", tokAlice}, wantCode: 1,
			wantErr: []string{"no such approval", "HTTP 404"}},
		{name: "list approved", args: []string{"list", "--status", "approved", "--url", base, "--token", tokAlice}, wantCode: 0,
			wantOut: []string{a1.ID, "approved"}},
		{name: "list used is empty", args: []string{"list", "--status", "used", "--url", base, "--token", tokAlice}, wantCode: 0,
			wantOut: []string{"no approvals (status used)"}},
		{name: "missing id", args: []string{"approve", "--url", base, "--token", tokAlice}, wantCode: 2, wantErr: []string{"approval ID is required"}},
		{name: "missing token", args: []string{"list", "--url", base}, wantCode: 2, wantErr: []string{"--token"}},
		{name: "bad url and limit reported together", args: []string{"list", "--url", "ftp://x", "--token", "t", "--limit", "0"}, wantCode: 2,
			wantErr: []string{"--url", "--limit"}},
		{name: "credentials in the url refused, never printed", args: []string{"list", "--url", "http://u:hunter2@127.0.0.1:1/?x=1", "--token", tokAlice}, wantCode: 2,
			wantErr: []string{"no user:password@, query or fragment"}},
		{name: "server down", args: []string{"list", "--url", "http://127.0.0.1:1", "--token", tokAlice}, wantCode: 1, wantErr: []string{"calling"}},
		{name: "no subcommand", args: nil, wantCode: 2, wantErr: []string{"Usage"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("PORTCULLIS_URL", "")
			t.Setenv("PORTCULLIS_TOKEN", "")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var out, errOut bytes.Buffer
			code := runApprovals(ctx, tc.args, &out, &errOut)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.wantCode, out.String(), errOut.String())
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, out.String())
				}
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(errOut.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut.String())
				}
			}
			if strings.Contains(errOut.String(), "hunter2") {
				t.Errorf("a password from --url was printed:\n%s", errOut.String())
			}
			if strings.Contains(out.String()+errOut.String(), tokAlice) {
				t.Error("the token was printed")
			}
			for id, want := range tc.wantStatus {
				a, err := svc.Get(ctx, id)
				if err != nil || a.Status != want {
					t.Errorf("approval %s: %v %v, want %s", id, a.Status, err, want)
				}
			}
		})
	}
	if a, _ := svc.Get(ctx, a2.ID); a.Comment != "use staging" || a.DecidedBy != "alice" {
		t.Fatalf("denial stored as %+v", a)
	}
}
