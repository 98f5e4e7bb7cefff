package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/audit/sqldb/sqldbtest"
)

// consoleBrowser is a person's browser against one replica: the session cookie set by
// hand (Go's jar keeps Secure cookies off plain http), the replica's origin on state
// changes, the CSRF token.
type consoleBrowser struct {
	t            *testing.T
	cookie, csrf string
}

func (b *consoleBrowser) do(method, base, path, body string) (int, string) {
	b.t.Helper()
	req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if method != "GET" {
		req.Header.Set("Origin", base)
		if b.csrf != "" {
			req.Header.Set("X-CSRF-Token", b.csrf)
		}
	}
	if b.cookie != "" {
		req.AddCookie(&http.Cookie{Name: "portcullis_console", Value: b.cookie})
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	for _, c := range resp.Cookies() {
		if c.Name == "portcullis_console" && c.Value != "" {
			b.cookie = c.Value
		}
	}
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

// Two serve replicas over one PostgreSQL (approvals.database_url only: the console's
// sessions follow it): a person signs in on A with a token, and the session cookie
// works on B, a decision on B with the CSRF token goes through, and signing out on B
// ends the session on A. The table holds neither the cookie nor the token.
func TestConsoleSessionSignedInOnOneReplicaWorksOnAnother(t *testing.T) {
	pg := sqldbtest.PostgresURL(t)
	// Replicas sharing approvals share the redaction key (docs/deploy/README.md).
	t.Setenv(audit.HMACKeyEnv, base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)))
	cfgPath := filepath.Join(t.TempDir(), "portcullis.yaml")
	if err := os.WriteFile(cfgPath, []byte("approvals:\n  database_url: "+pg+"\n  wait_budget: 200ms\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dirA := t.TempDir()
	urlA, _ := startServeIn(t, overrides{configPath: cfgPath, dataDir: dirA}, func(c *Config) {
		if c.Console.DatabaseURL != pg {
			t.Errorf("console.database_url did not default to approvals.database_url")
		}
	})
	urlB, _ := startServeIn(t, overrides{configPath: cfgPath, dataDir: t.TempDir()}, nil)

	// A delete held on A: an approval in the shared store.
	agent := mintToken(t, dirA, "--sub", "agent-1", "--org", "acme", "--roles", "agent")
	op := mintToken(t, dirA, "--sub", "olga", "--org", "acme", "--roles", "operator")
	if resp, body := postJSON(t, urlA+"/v1/integrations", agent, `{"name":"doomed","ai_provider_id":"openai","key":"sk-doomed-0123456789abcdef"}`); resp.StatusCode != 200 {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	resp, body := doJSON(t, "DELETE", urlA+"/v1/integrations/doomed", op, "")
	var held struct {
		ApprovalID string `json:"approval_id"`
	}
	if _ = json.Unmarshal(body, &held); resp.StatusCode != 202 || held.ApprovalID == "" {
		t.Fatalf("delete past the wait budget: %d %s; want 202 with an approval id", resp.StatusCode, body)
	}

	// Sign in on A with a token.
	tok := mintToken(t, dirA, "--sub", "sam", "--org", "acme", "--roles", "security,approver")
	sam := &consoleBrowser{t: t}
	status, signIn := sam.do("POST", urlA, "/console/auth/token", `{"token":"`+tok+`"}`)
	var view struct {
		Data struct {
			CSRF string `json:"csrf_token"`
		} `json:"data"`
	}
	if _ = json.Unmarshal([]byte(signIn), &view); status != 200 || sam.cookie == "" || view.Data.CSRF == "" {
		t.Fatalf("sign-in on A: %d %s", status, signIn)
	}
	sam.csrf = view.Data.CSRF

	// The cookie works on B: the session and the inbox.
	if status, body := sam.do("GET", urlB, "/console/api/session", ""); status != 200 || !strings.Contains(body, `"sub":"sam"`) {
		t.Fatalf("the session on B: %d %s", status, body)
	}
	if status, body := sam.do("GET", urlB, "/console/api/approvals", ""); status != 200 || !strings.Contains(body, held.ApprovalID) {
		t.Fatalf("the inbox on B: %d %s; want approval %s", status, body, held.ApprovalID)
	}
	// A state change on B: without the CSRF token refused, with it done.
	noToken := &consoleBrowser{t: t, cookie: sam.cookie}
	if status, body := noToken.do("POST", urlB, "/console/api/approvals/"+held.ApprovalID+"/approve", `{"comment":"ok"}`); status != 403 {
		t.Fatalf("approve on B without the CSRF token: %d %s", status, body)
	}
	if status, body := sam.do("POST", urlB, "/console/api/approvals/"+held.ApprovalID+"/approve", `{"comment":"ok"}`); status != 200 {
		t.Fatalf("approve on B with the CSRF token: %d %s", status, body)
	}
	if status, body := sam.do("GET", urlA, "/console/api/approvals/"+held.ApprovalID, ""); status != 200 || !strings.Contains(body, `"status":"approved"`) {
		t.Fatalf("the approval seen on A: %d %s", status, body)
	}

	// The table holds the cookie's hash and the caller, not the cookie or the token.
	db, err := sql.Open("pgx", pg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var rows string
	if err := db.QueryRowContext(context.Background(), `SELECT string_agg(s::text, E'\n') FROM console_sessions s`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(rows, sam.cookie) || strings.Contains(rows, tok) || !strings.Contains(rows, "sam") {
		t.Fatalf("console_sessions holds a credential, or not the caller:\n%s", rows)
	}

	// Sign out on B: the session ends on A too.
	if status, body := sam.do("POST", urlB, "/console/auth/logout", ""); status != 200 {
		t.Fatalf("sign-out on B: %d %s", status, body)
	}
	for _, u := range []string{urlA, urlB} {
		if status, _ := (&consoleBrowser{t: t, cookie: sam.cookie}).do("GET", u, "/console/api/session", ""); status != 401 {
			t.Errorf("%s after sign-out on B: %d, want 401", u, status)
		}
	}
}

// console.database_url defaults to approvals.database_url (one PostgreSQL for the
// fleet); PORTCULLIS_CONSOLE_DATABASE_URL or the key itself names another; with
// neither, sessions stay in memory.
func TestConsoleDatabaseURLDefaultsToTheApprovalsDatabase(t *testing.T) {
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "PORTCULLIS_") {
			t.Setenv(name, "")
		}
	}
	t.Chdir(t.TempDir())
	load := func() string {
		t.Helper()
		cfg, err := loadConfig(overrides{})
		if err != nil {
			t.Fatal(err)
		}
		return cfg.Console.DatabaseURL
	}
	if got := load(); got != "" {
		t.Fatalf("no database configured: console.database_url = %q, want empty (memory)", got)
	}
	t.Setenv("PORTCULLIS_APPROVALS_DATABASE_URL", "postgres://fleet.example.com/portcullis")
	if got := load(); got != "postgres://fleet.example.com/portcullis" {
		t.Fatalf("console.database_url = %q, want approvals.database_url", got)
	}
	t.Setenv("PORTCULLIS_CONSOLE_DATABASE_URL", "postgres://sessions.example.com/console")
	if got := load(); got != "postgres://sessions.example.com/console" {
		t.Fatalf("console.database_url = %q, want PORTCULLIS_CONSOLE_DATABASE_URL's", got)
	}
	t.Setenv("PORTCULLIS_CONSOLE_DATABASE_URL", "redis://:hunter2@sessions.example.com")
	if _, err := loadConfig(overrides{}); err == nil || !strings.Contains(err.Error(), "console.database_url") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("a non-PostgreSQL URL: %v; want an error naming console.database_url without the password", err)
	}
}
