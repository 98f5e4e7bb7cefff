package approvals

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/policies/principal"
)

// Service stores approvals and wakes the callers waiting on them.
type Service struct {
	cfg   Config
	store Store
	log   *slog.Logger
	now   func() time.Time

	// writeMu serialises writes in this process; SQLite has one writer anyway, and
	// holding the lock across read-check-write keeps each transition atomic here.
	// Across processes the store's conditional updates do.
	writeMu sync.Mutex

	mu         sync.Mutex
	waiters    map[string]*waiter // approval id -> callers blocked in Wait
	closed     bool
	onDecision func(context.Context, Approval)

	hookSem chan struct{} // bounds concurrent webhook deliveries
	hookWG  sync.WaitGroup
	client  *http.Client

	ctx       context.Context // ends background work on Close
	cancel    context.CancelFunc
	sweepDone chan struct{}
	// pollDone and watchDone are set when the store is shared by other processes
	// (a Broadcaster): watch then wakes waiters on their changes, and poll re-reads
	// the waited-for approvals in case a notification was lost.
	pollDone  chan struct{}
	watchDone chan struct{}
	closeOnce sync.Once

	// fleetKey is set while the redaction key id recorded for the fleet (on a shared
	// store) is not this replica's: Request and Consume refuse until it is again.
	// fleetDone is set when the id is re-checked (fleetKeyLoop).
	fleetKey  atomic.Pointer[FleetKeyMismatchError]
	fleetDone chan struct{}
}

type waiter struct {
	ch chan struct{} // closed when the approval leaves pending
	n  int
}

// Open opens (or creates) the approval database and starts the expiry sweeper. cfg is
// defaulted and validated.
func Open(ctx context.Context, cfg Config, logger *slog.Logger) (*Service, error) {
	return open(ctx, cfg, logger, time.Now)
}

func open(ctx context.Context, cfg Config, logger *slog.Logger, now func() time.Time) (*Service, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var st Store
	var err error
	var fleet *pgStore // the store whose fleet key id is re-checked
	if cfg.DatabaseURL != "" {
		st, err = OpenPostgres(ctx, cfg.DatabaseURL, logger)
		if err == nil && cfg.RedactionKeyID != "" {
			fleet = st.(*pgStore)
			if err = fleet.checkFleetKey(ctx, FleetKeyRedaction, cfg.RedactionKeyID, now()); err != nil {
				_ = st.Close()
			}
		}
	} else {
		// Approvals hold callers' (redacted) arguments: the file is its owner's only.
		st, err = OpenSQLite(ctx, cfg.DBPath, logger)
	}
	if err != nil {
		return nil, err
	}
	s := New(st, cfg, logger, now)
	if fleet != nil {
		s.fleetDone = make(chan struct{})
		go s.fleetKeyLoop(fleet)
	}
	return s, nil
}

// fleetKeyLoop re-checks, every FleetKeyInterval, that the redaction key id recorded
// for the fleet is this replica's (recording it again if the row is gone): the check
// at start alone would miss the row cleared and another key recorded while this
// replica runs. Two small statements a check.
func (s *Service) fleetKeyLoop(pg *pgStore) {
	s.every(s.cfg.FleetKeyInterval, s.fleetDone, func(ctx context.Context) {
		if err := pg.checkFleetKey(ctx, FleetKeyRedaction, s.cfg.RedactionKeyID, s.now()); s.ctx.Err() == nil {
			s.fleetKeyChecked(err)
		}
	})
}

// every runs fn (with a 10 s deadline) every interval until the service closes, then
// closes done.
func (s *Service) every(interval time.Duration, done chan struct{}, fn func(ctx context.Context)) {
	defer close(done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
		fn(ctx)
		cancel()
	}
}

// fleetKeyChecked records a re-check's outcome: a mismatch refuses approvals (logged
// as an ERROR naming both key ids, never a key, when it starts or the recorded id
// changes), agreement lifts the refusal, and a failed check (the store unreachable)
// changes nothing: Request and Consume fail on such a store anyway.
func (s *Service) fleetKeyChecked(err error) {
	var mm *FleetKeyMismatchError
	switch {
	case errors.As(err, &mm):
		if prev := s.fleetKey.Swap(mm); prev == nil || prev.Have != mm.Have {
			s.log.Error("approvals: the audit HMAC key id recorded for the fleet is not this replica's; refusing to create or consume approvals until they agree: "+
				"give every replica the same PORTCULLIS_AUDIT_HMAC_KEY or audit-hmac.key (see docs/audit.md)",
				"hmac_key_id", mm.ID, "fleet_hmac_key_id", mm.Have)
		}
	case err != nil:
		s.log.Warn("approvals: re-checking the fleet's audit HMAC key id failed; will retry", "err", err)
	default:
		if prev := s.fleetKey.Swap(nil); prev != nil {
			s.log.Info("approvals: the audit HMAC key id recorded for the fleet is this replica's again; approvals resume",
				"hmac_key_id", s.cfg.RedactionKeyID)
		}
	}
}

