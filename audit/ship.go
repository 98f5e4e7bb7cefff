package audit

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ShipperConfig configures a Shipper.
type ShipperConfig struct {
	// Path is the local audit database (audit.path) whose rows are shipped.
	Path string
	// Interval is the longest the shipper waits between passes. Default 1s. With
	// Stored set, it also ships as soon as new rows are stored locally.
	Interval time.Duration
	// Batch is the most rows one PostgreSQL transaction carries. Default 1000.
	Batch int
	// MaxLag is the readiness bound (audit.central_max_lag): Ready fails while the
	// oldest unshipped row is older than this. Default 5m.
	MaxLag time.Duration
	// Log, when set, is the running log whose database Path is: the shipper polls its
	// stored seq (Stored defaults to Log.StoredSeq) and takes the rows it stores as they
	// are stored, instead of reading them back from SQLite (see shipFeed).
	Log *Log
	// Stored, when set, returns the newest seq the local database holds (Log.StoredSeq):
	// the shipper polls it cheaply and ships when it moves, instead of waiting for the
	// next Interval.
	Stored func() int64
}

// Shipper copies one replica's chained rows and signed checkpoints from its SQLite
// database into the central store, in order and exactly once. It runs off the
// request path: it reads only rows SQLite already holds (after the ingester stored
// them), through its own read-only connection, in batches. Each pass resumes from
// the central store's newest row and checkpoint for this log id, so restarts,
// crashes mid-pass and outages neither duplicate nor skip rows. A row or checkpoint
// already there with other contents, or a local row that does not continue the
// shipped chain, is a fault: it is logged and counted, never overwritten, and
// shipping of this log stops until an operator looks (the lag then grows).
type Shipper struct {
	cfg     ShipperConfig
	central *Central
	rd      *Reader
	logID   string
	logger  *slog.Logger

	kick    chan struct{}
	stop    chan struct{}
	stopped chan struct{}
	once    sync.Once
	started atomic.Bool

	mu      sync.Mutex  // serialises passes
	mark    *shipMark   // what the central store acknowledged, kept across restarts
	feed    *shipFeed   // rows cfg.Log stored, when it is set
	feedFn  func([]row) // feed.push, as the log holds it
	shipped atomic.Int64
	cpID    atomic.Int64
	local   atomic.Int64 // newest local seq seen
	oldest  atomic.Int64 // ts (unix ns) of the oldest unshipped row; 0 when caught up
	fault   atomic.Pointer[error]
	lastErr atomic.Pointer[error]

	rowsShipped, cpsShipped, errs atomic.Uint64
}

// NewShipper opens the local database read-only and resumes after what central
// holds for its log id. Run starts it.
func NewShipper(ctx context.Context, central *Central, cfg ShipperConfig, logger *slog.Logger) (*Shipper, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 1000
	}
	if cfg.MaxLag <= 0 {
		cfg.MaxLag = 5 * time.Minute
	}
	rd, err := OpenReader(ctx, cfg.Path)
	if err != nil {
		return nil, err
	}
	logID, err := readLogID(ctx, rd.db)
	if err != nil {
		rd.Close()
		return nil, err
	}
	if logID == "" {
		rd.Close()
		return nil, fmt.Errorf("audit: shipping %s: the database has no log id (open it with serve first)", cfg.Path)
	}
	s := &Shipper{cfg: cfg, central: central, rd: rd, logID: logID, logger: logger, mark: newShipMark(cfg.Path, logID),
		kick: make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{})}
	s.mark.ensure()
	if cfg.Log != nil {
		if s.cfg.Stored == nil {
			s.cfg.Stored = cfg.Log.StoredSeq
		}
		s.feed = &shipFeed{limit: maxFeedRows}
		s.feedFn = s.feed.push
		cfg.Log.stored.Store(&s.feedFn)
	}
	return s, nil
}

// LogID is the id of the log this shipper copies.
func (s *Shipper) LogID() string { return s.logID }

