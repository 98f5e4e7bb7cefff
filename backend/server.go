package backend

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis/portcullis/audit/redact"
	"github.com/portcullis/portcullis/backend/catalog"
	"github.com/portcullis/portcullis/backend/crypto"
	"github.com/portcullis/portcullis/backend/ssrf"
	"github.com/portcullis/portcullis/backend/store"
)

// Server is the integrations backend.
type Server struct {
	cfg      Config
	logger   *slog.Logger
	catalog  *catalog.Catalog
	store    *store.Store
	keys     *crypto.Keyring
	verifier *verifier
	guard    *ssrf.Guard
	keyCache *keyCache
	mcp      *mcp.Server
	handler  http.Handler
	http     *http.Server

	closeOnce sync.Once
	closeErr  error
}

// New opens the store (migrating it), loads the catalog and keys, and builds the
// handler. cfg gets defaults applied and is validated.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (*Server, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cat, err := catalog.Load(cfg.CatalogPath)
	if err != nil {
		return nil, fmt.Errorf("backend: %w", err)
	}
	kr, err := loadKeyring(&cfg, logger)
	if err != nil {
		return nil, err
	}
	st, err := cfg.openStore(ctx, logger)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, logger: logger, catalog: cat, store: st, keys: kr,
		verifier: newVerifier(cfg.Identity), guard: &ssrf.Guard{Timeout: cfg.TestConnTimeout}, keyCache: newKeyCache()}
	if s.verifier == nil {
		logger.Info("backend: no identity key configured; only service keys authenticate")
	}
	s.mcp = s.newMCPServer()
	s.handler = s.routes()
	// Built here, not in Serve, so Shutdown from another goroutine never races Serve.
	s.http = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// Handler serves every route: /v1/..., /mcp, /ai/llm, /integrations/credentials...,
// /healthz.
func (s *Server) Handler() http.Handler { return s.handler }

// Serve serves on ln until Shutdown or Close.
func (s *Server) Serve(ln net.Listener) error {
	err := s.http.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting requests, waits for in-flight ones, and closes the store.
func (s *Server) Shutdown(ctx context.Context) error {
	var err error
	if s.http != nil {
		err = s.http.Shutdown(ctx)
	}
	return errors.Join(err, s.closeStore())
}

// closeStore closes the database once, so Shutdown followed by Close is safe.
func (s *Server) closeStore() error {
	s.closeOnce.Do(func() { s.closeErr = s.store.Close() })
	return s.closeErr
}

// Close closes the store (and the listener if serving) immediately.
func (s *Server) Close() error {
	var err error
	if s.http != nil {
		err = s.http.Close()
	}
	return errors.Join(err, s.closeStore())
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.handleHealth)
	mux.HandleFunc("GET /v1/providers", s.authed(s.handleProviders))
	mux.HandleFunc("GET /v1/providers/{key}", s.authed(s.handleProvider))
	mux.HandleFunc("GET /v1/integrations", s.authed(s.handleList))
	mux.HandleFunc("POST /v1/integrations", s.authed(s.handleCreate))
	mux.HandleFunc("GET /v1/integrations/{slug}", s.authed(s.handleGet))
	mux.HandleFunc("PUT /v1/integrations/{slug}", s.authed(s.handleUpdate))
	mux.HandleFunc("DELETE /v1/integrations/{slug}", s.authed(s.handleDelete))
	mux.HandleFunc("GET /v1/integrations/{slug}/models", s.authed(s.handleListModels))
	mux.HandleFunc("PUT /v1/integrations/{slug}/models", s.authed(s.handlePutModels))
	mux.HandleFunc("DELETE /v1/integrations/{slug}/models", s.authed(s.handleDeleteModels))
	mux.HandleFunc("GET /v1/integrations/{slug}/workspaces", s.authed(s.handleListWorkspaces))
	mux.HandleFunc("PUT /v1/integrations/{slug}/workspaces", s.authed(s.handlePutWorkspaces))
	mux.HandleFunc("GET /v1/integrations/{slug}/scope", s.authed(s.handleScope))
	mux.HandleFunc("POST /v1/integrations/{slug}/test", s.authed(s.handleTest))
	s.seedRoutes(mux)
	mux.Handle("/mcp", s.authed(s.mcpHandler().ServeHTTP))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if allow := allowedMethods(mux, r); len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			s.writeErr(w, r, &apiError{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed",
				Message: r.Method + " is not allowed on this route; use " + strings.Join(allow, ", ")})
			return
		}
		s.writeErr(w, r, &apiError{Status: http.StatusNotFound, Code: "not_found", Message: "no such route"})
	})
	return s.recoverAndLog(mux)
}