// FleetKeyMismatch returns, while this replica refuses approvals because the redaction
// key id recorded for the fleet is another, the two ids; nil otherwise.
func (s *Service) FleetKeyMismatch() *FleetKeyMismatchError { return s.fleetKey.Load() }

// fleetKeyErr is Request's and Consume's refusal while the fleet key ids disagree.
func (s *Service) fleetKeyErr() error {
	if mm := s.fleetKey.Load(); mm != nil {
		return fmt.Errorf("%w (key id %s vs %s)", ErrFleetKeyMismatch, mm.ID, mm.Have)
	}
	return nil
}

// Collectors are the service's metrics: portcullis_approvals_fleet_key_mismatch, 1
// while approvals are refused because the fleet's redaction key id is not this
// replica's.
func (s *Service) Collectors() []prometheus.Collector {
	return []prometheus.Collector{prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "portcullis_approvals_fleet_key_mismatch",
		Help: "1 while this replica refuses to create or consume approvals because the audit HMAC key id recorded for the fleet (approvals_fleet_keys) is not its own."},
		func() float64 {
			if s.fleetKey.Load() != nil {
				return 1
			}
			return 0
		})}
}

// New starts a service on st (which it closes on Close) with cfg, already validated
// (its zero fields are defaulted); now is the clock (time.Now if nil).
func New(st Store, cfg Config, logger *slog.Logger, now func() time.Time) *Service {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	cfg.SetDefaults()
	bg, cancel := context.WithCancel(context.Background())
	s := &Service{
		cfg:     cfg,
		store:   st,
		log:     logger,
		now:     now,
		waiters: make(map[string]*waiter),
		hookSem: make(chan struct{}, 16),
		client: &http.Client{
			Timeout: cfg.WebhookTimeout,
			// A redirect would send the signed body somewhere not configured.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		ctx:       bg,
		cancel:    cancel,
		sweepDone: make(chan struct{}),
	}
	go s.sweep()
	if b, ok := st.(Broadcaster); ok {
		s.watchDone, s.pollDone = make(chan struct{}), make(chan struct{})
		go s.watch(b)
		go s.poll()
	}
	return s
}

// poll wakes, every PollInterval, the waiters of approvals that left pending without
// this process hearing of it: one query for all of them, whatever their number.
func (s *Service) poll() {
	defer close(s.pollDone)
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	var ids []string
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		ids = ids[:0]
		s.mu.Lock()
		for id := range s.waiters {
			ids = append(ids, id)
		}
		s.mu.Unlock()
		if len(ids) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
		done, err := s.store.NotPending(ctx, ids)
		cancel()
		if err != nil {
			if s.ctx.Err() == nil {
				s.log.Warn("approvals: polling held approvals", "err", err)
			}
			continue
		}
		for _, id := range done {
			s.notify(id)
		}
	}
}

// watch wakes this process's waiters on the changes other processes announce,
// resubscribing after a failure (the waiters' poll covers the gap).
func (s *Service) watch(b Broadcaster) {
	defer close(s.watchDone)
	backoff := 100 * time.Millisecond
	for {
		start := time.Now()
		err := b.Watch(s.ctx, s.notify)
		if s.ctx.Err() != nil {
			return
		}
		if time.Since(start) > time.Minute {
			backoff = 100 * time.Millisecond
		}
		s.log.Warn("approvals: lost the change notifications; held calls poll until they are back", "err", err, "retry_in", backoff)
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// Close stops the sweeper, waits for webhook deliveries in flight (they are cut short)
// and closes the database.
func (s *Service) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.cancel()
		<-s.sweepDone
		if s.fleetDone != nil {
			<-s.fleetDone
		}
		if s.watchDone != nil {
			<-s.watchDone
			<-s.pollDone
		}
		s.hookWG.Wait()
		if cerr := s.store.Close(); cerr != nil {
			err = fmt.Errorf("approvals: closing database: %w", cerr)
		}
	})
	return err
}

