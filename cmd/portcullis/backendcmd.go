package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/portcullis/portcullis/backend"
)

// runBackend implements `portcullis backend [serve|keys create|rewrap]`.
func runBackend(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	sub := "serve"
	if len(args) > 0 && isHelp(args[0]) {
		sub = "help"
	} else if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		sub, args = args[0], args[1:]
	}
	switch sub {
	case "serve":
		return backendServe(ctx, args, stdout, stderr)
	case "keys":
		if len(args) == 0 || args[0] != "create" {
			keysUsage := groupUsage("backend keys", [][2]string{{"create", "create a service key for an org (shown once, stored hashed)"}}, "")
			if len(args) > 0 && isHelp(args[0]) {
				fmt.Fprint(stdout, keysUsage)
				return 0
			}
			fmt.Fprint(stderr, keysUsage)
			return 2
		}
		return backendKeysCreate(ctx, args[1:], stdout, stderr)
	case "rewrap":
		return backendRewrap(ctx, args, stdout, stderr)
	case "help", "-h", "--help":
		backendUsage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "portcullis backend: unknown subcommand %q\n", sub)
		backendUsage(stderr)
		return 2
	}
}

func backendUsage(w io.Writer) {
	fmt.Fprint(w, groupUsage("backend", [][2]string{
		{"serve", "run the bundled integrations backend alone (the default: 'portcullis backend' is 'backend serve')"},
		{"keys create", "create a service key (x-portkey-api-key) for an org"},
		{"rewrap", "re-wrap every data key with the primary KEK, after a KEK rotation"},
	}, backendKEKNote))
}

const backendKEKNote = `The primary KEK comes from PORTCULLIS_KEK (base64 of 32 bytes) or <data-dir>/kek.key.
To rotate: set the new key as PORTCULLIS_KEK, pass the old one with --previous-kek
(or PORTCULLIS_PREVIOUS_KEKS, comma-separated) and run rewrap.`

var backendAbout = map[string]string{
	"serve": `Run the bundled integrations backend alone. It trusts the identity assertions of a
proxy sharing its data dir (<data-dir>/identity.secret) and its own service keys.
` + backendKEKNote,
	"keys create": `Create a service key for an org. It is printed once, stored only as a hash, and sent
as the x-portkey-api-key header.`,
	"rewrap": `Re-wrap every stored data key with the primary KEK, so the previous KEKs can be
retired. ` + backendKEKNote,
}

type backendMultiFlag []string

func (m *backendMultiFlag) String() string     { return strings.Join(*m, ",") }
func (m *backendMultiFlag) Set(v string) error { *m = append(*m, v); return nil }

func backendDataDir() string {
	if d := os.Getenv("PORTCULLIS_DATA_DIR"); d != "" {
		return d
	}
	return "./data"
}

func backendFlags(name string, stderr io.Writer) (*flag.FlagSet, *backend.Config, *backendMultiFlag) {
	fs := commandFlags("backend "+name, "[flags]", backendAbout[name], stderr)
	cfg := &backend.Config{}
	prev := &backendMultiFlag{}
	fs.StringVar(&cfg.DataDir, "data-dir", backendDataDir(), "data `DIR` (env PORTCULLIS_DATA_DIR)")
	fs.StringVar(&cfg.DBPath, "db", "", "SQLite database `FILE` (default <data-dir>/backend.db)")
	// Not the flag's default: -h prints defaults, and the URL may hold a password.
	fs.StringVar(&cfg.DatabaseURL, "database-url", "",
		"postgres:// `URL` to store integrations in PostgreSQL instead of SQLite (env PORTCULLIS_BACKEND_DATABASE_URL)")
	fs.Var(prev, "previous-kek", "an older KEK (`BASE64`) still allowed to unwrap; repeatable (env PORTCULLIS_PREVIOUS_KEKS, comma-separated)")
	return fs, cfg, prev
}

