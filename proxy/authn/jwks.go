package authn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"github.com/portcullis/portcullis/audit/redact"
)

const (
	jwksHTTPTimeout = 10 * time.Second
	jwksMaxBody     = 1 << 20
)

// jwksSource serves keys from a JWKS URL. jwkset keeps the key set and refreshes it in
// the background. Unknown kids go through our own non-blocking limiter: jwkset's
// limiter waits (queueing every request that names an unknown kid, which an attacker can
// trigger at will), while ours refuses at once when a refresh happened too recently.
type jwksSource struct {
	ctx         context.Context
	plain       keyfunc.Keyfunc // lookup only
	refreshing  keyfunc.Keyfunc // lookup, refresh on miss, lookup again
	minInterval time.Duration

	mu          sync.Mutex
	lastRefresh time.Time     // zero: never refreshed on demand
	inflight    chan struct{} // closed when the running on-demand refresh ends
}

func newJWKSSource(ctx context.Context, u string, refresh, minInterval time.Duration, logger *slog.Logger) (*jwksSource, error) {
	client := &http.Client{
		Timeout:   jwksHTTPTimeout,
		Transport: limitBodyTransport{next: http.DefaultTransport, max: jwksMaxBody},
		// A redirect could lead anywhere (including a plain-http or internal address);
		// a JWKS endpoint that moves must be reconfigured.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	store, err := jwkset.NewStorageFromHTTP(u, jwkset.HTTPClientStorageOptions{
		Client:                    client,
		Ctx:                       ctx,
		HTTPTimeout:               jwksHTTPTimeout,
		NoErrorReturnFirstHTTPReq: true, // an IdP outage must not stop the proxy from starting
		RefreshErrorHandler: func(ctx context.Context, err error) {
			logger.Warn("authn: refreshing JWKS failed; keeping the keys already loaded", "url", redact.URL(u), "error", withoutURL(err, u))
		},
		RefreshInterval: refresh,
	})
	if err != nil {
		return nil, fmt.Errorf("authn: jwks %s: %w", redact.URL(u), withoutURL(err, u))
	}
	// Both clients wrap the same storage, so they see the same keys and refreshes.
	urls := func() map[string]jwkset.Storage { return map[string]jwkset.Storage{u: store} }
	plainStore, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{HTTPURLs: urls()})
	if err != nil {
		return nil, fmt.Errorf("authn: jwks client: %w", err)
	}
	refreshStore, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs:          urls(),
		RefreshUnknownKID: rate.NewLimiter(rate.Inf, 1), // gated by allowRefresh instead
	})
	if err != nil {
		return nil, fmt.Errorf("authn: jwks client: %w", err)
	}
	use := []jwkset.USE{jwkset.UseSig, ""} // never a key published for encryption
	plain, err := keyfunc.New(keyfunc.Options{Ctx: ctx, Storage: plainStore, UseWhitelist: use})
	if err != nil {
		return nil, fmt.Errorf("authn: jwks keyfunc: %w", err)
	}
	refreshing, err := keyfunc.New(keyfunc.Options{Ctx: ctx, Storage: refreshStore, UseWhitelist: use})
	if err != nil {
		return nil, fmt.Errorf("authn: jwks keyfunc: %w", err)
	}
	return &jwksSource{ctx: ctx, plain: plain, refreshing: refreshing, minInterval: minInterval}, nil
}

// key returns the JWKS key for the token's kid, refreshing once (rate-limited) on a
// miss. Requests that miss while a refresh is in flight wait for it instead of being
// refused, so a rotation does not fail the burst of requests carrying the new kid.
func (s *jwksSource) key(t *jwt.Token) (any, error) {
	k, err := s.lookup(s.ctx, s.plain, t)
	if !errors.Is(err, errUnknownKey) {
		return k, err
	}
	ch, leader := s.begin()
	switch {
	case ch == nil:
		// Rate-limited. A refresh may have finished since our lookup: look once more.
		if k, err := s.lookup(s.ctx, s.plain, t); err == nil {
			return k, nil
		}
		return nil, fmt.Errorf("%w (refresh rate-limited)", errUnknownKey)
	case !leader:
		select {
		case <-ch:
		case <-time.After(jwksHTTPTimeout):
		}
		return s.lookup(s.ctx, s.plain, t)
	default:
		defer s.end(ch)
		ctx, cancel := context.WithTimeout(s.ctx, jwksHTTPTimeout)
		defer cancel()
		return s.lookup(ctx, s.refreshing, t)
	}
}

func (s *jwksSource) lookup(ctx context.Context, kf keyfunc.Keyfunc, t *jwt.Token) (any, error) {
	k, err := kf.KeyfuncCtx(ctx)(t)
	switch {
	case err == nil:
		return k, nil
	case errors.Is(err, jwkset.ErrKeyNotFound):
		return nil, errUnknownKey
	default:
		// The JWK exists but may not verify this token (its alg or use differ).
		return nil, fmt.Errorf("%w: %w", errKeyMismatch, err)
	}
}

// begin returns the channel of the refresh to wait for, and whether the caller must run
// it. A nil channel means no refresh is allowed now.
func (s *jwksSource) begin() (ch chan struct{}, leader bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inflight != nil {
		return s.inflight, false
	}
	now := time.Now()
	if !s.lastRefresh.IsZero() && now.Sub(s.lastRefresh) < s.minInterval {
		return nil, false
	}
	s.lastRefresh = now
	s.inflight = make(chan struct{})
	return s.inflight, true
}

func (s *jwksSource) end(ch chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(ch)
	s.inflight = nil
}

// limitBodyTransport caps response bodies: jwkset decodes the whole body, and a
// compromised or broken endpoint must not be able to exhaust memory.
type limitBodyTransport struct {
	next http.RoundTripper
	max  int64
}

var _ http.RoundTripper = limitBodyTransport{}

func (t limitBodyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.LimitReader(resp.Body, t.max), resp.Body}
	return resp, nil
}

// withoutURL is err with every copy of the JWKS URL u (which may carry a token in its
// query or user part) replaced by its redacted form: the HTTP client's errors repeat
// the URL, and the JWKS library wraps them in text.
func withoutURL(err error, u string) error {
	if err == nil {
		return err
	}
	forms := []string{u}
	if p, perr := url.Parse(u); perr == nil {
		forms = append(forms, p.Redacted()) // how net/http's errors print it
	}
	msg := err.Error()
	for _, f := range forms {
		msg = strings.ReplaceAll(msg, f, redact.URL(u))
	}
	if msg == err.Error() {
		return err
	}
	return errors.New(msg)
}
