package audit

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis/portcullis/audit/redact"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrUnavailable wraps every error from Append: the row is not known to be durable,
// so the caller must not act (the proxy answers 503).
var ErrUnavailable = errors.New("audit: store unavailable")

// ErrClosed is returned (wrapped in ErrUnavailable) after Close.
var ErrClosed = errors.New("audit: log closed")

// tailVerifyLimit bounds the rows Open re-verifies after the newest checkpoint;
// beyond it only the last link is checked (a full check is `audit verify`).
const tailVerifyLimit = 200_000

// Log is the audit trail writer. One goroutine group-commits queued rows to the
// journal; another (the ingester) owns the SQLite write connection and stores the
// journaled rows in bulk; reads use a separate pool.
type Log struct {
	cfg      Config
	logger   *slog.Logger
	key      ed25519.PrivateKey
	logID    string // names this log in its signed checkpoints (audit_meta log_id)
	redactor *redact.Redactor
	hmacID   string // HMACKeyID of the redactor's key
	wdb      *sql.DB
	reader   *Reader
	lock     *os.File // exclusive lock on Path + ".lock" while open

	queue   chan *pending
	mu      sync.RWMutex // guards closed against in-flight enqueues
	closed  bool
	stop    chan struct{}
	stopped chan struct{}

	writer   // the committing state: callers and the writer goroutine, under wmu
	ingester // the ingester's queue and the state its goroutine owns

	lost, appended, batches, checkpoints, witnessErrors atomic.Uint64
	appendLatency, batchSize                            prometheus.Histogram
}

// writer is the Log's committing state: the chain as far as the journal holds it.
// Callers and the writer goroutine share it (commit.go).
type writer struct {
	// The chain as far as the journal holds it, and the rest of the committing state,
	// guarded by wmu: held by the writer goroutine for each batch it forms and
	// commits, or by a caller committing its own row inline (see tryInline).
	wmu        sync.Mutex
	seq        int64
	head       []byte
	lastBatch  int        // rows in the previous batch: the next one's linger target
	deferred   []*pending // AppendAsync rows waiting, at most asyncLinger, to join a commit
	asyncTimer *time.Timer
	rows       []row
	hs         *hasher
	j          *journal
	rotateAt   int64        // journal size to empty or rotate it at (journalRotateBytes; tests lower it)
	journaled  atomic.Int64 // seq of the newest row in the journal, for readers of other goroutines
	appending  atomic.Int32 // callers in Append
	unclaimed  atomic.Int32 // rows sent to the queue and not yet taken in hand by the writer
}

// ingester is the Log's storing state: the rows handed from the journal to SQLite, and
// what the ingester goroutine owns after Open (ingest.go, checkpoint.go, lookup.go).
type ingester struct {
	// Rows in the journal and not yet in SQLite, in order; the ingester takes them.
	imu      sync.Mutex
	ipending []row
	ikick    chan struct{} // cap 1: rows are waiting
	iprog    chan struct{} // cap 1: the ingester made progress (or failed)
	istop    chan struct{}
	istopped chan struct{}
	ingested atomic.Int64                // rows up to this seq are in SQLite
	ifail    atomic.Pointer[error]       // set while storing rows in SQLite fails (database full...)
	stored   atomic.Pointer[func([]row)] // a Shipper's feed: given each batch once it is stored

	// Owned by the ingester goroutine after Open: the chain as far as SQLite holds it.
	iseq          int64
	ihead         []byte
	lastCP        int64
	lastCPTime    time.Time
	lookupThrough int64                      // rows up to this seq are in audit_lookup
	lookupWarned  time.Time                  // last lookup-index failure logged (at most one a minute)
	wfile         *witnessFile               // Config.WitnessPath
	witnessWarned time.Time                  // last witness-file failure logged
	failWarned    time.Time                  // last storing failure logged
	inserts       [insertChunk + 1]*sql.Stmt // by rows per statement, prepared lazily
	args          []any
}

