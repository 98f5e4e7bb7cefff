package approvals

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/portcullis/portcullis/policies/principal"
)

// testAppRefused mounts the API the way the proxy does: under /admin/v1, behind a
// middleware that resolves the caller (here from X-Test-Sub, standing in for JWT
// authentication), with refused as the refusal hook.
func testAppRefused(s *Service, refused func(c *fiber.Ctx, code, msg string)) *fiber.App {
	callers := map[string]principal.Caller{}
	for _, c := range []principal.Caller{agent, alice, bob, carol, mallory,
		{Sub: "agent-7", Org: "acme", Roles: []string{"approver"}}} {
		callers[c.Sub] = c
	}
	callers["agent-7-approver"] = principal.Caller{Sub: "agent-7", Org: "acme", Roles: []string{"approver"}}
	callers["agent-7"] = agent
	app := fiber.New()
	app.Use(func(c *fiber.Ctx) error { // as the proxy's admission does
		c.Set(fiber.HeaderXRequestID, "req_test-1")
		return c.Next()
	})
	admin := app.Group("/admin/v1", func(c *fiber.Ctx) error {
		if c.Get("X-Test-Sub") == "" {
			return c.Next()
		}
		cl, ok := callers[c.Get("X-Test-Sub")]
		if !ok {
			return c.SendStatus(401)
		}
		c.Locals("caller", &cl)
		return c.Next()
	})
	s.Mount(admin, func(c *fiber.Ctx) *principal.Caller {
		cl, _ := c.Locals("caller").(*principal.Caller)
		return cl
	}, refused)
	return app
}

type apiResponse struct {
	status int
	Data   json.RawMessage `json:"data"`
	Error  struct {
		Code      string `json:"code"`
		Message   string `json:"message"`
		Field     string `json:"field"`
		RequestID string `json:"request_id"`
	} `json:"error"`
}

func call(t *testing.T, app *fiber.App, method, path, sub, body string) apiResponse {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	if sub != "" {
		req.Header.Set("X-Test-Sub", sub)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := app.Test(req, 5000)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out apiResponse
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s %s: body %q is not JSON: %v", method, path, raw, err)
	}
	out.status = resp.StatusCode
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

func TestAdminAPI(t *testing.T) {
	ctx := context.Background()
	clk := &testClock{t: time.Now()}
	s, _ := newTestService(t, clk, nil)
	var refusals []string // code of each refusal the hook was told of
	app := testAppRefused(s, func(c *fiber.Ctx, code, msg string) {
		if msg == "" {
			t.Errorf("refusal %s reported without its message", code)
		}
		refusals = append(refusals, code)
	})

	pending := mustRequest(t, s, request(t, agent, `{"slug":"a"}`))
	forSecurity := request(t, agent, `{"slug":"b"}`)
	forSecurity.Approvers = []string{"role:security"}
	secApproval := mustRequest(t, s, forSecurity)
	toDeny := mustRequest(t, s, request(t, agent, `{"slug":"c"}`))
	shortR := request(t, agent, `{"slug":"d"}`)
	shortR.TTL = time.Minute
	short := mustRequest(t, s, shortR)
	foreign := mustRequest(t, s, request(t, principal.Caller{Sub: "agent-9", Org: "evil"}, `{"slug":"a"}`))
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
		{name: "unauthenticated", method: "GET", path: "/admin/v1/approvals", wantStatus: 401, wantCode: "unauthenticated"},
		{name: "approver lists pending of own org", method: "GET", path: "/admin/v1/approvals?status=pending", sub: "alice", wantStatus: 200,
			check: func(t *testing.T, r apiResponse) {
				var list []Approval
				json.Unmarshal(r.Data, &list)
				if len(list) != 4 {
					t.Fatalf("listed %d approvals, want the 4 of acme", len(list))
				}
				for _, a := range list {
					if a.Caller.Org != "acme" || a.Status != StatusPending {
						t.Fatalf("listed %+v", a)
					}
				}
			}},
		{name: "named approver sees only what they may decide", method: "GET", path: "/admin/v1/approvals", sub: "carol", wantStatus: 200,
			check: func(t *testing.T, r apiResponse) {
				var list []Approval
				json.Unmarshal(r.Data, &list)
				if len(list) != 1 || list[0].ID != secApproval.ID {
					t.Fatalf("carol sees %+v, want only %s", list, secApproval.ID)
				}
			}},
		{name: "non-approver lists nothing", method: "GET", path: "/admin/v1/approvals", sub: "bob", wantStatus: 200,
			check: func(t *testing.T, r apiResponse) {
				var list []Approval
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
				var a Approval
				json.Unmarshal(r.Data, &a)
				if a.ID != pending.ID || a.Status != StatusPending || string(a.Arguments) != `{"slug":"a"}` {
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
				var a Approval
				json.Unmarshal(r.Data, &a)
				if a.Status != StatusApproved || a.DecidedBy != "alice" || a.Comment != "ok for staging" {
					t.Fatalf("got %+v", a)
				}
				if got, _ := s.Get(ctx, pending.ID); got.Status != StatusApproved {
					t.Fatalf("stored status %s", got.Status)
				}
			}},
		{name: "approve twice", method: "POST", path: base + pending.ID + "/approve", sub: "alice", wantStatus: 409, wantCode: "not_pending"},
		{name: "named approver approves (comment null)", method: "POST", path: base + secApproval.ID + "/approve", sub: "carol", body: `{"comment":null}`, wantStatus: 200},
		{name: "deny without comment", method: "POST", path: base + toDeny.ID + "/deny", sub: "alice", wantStatus: 400, wantCode: "invalid_request"},
		{name: "deny", method: "POST", path: base + toDeny.ID + "/deny", sub: "alice", body: `{"comment":"use the staging key"}`, wantStatus: 200,
			check: func(t *testing.T, r apiResponse) {
				got, _ := s.Get(ctx, toDeny.ID)
				if got.Status != StatusDenied || got.Comment != "use the staging key" {
					t.Fatalf("stored %+v", got)
				}
			}},
		{name: "approve after deny", method: "POST", path: base + toDeny.ID + "/approve", sub: "alice", wantStatus: 409, wantCode: "not_pending"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			refusals = refusals[:0]
			r := call(t, app, tc.method, tc.path, tc.sub, tc.body)
			if r.status != tc.wantStatus || r.Error.Code != tc.wantCode {
				t.Fatalf("got %d %q (%s), want %d %q", r.status, r.Error.Code, r.Error.Message, tc.wantStatus, tc.wantCode)
			}
			// Every 4xx but 401 reaches the hook (the proxy audits it), once.
			wantHook := tc.wantStatus >= 400 && tc.wantStatus < 500 && tc.wantStatus != 401
			if wantHook && (len(refusals) != 1 || refusals[0] != tc.wantCode) {
				t.Fatalf("refusal hook told %v, want [%s]", refusals, tc.wantCode)
			}
			if !wantHook && len(refusals) != 0 {
				t.Fatalf("refusal hook told %v for a %d", refusals, tc.wantStatus)
			}
			if tc.wantCode != "" && r.Error.Message == "" {
				t.Fatal("error without a message")
			}
			if tc.wantCode != "" && r.Error.RequestID != "req_test-1" {
				t.Fatalf("error without the request id: %+v", r.Error)
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}

	t.Run("expired", func(t *testing.T) {
		clk.advance(2 * time.Minute)
		r := call(t, app, "POST", base+short.ID+"/approve", "alice", "")
		if r.status != http.StatusGone || r.Error.Code != "expired" {
			t.Fatalf("got %d %q, want 410 expired", r.status, r.Error.Code)
		}
	})
}
