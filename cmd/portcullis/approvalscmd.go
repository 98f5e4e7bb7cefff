package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/portcullis/portcullis/proxy/approvals"
)

var approvalsUsage = groupUsage("approvals", [][2]string{
	{"list", "list approvals (pending by default)"},
	{"approve ID", "approve a pending call; the held call is forwarded"},
	{"deny ID --comment TEXT", "deny it; the comment reaches the agent"},
}, approvalsNote)

const approvalsNote = `The token is an approver's JWT (--token, or env PORTCULLIS_TOKEN: prefer the
environment, flags show up in process lists), sent as Authorization: Bearer to the
gateway's admin API at --url (env PORTCULLIS_URL). The same checks apply as anywhere:
the approver's role, their org, never their own request. docs/approvals.md has the rules.`

var approvalsAbout = map[string][2]string{
	"list":    {"[flags]", "List approvals, newest first.\n\n" + approvalsNote},
	"approve": {"ID [flags]", "Approve a pending call. A call still held is forwarded and returns its result; a\ncaller that stopped waiting repeats the same call to spend the approval.\n\n" + approvalsNote},
	"deny":    {"ID --comment TEXT [flags]", "Deny a pending call. The comment reaches the agent, and the denial holds for that\nexact call until the approval's expiry.\n\n" + approvalsNote},
}

// runApprovals acts on approvals through the gateway's admin API, as the approver whose
// token it is given: the same checks apply as in the console (role, org, not your own).
func runApprovals(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, approvalsUsage)
		return 2
	}
	sub, rest := args[0], args[1:]
	fs := commandFlags("approvals "+sub, approvalsAbout[sub][0], approvalsAbout[sub][1], stderr)
	var (
		baseURL, token, status, comment string
		limit                           int
	)
	// The environment is read after parsing, not as the flags' defaults: -h prints
	// defaults, and these may hold a token.
	fs.StringVar(&baseURL, "url", "http://127.0.0.1:8080", "gateway base `URL` (env PORTCULLIS_URL)")
	fs.StringVar(&token, "token", "", "approver's bearer `TOKEN` (env PORTCULLIS_TOKEN, which keeps it out of process lists)")
	switch sub {
	case "list":
		fs.StringVar(&status, "status", "pending", "status to list: pending, approved, denied, expired, used or all")
		fs.IntVar(&limit, "limit", 100, "most approvals to list (1-1000)")
	case "approve", "deny":
		fs.StringVar(&comment, "comment", "", "comment for the requester (required to deny)")
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, approvalsUsage)
		return 0
	default:
		fmt.Fprintf(stderr, "portcullis approvals: unknown subcommand %q\n\n%s", sub, approvalsUsage)
		return 2
	}
	// Accept flags before and after the ID: "approve ID --comment x" reads naturally.
	var positional []string
	for {
		if code, ok := parseFlags(fs, rest); !ok {
			return code
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		rest = fs.Args()[1:]
	}

	if v := os.Getenv("PORTCULLIS_URL"); v != "" && !flagGiven(fs, "url") {
		baseURL = v
	}
	if token == "" {
		token = os.Getenv("PORTCULLIS_TOKEN")
	}
	var problems []string
	var id string
	switch sub {
	case "list":
		if len(positional) > 0 {
			problems = append(problems, fmt.Sprintf("unexpected arguments: %q", positional))
		}
		if limit < 1 || limit > 1000 {
			problems = append(problems, fmt.Sprintf("--limit is %d; it must be between 1 and 1000", limit))
		}
	default:
		if len(positional) != 1 || strings.TrimSpace(positional[0]) == "" {
			problems = append(problems, "exactly one approval ID is required")
		} else {
			id = positional[0]
		}
		if sub == "deny" && strings.TrimSpace(comment) == "" {
			problems = append(problems, "--comment is required to deny (it tells the agent why)")
		}
	}
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		problems = append(problems, "--url must be an absolute http or https URL such as http://127.0.0.1:8080")
	} else if u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		// Credentials in the URL would be printed in errors; a query or fragment would be
		// glued in front of the API path.
		problems = append(problems, "--url must be scheme://host[:port][/path] only: no user:password@, query or fragment (the token goes in --token)")
	}
	if token == "" {
		problems = append(problems, "--token (or PORTCULLIS_TOKEN) is required")
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(stderr, "portcullis approvals:", p)
		}
		return 2
	}
	if u.Scheme == "http" && !approvalsLoopback(u.Hostname()) {
		fmt.Fprintf(stderr, "portcullis approvals: warning: sending a bearer token over plain http to %s\n", u.Host)
	}

	c := &approvalsClient{base: strings.TrimRight(u.String(), "/"), token: token,
		http: &http.Client{Timeout: 30 * time.Second}}
	switch sub {
	case "list":
		q := url.Values{"status": {status}, "limit": {fmt.Sprint(limit)}}
		var list []approvals.Approval
		if err := c.do(ctx, http.MethodGet, "/admin/v1/approvals?"+q.Encode(), nil, &list); err != nil {
			fmt.Fprintln(stderr, "portcullis approvals list:", err)
			return 1
		}
		printApprovals(stdout, list, status)
		return 0
	default:
		var a approvals.Approval
		body := map[string]string{"comment": comment}
		if err := c.do(ctx, http.MethodPost, "/admin/v1/approvals/"+url.PathEscape(id)+"/"+sub, body, &a); err != nil {
			fmt.Fprintf(stderr, "portcullis approvals %s: %v\n", sub, err)
			return 1
		}
		fmt.Fprintf(stdout, "%s: %s (tool %s, requested by %s)\n", a.ID, a.Status, a.Tool, a.Caller.Sub)
		return 0
	}
}

type approvalsClient struct {
	base, token string
	http        *http.Client
}

// do sends one admin API request and decodes {"data": ...} into out. A failure carries
// the server's error message and code.
func (c *approvalsClient) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encoding request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("building request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("calling %s: %w", c.base, errors.Unwrap(err))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("reading response: %w", err)
	}
	var env struct {
		Data  json.RawMessage `json:"data"`
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	jsonErr := json.Unmarshal(raw, &env)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		if jsonErr == nil && env.Error != nil && env.Error.Message != "" {
			return fmt.Errorf("%s (%s, HTTP %d)", env.Error.Message, env.Error.Code, resp.StatusCode)
		}
		return fmt.Errorf("server answered HTTP %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	if jsonErr != nil || len(env.Data) == 0 {
		return fmt.Errorf("server answered HTTP %d with an unexpected body", resp.StatusCode)
	}
	if err := json.Unmarshal(env.Data, out); err != nil {
		return fmt.Errorf("decoding response: %w", err)
	}
	return nil
}

func printApprovals(w io.Writer, list []approvals.Approval, status string) {
	if len(list) == 0 {
		fmt.Fprintf(w, "no approvals (status %s)\n", status)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tTOOL\tREQUESTER\tCREATED\tEXPIRES\tREASON")
	for _, a := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.ID, a.Status, approvalsCell(a.Tool, 40), approvalsCell(a.Caller.Sub, 30),
			a.CreatedAt.UTC().Format(time.RFC3339), a.ExpiresAt.UTC().Format(time.RFC3339), approvalsCell(a.Reason, 60))
	}
	tw.Flush()
}

// approvalsCell keeps table cells on one line and bounded: values come from agents and policy.
func approvalsCell(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func approvalsLoopback(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// flagGiven reports whether the command line set flag name.
func flagGiven(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}
