package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/portcullis/portcullis/proxy/apierror"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	decisions    *prometheus.CounterVec
	known        map[[2]string]prometheus.Counter // resolved once: no label hashing per request
	knownClass   map[[2]string]prometheus.Counter
	knownLatency map[string]prometheus.Observer
	upstream     *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	authFailures prometheus.Counter
	// authFailureRows and authFailuresFolded: every 401 is in authFailures; it has a row
	// of its own (rows) or is counted into another failure's row (folded).
	authFailureRows    prometheus.Counter
	authFailuresFolded prometheus.Counter
	auditFailures      prometheus.Counter
	preAuthRejected    prometheus.Counter
	panics             prometheus.Counter
	shadowDiffs        prometheus.Counter
	refusals           *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, policy Decider) (*metrics, error) {
	m := &metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portcullis_decisions_total",
			Help: "Policy decisions by surface and action."}, []string{"surface", "action"}),
		upstream: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portcullis_upstream_responses_total",
			Help: "Forwarded calls by surface and outcome class (2xx..5xx, timeout, refused, paced)."}, []string{"surface", "class"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "portcullis_request_duration_seconds",
			Help: "Time from admission to the upstream's response head.", Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 14)}, []string{"surface"}),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "portcullis_auth_failures_total", Help: "Requests refused with 401."}),
		authFailureRows: prometheus.NewCounter(prometheus.CounterOpts{Name: "portcullis_auth_failure_rows_total",
			Help: "auth_failure audit rows written (one per client address and reason per interval, with a count)."}),
		authFailuresFolded: prometheus.NewCounter(prometheus.CounterOpts{Name: "portcullis_auth_failures_aggregated_total",
			Help: "Requests refused with 401 that were counted into an aggregated auth_failure row instead of a row of their own."}),
		auditFailures:   prometheus.NewCounter(prometheus.CounterOpts{Name: "portcullis_audit_failures_total", Help: "Decision rows the audit trail could not take."}),
		preAuthRejected: prometheus.NewCounter(prometheus.CounterOpts{Name: "portcullis_preauth_rejected_total", Help: "Requests refused by the per-IP pre-auth limiter."}),
		panics:          prometheus.NewCounter(prometheus.CounterOpts{Name: "portcullis_panics_total", Help: "Handler panics contained."}),
		shadowDiffs:     prometheus.NewCounter(prometheus.CounterOpts{Name: "portcullis_shadow_differences_total", Help: "Calls the shadow policy would have decided differently."}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portcullis_http_errors_total",
			Help: "Error responses by code (body_too_large, invalid_json, unauthenticated, ...), including those refused before admission."}, []string{"code"}),
	}
	m.known = map[[2]string]prometheus.Counter{}
	m.knownClass = map[[2]string]prometheus.Counter{}
	m.knownLatency = map[string]prometheus.Observer{}
	for _, surface := range []string{"mcp", "rest"} {
		for _, a := range []string{"allow", "deny", "rate_limit", "require_approval"} {
			m.known[[2]string{surface, a}] = m.decisions.WithLabelValues(surface, a)
		}
		for _, c := range []string{"2xx", "3xx", "4xx", "5xx"} {
			m.knownClass[[2]string{surface, c}] = m.upstream.WithLabelValues(surface, c)
		}
		m.knownLatency[surface] = m.latency.WithLabelValues(surface)
	}
	for _, c := range []prometheus.Collector{m.decisions, m.upstream, m.latency, m.authFailures, m.authFailureRows, m.authFailuresFolded, m.auditFailures, m.preAuthRejected, m.panics, m.shadowDiffs, m.refusals, policyCollector{policy}} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("proxy: registering metrics: %w", err)
		}
	}
	return m, nil
}

// refused counts an error response by its code. Codes are the gateway's own fixed
// strings, so the label set stays small.
func (m *metrics) refused(code string) { m.refusals.WithLabelValues(code).Inc() }

func (m *metrics) decision(surface, action string) prometheus.Counter {
	if c, ok := m.known[[2]string{surface, action}]; ok {
		return c
	}
	return m.decisions.WithLabelValues(surface, action)
}

var statusClasses = [...]string{"0xx", "1xx", "2xx", "3xx", "4xx", "5xx"}

// outcome counts a forwarded call by status class (or error class) and observes its
// latency.
func (m *metrics) outcome(surface string, status int, errClass string, latency time.Duration) {
	class := errClass
	if class == "" {
		if i := status / 100; i >= 0 && i < len(statusClasses) {
			class = statusClasses[i]
		} else {
			class = "other"
		}
	}
	if c, ok := m.knownClass[[2]string{surface, class}]; ok {
		c.Inc()
	} else {
		m.upstream.WithLabelValues(surface, class).Inc()
	}
	if o, ok := m.knownLatency[surface]; ok {
		o.Observe(latency.Seconds())
	} else {
		m.latency.WithLabelValues(surface).Observe(latency.Seconds())
	}
}

var (
	policyRevisionDesc = prometheus.NewDesc("portcullis_policy_revision_info",
		"The policy revision (content hash) deciding now (policy=live) and the shadow candidate (policy=shadow); always 1.",
		[]string{"policy", "revision"}, nil)
	policyReloadFailuresDesc = prometheus.NewDesc("portcullis_policy_reload_failures_total",
		"Policy reloads refused (the policy did not load or compile); the last good policy keeps serving.",
		[]string{"policy"}, nil)
)

// policyCollector reads the policy's state when /metrics is scraped, so a reload costs
// the request path nothing.
type policyCollector struct{ p Decider }

func (pc policyCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- policyRevisionDesc
	ch <- policyReloadFailuresDesc
}

func (pc policyCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(policyRevisionDesc, prometheus.GaugeValue, 1, "live", pc.p.Revision())
	if sr, ok := pc.p.(ShadowReviser); ok {
		if rev := sr.ShadowRevision(); rev != "" {
			ch <- prometheus.MustNewConstMetric(policyRevisionDesc, prometheus.GaugeValue, 1, "shadow", rev)
		}
	}
	if rc, ok := pc.p.(ReloadCounter); ok {
		live, shadow := rc.ReloadFailures()
		ch <- prometheus.MustNewConstMetric(policyReloadFailuresDesc, prometheus.CounterValue, float64(live), "live")
		ch <- prometheus.MustNewConstMetric(policyReloadFailuresDesc, prometheus.CounterValue, float64(shadow), "shadow")
	}
}

// metricsForRole admits to /metrics on the proxy listener only a caller with the
// metrics role (metrics.role); authenticate has run.
func (s *Server) metricsForRole(c *fiber.Ctx) error {
	if caller := callerOf(c); caller == nil || !caller.HasRole(s.cfg.Metrics.Role) {
		return &apierror.Error{Status: fiber.StatusForbidden, Code: "forbidden",
			Message: "reading /metrics needs the " + s.cfg.Metrics.Role + " role (or a scrape of metrics.listen)"}
	}
	return c.Next()
}

// ServeMetrics serves GET /metrics on ln without authentication (metrics.listen, for a
// Prometheus on a private network) until Shutdown. Any other path is a 404.
func (s *Server) ServeMetrics(ln net.Listener) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.metricsHandler)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: s.cfg.ReadTimeout, ReadTimeout: s.cfg.ReadTimeout,
		WriteTimeout: s.cfg.WriteTimeout, IdleTimeout: s.cfg.IdleTimeout, MaxHeaderBytes: 16 << 10}
	if !s.metricsSrv.CompareAndSwap(nil, srv) {
		return errors.New("proxy: ServeMetrics called twice")
	}
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
