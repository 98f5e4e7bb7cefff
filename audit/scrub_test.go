package audit

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// Free-text columns are scrubbed as the row is written: a secret in a REST path, a tool
// name or a reason (an approver's comment, a policy reason quoting input) never lands,
// and the chain still verifies.
func TestFreeTextColumnsAreScrubbed(t *testing.T) {
	cfg := testConfig(t)
	l := openTest(t, cfg)
	ev := sampleEvent(1)
	ev.Path = "/v1/integrations/sk-ant-abcdefghijklmnop"
	ev.Tool = "http:GET /x/ghp_abcdefghijklmnopqrstuvwxyz0123"
	ev.Reason = "approver said: password=hunter2, Authorization: Basic dXNlcjpodW50ZXIy"
	if err := l.Append(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := l.Export(context.Background(), &buf, "jsonl", Filter{}); err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"sk-ant-abcdefghijklmnop", "ghp_abcdefghijklmnopqrstuvwxyz0123", "hunter2", "dXNlcjpodW50ZXIy"} {
		if strings.Contains(buf.String(), secret) {
			t.Fatalf("%s reached the row: %s", secret, buf.String())
		}
	}
	if !strings.Contains(buf.String(), "/v1/integrations/hmac-sha256:") || !strings.Contains(buf.String(), "password=hmac-sha256:") {
		t.Fatalf("scrubbed columns lost their shape: %s", buf.String())
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rep, err := Verify(context.Background(), cfg.Path, pubKey(t, cfg)); err != nil || !rep.OK {
		t.Fatalf("verify: %v %s", err, rep.String())
	}
}
