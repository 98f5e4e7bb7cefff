package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

const healthUsage = `Usage: portcullis health [--url URL] [--timeout 2s]

GET the server's /readyz (a distroless image has no curl for a container health check).
Exits 0 when it answers 200 (ready, or degraded within audit.central_max_lag), 1 otherwise,
printing its answer. --url defaults to http://127.0.0.1:8080/readyz (env PORTCULLIS_HEALTH_URL).
`

func runHealth(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, healthUsage); fs.PrintDefaults() }
	// Not the flag's default: -h prints defaults, and a URL may carry a password.
	u := fs.String("url", "", "readiness `URL` to GET (default http://127.0.0.1:8080/readyz; env PORTCULLIS_HEALTH_URL)")
	timeout := fs.Duration("timeout", 2*time.Second, "give up after this `DURATION`")
	if code, ok := parseFlagsOnly(fs, args); !ok {
		return code
	}
	if *u == "" {
		*u = os.Getenv("PORTCULLIS_HEALTH_URL")
	}
	if *u == "" {
		*u = "http://127.0.0.1:8080/readyz"
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *u, nil)
	if err != nil {
		fmt.Fprintf(stderr, "portcullis health: --url: %v\n", err)
		return 2
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "portcullis health: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	fmt.Fprintf(stdout, "%d %s\n", resp.StatusCode, body)
	if resp.StatusCode != http.StatusOK {
		return 1
	}
	return 0
}