// Run ships until Close: every Interval, when kicked, and when Stored moves.
func (s *Shipper) Run() {
	s.started.Store(true)
	defer close(s.stopped)
	tick := time.NewTicker(s.cfg.Interval)
	defer tick.Stop()
	var poll <-chan time.Time
	if s.cfg.Stored != nil {
		p := time.NewTicker(20 * time.Millisecond)
		defer p.Stop()
		poll = p.C
	}
	// Close ends a pass in flight: a PostgreSQL that stopped answering must not hold up
	// shutdown (the next start resumes from what PostgreSQL holds).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-s.stop
		cancel()
	}()
	wait := time.Duration(0)
	var backoff <-chan time.Time
	pass := func() {
		pctx, pcancel := context.WithTimeout(ctx, passTimeout)
		defer pcancel()
		if _, err := s.Ship(pctx); err != nil {
			// PostgreSQL down: retry with backoff, up to the interval.
			wait = min(max(2*wait, 100*time.Millisecond), s.cfg.Interval)
			backoff = time.After(wait)
			return
		}
		wait, backoff = 0, nil
	}
	pass()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
			pass()
		case <-backoff:
			pass()
		case <-s.kick:
			pass()
		case <-poll:
			if backoff == nil && s.cfg.Stored() > s.shipped.Load() && s.fault.Load() == nil {
				pass()
			}
		}
	}
}

// passTimeout bounds one background pass (a stalled connection is retried).
const passTimeout = time.Minute

// Kick asks for a pass now.
func (s *Shipper) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Close stops Run (if it was started), makes a last pass with ctx (rows a closing
// Log stored last), and closes the local connection.
func (s *Shipper) Close(ctx context.Context) error {
	var err error
	s.once.Do(func() {
		if s.cfg.Log != nil {
			s.cfg.Log.stored.CompareAndSwap(&s.feedFn, nil)
		}
		close(s.stop)
		if s.started.Load() {
			<-s.stopped
		}
		if s.fault.Load() == nil {
			_, err = s.Ship(ctx)
		}
		err = errors.Join(err, s.rd.Close())
	})
	return err
}

// Ship makes one pass: it copies every row and checkpoint the local database holds
// beyond what the central store has for this log, in batches, and returns how many
// rows it copied.
func (s *Shipper) Ship(ctx context.Context) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.fault.Load(); f != nil {
		return 0, *f
	}
	n, err := s.pass(ctx)
	// The lag is measured locally, so it keeps growing while PostgreSQL is down.
	s.measure(ctx)
	if err != nil {
		s.errs.Add(1)
		if errors.Is(err, ErrCentralFault) {
			s.fault.Store(&err)
			s.logger.Error("audit: central shipping stopped: the central store and this replica disagree; nothing was overwritten", "log_id", s.logID, "err", err)
		} else if prev := s.lastErr.Load(); prev == nil {
			s.logger.Warn("audit: central shipping failed; retrying (rows stay in the local database)", "log_id", s.logID, "err", err)
		}
		s.lastErr.Store(&err)
		return n, err
	}
	if s.lastErr.Load() != nil {
		s.logger.Info("audit: central shipping resumed", "log_id", s.logID, "shipped_seq", s.shipped.Load())
		s.lastErr.Store(nil)
	}
	return n, nil
}

// Shipped is what CatchUp copied.
type Shipped struct {
	Rows, Checkpoints int
}

// CatchUp ships until the central store holds every row and checkpoint the local
// database holds, and checks that it does: migrate runs it with the log's writer lock
// held (LockWriter), so nothing is appended meanwhile. A fault stops it as it stops Run;
// nothing central is overwritten.
func (s *Shipper) CatchUp(ctx context.Context) (Shipped, error) {
	var got Shipped
	for {
		cps := s.cpsShipped.Load()
		n, err := s.Ship(ctx)
		got.Rows += n
		got.Checkpoints += int(s.cpsShipped.Load() - cps)
		if err != nil {
			return got, err
		}
		if n == 0 && s.cpsShipped.Load() == cps {
			break
		}
	}
	head, err := s.central.Head(ctx, s.logID)
	if err != nil {
		return got, err
	}
	var localSeq, localCP int64
	if err := s.rd.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM audit_events`).Scan(&localSeq); err != nil {
		return got, fmt.Errorf("audit: shipping: reading %s: %w", s.cfg.Path, err)
	}
	if err := s.rd.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(id), 0) FROM audit_checkpoints`).Scan(&localCP); err != nil {
		return got, fmt.Errorf("audit: shipping: reading checkpoints of %s: %w", s.cfg.Path, err)
	}
	if head.Seq < localSeq || head.CheckpointID < localCP {
		return got, fmt.Errorf("audit: shipping log %s: the central store holds rows to seq %d and checkpoints to id %d, the local database rows to seq %d and checkpoints to id %d",
			s.logID, head.Seq, head.CheckpointID, localSeq, localCP)
	}
	return got, nil
}

