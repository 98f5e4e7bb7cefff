package approvals

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/policies/principal"
)

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// newTestService opens a service on a fresh SQLite file. With clk nil it uses real time.
func newTestService(t testing.TB, clk *testClock, mutate func(*Config)) (*Service, Config) {
	t.Helper()
	cfg := Config{DBPath: filepath.Join(t.TempDir(), "approvals.db"), PublicURL: "https://gw.example"}
	if mutate != nil {
		mutate(&cfg)
	}
	now := time.Now
	if clk != nil {
		now = clk.now
	}
	s, err := open(context.Background(), cfg, slog.New(slog.DiscardHandler), now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, cfg
}

var (
	agent   = principal.Caller{Sub: "agent-7", Org: "acme", Workspace: "ws-1", Session: "sess-1", Roles: []string{"agent"}}
	alice   = principal.Caller{Sub: "alice", Org: "acme", Roles: []string{"approver"}}
	bob     = principal.Caller{Sub: "bob", Org: "acme", Roles: []string{"developer"}}
	carol   = principal.Caller{Sub: "carol", Org: "acme", Roles: []string{"security"}}
	mallory = principal.Caller{Sub: "mallory", Org: "evil", Roles: []string{"approver"}}
)

func request(t testing.TB, caller principal.Caller, args string) Request {
	t.Helper()
	h, err := CanonicalHash(caller, "delete_integration", testTarget, []byte(args), "rev-1")
	if err != nil {
		t.Fatal(err)
	}
	return Request{Caller: caller, Tool: "delete_integration", Surface: "mcp", Arguments: json.RawMessage(args),
		Hash: h, Reason: "deleting an integration needs a human", PolicyRevision: "rev-1"}
}

func mustRequest(t testing.TB, s *Service, r Request) *Approval {
	t.Helper()
	a, created, err := s.Request(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	if !created {
		t.Fatalf("Request returned existing approval %s, want a new one", a.ID)
	}
	return a
}

func TestRequestStoresTheRequestAndIsIdempotent(t *testing.T) {
	clk := &testClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	s, _ := newTestService(t, clk, nil)
	ctx := context.Background()
	r := request(t, agent, `{"slug":"prod-openai"}`)
	r.Approvers = []string{"role:security"}
	r.TTL = 10 * time.Minute
	a := mustRequest(t, s, r)
	if a.Status != StatusPending || a.Tool != "delete_integration" || a.Surface != "mcp" || a.Caller.Sub != "agent-7" ||
		a.Caller.Session != "sess-1" || a.PolicyRevision != "rev-1" || a.Reason == "" || string(a.Arguments) != `{"slug":"prod-openai"}` ||
		!a.ExpiresAt.Equal(clk.now().Add(10*time.Minute)) || len(a.Approvers) != 1 {
		t.Fatalf("stored approval %+v does not match the request", a)
	}
	got, err := s.Get(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Hash != r.Hash || !got.CreatedAt.Equal(a.CreatedAt) || got.Caller.Roles[0] != "agent" || got.Caller.Claims != nil {
		t.Fatalf("Get = %+v, want what Request returned", got)
	}

	again, created, err := s.Request(ctx, r)
	if err != nil || created || again.ID != a.ID {
		t.Fatalf("second identical Request: id %s created %v err %v; want the first approval", again.ID, created, err)
	}

	// Concurrent identical requests for a new hash file exactly one approval.
	r2 := request(t, agent, `{"slug":"other"}`)
	var createdN atomic.Int64
	ids := make([]string, 20)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, created, err := s.Request(ctx, r2)
			if err != nil {
				t.Error(err)
				return
			}
			if created {
				createdN.Add(1)
			}
			ids[i] = a.ID
		}()
	}
	wg.Wait()
	if createdN.Load() != 1 {
		t.Fatalf("%d of 20 concurrent identical requests created an approval, want 1", createdN.Load())
	}
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("concurrent requests got different approvals %s and %s", ids[0], id)
		}
	}
	if ids[0] == a.ID {
		t.Fatal("different arguments reused the first approval")
	}
}