// OnDecision registers fn to be called after each approve, deny or expiry is committed
// (for the audit trail; a.Status says which). fn runs synchronously on the deciding
// request, or on the goroutine that found the approval overdue, outside the service's
// locks; set it before serving.
func (s *Service) OnDecision(fn func(ctx context.Context, a Approval)) {
	s.mu.Lock()
	s.onDecision = fn
	s.mu.Unlock()
}

// URL is where an approver finds approval id.
func (s *Service) URL(id string) string {
	if s.cfg.ConsoleURL != "" {
		return s.cfg.ConsoleURL + "/approvals/" + url.PathEscape(id)
	}
	return s.cfg.PublicURL + "/admin/v1/approvals/" + id
}

func (s *Service) nowMillis() int64 { return s.now().UnixMilli() }

// live reports whether a is pending or approved and not past its expiry at nowMs.
func live(a *Approval, nowMs int64) bool {
	return (a.Status == StatusPending || a.Status == StatusApproved) && a.ExpiresAt.UnixMilli() > nowMs
}

// Get returns approval id (ErrNotFound when there is none). An approval found past its
// expiry is marked expired first. Get does not check who is asking; Mount does.
func (s *Service) Get(ctx context.Context, id string) (*Approval, error) {
	a, err := s.store.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if (a.Status == StatusPending || a.Status == StatusApproved) && !live(a, s.nowMillis()) {
		s.writeMu.Lock()
		ok, err := s.store.Expire(ctx, a.ID, a.Status)
		s.writeMu.Unlock()
		if err != nil {
			return nil, err
		}
		if !ok {
			// Decided or used meanwhile: report what is stored now.
			return s.store.Get(ctx, id)
		}
		a.Status = StatusExpired
		s.notify(a.ID)
		s.reportExpired(ctx, []string{a.ID})
	}
	return a, nil
}

// Find returns the newest approval for hash that is pending, approved or denied and not
// past its expiry, or nil.
func (s *Service) Find(ctx context.Context, hash string) (*Approval, error) {
	return s.store.Find(ctx, hash, s.now())
}

func validateRequest(r *Request) error {
	var errs []error
	if b, err := hex.DecodeString(r.Hash); err != nil || len(b) != 32 {
		errs = append(errs, errors.New("approvals: request hash must be 64 hex characters (CanonicalHash)"))
	}
	if r.Tool == "" {
		errs = append(errs, errors.New("approvals: request tool is required"))
	}
	if r.Caller.Sub == "" {
		errs = append(errs, errors.New("approvals: request caller.sub is required"))
	}
	if r.TTL < 0 {
		errs = append(errs, fmt.Errorf("approvals: request ttl must not be negative, got %s", r.TTL))
	}
	if len(r.Arguments) > 0 && !json.Valid(r.Arguments) {
		errs = append(errs, errors.New("approvals: request arguments must be valid JSON"))
	}
	for i, a := range r.Approvers {
		if strings.TrimSpace(a) == "" {
			errs = append(errs, fmt.Errorf("approvals: request approvers[%d] is empty", i))
		}
	}
	return errors.Join(errs...)
}