func backendPreviousKEKs(flagged backendMultiFlag) []string {
	out := []string(flagged)
	if env := os.Getenv("PORTCULLIS_PREVIOUS_KEKS"); env != "" {
		for _, k := range strings.Split(env, ",") {
			if k = strings.TrimSpace(k); k != "" {
				out = append(out, k)
			}
		}
	}
	return out
}

func backendLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewJSONHandler(w, nil)) }

func backendServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, cfg, prev := backendFlags("serve", stderr)
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:8081", "listen `HOST:PORT`")
	fs.StringVar(&cfg.CatalogPath, "catalog", "", "provider catalog YAML (default: embedded)")
	fs.IntVar(&cfg.MaxPerProvider, "max-per-provider", 50, "integrations per provider per org")
	if code, ok := parseFlagsOnly(fs, args); !ok {
		return code
	}
	if cfg.DatabaseURL == "" {
		cfg.DatabaseURL = os.Getenv("PORTCULLIS_BACKEND_DATABASE_URL")
	}
	// Long-running: repeated WARN and ERROR lines are limited as serve's are.
	h, closeLog := newRepeatLimit(slog.NewJSONHandler(stderr, nil), defaultLogRepeatInterval)
	defer closeLog()
	logger := slog.New(h)
	cfg.PreviousKEKs = backendPreviousKEKs(*prev)
	// Alone, the backend trusts assertions from a proxy sharing its data dir.
	secret, err := backend.LoadIdentitySecret(filepath.Join(cfg.DataDir, "identity.secret"))
	if err != nil {
		fmt.Fprintf(stderr, "portcullis backend: %v\n", err)
		return 1
	}
	cfg.Identity.Secret = secret
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "portcullis backend: invalid configuration:\n%v\n", err)
		return 2
	}
	srv, err := backend.New(ctx, *cfg, logger)
	if err != nil {
		fmt.Fprintf(stderr, "portcullis backend: %v\n", err)
		return 1
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		_ = srv.Close()
		fmt.Fprintf(stderr, "portcullis backend: listening on %s: %v\n", cfg.Listen, err)
		return 1
	}
	fmt.Fprintf(stdout, "portcullis backend listening on http://%s (data dir %s)\n", ln.Addr(), cfg.DataDir)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		_ = srv.Close()
		if err != nil {
			fmt.Fprintf(stderr, "portcullis backend: %v\n", err)
			return 1
		}
		return 0
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(stderr, "portcullis backend: shutdown: %v\n", err)
		return 1
	}
	return 0
}

func backendKeysCreate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, cfg, _ := backendFlags("keys create", stderr)
	org := fs.String("org", "", "org the key acts for (required)")
	name := fs.String("name", "", "label for the key")
	if code, ok := parseFlagsOnly(fs, args); !ok {
		return code
	}
	if cfg.DatabaseURL == "" {
		cfg.DatabaseURL = os.Getenv("PORTCULLIS_BACKEND_DATABASE_URL")
	}
	if *org == "" {
		fmt.Fprintln(stderr, "portcullis backend keys create: --org is required")
		return 2
	}
	key, err := backend.CreateServiceKey(ctx, *cfg, *org, *name, backendLogger(stderr))
	if err != nil {
		fmt.Fprintf(stderr, "portcullis backend keys create: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s\n", key)
	fmt.Fprintln(stderr, "This key is shown once and stored only as a hash. Send it as x-portkey-api-key.")
	return 0
}

func backendRewrap(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, cfg, prev := backendFlags("rewrap", stderr)
	if code, ok := parseFlagsOnly(fs, args); !ok {
		return code
	}
	if cfg.DatabaseURL == "" {
		cfg.DatabaseURL = os.Getenv("PORTCULLIS_BACKEND_DATABASE_URL")
	}
	cfg.PreviousKEKs = backendPreviousKEKs(*prev)
	n, err := backend.Rewrap(ctx, *cfg, backendLogger(stderr))
	if err != nil {
		fmt.Fprintf(stderr, "portcullis backend rewrap: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "re-wrapped %d data keys with the primary KEK\n", n)
	return 0
}
