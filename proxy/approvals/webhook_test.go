package approvals

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

type delivery struct {
	body []byte
	sig  string
}

// hookServer records deliveries; the first failFirst requests get a 500.
func hookServer(t *testing.T, failFirst int) (*httptest.Server, <-chan delivery, func() int) {
	t.Helper()
	ch := make(chan delivery, 10)
	var mu sync.Mutex
	hits := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		hits++
		n := hits
		mu.Unlock()
		if n <= failFirst {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		ch <- delivery{body: body, sig: r.Header.Get(SignatureHeader)}
	}))
	t.Cleanup(srv.Close)
	return srv, ch, func() int { mu.Lock(); defer mu.Unlock(); return hits }
}

func TestWebhookIsSignedAndDescribesTheApproval(t *testing.T) {
	const secret = "webhook-secret-0123456789abcdef"
	srv, deliveries, hits := hookServer(t, 1) // first attempt fails: delivery is retried
	var logs bytes.Buffer
	cfg := Config{DBPath: t.TempDir() + "/a.db", PublicURL: "https://gw.example/", WebhookURL: srv.URL + "/hook?token=s3cr3t-in-url",
		WebhookSecret: secret, WebhookTimeout: time.Second}
	s, err := open(context.Background(), cfg, slog.New(slog.NewJSONHandler(&logs, nil)), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	t0 := time.Now()
	a, _, err := s.Request(context.Background(), request(t, agent, `{"key":"<redacted>","slug":"prod"}`))
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > 200*time.Millisecond {
		t.Fatalf("Request took %s: the webhook must not block it", d)
	}
	var d delivery
	select {
	case d = <-deliveries:
	case <-time.After(5 * time.Second):
		t.Fatal("webhook not delivered")
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(d.body)
	if want := "sha256=" + hex.EncodeToString(m.Sum(nil)); d.sig != want {
		t.Fatalf("signature %q, want %q", d.sig, want)
	}
	// A tampered body no longer matches the signature.
	m.Reset()
	m.Write(bytes.Replace(d.body, []byte("delete_integration"), []byte("create_integration"), 1))
	if "sha256="+hex.EncodeToString(m.Sum(nil)) == d.sig {
		t.Fatal("signature does not cover the body")
	}
	var body struct {
		Event, ID, Tool, Reason, URL string
		Caller                       struct{ Sub, Org string }
		ExpiresAt                    time.Time `json:"expires_at"`
	}
	if err := json.Unmarshal(d.body, &body); err != nil {
		t.Fatal(err)
	}
	if body.Event != "approval.pending" || body.ID != a.ID || body.Tool != "delete_integration" || body.Caller.Sub != "agent-7" ||
		body.Caller.Org != "acme" || body.Reason == "" || !body.ExpiresAt.Equal(a.ExpiresAt) ||
		body.URL != "https://gw.example/admin/v1/approvals/"+a.ID {
		t.Fatalf("webhook body %s does not describe approval %+v", d.body, a)
	}
	if bytes.Contains(d.body, []byte("slug")) {
		t.Fatal("webhook body carries the arguments")
	}
	if hits() != 2 {
		t.Fatalf("%d webhook attempts, want 2 (one failure, one retry)", hits())
	}

	// An identical request finds the same approval and sends nothing new.
	if _, created, _ := s.Request(context.Background(), request(t, agent, `{"key":"<redacted>","slug":"prod"}`)); created {
		t.Fatal("identical request created a second approval")
	}
	select {
	case extra := <-deliveries:
		t.Fatalf("second webhook for the same approval: %s", extra.body)
	case <-time.After(100 * time.Millisecond):
	}
	s.Close() // waits for the delivery goroutine, which logs
	if strings.Contains(logs.String(), "s3cr3t-in-url") || strings.Contains(logs.String(), secret) {
		t.Fatalf("logs leak the webhook URL token or secret:\n%s", logs.String())
	}
}

func TestWebhookGivesUpAfterBoundedRetries(t *testing.T) {
	srv, _, hits := hookServer(t, 100)
	var logs bytes.Buffer
	s, err := open(context.Background(), Config{DBPath: t.TempDir() + "/a.db", WebhookURL: srv.URL + "/?token=s3cr3t",
		WebhookSecret: "0123456789abcdef0123"}, slog.New(slog.NewJSONHandler(&logs, nil)), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	s.Request(context.Background(), request(t, agent, `{}`))
	deadline := time.Now().Add(5 * time.Second)
	for hits() < webhookAttempts && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	s.Close() // waits for the delivery goroutine
	if hits() != webhookAttempts {
		t.Fatalf("%d attempts, want %d", hits(), webhookAttempts)
	}
	if !strings.Contains(logs.String(), "webhook delivery failed") || strings.Contains(logs.String(), "s3cr3t") {
		t.Fatalf("want one failure log line without the URL token:\n%s", logs.String())
	}
}