// Request files a pending approval for r.Hash, or returns the one already there: the
// newest pending, approved or denied approval for the same hash that has not expired
// (created is then false). Concurrent identical requests get the same approval. A new
// pending approval is announced to the webhook without waiting for it.
func (s *Service) Request(ctx context.Context, r Request) (*Approval, bool, error) {
	if err := validateRequest(&r); err != nil {
		return nil, false, err
	}
	if err := s.fleetKeyErr(); err != nil {
		return nil, false, err
	}
	ttl := r.TTL
	if ttl == 0 {
		ttl = s.cfg.DefaultTTL
	}
	ttl = min(ttl, s.cfg.MaxTTL)
	args := r.Arguments
	if len(args) == 0 {
		args = json.RawMessage("{}")
	}
	roles := r.Caller.Roles
	if roles == nil {
		roles = []string{}
	}
	approvers := r.Approvers
	if approvers == nil {
		approvers = []string{}
	}
	s.writeMu.Lock()
	locked := true
	defer func() {
		if locked {
			s.writeMu.Unlock()
		}
	}()
	now := s.now()
	nowMs := now.UnixMilli()
	a := &Approval{
		ID:     uuid.NewString(),
		Status: StatusPending,
		Hash:   r.Hash,
		Caller: principal.Caller{Sub: r.Caller.Sub, Org: r.Caller.Org, Workspace: r.Caller.Workspace,
			Roles: roles, Session: r.Caller.Session},
		Tool: r.Tool, Surface: r.Surface, Arguments: append(json.RawMessage(nil), args...),
		Reason: r.Reason, PolicyRevision: r.PolicyRevision, Approvers: approvers,
		CreatedAt: fromMillis(nowMs), ExpiresAt: fromMillis(now.Add(ttl).UnixMilli()),
	}
	existing, expired, err := s.store.Create(ctx, a, now)
	if err != nil {
		return nil, false, err
	}
	s.writeMu.Unlock() // the hook runs outside the service's locks
	locked = false
	for _, id := range expired {
		s.notify(id)
	}
	s.reportExpired(ctx, expired)
	if existing != nil {
		return existing, false, nil
	}
	s.log.Info("approvals: approval requested", "approval_id", a.ID, "tool", a.Tool,
		"caller", a.Caller.Sub, "org", a.Caller.Org, "expires_at", a.ExpiresAt)
	s.announce(a)
	return a, true, nil
}

// expireDue expires every overdue approval and wakes its waiters.
func (s *Service) expireDue(ctx context.Context) error {
	s.writeMu.Lock()
	ids, err := s.store.ExpireDue(ctx, s.now())
	s.writeMu.Unlock()
	for _, id := range ids {
		s.notify(id)
	}
	s.reportExpired(ctx, ids)
	return err
}

// reportExpired tells the OnDecision hook of approvals that just expired, so an approval
// nobody decided still leaves its row when it lapses, not only when the agent retries.
func (s *Service) reportExpired(ctx context.Context, ids []string) {
	s.mu.Lock()
	hook := s.onDecision
	s.mu.Unlock()
	if hook == nil {
		return
	}
	for _, id := range ids {
		a, err := s.Get(context.WithoutCancel(ctx), id)
		if err != nil {
			s.log.Error("approvals: reading an expired approval for the audit trail", "approval_id", id, "err", err)
			continue
		}
		hook(ctx, *a)
	}
}

func (s *Service) sweep() {
	s.every(s.cfg.SweepInterval, s.sweepDone, func(ctx context.Context) {
		if err := s.expireDue(ctx); err != nil && s.ctx.Err() == nil {
			s.log.Error("approvals: sweeping expired approvals", "err", err)
		}
	})
}