// allowedMethods lists the methods mux serves r's path with (the catch-all aside), so a
// known route asked with the wrong method is a 405 naming them, not a 404.
func allowedMethods(mux *http.ServeMux, r *http.Request) []string {
	var out []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		if m == r.Method {
			continue
		}
		probe := *r
		probe.Method = m
		if _, pattern := mux.Handler(&probe); pattern != "/" && pattern != "" {
			out = append(out, m)
		}
	}
	return out
}

var requestIDRe = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush keeps streaming (MCP over SSE) working through the wrapper.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type ridKey struct{}

// logInfo lets inner middleware report the caller's org to the access log line.
type logInfo struct{ org string }

type logInfoKey struct{}

// recoverAndLog assigns a request id, turns a panic into a 500 (the process stays up)
// and writes one access log line. It never logs bodies or query strings.
func (s *Server) recoverAndLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rid := r.Header.Get("X-Request-Id")
		if !requestIDRe.MatchString(rid) {
			var b [8]byte
			_, _ = rand.Read(b[:])
			rid = hex.EncodeToString(b[:])
		}
		w.Header().Set("X-Request-Id", rid)
		sw := &statusWriter{ResponseWriter: w}
		li := &logInfo{}
		ctx := context.WithValue(context.WithValue(r.Context(), ridKey{}, rid), logInfoKey{}, li)
		r = r.WithContext(ctx)
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.logger.Error("backend: panic", "panic", fmt.Sprint(p), "stack", string(debug.Stack()), "request_id", rid)
				if sw.status == 0 {
					s.writeErr(sw, r, errInternal())
				}
			}
			s.logger.Info("backend: request", "method", r.Method, "path", logRedactor.String(r.URL.Path), "status", sw.status,
				"duration_ms", time.Since(start).Milliseconds(), "request_id", rid, "org", li.org)
		}()
		next.ServeHTTP(sw, r)
	})
}

// logRedactor scrubs credential-looking parts of what the log repeats from a request
// (a key sent as a path segment). Its key is per process: marks correlate within one
// run's log, which is all a log line needs.
var logRedactor = func() *redact.Redactor {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return redact.New(k)
}()

func requestID(ctx context.Context) string {
	s, _ := ctx.Value(ridKey{}).(string)
	return s
}

// authed requires a caller and puts it in the request context (the MCP SDK passes
// that context on to tool handlers in stateless mode).
func (s *Server) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := s.authenticate(r.Context(), r.Header)
		if err != nil {
			s.logger.Info("backend: authentication failed", "reason", err.Error(), "path", logRedactor.String(r.URL.Path), "request_id", requestID(r.Context()))
			w.Header().Set("WWW-Authenticate", `Portkey-Api-Key realm="portcullis-backend"`)
			s.writeErr(w, r, &apiError{Status: http.StatusUnauthorized, Code: "unauthorized",
				Message: "authentication required: send a valid x-portkey-api-key or the proxy's identity assertion"})
			return
		}
		c.RequestID = requestID(r.Context())
		if li, ok := r.Context().Value(logInfoKey{}).(*logInfo); ok {
			li.org = c.Org
		}
		r = r.WithContext(withCaller(r.Context(), c))
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		h(w, r)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) writeErr(w http.ResponseWriter, r *http.Request, err error) {
	e := asAPIError(err)
	if e.Status >= 500 && !errors.As(err, new(*apiError)) {
		s.logger.Error("backend: request failed", "path", logRedactor.String(r.URL.Path), "request_id", requestID(r.Context()), "err", err)
	}
	ec := *e // errors may be shared values
	ec.RequestID = requestID(r.Context())
	writeJSON(w, e.Status, map[string]any{"error": &ec})
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "unavailable"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
}