func (s *Shipper) pass(ctx context.Context) (int, error) {
	head, err := s.central.Head(ctx, s.logID)
	if err != nil {
		return 0, err
	}
	// The head is checked before it is adopted: a head that is not this log's (a
	// forged row or checkpoint past what this replica wrote) must not count as shipped.
	var localMax int64
	if err := s.rd.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM audit_events`).Scan(&localMax); err != nil {
		return 0, fmt.Errorf("audit: shipping: reading %s: %w", s.cfg.Path, err)
	}
	if err := s.checkHead(ctx, head); err != nil {
		return 0, err
	}
	prev := head.Hash
	if head.Seq > 0 {
		// The central head must still be the local row at its seq: a local chain
		// rewritten (or replaced by another log's) after shipping is a fault.
		var h []byte
		err := s.rd.db.QueryRowContext(ctx, `SELECT hash FROM audit_events WHERE seq = ?`, head.Seq).Scan(&h)
		switch {
		case err == nil && !bytes.Equal(h, head.Hash):
			return 0, fmt.Errorf("%w: log %s row seq %d: the local row differs from the copy shipped to the central store", ErrCentralFault, s.logID, head.Seq)
		case errors.Is(err, sql.ErrNoRows) && head.Seq > localMax:
			return 0, fmt.Errorf("%w: log %s: the central store holds rows up to seq %d but this database ends at seq %d (rows erased after shipping, or another log's database)",
				ErrCentralFault, s.logID, head.Seq, localMax)
		case err != nil && !errors.Is(err, sql.ErrNoRows):
			return 0, fmt.Errorf("audit: shipping: reading %s: %w", s.cfg.Path, err)
		}
		// ErrNoRows below localMax: pruned locally after shipping, which is fine.
	}
	s.shipped.Store(head.Seq)
	s.cpID.Store(head.CheckpointID)
	defer func() { s.mark.save(s.shipped.Load(), s.cpID.Load()) }()
	total := 0
	for {
		rows, err := s.readRows(ctx, s.shipped.Load())
		if err != nil {
			return total, err
		}
		if len(rows) > 0 {
			first := rows[0].Seq
			switch {
			case first != s.shipped.Load()+1 && s.shipped.Load() > 0:
				return total, fmt.Errorf("%w: log %s: the central store ends at seq %d but the local database continues at seq %d (rows pruned locally before they were shipped)",
					ErrCentralFault, s.logID, s.shipped.Load(), first)
			case prev != nil && !bytes.Equal(rows[0].PrevHash, prev):
				return total, fmt.Errorf("%w: log %s row seq %d: does not link to the row shipped before it (local chain rewritten after shipping)",
					ErrCentralFault, s.logID, first)
			}
		}
		upTo := s.shipped.Load()
		if len(rows) > 0 {
			upTo = rows[len(rows)-1].Seq
		}
		cps, err := s.readCheckpoints(ctx, s.cpID.Load(), upTo)
		if err != nil {
			return total, err
		}
		if len(rows) == 0 && len(cps) == 0 {
			break
		}
		if err := s.central.store(ctx, s.logID, rows, cps); err != nil {
			if errors.Is(err, ErrCentralFault) {
				return total, err
			}
			return total, fmt.Errorf("audit: shipping log %s to the central store: %w", s.logID, err)
		}
		total += len(rows)
		if shipAfterCommit != nil {
			shipAfterCommit(upTo)
		}
		s.rowsShipped.Add(uint64(len(rows)))
		s.cpsShipped.Add(uint64(len(cps)))
		if len(rows) > 0 {
			prev = rows[len(rows)-1].Hash
			s.shipped.Store(upTo)
		}
		if len(cps) > 0 {
			s.cpID.Store(cps[len(cps)-1].ID)
		}
		if len(rows) < s.cfg.Batch && len(cps) < s.cfg.Batch {
			break
		}
	}
	return total, nil
}

// checkHead compares the central head of this log with what this replica wrote and
// shipped: the newest central checkpoint must be the local one with its id (a
// checkpoint copied in under a higher id would stop checkpoints from shipping), and the
// central store must still hold everything this replica's shipping mark says it
// acknowledged (rows or checkpoints removed centrally, for instance by TRUNCATE, are a
// fault, not something to copy again in silence).
func (s *Shipper) checkHead(ctx context.Context, head CentralHead) error {
	if head.CheckpointID > 0 {
		var sig []byte
		err := s.rd.db.QueryRowContext(ctx, `SELECT signature FROM audit_checkpoints WHERE id = ?`, head.CheckpointID).Scan(&sig)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("%w: log %s: the central store's newest checkpoint has id %d, which this database never wrote",
				ErrCentralFault, s.logID, head.CheckpointID)
		case err != nil:
			return fmt.Errorf("audit: shipping: reading checkpoints of %s: %w", s.cfg.Path, err)
		case !bytes.Equal(sig, head.CheckpointSig):
			return fmt.Errorf("%w: log %s checkpoint id %d: the central copy has another signature", ErrCentralFault, s.logID, head.CheckpointID)
		}
	}
	seq, cp := s.mark.load()
	seq, cp = max(seq, s.shipped.Load()), max(cp, s.cpID.Load())
	if head.Seq < seq || head.CheckpointID < cp {
		return fmt.Errorf("%w: log %s: the central store holds rows to seq %d and checkpoints to id %d, but it had acknowledged rows to seq %d and checkpoints to id %d (removed centrally)",
			ErrCentralFault, s.logID, head.Seq, head.CheckpointID, seq, cp)
	}
	return nil
}

// measure records the newest local seq and the time of the oldest row not shipped.
func (s *Shipper) measure(ctx context.Context) {
	var localMax int64
	if err := s.rd.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM audit_events`).Scan(&localMax); err != nil {
		return
	}
	s.local.Store(max(localMax, s.shipped.Load()))
	var ts int64
	if err := s.rd.db.QueryRowContext(ctx, `SELECT ts FROM audit_events WHERE seq > ? ORDER BY seq LIMIT 1`, s.shipped.Load()).Scan(&ts); err != nil {
		ts = 0
	}
	s.oldest.Store(ts)
}