// Open opens (creating if needed) the audit database, resumes the chain after
// re-verifying the rows since the newest checkpoint, and starts the writer.
// cfg should have had SetDefaults applied.
func Open(ctx context.Context, cfg Config, logger *slog.Logger) (*Log, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o700); err != nil {
		return nil, fmt.Errorf("audit: creating dir for %s: %w", cfg.Path, err)
	}
	key, err := loadOrCreateSigningKey(cfg.SigningKeyPath, logger)
	if err != nil {
		return nil, err
	}
	hkey, err := loadOrCreateHMACKey(cfg.HMACKeyPath, logger)
	if err != nil {
		return nil, err
	}
	lock, err := lockFile(cfg.Path + ".lock")
	if err != nil {
		return nil, err
	}
	var maxPages int64
	if cfg.MaxSizeBytes > 0 {
		maxPages = cfg.MaxSizeBytes / pageSize
	}
	wdb, err := openDB(cfg.Path, false, cfg.Synchronous, maxPages)
	if err != nil {
		lock.Close()
		return nil, err
	}
	// One connection: the writer goroutine is the only writer of this file.
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxLifetime(0)
	wdb.SetConnMaxIdleTime(0)
	l := &Log{
		cfg: cfg, logger: logger, key: key, redactor: redact.New(hkey), hmacID: HMACKeyID(hkey), wdb: wdb, lock: lock,
		queue: make(chan *pending, cfg.QueueSize), stop: make(chan struct{}),
		stopped: make(chan struct{}),
		writer: writer{hs: newHasher(), rotateAt: journalRotateBytes, rows: make([]row, cfg.MaxBatch),
			asyncTimer: time.NewTimer(time.Hour)},
		ingester: ingester{ikick: make(chan struct{}, 1), iprog: make(chan struct{}, 1),
			istop: make(chan struct{}), istopped: make(chan struct{}), args: make([]any, 0, 26*insertChunk)},
		appendLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "portcullis_audit_append_seconds", Help: "Time from Append to its row's commit.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "portcullis_audit_batch_rows", Help: "Rows per group-commit transaction.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11),
		}),
	}
	l.asyncTimer.Stop()
	// Opened under the lock: this log is the file's only writer.
	wf, warn, err := openWitnessFile(cfg.WitnessPath, cfg.CheckpointInterval)
	if err != nil {
		wdb.Close()
		lock.Close()
		return nil, err
	}
	if warn != "" {
		logger.Warn("audit: " + warn)
	}
	l.wfile = wf
	if err := l.start(ctx); err != nil {
		if l.j != nil {
			l.j.close()
		}
		wf.close()
		wdb.Close()
		lock.Close()
		return nil, err
	}
	go l.run()
	go l.ingestLoop()
	return l, nil
}

func (l *Log) start(ctx context.Context) error {
	if err := l.wdb.PingContext(ctx); err != nil {
		return fmt.Errorf("audit: opening %s: %w", l.cfg.Path, err)
	}
	if err := migrate(ctx, l.wdb); err != nil {
		return err
	}
	seq, head, err := loadHead(ctx, l.wdb)
	if err != nil {
		return err
	}
	l.seq, l.head = seq, head
	if l.logID, err = readLogID(ctx, l.wdb); err != nil {
		return err
	}
	if err := l.wdb.QueryRowContext(ctx, `SELECT CAST(value AS INTEGER) FROM audit_meta WHERE key = 'lookup_through'`).Scan(&l.lookupThrough); err != nil {
		return fmt.Errorf("audit: reading lookup state: %w", err)
	}
	if l.lookupThrough > seq {
		// Past the last row: only an edit does that, and it would keep every new row out
		// of the lookup index. Index from the last row on (verify reports the edit).
		l.logger.Warn("audit: lookup index claims rows that do not exist; indexing from the last row", "lookup_through", l.lookupThrough, "last_seq", seq)
		l.lookupThrough = seq
		if err := setLookupThrough(ctx, l.wdb, seq); err != nil {
			return fmt.Errorf("audit: resetting lookup state: %w", err)
		}
	}
	if err := l.checkTail(ctx); err != nil {
		return err
	}
	if err := l.replayJournal(); err != nil {
		return err
	}
	l.iseq, l.ihead = l.seq, l.head
	l.ingested.Store(l.seq)
	l.journaled.Store(l.seq)
	if l.seq > l.lastCP {
		// A crash left rows no checkpoint covers; they were just re-verified.
		if err := l.writeCheckpoint(ctx, CheckpointOpen); err != nil {
			return err
		}
	}
	l.lastCPTime = time.Now()
	// Every row is in SQLite now: start the journal afresh.
	if err := l.j.dropOld(); err != nil {
		return err
	}
	if err := l.j.reset(); err != nil {
		return err
	}
	rd, err := OpenReader(ctx, l.cfg.Path)
	if err != nil {
		return err
	}
	l.reader = rd
	// On the witness's logger and file: the log id it names is what witness lines are
	// checked against.
	keyID := KeyID(l.key.Public().(ed25519.PublicKey))
	l.witness().Info("audit: log open", "path", l.cfg.Path, "log_id", l.logID, "seq", l.seq, "mode", l.cfg.Mode,
		"synchronous", l.cfg.Synchronous, "key_id", keyID, "witness_path", l.cfg.WitnessPath)
	if err := l.wfile.opened(time.Now(), l.cfg.Path, l.logID, keyID, l.seq); err != nil {
		l.witnessFailed(err)
	}
	return nil
}

