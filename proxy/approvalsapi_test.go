package proxy_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/policies/principal"
	"github.com/portcullis/portcullis/proxy/approvals"
)

type apiResponse struct {
	status    int
	requestID string
	Data      json.RawMessage `json:"data"`
	Error     struct {
		Code      string `json:"code"`
		Message   string `json:"message"`
		Field     string `json:"field"`
		RequestID string `json:"request_id"`
	} `json:"error"`
}

// approvalsCall sends one admin API request as sub (none: no token) and decodes the answer.
func approvalsCall(t *testing.T, g *gateway, tokens map[string]string, method, path, sub, body string) apiResponse {
	t.Helper()
	ct := ""
	if body != "" {
		ct = "application/json"
	}
	resp, raw := g.do(method, path, tokens[sub], ct, body)
	var out apiResponse
	if err := json.Unmarshal([]byte(raw), &out); err != nil {
		t.Fatalf("%s %s: body %q is not JSON: %v", method, path, raw, err)
	}
	out.status = resp.StatusCode
	out.requestID = resp.Header.Get("X-Request-Id")
	return out
}

// wantMessage checks a refusal's message (contains msg) and the field it names.
func wantMessage(msg, field string) func(t *testing.T, r apiResponse) {
	return func(t *testing.T, r apiResponse) {
		t.Helper()
		if !strings.Contains(r.Error.Message, msg) || r.Error.Field != field {
			t.Fatalf("error %+v, want a message containing %q and field %q", r.Error, msg, field)
		}
	}
}

var (
	agent7 = principal.Caller{Sub: "agent-7", Org: "acme", Workspace: "ws-1", Session: "sess-1", Roles: []string{"agent"}}
)

// approvalRequest is a held delete by caller, as the proxy files one.
func approvalRequest(t *testing.T, caller principal.Caller, args string) approvals.Request {
	t.Helper()
	h, err := approvals.CanonicalHash(caller, "delete_integration", "mcp POST /mcp mcp", []byte(args), "rev-1")
	if err != nil {
		t.Fatal(err)
	}
	return approvals.Request{Caller: caller, Tool: "delete_integration", Surface: "mcp", Arguments: json.RawMessage(args),
		Hash: h, Reason: "deleting an integration needs a human", PolicyRevision: "rev-1"}
}

func mustRequest(t *testing.T, s *approvals.Service, r approvals.Request) *approvals.Approval {
	t.Helper()
	a, created, err := s.Request(context.Background(), r)
	if err != nil || !created {
		t.Fatalf("request: %v (created %v)", err, created)
	}
	return a
}