// Consume uses the newest approved, unexpired approval for hash: it moves it to used in
// one conditional UPDATE and returns it with true. Of any number of concurrent calls for
// one approval exactly one gets true. It returns nil, false when there is none.
func (s *Service) Consume(ctx context.Context, hash string) (*Approval, bool, error) {
	if err := s.fleetKeyErr(); err != nil {
		return nil, false, err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	a, err := s.store.Consume(ctx, hash, s.now())
	if err != nil || a == nil {
		return nil, false, err
	}
	return a, true, nil
}

// Release undoes a Consume whose call was then not forwarded (the gateway could not
// record it), so the approval can still be used by the identical retry. It reports
// whether the approval was in use and is approved again.
func (s *Service) Release(ctx context.Context, id string) (bool, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	return s.store.Release(ctx, id, s.now())
}

// Approve approves a pending approval. See the package doc for who may; errors are
// ErrNotFound (also for other orgs), ErrSelfApproval, ErrNotApprover, ErrExpired,
// ErrNotPending and ErrInvalidComment.
func (s *Service) Approve(ctx context.Context, id string, approver principal.Caller, comment string) (*Approval, error) {
	return s.decide(ctx, id, &approver, comment, StatusApproved)
}

// Deny denies a pending approval; comment is required and is what the agent is told.
func (s *Service) Deny(ctx context.Context, id string, approver principal.Caller, comment string) (*Approval, error) {
	return s.decide(ctx, id, &approver, comment, StatusDenied)
}

func (s *Service) decide(ctx context.Context, id string, approver *principal.Caller, comment string, to Status) (*Approval, error) {
	a, err := s.decideLocked(ctx, id, approver, comment, to)
	if a != nil && errors.Is(err, ErrExpired) {
		s.reportExpired(ctx, []string{a.ID}) // it lapsed just now, found by this attempt
	}
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	hook := s.onDecision
	s.mu.Unlock()
	if hook != nil {
		hook(ctx, *a)
	}
	return a, nil
}

func (s *Service) decideLocked(ctx context.Context, id string, approver *principal.Caller, comment string, to Status) (*Approval, error) {
	comment = strings.TrimSpace(comment)
	switch {
	case len(comment) > maxCommentBytes:
		return nil, fmt.Errorf("%w: comment is longer than %d bytes", ErrInvalidComment, maxCommentBytes)
	case !utf8.ValidString(comment):
		return nil, fmt.Errorf("%w: comment is not valid UTF-8", ErrInvalidComment)
	case to == StatusDenied && comment == "":
		return nil, fmt.Errorf("%w: comment is required when denying (it tells the agent why)", ErrInvalidComment)
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	a, err := s.store.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := canDecide(a, approver, s.cfg.ApproverRole); err != nil {
		return nil, err
	}
	now := s.now()
	nowMs := now.UnixMilli()
	if (a.Status == StatusPending || a.Status == StatusApproved) && !live(a, nowMs) {
		ok, err := s.store.Expire(ctx, a.ID, a.Status)
		if err != nil {
			return nil, err
		}
		s.notify(a.ID)
		if ok {
			return a, ErrExpired // newly expired: decide reports it
		}
		return nil, ErrExpired
	}
	switch a.Status {
	case StatusPending:
	case StatusExpired:
		return nil, ErrExpired
	default:
		return nil, ErrNotPending
	}
	ok, err := s.store.Decide(ctx, a.ID, to, approver.Sub, comment, now)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrNotPending
	}
	decided := fromMillis(nowMs)
	a.Status, a.DecidedBy, a.Comment, a.DecidedAt = to, approver.Sub, comment, &decided
	s.notify(a.ID)
	s.log.Info("approvals: approval decided", "approval_id", a.ID, "status", string(to), "by", approver.Sub, "org", a.Caller.Org)
	return a, nil
}

// List returns approvals of one org, newest first, after expiring overdue ones.
func (s *Service) List(ctx context.Context, f ListFilter) ([]Approval, error) {
	if f.Status == "all" {
		f.Status = ""
	}
	if f.Status != "" && !f.Status.Valid() {
		return nil, fmt.Errorf("approvals: status must be one of pending, approved, denied, expired, used or all, got %q", f.Status)
	}
	if f.Limit <= 0 {
		f.Limit = 100
	}
	f.Limit = min(f.Limit, 1000)
	if err := s.expireDue(ctx); err != nil {
		return nil, err
	}
	return s.store.List(ctx, f.Org, f.Status, f.Limit)
}

// Wait blocks until approval id leaves pending (approved, denied or expired) or ctx
// ends, and returns its state then: still pending when ctx ended first (err is nil in
// that case). Waiters are woken in memory; each Wait reads the database once to start
// and once to finish. On a shared store a decision made by another process wakes
// them through the store's notifications, and every PollInterval one query finds
// the waited-for approvals that left pending, in case a notification was lost.
func (s *Service) Wait(ctx context.Context, id string) (*Approval, error) {
	// Subscribe before reading, so a decision made in between still wakes us.
	ch, release := s.subscribe(id)
	defer release()
	a, err := s.Get(ctx, id)
	switch {
	case err != nil && ctx.Err() == nil:
		return nil, err
	case err == nil && a.Status != StatusPending:
		return a, nil
	case err == nil:
		timer := time.NewTimer(max(a.ExpiresAt.Sub(s.now()), 0) + time.Millisecond)
		defer timer.Stop()
		select {
		case <-ch:
		case <-timer.C:
		case <-ctx.Done():
		}
	}
	rctx := ctx
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		rctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
	}
	return s.Get(rctx, id)
}

func (s *Service) subscribe(id string) (<-chan struct{}, func()) {
	s.mu.Lock()
	w := s.waiters[id]
	if w == nil {
		w = &waiter{ch: make(chan struct{})}
		s.waiters[id] = w
	}
	w.n++
	s.mu.Unlock()
	return w.ch, func() {
		s.mu.Lock()
		if s.waiters[id] == w {
			w.n--
			if w.n == 0 {
				delete(s.waiters, id)
			}
		}
		s.mu.Unlock()
	}
}

func (s *Service) notify(id string) {
	s.mu.Lock()
	if w := s.waiters[id]; w != nil {
		close(w.ch)
		delete(s.waiters, id)
	}
	s.mu.Unlock()
}