func (s *Shipper) readRows(ctx context.Context, after int64) ([]row, error) {
	if s.feed != nil {
		if rows := s.feed.take(after, s.cfg.Batch); rows != nil {
			return rows, nil
		}
	}
	q, err := s.rd.db.QueryContext(ctx, `SELECT `+rowColumns+` FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?`, after, s.cfg.Batch)
	if err != nil {
		return nil, fmt.Errorf("audit: shipping: reading %s: %w", s.cfg.Path, err)
	}
	defer q.Close()
	var out []row
	for q.Next() {
		var r row
		if err := q.Scan(r.scanDest()...); err != nil {
			return nil, fmt.Errorf("audit: shipping: reading %s: %w", s.cfg.Path, err)
		}
		out = append(out, r)
	}
	return out, q.Err()
}

// readCheckpoints returns the local checkpoints after id, in id order, up to the
// first one covering a row past upTo (not shipped yet: it waits for its rows).
func (s *Shipper) readCheckpoints(ctx context.Context, after, upTo int64) ([]checkpoint, error) {
	cols := checkpointColumns
	if has, err := hasLogIDColumn(ctx, s.rd.db); err != nil {
		return nil, err
	} else if !has {
		cols = "id, kind, seq, head_hash, ts, key_id, signature, '' AS log_id"
	}
	q, err := s.rd.db.QueryContext(ctx, `SELECT `+cols+` FROM audit_checkpoints WHERE id > ? ORDER BY id LIMIT ?`, after, s.cfg.Batch)
	if err != nil {
		return nil, fmt.Errorf("audit: shipping: reading checkpoints of %s: %w", s.cfg.Path, err)
	}
	defer q.Close()
	var out []checkpoint
	for q.Next() {
		var c checkpoint
		if err := q.Scan(c.scanDest()...); err != nil {
			return nil, fmt.Errorf("audit: shipping: reading checkpoints of %s: %w", s.cfg.Path, err)
		}
		if c.Seq > upTo {
			break
		}
		out = append(out, c)
	}
	return out, q.Err()
}

// shipAfterCommit, when set (tests), runs after each batch a pass commits centrally,
// with the newest seq it shipped.
var shipAfterCommit func(seq int64)