func TestRequestValidation(t *testing.T) {
	s, _ := newTestService(t, nil, nil)
	_, _, err := s.Request(context.Background(), Request{Hash: "xyz", TTL: -time.Second, Arguments: json.RawMessage("{"), Approvers: []string{" "}})
	if err == nil {
		t.Fatal("invalid request accepted")
	}
	for _, want := range []string{"hash", "tool", "caller.sub", "ttl", "arguments", "approvers[0]"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

func TestDecisionRules(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name      string
		approvers []string
		by        principal.Caller
		deny      bool
		comment   string
		want      error
	}{
		{name: "approver role approves", by: alice},
		{name: "approver role denies with comment", by: alice, deny: true, comment: "not today"},
		{name: "requester cannot approve own call", by: principal.Caller{Sub: "agent-7", Org: "acme", Roles: []string{"approver"}}, want: ErrSelfApproval},
		{name: "requester cannot deny own call either", by: principal.Caller{Sub: "agent-7", Org: "acme", Roles: []string{"approver"}}, deny: true, comment: "x", want: ErrSelfApproval},
		{name: "caller without the role", by: bob, want: ErrNotApprover},
		{name: "caller with no sub", by: principal.Caller{Org: "acme", Roles: []string{"approver"}}, want: ErrNotApprover},
		{name: "approver of another org sees nothing", by: mallory, want: ErrNotFound},
		{name: "named role approves", approvers: []string{"role:security"}, by: carol},
		{name: "bare name is a role", approvers: []string{"security"}, by: carol},
		{name: "approver role alone is not enough when approvers are named", approvers: []string{"role:security"}, by: alice, want: ErrNotApprover},
		{name: "named user approves", approvers: []string{"user:bob"}, by: bob},
		{name: "other user refused", approvers: []string{"user:bob"}, by: carol, want: ErrNotApprover},
		{name: "named requester still cannot approve", approvers: []string{"user:agent-7"}, by: principal.Caller{Sub: "agent-7", Org: "acme"}, want: ErrSelfApproval},
		{name: "deny needs a comment", by: alice, deny: true, comment: "  ", want: ErrInvalidComment},
		{name: "comment too long", by: alice, comment: strings.Repeat("x", maxCommentBytes+1), want: ErrInvalidComment},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newTestService(t, nil, nil)
			r := request(t, agent, `{"slug":"prod"}`)
			r.Approvers = tc.approvers
			a := mustRequest(t, s, r)
			var got *Approval
			var err error
			if tc.deny {
				got, err = s.Deny(ctx, a.ID, tc.by, tc.comment)
			} else {
				got, err = s.Approve(ctx, a.ID, tc.by, tc.comment)
			}
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			stored, _ := s.Get(ctx, a.ID)
			if tc.want != nil {
				if stored.Status != StatusPending {
					t.Fatalf("refused decision changed status to %s", stored.Status)
				}
				return
			}
			wantStatus := StatusApproved
			if tc.deny {
				wantStatus = StatusDenied
			}
			if got.Status != wantStatus || stored.Status != wantStatus || stored.DecidedBy != tc.by.Sub ||
				stored.DecidedAt == nil || stored.Comment != strings.TrimSpace(tc.comment) {
				t.Fatalf("decision returned %+v, stored %+v", got, stored)
			}
			// A decided approval cannot be decided again, either way.
			if _, err := s.Approve(ctx, a.ID, tc.by, ""); !errors.Is(err, ErrNotPending) {
				t.Fatalf("second decision: %v, want ErrNotPending", err)
			}
			if _, err := s.Deny(ctx, a.ID, tc.by, "changed my mind"); !errors.Is(err, ErrNotPending) {
				t.Fatalf("second decision: %v, want ErrNotPending", err)
			}
		})
	}
	t.Run("unknown id", func(t *testing.T) {
		s, _ := newTestService(t, nil, nil)
		if _, err := s.Approve(ctx, "00000000-0000-0000-0000-000000000000", alice, ""); !errors.Is(err, ErrNotFound) {
			t.Fatalf("got %v, want ErrNotFound", err)
		}
		if _, err := s.Get(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get: %v", err)
		}
	})
}