// Redactor returns the redactor keyed with this log's HMAC key.
func (l *Log) Redactor() *redact.Redactor { return l.redactor }

// RedactionKeyID names the redactor's key (HMACKeyID): replicas whose ids differ mark
// one secret differently, so their approval hashes of a call carrying it differ too.
func (l *Log) RedactionKeyID() string { return l.hmacID }

// Healthy returns why the log cannot take rows now (nil when it can): it is closed,
// or the database refuses rows (full), in which case Append fails until that clears.
// serve reports it on /readyz.
func (l *Log) Healthy() error {
	l.mu.RLock()
	closed := l.closed
	l.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	return l.storeFailure()
}

// Lost counts rows that could not be stored (best_effort Appends and AppendAsync).
func (l *Log) Lost() uint64 { return l.lost.Load() }

// Close stops accepting rows, commits what is queued, signs a final checkpoint and
// closes the database.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	close(l.stop)
	<-l.stopped
	close(l.istop)
	<-l.istopped
	var errs []error
	if left := l.seq - l.ingested.Load(); left > 0 {
		errs = append(errs, fmt.Errorf("audit: %d acknowledged rows are only in the journal %s (%v); they are stored at the next start",
			left, l.cfg.Path+JournalSuffix, l.storeFailure()))
	} else {
		errs = append(errs, l.j.dropOld(), l.j.reset())
	}
	errs = append(errs, l.j.close(), l.wfile.close())
	for _, st := range l.inserts {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	if l.reader != nil {
		errs = append(errs, l.reader.Close())
	}
	if err := l.wdb.Close(); err != nil {
		errs = append(errs, fmt.Errorf("audit: closing %s: %w", l.cfg.Path, err))
	}
	errs = append(errs, l.lock.Close())
	return errors.Join(errs...)
}

// Query returns one page of rows matching f, newest first. It first waits (briefly)
// until SQLite holds every row journaled so far.
func (l *Log) Query(ctx context.Context, f Filter) (Page, error) {
	l.waitStored(ctx)
	return l.reader.Query(ctx, f)
}

// Export streams every row matching f, oldest first, as "jsonl" or "csv", after
// waiting as Query does.
func (l *Log) Export(ctx context.Context, w io.Writer, format string, f Filter) error {
	l.waitStored(ctx)
	return l.reader.Export(ctx, w, format, f)
}

// waitStored waits, at most a second, until every row journaled when it was called
// is in SQLite, so a reader in this process sees every acknowledged row. It gives up
// at once while rows cannot be stored (the reader then sees what SQLite holds).
func (l *Log) waitStored(ctx context.Context) {
	target := l.journaled.Load()
	if l.ingested.Load() >= target {
		return
	}
	l.kickIngester()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	for l.ingested.Load() < target && l.storeFailure() == nil {
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Microsecond):
		}
	}
}

// Collectors returns the log's Prometheus metrics for registration.
func (l *Log) Collectors() []prometheus.Collector {
	counter := func(name, help string, v *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(v.Load()) })
	}
	return []prometheus.Collector{
		counter("portcullis_audit_rows_appended_total", "Audit rows committed.", &l.appended),
		counter("portcullis_audit_batches_total", "Group-commit transactions.", &l.batches),
		counter("portcullis_audit_rows_lost_total", "Audit rows that could not be stored.", &l.lost),
		counter("portcullis_audit_checkpoints_total", "Signed checkpoints written.", &l.checkpoints),
		counter("portcullis_audit_witness_errors_total", "Checkpoint lines the witness file could not take.", &l.witnessErrors),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "portcullis_audit_queue_depth",
			Help: "Rows waiting for the writer."}, func() float64 { return float64(len(l.queue)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "portcullis_audit_store_backlog",
			Help: "Rows acknowledged (in the journal) and not yet stored in the database."}, func() float64 { return float64(l.backlog()) }),
		l.appendLatency, l.batchSize,
	}
}