// Lag returns how many rows the local database holds beyond the central store, and
// how old the oldest of them is (0, 0 when caught up).
func (s *Shipper) Lag() (rows int64, age time.Duration) {
	local, shipped := s.local.Load(), s.shipped.Load()
	if s.cfg.Stored != nil {
		local = max(local, s.cfg.Stored())
	}
	rows = max(local-shipped, 0)
	if rows == 0 {
		return 0, 0
	}
	if ts := s.oldest.Load(); ts > 0 {
		age = max(time.Since(time.Unix(0, ts)), 0)
	}
	return rows, age
}

// Status is the shipper's state for /readyz.
type ShipperStatus struct {
	LogID       string  `json:"log_id"`
	ShippedSeq  int64   `json:"shipped_seq"`
	LagRows     int64   `json:"lag_rows"`
	LagSeconds  float64 `json:"lag_seconds"`
	Fault       string  `json:"fault,omitempty"`
	LastError   string  `json:"last_error,omitempty"`
	MaxLagSecs  float64 `json:"max_lag_seconds"`
	WithinBound bool    `json:"within_bound"`
}

// Status reports the shipping state.
func (s *Shipper) Status() ShipperStatus {
	rows, age := s.Lag()
	st := ShipperStatus{LogID: s.logID, ShippedSeq: s.shipped.Load(), LagRows: rows, LagSeconds: age.Seconds(),
		MaxLagSecs: s.cfg.MaxLag.Seconds(), WithinBound: age <= s.cfg.MaxLag}
	if f := s.fault.Load(); f != nil {
		st.Fault = (*f).Error()
	}
	if e := s.lastErr.Load(); e != nil {
		st.LastError = (*e).Error()
	}
	return st
}

// Ready fails once the oldest unshipped row is older than MaxLag, unless shipping
// stopped on a fault. A shorter lag, a PostgreSQL outage or a fault leave the replica
// ready (its rows are safe in its own database; /readyz reports them as degraded):
// taking every replica out of the load balancer because the central store is down
// would turn its outage into a full one.
func (s *Shipper) Ready() error {
	if s.fault.Load() != nil {
		// A fault is a disagreement someone must look at (it is logged, counted and in
		// the status), not an outage that time will mend: a row planted in the central
		// store, which any holder of its credentials can write, must not take every
		// replica out of the load balancer. The replica's rows stay safe locally.
		return nil
	}
	rows, age := s.Lag()
	if age > s.cfg.MaxLag {
		return fmt.Errorf("audit: central shipping is %d rows and %s behind (audit.central_max_lag %s)",
			rows, age.Round(time.Second), s.cfg.MaxLag)
	}
	return nil
}

// Collectors returns the shipper's Prometheus metrics.
func (s *Shipper) Collectors() []prometheus.Collector {
	labels := prometheus.Labels{"log_id": s.logID}
	counter := func(name, help string, v *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return float64(v.Load()) })
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels}, f)
	}
	return []prometheus.Collector{
		counter("portcullis_audit_central_rows_shipped_total", "Audit rows copied to the central store.", &s.rowsShipped),
		counter("portcullis_audit_central_checkpoints_shipped_total", "Signed checkpoints copied to the central store.", &s.cpsShipped),
		counter("portcullis_audit_central_errors_total", "Shipping passes that failed (PostgreSQL unreachable, or a fault).", &s.errs),
		gauge("portcullis_audit_central_lag_rows", "Rows stored locally and not yet in the central store.",
			func() float64 { r, _ := s.Lag(); return float64(r) }),
		gauge("portcullis_audit_central_lag_seconds", "Age of the oldest row not yet in the central store (0 when caught up).",
			func() float64 { _, a := s.Lag(); return a.Seconds() }),
		gauge("portcullis_audit_central_fault", "1 when shipping stopped because the central store and this replica disagree.",
			func() float64 {
				if s.fault.Load() != nil {
					return 1
				}
				return 0
			}),
	}
}

// StoredSeq returns the newest seq the database holds (the ingester has stored
// every row up to it). A Shipper polls it to ship new rows promptly.
func (l *Log) StoredSeq() int64 { return l.ingested.Load() }

// JournaledSeq returns the newest seq appended (in the journal; SQLite and the central
// store follow). Compared with a Shipper's shipped seq it is the whole way a row still
// has to go; portcullis bench reports it.
func (l *Log) JournaledSeq() int64 { return l.journaled.Load() }