func TestExpiry(t *testing.T) {
	ctx := context.Background()
	clk := &testClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s, _ := newTestService(t, clk, nil)

	pending := mustRequest(t, s, request(t, agent, `{"n":1}`)) // default ttl 15m
	approved := mustRequest(t, s, request(t, agent, `{"n":2}`))
	if _, err := s.Approve(ctx, approved.ID, alice, ""); err != nil {
		t.Fatal(err)
	}
	clk.advance(15*time.Minute - time.Millisecond)
	if a, _ := s.Find(ctx, pending.Hash); a == nil || a.ID != pending.ID {
		t.Fatal("approval gone before its ttl")
	}
	clk.advance(time.Millisecond)

	if _, err := s.Approve(ctx, pending.ID, alice, ""); !errors.Is(err, ErrExpired) {
		t.Fatalf("approving past the ttl: %v, want ErrExpired", err)
	}
	if a, _ := s.Get(ctx, pending.ID); a.Status != StatusExpired {
		t.Fatalf("status %s, want expired", a.Status)
	}
	if _, ok, err := s.Consume(ctx, approved.Hash); ok || err != nil {
		t.Fatalf("consumed an approval past its ttl (err %v)", err)
	}
	if a, _ := s.Find(ctx, approved.Hash); a != nil {
		t.Fatalf("Find returned expired approval %+v", a)
	}
	// The identical call now files a new request.
	again, created, err := s.Request(ctx, request(t, agent, `{"n":1}`))
	if err != nil || !created || again.ID == pending.ID {
		t.Fatalf("request after expiry: %v %v %v, want a new approval", again, created, err)
	}
	if a, _ := s.Get(ctx, approved.ID); a.Status != StatusExpired {
		t.Fatalf("approved-but-unused approval past ttl has status %s, want expired", a.Status)
	}
}

func TestChangedArgumentsNeedANewApproval(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestService(t, nil, nil)
	a := mustRequest(t, s, request(t, agent, `{"slug":"staging","force":false}`))
	if _, err := s.Approve(ctx, a.ID, alice, "ok"); err != nil {
		t.Fatal(err)
	}
	changed := request(t, agent, `{"slug":"production","force":false}`)
	if changed.Hash == a.Hash {
		t.Fatal("changed arguments hash the same")
	}
	if got, ok, _ := s.Consume(ctx, changed.Hash); ok || got != nil {
		t.Fatal("approval for other arguments was consumed")
	}
	if got, _ := s.Find(ctx, changed.Hash); got != nil {
		t.Fatal("Find matched other arguments")
	}
	// Same arguments in another key order are the same request.
	same := request(t, agent, `{"force":false,"slug":"staging"}`)
	if got, ok, _ := s.Consume(ctx, same.Hash); !ok || got.ID != a.ID || got.Status != StatusUsed || got.UsedAt == nil {
		t.Fatalf("reordered arguments: %+v %v, want the approval used", got, ok)
	}
	// Single use: the identical retry after that needs another approval.
	if _, ok, _ := s.Consume(ctx, same.Hash); ok {
		t.Fatal("approval consumed twice")
	}
	n, created, _ := s.Request(ctx, same)
	if !created || n.ID == a.ID {
		t.Fatal("request after use did not file a new approval")
	}
}