// The approvals admin API: who may list, read and decide what, and every refusal in
// the one error envelope with its request id, recorded as a rejected row.
func TestApprovalsAdminAPI(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	clock := time.Now()
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
	g := newGateway(t, gwOptions{approvalsNow: now})
	s := g.approvals
	tokens := map[string]string{
		"alice":            token(t, "alice", "acme", "approver"),
		"bob":              token(t, "bob", "acme", "developer"),
		"carol":            token(t, "carol", "acme", "security"),
		"mallory":          token(t, "mallory", "evil", "approver"),
		"agent-7":          token(t, "agent-7", "acme", "agent"),
		"agent-7-approver": token(t, "agent-7", "acme", "approver"),
	}
	agent := agent7

	pending := mustRequest(t, s, approvalRequest(t, agent, `{"slug":"a"}`))
	forSecurity := approvalRequest(t, agent, `{"slug":"b"}`)
	forSecurity.Approvers = []string{"role:security"}
	secApproval := mustRequest(t, s, forSecurity)
	toDeny := mustRequest(t, s, approvalRequest(t, agent, `{"slug":"c"}`))
	shortR := approvalRequest(t, agent, `{"slug":"d"}`)
	shortR.TTL = time.Minute
	short := mustRequest(t, s, shortR)
	foreign := mustRequest(t, s, approvalRequest(t, principal.Caller{Sub: "agent-9", Org: "evil"}, `{"slug":"a"}`))
	base := "/admin/v1/approvals/"

	cases := []struct {
		name       string
		method     string
		path       string
		sub        string
		body       string
		wantStatus int
		wantCode   string
		check      func(t *testing.T, r apiResponse)
	}{
		{name: "unauthenticated", method: "GET", path: "/admin/v1/approvals", wantStatus: 401, wantCode: "unauthorized"},
		{name: "approver lists pending of own org", method: "GET", path: "/admin/v1/approvals?status=pending", sub: "alice", wantStatus: 200,
			check: func(t *testing.T, r apiResponse) {
				var list []approvals.Approval
				json.Unmarshal(r.Data, &list)
				if len(list) != 4 {
					t.Fatalf("listed %d approvals, want the 4 of acme", len(list))
				}
				for _, a := range list {
					if a.Caller.Org != "acme" || a.Status != approvals.StatusPending {
						t.Fatalf("listed %+v", a)
					}
				}
			}},
		{name: "named approver sees only what they may decide", method: "GET", path: "/admin/v1/approvals", sub: "carol", wantStatus: 200,
			check: func(t *testing.T, r apiResponse) {
				var list []approvals.Approval
				json.Unmarshal(r.Data, &list)
				if len(list) != 1 || list[0].ID != secApproval.ID {
					t.Fatalf("carol sees %+v, want only %s", list, secApproval.ID)
				}
			}},
		{name: "non-approver lists nothing", method: "GET", path: "/admin/v1/approvals", sub: "bob", wantStatus: 200,
			check: func(t *testing.T, r apiResponse) {
				var list []approvals.Approval
				json.Unmarshal(r.Data, &list)
				if len(list) != 0 {
					t.Fatalf("bob, who may decide nothing, sees %+v", list)
				}
			}},
		{name: "bad status filter", method: "GET", path: "/admin/v1/approvals?status=bogus", sub: "alice", wantStatus: 400, wantCode: "invalid_request"},
		{name: "bad limit", method: "GET", path: "/admin/v1/approvals?limit=0", sub: "alice", wantStatus: 400, wantCode: "invalid_request"},
		{name: "get unknown id", method: "GET", path: base + "no-such-id", sub: "alice", wantStatus: 404, wantCode: "not_found"},
		{name: "get other org's approval", method: "GET", path: base + foreign.ID, sub: "alice", wantStatus: 404, wantCode: "not_found"},
		{name: "requester may read own approval", method: "GET", path: base + pending.ID, sub: "agent-7", wantStatus: 200,
			check: func(t *testing.T, r apiResponse) {
				var a approvals.Approval
				json.Unmarshal(r.Data, &a)
				if a.ID != pending.ID || a.Status != approvals.StatusPending || string(a.Arguments) != `{"slug":"a"}` {
					t.Fatalf("got %+v", a)
				}
			}},
		{name: "unrelated caller cannot read", method: "GET", path: base + pending.ID, sub: "bob", wantStatus: 404, wantCode: "not_found"},
		{name: "approve unknown id", method: "POST", path: base + "no-such-id/approve", sub: "alice", wantStatus: 404, wantCode: "not_found"},
		{name: "approve other org's approval", method: "POST", path: base + foreign.ID + "/approve", sub: "alice", wantStatus: 404, wantCode: "not_found"},
		{name: "approve from another org by id", method: "POST", path: base + pending.ID + "/approve", sub: "mallory", wantStatus: 404, wantCode: "not_found"},
		{name: "self-approval", method: "POST", path: base + pending.ID + "/approve", sub: "agent-7-approver", wantStatus: 403, wantCode: "self_approval"},
		{name: "approve without the role", method: "POST", path: base + pending.ID + "/approve", sub: "bob", wantStatus: 403, wantCode: "not_approver"},
		{name: "approver role not enough for named approvers", method: "POST", path: base + secApproval.ID + "/approve", sub: "alice", wantStatus: 403, wantCode: "not_approver"},
		{name: "unknown body field", method: "POST", path: base + pending.ID + "/approve", sub: "alice", body: `{"comment":"x","status":"approved"}`, wantStatus: 400, wantCode: "invalid_request",
			check: wantMessage(`unknown field "status": the body takes only "comment"`, "body")},
		{name: "comment not a string", method: "POST", path: base + pending.ID + "/approve", sub: "alice", body: `{"comment":5}`, wantStatus: 400, wantCode: "invalid_request",
			check: wantMessage("comment: must be a string, got a number", "comment")},
		{name: "truncated body", method: "POST", path: base + pending.ID + "/approve", sub: "alice", body: `{"comment":"x"`, wantStatus: 400, wantCode: "invalid_request",
			check: wantMessage("body: unexpected end of JSON input at byte 14", "body")},
		{name: "comment given twice", method: "POST", path: base + pending.ID + "/approve", sub: "alice", body: `{"comment":"ok","comment":"no"}`, wantStatus: 400, wantCode: "invalid_request",
			check: wantMessage("duplicate object key", "body")},
		{name: "data after the body", method: "POST", path: base + pending.ID + "/approve", sub: "alice", body: `{"comment":"ok"} {}`, wantStatus: 400, wantCode: "invalid_request",
			check: wantMessage("body: unexpected data after the top-level value", "body")},
		{name: "body not an object", method: "POST", path: base + pending.ID + "/approve", sub: "alice", body: `["ok"]`, wantStatus: 400, wantCode: "invalid_request",
			check: wantMessage(`body must be a JSON object {"comment": "..."}, got an array`, "body")},
		{name: "approve", method: "POST", path: base + pending.ID + "/approve", sub: "alice", body: `{"comment":"ok for staging"}`, wantStatus: 200,
			check: func(t *testing.T, r apiResponse) {
				var a approvals.Approval
				json.Unmarshal(r.Data, &a)
				if a.Status != approvals.StatusApproved || a.DecidedBy != "alice" || a.Comment != "ok for staging" {
					t.Fatalf("got %+v", a)
				}
				if got, _ := s.Get(ctx, pending.ID); got.Status != approvals.StatusApproved {
					t.Fatalf("stored status %s", got.Status)
				}
			}},
		{name: "approve twice", method: "POST", path: base + pending.ID + "/approve", sub: "alice", wantStatus: 409, wantCode: "not_pending"},
		{name: "named approver approves (comment null)", method: "POST", path: base + secApproval.ID + "/approve", sub: "carol", body: `{"comment":null}`, wantStatus: 200},
		{name: "deny without comment", method: "POST", path: base + toDeny.ID + "/deny", sub: "alice", wantStatus: 400, wantCode: "invalid_request"},
		{name: "deny", method: "POST", path: base + toDeny.ID + "/deny", sub: "alice", body: `{"comment":"use the staging key"}`, wantStatus: 200,
			check: func(t *testing.T, r apiResponse) {
				got, _ := s.Get(ctx, toDeny.ID)
				if got.Status != approvals.StatusDenied || got.Comment != "use the staging key" {
					t.Fatalf("stored %+v", got)
				}
			}},
		{name: "approve after deny", method: "POST", path: base + toDeny.ID + "/approve", sub: "alice", wantStatus: 409, wantCode: "not_pending"},
	}
	wantRejected := map[string]string{} // request id -> code of each refusal the audit trail must record
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := approvalsCall(t, g, tokens, tc.method, tc.path, tc.sub, tc.body)
			if r.status != tc.wantStatus || r.Error.Code != tc.wantCode {
				t.Fatalf("got %d %q (%s), want %d %q", r.status, r.Error.Code, r.Error.Message, tc.wantStatus, tc.wantCode)
			}
			// Every 4xx but 401 is recorded as a rejected row (checked below).
			if tc.wantStatus >= 400 && tc.wantStatus < 500 && tc.wantStatus != 401 {
				wantRejected[r.requestID] = tc.wantCode
			}
			if tc.wantCode != "" && r.Error.Message == "" {
				t.Fatal("error without a message")
			}
			if tc.wantCode != "" && (r.Error.RequestID == "" || r.Error.RequestID != r.requestID) {
				t.Fatalf("error without the request id: %+v", r.Error)
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}

	rejected := g.eventsWhere(len(wantRejected), func(ev *audit.Event) bool { return ev.Decision == "rejected" })
	for _, ev := range rejected {
		if code, ok := wantRejected[ev.RequestID]; !ok || !strings.HasPrefix(ev.Reason, code+": ") {
			t.Errorf("rejected row %s %q, want one per refusal with its code", ev.RequestID, ev.Reason)
		}
		delete(wantRejected, ev.RequestID)
	}
	if len(wantRejected) != 0 {
		t.Errorf("refusals without a rejected row: %v", wantRejected)
	}

	t.Run("expired", func(t *testing.T) {
		advance(2 * time.Minute)
		r := approvalsCall(t, g, tokens, "POST", base+short.ID+"/approve", "alice", "")
		if r.status != http.StatusGone || r.Error.Code != "expired" {
			t.Fatalf("got %d %q, want 410 expired", r.status, r.Error.Code)
		}
	})
}
