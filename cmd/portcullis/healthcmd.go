package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/portcullis/portcullis/audit/redact"
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
	// The URL may carry a password or a token in its query: no message echoes it (nor a
	// url.Parse or http.Client error, whose text holds it); redact.URL shows what is safe.
	parsed, err := url.Parse(*u)
	switch {
	case err != nil:
		fmt.Fprintln(stderr, "portcullis health: --url: not a URL")
		return 2
	case parsed.Scheme != "http" && parsed.Scheme != "https":
		fmt.Fprintln(stderr, "portcullis health: --url: scheme must be http or https")
		return 2
	case parsed.Host == "":
		fmt.Fprintln(stderr, "portcullis health: --url: missing host")
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *u, nil)
	if err != nil {
		fmt.Fprintln(stderr, "portcullis health: --url: not a URL")
		return 2
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		fmt.Fprintf(stderr, "portcullis health: GET %s: %v\n", redact.URL(*u), err)
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
