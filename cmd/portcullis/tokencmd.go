package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/portcullis/portcullis/proxy/authn"
)

const maxDevTokenTTL = 24 * time.Hour

// runToken mints a development JWT with the dev signing key in the data dir. It never
// creates the key: `portcullis serve` does, on its first start in dev mode, and a token
// signed with any other key would be refused by that server. The token alone goes to
// stdout so `$(portcullis token ...)` works; notes go to stderr.
func runToken(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := commandFlags("token", "--sub SUB [flags]", `Mint a development JWT signed with the dev key 'portcullis serve' created in the data
dir (it never creates one). The token alone goes to stdout:
  TOKEN=$(portcullis token --sub agent-1 --org acme --roles agent)`, stderr)
	var (
		sub, org, workspace, roles, session string
		iss, aud, dataDir                   string
		ttl                                 time.Duration
		allowLong                           bool
	)
	fs.StringVar(&sub, "sub", "", "subject: the agent or user id (required)")
	fs.StringVar(&org, "org", "", "organisation claim")
	fs.StringVar(&workspace, "workspace", "", "workspace claim")
	fs.StringVar(&roles, "roles", "", "comma-separated roles, e.g. agent,operator")
	fs.StringVar(&session, "session", "", "session id (sid claim)")
	fs.DurationVar(&ttl, "ttl", time.Hour, "lifetime of the token (at most 24h unless --allow-long-ttl)")
	fs.BoolVar(&allowLong, "allow-long-ttl", false, "allow --ttl above 24h")
	fs.StringVar(&dataDir, "data-dir", "", "the server's data `DIR`, holding dev-signing-key.pem (default ./data; env PORTCULLIS_DATA_DIR)")
	fs.StringVar(&iss, "iss", authn.DevIssuer, "issuer claim; must match the proxy's auth.issuer")
	fs.StringVar(&aud, "aud", authn.DevAudience, "audience claim; must match the proxy's auth.audience")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if dataDir == "" {
		dataDir = os.Getenv("PORTCULLIS_DATA_DIR")
	}
	if dataDir == "" {
		dataDir = "./data"
	}

	var problems []string
	if fs.NArg() > 0 {
		problems = append(problems, fmt.Sprintf("unexpected arguments: %q", fs.Args()))
	}
	if strings.TrimSpace(sub) == "" {
		problems = append(problems, "--sub is required")
	}
	if ttl <= 0 {
		problems = append(problems, fmt.Sprintf("--ttl is %s; it must be positive", ttl))
	} else if ttl > maxDevTokenTTL && !allowLong {
		problems = append(problems, fmt.Sprintf("--ttl is %s; the maximum is %s (pass --allow-long-ttl to override)", ttl, maxDevTokenTTL))
	}
	var roleList []string
	for _, r := range strings.Split(roles, ",") {
		if r = strings.TrimSpace(r); r == "" {
			continue
		}
		if strings.ContainsAny(r, " \t") {
			problems = append(problems, fmt.Sprintf("--roles: role %q contains whitespace", r))
		}
		roleList = append(roleList, r)
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(stderr, "portcullis token:", p)
		}
		return 2
	}

	keyPath := authn.DevKeyPath(dataDir)
	if _, err := os.Stat(keyPath); errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(stderr, "portcullis token: --data-dir: no dev signing key at %s; `portcullis serve` creates it on its first start in dev mode, so start it first, or point --data-dir (or PORTCULLIS_DATA_DIR) at the data dir the server uses\n", keyPath)
		return 1
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	key, created, err := authn.LoadOrCreateDevKey(dataDir, logger)
	if err != nil {
		fmt.Fprintln(stderr, "portcullis token:", err)
		return 1
	}
	if created {
		fmt.Fprintf(stderr, "portcullis token: created dev signing key %s (public key %s); restart a running `portcullis serve` that uses this data dir\n",
			authn.DevKeyPath(dataDir), authn.DevPublicKeyPath(dataDir))
	}
	kid, err := authn.Thumbprint(&key.PublicKey)
	if err != nil {
		fmt.Fprintln(stderr, "portcullis token:", err)
		return 1
	}
	tok, err := authn.Mint(key, kid, authn.MintOptions{
		Sub: sub, Org: org, Workspace: workspace, Session: session, Roles: roleList,
		TTL: ttl, Issuer: iss, Audience: aud,
	})
	if err != nil {
		fmt.Fprintln(stderr, "portcullis token:", err)
		return 1
	}
	fmt.Fprintln(stdout, tok)
	return 0
}
