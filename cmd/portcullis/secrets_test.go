package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestSealedValuesNeverLeaveTheBackendInClear is the property behind "one notion of a
// secret": for generated create, update and model payloads (secrets under names nobody
// listed, nested, in arrays, in custom_headers, under token and signature names), sent
// over REST and MCP, every value the backend seals is absent from every file in the
// data dir (databases, WAL files, journals, keys), from the log, from the audit API and
// from the approvals API, while the plain values around them stay readable.
func TestSealedValuesNeverLeaveTheBackendInClear(t *testing.T) {
	url, dir, logs := startServeWith(t, overrides{policy: "testdata/held_writes.rego"})
	agent := mintToken(t, dir, "--sub", "agent-1", "--org", "acme", "--roles", "agent")
	heldAgent := mintToken(t, dir, "--sub", "agent-2", "--org", "acme", "--roles", "agent,held")
	sec := mintToken(t, dir, "--sub", "sam", "--org", "acme", "--roles", "security,approver,auditor")
	cs := connect(t, url, agent)

	seed := uint64(time.Now().UnixNano())
	t.Logf("payload seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	var canaries []string
	canary := func() string {
		c := fmt.Sprintf("cnry%016x%08x", rng.Uint64(), rng.Uint32())
		canaries = append(canaries, c)
		return c
	}
	names := []string{"creds", "blob", "session_token", "upstreamToken", "x-signature", "Signature", "client_secret", "PassWord", "cfg_v"}
	pick := func(l []string) string { return l[rng.IntN(len(l))] }
	value := func() any {
		switch rng.IntN(4) {
		case 0:
			return map[string]any{pick(names): canary(), "note": canary()}
		case 1:
			return []any{canary(), map[string]any{"inner": canary()}}
		default:
			return canary()
		}
	}
	conf := func() map[string]any {
		m := map[string]any{"custom_host": "https://plain-host.example.com",
			"custom_headers": map[string]any{pick([]string{"X-Tenant", "x-custom-auth", "Accept-Extra"}): canary()}}
		for i := 0; i < 1+rng.IntN(3); i++ {
			m[pick(names)+fmt.Sprint(i)] = value()
		}
		return m
	}
	js := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	call := func(method, path, token string, body any) (int, string) {
		b := ""
		if body != nil {
			b = js(body)
		}
		resp, out := doJSON(t, method, url+path, token, b)
		return resp.StatusCode, string(out)
	}
	mcpCall := func(tool string, args map[string]any) string {
		res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: tool, Arguments: args})
		if err != nil {
			t.Fatalf("%s: %v", tool, err)
		}
		if res.IsError {
			t.Fatalf("%s refused: %s", tool, resultText(res))
		}
		return resultText(res)
	}

	var slugs []string
	for i := 0; i < 3; i++ {
		status, body := call("POST", "/v1/integrations", agent, map[string]any{"name": fmt.Sprintf("rest %d", i), "ai_provider_id": "openai",
			"key": canary(), "configurations": conf()})
		if status != 200 {
			t.Fatalf("REST create: %d %s", status, body)
		}
		slug := regexp.MustCompile(`"slug":"([^"]+)"`).FindStringSubmatch(body)[1]
		slugs = append(slugs, slug)
		if status, body := call("PUT", "/v1/integrations/"+slug, agent, map[string]any{"key": canary(), "configurations": conf()}); status != 200 {
			t.Fatalf("REST update: %d %s", status, body)
		}
		if status, body := call("PUT", "/v1/integrations/"+slug+"/models", agent, map[string]any{"models": []any{map[string]any{
			"slug": "m", "enabled": true, "configurations": map[string]any{"custom_host": "https://plain-model.example.com",
				pick(names): canary(), "custom_headers": map[string]any{"X-A": canary()}}}}}); status != 200 {
			t.Fatalf("REST models: %d %s", status, body)
		}

		out := mcpCall("create_integration", map[string]any{"name": fmt.Sprintf("mcp %d", i), "ai_provider_id": "openai", "key": canary(),
			"configurations": conf()})
		mslug := regexp.MustCompile(`"slug":"([^"]+)"`).FindStringSubmatch(out)[1]
		slugs = append(slugs, mslug)
		mcpCall("update_integration", map[string]any{"slug": mslug, "configurations": conf()})
		mcpCall("update_integration_models", map[string]any{"slug": mslug, "models": []any{map[string]any{"slug": "m", "enabled": true,
			"configurations": map[string]any{"custom_headers": map[string]any{"X-B": canary()}}}}})
	}

	// A held update: its arguments sit in the approvals store and API until approved.
	done := make(chan string, 1)
	go func() {
		status, body := call("PUT", "/v1/integrations/"+slugs[0], heldAgent, map[string]any{"configurations": map[string]any{"creds": canary(), "custom_host": "https://plain-held.example.com"}})
		done <- fmt.Sprint(status, " ", body)
	}()
	var pending string
	for i := 0; i < 200 && pending == ""; i++ {
		_, pending = call("GET", "/admin/v1/approvals", sec, nil)
		if !strings.Contains(pending, `"id"`) {
			pending = ""
			time.Sleep(25 * time.Millisecond)
		}
	}
	if !strings.Contains(pending, "plain-held.example.com") {
		t.Fatalf("the held call is not listed with its plain arguments: %s", pending)
	}
	id := regexp.MustCompile(`"id":"([^"]+)"`).FindStringSubmatch(pending)[1]
	if status, body := call("POST", "/admin/v1/approvals/"+id+"/approve", sec, map[string]any{"comment": "ok"}); status != 200 {
		t.Fatalf("approve: %d %s", status, body)
	}
	select {
	case r := <-done:
		if !strings.HasPrefix(r, "200 ") {
			t.Fatalf("held update: %s", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("held update not released")
	}

	// What the backend masks on read: each canary is sealed, none shown.
	var reads strings.Builder
	for _, slug := range slugs {
		for _, p := range []string{"/v1/integrations/" + slug, "/v1/integrations/" + slug + "/models"} {
			_, body := call("GET", p, agent, nil)
			reads.WriteString(body)
		}
	}
	if !strings.Contains(reads.String(), "masked_") {
		t.Fatalf("reads show no masked values: %s", reads.String())
	}

	_, auditRows := call("GET", "/admin/v1/audit?limit=1000", sec, nil)
	_, approved := call("GET", "/admin/v1/approvals?status=approved", sec, nil)
	if !strings.Contains(auditRows, "plain-host.example.com") || !strings.Contains(auditRows, "hmac-sha256:") {
		t.Fatalf("the audit trail lost its plain values or its marks: %.2000s", auditRows)
	}
	surfaces := map[string]string{"backend reads": reads.String(), "audit API": auditRows, "approvals API": pending + approved, "log": logs.String()}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		surfaces["file "+strings.TrimPrefix(p, dir)] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(canaries) < 40 {
		t.Fatalf("only %d canaries generated", len(canaries))
	}
	for where, text := range surfaces {
		for _, c := range canaries {
			if strings.Contains(text, c) {
				t.Errorf("%s holds the sealed value %s in clear", where, c)
			}
		}
	}
}