func TestConsumeFiftyConcurrentRetriesExactlyOne(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestService(t, nil, nil)
	a := mustRequest(t, s, request(t, agent, `{"slug":"prod"}`))
	if _, err := s.Approve(ctx, a.ID, alice, ""); err != nil {
		t.Fatal(err)
	}
	var wins atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			got, ok, err := s.Consume(ctx, a.Hash)
			if err != nil {
				t.Error(err)
				return
			}
			if ok {
				wins.Add(1)
				if got.ID != a.ID {
					t.Errorf("consumed %s, want %s", got.ID, a.ID)
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d of 50 concurrent retries consumed the approval, want exactly 1", wins.Load())
	}
	used, err := s.store.List(ctx, agent.Org, StatusUsed, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(used) != 1 {
		t.Fatalf("%d rows used", len(used))
	}
}

func TestConsumeNeedsApproval(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestService(t, nil, nil)
	pending := mustRequest(t, s, request(t, agent, `{"a":1}`))
	denied := mustRequest(t, s, request(t, agent, `{"a":2}`))
	s.Deny(ctx, denied.ID, alice, "no")
	for _, h := range []string{pending.Hash, denied.Hash, strings.Repeat("0", 64)} {
		if _, ok, err := s.Consume(ctx, h); ok || err != nil {
			t.Fatalf("Consume(%s) = %v, %v; want false", h, ok, err)
		}
	}
	// A denial stands for the identical request: asking again returns it.
	again, created, err := s.Request(ctx, request(t, agent, `{"a":2}`))
	if err != nil || created || again.Status != StatusDenied || again.Comment != "no" {
		t.Fatalf("re-request after denial: %+v created=%v err=%v", again, created, err)
	}
}

func TestWaitWakes(t *testing.T) {
	ctx := context.Background()
	type result struct {
		a   *Approval
		err error
		at  time.Time
	}
	wait := func(s *Service, ctx context.Context, id string) <-chan result {
		ch := make(chan result, 1)
		go func() {
			a, err := s.Wait(ctx, id)
			ch <- result{a, err, time.Now()}
		}()
		return ch
	}
	waitersRegistered := func(s *Service, id string, n int) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Second)
		for time.Now().Before(deadline) {
			s.mu.Lock()
			w := s.waiters[id]
			got := 0
			if w != nil {
				got = w.n
			}
			s.mu.Unlock()
			if got == n {
				return
			}
			time.Sleep(time.Millisecond)
		}
		t.Fatalf("waiters did not register")
	}

	t.Run("on approve", func(t *testing.T) {
		s, _ := newTestService(t, nil, nil)
		a := mustRequest(t, s, request(t, agent, `{}`))
		w1, w2 := wait(s, ctx, a.ID), wait(s, ctx, a.ID)
		waitersRegistered(s, a.ID, 2)
		decided := time.Now()
		s.Approve(ctx, a.ID, alice, "go ahead")
		for _, w := range []<-chan result{w1, w2} {
			r := <-w
			if r.err != nil || r.a.Status != StatusApproved || r.a.Comment != "go ahead" {
				t.Fatalf("Wait = %+v, %v", r.a, r.err)
			}
			if d := r.at.Sub(decided); d > 500*time.Millisecond {
				t.Fatalf("waiter woke %s after the decision", d)
			}
		}
		s.mu.Lock()
		n := len(s.waiters)
		s.mu.Unlock()
		if n != 0 {
			t.Fatalf("%d waiter entries left behind", n)
		}
	})
	t.Run("on deny, with the comment", func(t *testing.T) {
		s, _ := newTestService(t, nil, nil)
		a := mustRequest(t, s, request(t, agent, `{}`))
		w := wait(s, ctx, a.ID)
		waitersRegistered(s, a.ID, 1)
		s.Deny(ctx, a.ID, alice, "use the staging key instead")
		r := <-w
		if r.err != nil || r.a.Status != StatusDenied || r.a.Comment != "use the staging key instead" || r.a.DecidedBy != "alice" {
			t.Fatalf("Wait = %+v, %v", r.a, r.err)
		}
	})
	t.Run("on expiry", func(t *testing.T) {
		s, _ := newTestService(t, nil, nil)
		r := request(t, agent, `{}`)
		r.TTL = 150 * time.Millisecond
		a := mustRequest(t, s, r)
		res := <-wait(s, ctx, a.ID)
		if res.err != nil || res.a.Status != StatusExpired {
			t.Fatalf("Wait = %+v, %v; want expired", res.a, res.err)
		}
		if d := res.at.Sub(a.ExpiresAt); d < -time.Millisecond || d > 500*time.Millisecond {
			t.Fatalf("woke %s from expiry", d)
		}
	})
	t.Run("context ends first: still pending, no error", func(t *testing.T) {
		s, _ := newTestService(t, nil, nil)
		a := mustRequest(t, s, request(t, agent, `{}`))
		cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		res := <-wait(s, cctx, a.ID)
		if res.err != nil || res.a.Status != StatusPending || res.a.ID != a.ID {
			t.Fatalf("Wait = %+v, %v; want pending", res.a, res.err)
		}
		s.mu.Lock()
		n := len(s.waiters)
		s.mu.Unlock()
		if n != 0 {
			t.Fatalf("%d waiter entries left behind", n)
		}
	})
	t.Run("already decided returns at once", func(t *testing.T) {
		s, _ := newTestService(t, nil, nil)
		a := mustRequest(t, s, request(t, agent, `{}`))
		s.Approve(ctx, a.ID, alice, "")
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		t0 := time.Now()
		got, err := s.Wait(cctx, a.ID)
		if err != nil || got.Status != StatusApproved || time.Since(t0) > 200*time.Millisecond {
			t.Fatalf("Wait = %+v, %v after %s", got, err, time.Since(t0))
		}
	})
	t.Run("unknown id", func(t *testing.T) {
		s, _ := newTestService(t, nil, nil)
		if _, err := s.Wait(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestSweeperExpiresWithoutReads(t *testing.T) {
	s, _ := newTestService(t, nil, func(c *Config) { c.SweepInterval = 20 * time.Millisecond })
	r := request(t, agent, `{}`)
	r.TTL = 30 * time.Millisecond
	a := mustRequest(t, s, r)
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		// The stored row, read without Get's own lazy expiry.
		stored, err := s.store.Get(context.Background(), a.ID)
		if err != nil {
			t.Fatal(err)
		}
		if stored.Status == StatusExpired {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("sweeper did not expire the overdue approval")
}

func TestSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sub", "approvals.db")
	cfg := Config{DBPath: path}
	s1, err := Open(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	pending, _, _ := s1.Request(ctx, request(t, agent, `{"a":1}`))
	approved, _, _ := s1.Request(ctx, request(t, agent, `{"a":2}`))
	if _, err := s1.Approve(ctx, approved.ID, alice, "fine"); err != nil {
		t.Fatal(err)
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}

	s2, err := Open(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	got, err := s2.Get(ctx, pending.ID)
	if err != nil || got.Status != StatusPending || got.Hash != pending.Hash || string(got.Arguments) != `{"a":1}` {
		t.Fatalf("pending after reopen: %+v %v", got, err)
	}
	list, err := s2.List(ctx, ListFilter{Status: StatusPending, Org: "acme"})
	if err != nil || len(list) != 1 || list[0].ID != pending.ID {
		t.Fatalf("List after reopen: %+v %v", list, err)
	}
	used, ok, err := s2.Consume(ctx, approved.Hash)
	if err != nil || !ok || used.ID != approved.ID || used.Comment != "fine" || used.DecidedBy != "alice" {
		t.Fatalf("Consume after reopen: %+v %v %v", used, ok, err)
	}
	// The identical request after reopen finds the same pending approval.
	again, created, _ := s2.Request(ctx, request(t, agent, `{"a":1}`))
	if created || again.ID != pending.ID {
		t.Fatal("reopened store filed a duplicate approval")
	}
}

func TestListScopesByOrgAndStatus(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestService(t, nil, nil)
	other := principal.Caller{Sub: "agent-9", Org: "evil"}
	a1 := mustRequest(t, s, request(t, agent, `{"a":1}`))
	a2 := mustRequest(t, s, request(t, agent, `{"a":2}`))
	mustRequest(t, s, request(t, other, `{"a":1}`))
	s.Approve(ctx, a2.ID, alice, "")

	cases := []struct {
		name   string
		filter ListFilter
		want   []string
	}{
		{"pending in acme", ListFilter{Status: StatusPending, Org: "acme"}, []string{a1.ID}},
		{"approved in acme", ListFilter{Status: StatusApproved, Org: "acme"}, []string{a2.ID}},
		{"all in acme, newest first", ListFilter{Status: "all", Org: "acme"}, []string{a2.ID, a1.ID}},
		{"empty status is all", ListFilter{Org: "acme"}, []string{a2.ID, a1.ID}},
		{"limit", ListFilter{Org: "acme", Limit: 1}, []string{a2.ID}},
		{"no such org", ListFilter{Org: "nobody"}, []string{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.List(ctx, tc.filter)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, a := range got {
				ids = append(ids, a.ID)
				if a.Caller.Org != tc.filter.Org {
					t.Fatalf("listed another org's approval %+v", a)
				}
			}
			if strings.Join(ids, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("got %v, want %v", ids, tc.want)
			}
		})
	}
	if _, err := s.List(ctx, ListFilter{Status: "bogus"}); err == nil || !strings.Contains(err.Error(), "status") {
		t.Fatalf("bad status: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	c := Config{ApproverRole: " ", DefaultTTL: time.Millisecond, MaxTTL: time.Nanosecond, WaitBudget: time.Hour,
		SweepInterval: -1, WebhookTimeout: -1, WebhookURL: "ftp://x", WebhookSecret: "short", PublicURL: "not a url"}
	err := c.Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, f := range []string{"db_path", "approver_role", "default_ttl", "max_ttl", "wait_budget", "sweep_interval",
		"webhook_timeout", "webhook_url", "webhook_secret", "public_url"} {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error does not name %s:\n%v", f, err)
		}
	}
	if strings.Contains(err.Error(), "short") {
		t.Error("validation error echoes the webhook secret")
	}
	ok := Config{DBPath: "x.db"}
	ok.SetDefaults()
	if err := ok.Validate(); err != nil || ok.ApproverRole != "approver" || ok.DefaultTTL != 15*time.Minute || ok.WaitBudget != 30*time.Second {
		t.Fatalf("defaults %+v: %v", ok, err)
	}
}

func TestOnDecisionSeesEveryCommittedDecision(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestService(t, nil, nil)
	var got []string
	s.OnDecision(func(_ context.Context, a Approval) {
		got = append(got, a.ID+":"+string(a.Status)+":"+a.DecidedBy+":"+a.Comment)
	})
	a1 := mustRequest(t, s, request(t, agent, `{"a":1}`))
	a2 := mustRequest(t, s, request(t, agent, `{"a":2}`))
	s.Approve(ctx, a1.ID, bob, "")         // refused: no role
	s.Approve(ctx, a1.ID, alice, "")       // committed
	s.Approve(ctx, a1.ID, alice, "")       // refused: not pending
	s.Deny(ctx, a2.ID, alice, "too risky") // committed
	want := []string{a1.ID + ":approved:alice:", a2.ID + ":denied:alice:too risky"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("hook saw %v, want %v", got, want)
	}
}

// TestFiftyIdenticalCallsOneApproval plays the proxy's part for 50 concurrent identical
// calls: each tries Consume, else files (or joins) the request and waits. One approval
// is granted once all 50 are waiting; exactly one call may be forwarded, and the others
// learn it was used.
func TestFiftyIdenticalCallsOneApproval(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestService(t, nil, nil)
	r := request(t, agent, `{"slug":"prod","force":true}`)
	var forwarded, createdN, refused atomic.Int64
	var wg, filed sync.WaitGroup
	ids := make(chan string, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		filed.Add(1)
		go func() {
			defer wg.Done()
			if _, ok, err := s.Consume(ctx, r.Hash); err != nil || ok {
				t.Errorf("Consume before approval: %v %v", ok, err)
				filed.Done()
				return
			}
			a, created, err := s.Request(ctx, r)
			filed.Done()
			if err != nil {
				t.Error(err)
				return
			}
			if created {
				createdN.Add(1)
			}
			ids <- a.ID
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			a, err = s.Wait(wctx, a.ID)
			if err != nil || a.Status != StatusApproved && a.Status != StatusUsed {
				t.Errorf("Wait = %s, %v", a.Status, err)
				return
			}
			if _, ok, _ := s.Consume(ctx, r.Hash); ok {
				forwarded.Add(1)
			} else {
				refused.Add(1)
			}
		}()
	}
	filed.Wait()
	id := <-ids
	if _, err := s.Approve(ctx, id, alice, ""); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(ids)
	for other := range ids {
		if other != id {
			t.Fatalf("identical calls got different approvals %s and %s", id, other)
		}
	}
	if forwarded.Load() != 1 || createdN.Load() != 1 || refused.Load() != 49 {
		t.Fatalf("forwarded %d, approvals created %d, refused %d; want 1, 1, 49", forwarded.Load(), createdN.Load(), refused.Load())
	}
}

// Release gives back an approval whose call was not forwarded; it cannot revive one that
// was never used or is pending.
func TestReleaseAfterConsume(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestService(t, nil, nil)
	a := mustRequest(t, s, request(t, agent, `{"slug":"staging"}`))
	if ok, err := s.Release(ctx, a.ID); err != nil || ok {
		t.Fatalf("release of a pending approval: %v %v", ok, err)
	}
	if _, err := s.Approve(ctx, a.ID, alice, "ok"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Consume(ctx, a.Hash); !ok {
		t.Fatal("not consumed")
	}
	if ok, err := s.Release(ctx, a.ID); err != nil || !ok {
		t.Fatalf("release after consume: %v %v", ok, err)
	}
	if got, ok, _ := s.Consume(ctx, a.Hash); !ok || got.ID != a.ID {
		t.Fatal("a released approval could not be used again")
	}
	if _, ok, _ := s.Consume(ctx, a.Hash); ok {
		t.Fatal("single use broken after a release")
	}
}

// An approval that lapses is reported to the OnDecision hook once, whichever path finds
// it overdue (the sweeper, a read, a late decision), so the audit trail has its
// approval_expired row even when the agent never retries.
func TestExpiryIsReportedOnce(t *testing.T) {
	clk := &testClock{t: time.Now()}
	s, _ := newTestService(t, clk, func(c *Config) { c.SweepInterval = time.Hour })
	var mu sync.Mutex
	seen := map[string][]Status{}
	s.OnDecision(func(_ context.Context, a Approval) {
		mu.Lock()
		seen[a.ID] = append(seen[a.ID], a.Status)
		mu.Unlock()
	})
	swept := mustRequest(t, s, request(t, agent, `{"slug":"a"}`))
	read := mustRequest(t, s, request(t, agent, `{"slug":"b"}`))
	late := mustRequest(t, s, request(t, agent, `{"slug":"c"}`))
	clk.advance(time.Hour)

	if got, err := s.Get(context.Background(), read.ID); err != nil || got.Status != StatusExpired {
		t.Fatalf("read: %+v %v", got, err)
	}
	if _, err := s.Approve(context.Background(), late.ID, alice, ""); !errors.Is(err, ErrExpired) {
		t.Fatalf("late approve: %v, want ErrExpired", err)
	}
	if err := s.expireDue(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Found again: no second report.
	s.Get(context.Background(), read.ID)
	s.Approve(context.Background(), late.ID, alice, "")
	s.expireDue(context.Background())

	mu.Lock()
	defer mu.Unlock()
	for _, a := range []*Approval{swept, read, late} {
		if st := seen[a.ID]; len(st) != 1 || st[0] != StatusExpired {
			t.Errorf("approval %s reported %v, want one expiry", a.ID, st)
		}
	}
}

// The expiry hook runs outside the service's locks, also when Request finds the overdue
// approval: a hook that calls back into the service does not deadlock.
func TestExpiryHookRunsOutsideLocks(t *testing.T) {
	clk := &testClock{t: time.Now()}
	s, _ := newTestService(t, clk, func(c *Config) { c.SweepInterval = time.Hour })
	req := request(t, agent, `{"slug":"a"}`)
	mustRequest(t, s, req)
	clk.advance(time.Hour)
	s.OnDecision(func(ctx context.Context, a Approval) { s.Release(ctx, a.ID) })
	done := make(chan struct{})
	go func() { s.Request(context.Background(), req); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("Request deadlocked: the expiry hook ran while writeMu was held")
	}
}
