package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis/portcullis/backend/catalog"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startServe runs `serve` on its defaults (embedded example policy, dev key, bundled
// backend, SQLite) in a temp data dir and returns the proxy URL, the data dir and the log.
func startServe(t *testing.T) (string, string, *syncBuffer) {
	t.Helper()
	return startServeWith(t, overrides{})
}

// startServeWith is startServe with overrides (a policy, a config file); the data dir
// and the listen addresses are the test's own.
func startServeWith(t *testing.T, o overrides) (string, string, *syncBuffer) {
	t.Helper()
	o.dataDir = t.TempDir()
	url, logs := startServeIn(t, o, nil)
	return url, o.dataDir, logs
}

// startServeIn runs serve with overrides o (o.dataDir is the caller's; the listen
// addresses are free ones), after mutate, if given, has adjusted the loaded config. It
// returns the URL once /healthz answers; serve stops when the test ends.
func startServeIn(t *testing.T, o overrides, mutate func(*Config)) (string, *syncBuffer) {
	t.Helper()
	url, logs, _ := startServeStoppable(t, o, mutate)
	return url, logs
}

// startServeStoppable is startServeIn that also returns stop, which stops serve and
// waits until it has (it also runs when the test ends; a second call does nothing).
func startServeStoppable(t *testing.T, o overrides, mutate func(*Config)) (string, *syncBuffer, func()) {
	t.Helper()
	return startServeOut(t, o, mutate, io.Discard)
}

// startServeOut is startServeStoppable with serve's stdout going to stdout.
func startServeOut(t *testing.T, o overrides, mutate func(*Config), stdout io.Writer) (string, *syncBuffer, func()) {
	t.Helper()
	listen := freeAddr(t)
	o.listen, o.backendListen = listen, freeAddr(t)
	cfg, err := loadConfig(o)
	if err != nil {
		t.Fatal(err)
	}
	// These tests are about what serve does, not about the policy deadline (policies
	// tests pin that): a generous one, so a starved machine is not read as a policy error.
	cfg.Policy.Timeout = 2 * time.Second
	if mutate != nil {
		mutate(cfg)
	}
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, newLogger(logs, "debug"), stdout) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Error("serve did not stop")
			}
		})
	}
	t.Cleanup(stop)
	url := "http://" + listen
	for i := 0; i < 100; i++ {
		if resp, err := http.Get(url + "/healthz"); err == nil {
			resp.Body.Close()
			return url, logs, stop
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("serve did not come up; log:\n%s", logs.String())
	return "", nil, nil
}

// postJSON POSTs body as JSON with the bearer token and returns the response, its body read.
func postJSON(t *testing.T, url, token, body string) (*http.Response, []byte) {
	t.Helper()
	return doJSON(t, "POST", url, token, body)
}

// doJSON sends body (none when "") as JSON with the bearer token and returns the
// response, its body read.
func doJSON(t *testing.T, method, url, token, body string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, b
}

func mintToken(t *testing.T, dir string, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := runToken(context.Background(), append([]string{"--data-dir", dir}, args...), &out, &errb); code != 0 {
		t.Fatalf("token: exit %d: %s", code, errb.String())
	}
	return strings.TrimSpace(out.String())
}

type bearer struct{ token string }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}

func connect(t *testing.T, url, token string) *mcp.ClientSession {
	t.Helper()
	client := mcp.NewClient(&mcp.Implementation{Name: "portcullis-test", Version: "1"}, nil)
	cs, err := client.Connect(context.Background(), &mcp.StreamableClientTransport{
		Endpoint: url + "/mcp", HTTPClient: &http.Client{Transport: bearer{token}},
	}, nil)
	if err != nil {
		t.Fatalf("MCP connect through the proxy: %v", err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

func resultText(r *mcp.CallToolResult) string {
	var sb strings.Builder
	for _, c := range r.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			sb.WriteString(tc.Text)
		}
	}
	b, _ := json.Marshal(r.StructuredContent)
	return sb.String() + string(b)
}

// An MCP client (the official Go SDK) pointed at the proxy: it lists only the tools it may
// call, creates and reads an integration whose key never comes back, is told why a delete
// is denied, and is rate-limited on its 11th create in a minute, as the example policy says.
func TestMCPClientThroughServe(t *testing.T) {
	url, dir, logs := startServe(t)
	token := mintToken(t, dir, "--sub", "agent-1", "--org", "acme", "--roles", "agent", "--session", "s1")
	cs := connect(t, url, token)
	ctx := context.Background()

	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, tl := range tools.Tools {
		names[tl.Name] = true
	}
	if !names["create_integration"] || !names["get_integration"] || names["delete_integration"] {
		t.Fatalf("tools/list for an agent = %v: want create/get, never delete", names)
	}

	canary := fmt.Sprintf("sk-canary%d", time.Now().UnixNano())
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "create_integration", Arguments: map[string]any{
		"name": "prod openai", "ai_provider_id": "openai", "key": canary}})
	if err != nil || res.IsError {
		t.Fatalf("create: %v %s", err, resultText(res))
	}
	res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "get_integration", Arguments: map[string]any{"slug": "prod-openai"}})
	if err != nil || res.IsError || !strings.Contains(resultText(res), "masked_key") || strings.Contains(resultText(res), canary) {
		t.Fatalf("get: %v %s", err, resultText(res))
	}
	res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "delete_integration", Arguments: map[string]any{"slug": "prod-openai"}})
	if err != nil || !res.IsError || !strings.Contains(resultText(res), "agents may not delete integrations") {
		t.Fatalf("delete as agent: %v %s", err, resultText(res))
	}

	for i := 2; i <= 11; i++ {
		res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "create_integration", Arguments: map[string]any{
			"name": fmt.Sprintf("extra %d", i), "ai_provider_id": "anthropic", "key": canary}})
		if err != nil {
			t.Fatal(err)
		}
		if i <= 10 && res.IsError {
			t.Fatalf("create %d refused: %s", i, resultText(res))
		}
	}
	if !res.IsError || !strings.Contains(resultText(res), "rate_limited") {
		t.Fatalf("the 11th create in a minute was not rate-limited: %s", resultText(res))
	}

	// A new session of the same agent is not a new quota.
	again := mintToken(t, dir, "--sub", "agent-1", "--org", "acme", "--roles", "agent", "--session", "s-new")
	if resp, body := postJSON(t, url+"/v1/integrations", again, fmt.Sprintf(`{"name":"again","ai_provider_id":"openai","key":%q}`, canary)); resp.StatusCode != 429 {
		t.Fatalf("agent-1's create in a new session: %d %s; want 429 (the quota is the agent's, not the session's)", resp.StatusCode, body)
	}
	// The same limit over REST, for another agent: the 11th gets 429 with Retry-After.
	rest := mintToken(t, dir, "--sub", "agent-2", "--org", "acme", "--roles", "agent", "--session", "s2")
	var last *http.Response
	for i := 1; i <= 11; i++ {
		resp, body := postJSON(t, url+"/v1/integrations", rest, fmt.Sprintf(`{"name":"rest %d","ai_provider_id":"openai","key":%q}`, i, canary))
		if i <= 10 && resp.StatusCode != 200 {
			t.Fatalf("REST create %d: %d %s", i, resp.StatusCode, body)
		}
		last = resp
	}
	if last.StatusCode != 429 || last.Header.Get("Retry-After") == "" || last.Header.Get("RateLimit-Limit") != "10" {
		t.Fatalf("11th REST create: %d, Retry-After %q, RateLimit-Limit %q", last.StatusCode, last.Header.Get("Retry-After"), last.Header.Get("RateLimit-Limit"))
	}

	// The canary is in no log line and in no byte of any file in the data dir.
	if strings.Contains(logs.String(), canary) {
		t.Fatal("the secret reached the log")
	}
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(canary)) {
				t.Errorf("the secret is in clear in %s", p)
			}
		}
		return nil
	})
}

// flatProviderArgs are the provider fields create_integration takes as top-level
// arguments (Portkey's names); any other provider field goes in configurations.
var flatProviderArgs = map[string]bool{"custom_host": true, "api_version": true, "resource_name": true,
	"deployment_name": true, "aws_region": true, "aws_access_key_id": true, "aws_secret_access_key": true,
	"vertex_project_id": true, "vertex_region": true}

// Every provider in the shipped catalog can be created over MCP through the proxy, read
// back masked over REST, listed, and updated, and no secret comes back.
func TestEveryShippedProviderThroughTheProxy(t *testing.T) {
	url, dir, logs := startServe(t)
	cat, err := catalog.Default()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	canary := fmt.Sprintf("sk-canary%d", time.Now().UnixNano())
	for _, p := range cat.All() {
		t.Run(p.Key, func(t *testing.T) {
			// An agent per provider: each has its own 10 creates a minute.
			tok := mintToken(t, dir, "--sub", "agent-"+p.Key, "--org", "acme", "--roles", "agent", "--session", "s-"+p.Key)
			cs := connect(t, url, tok)
			args := map[string]any{"name": "integration " + p.Key, "ai_provider_id": p.Key, "auth_type": p.AuthTypes[0]}
			conf := map[string]any{}
			urlField := map[string]bool{}
			for _, f := range p.URLFields {
				urlField[f] = true
			}
			for _, f := range p.Required(p.AuthTypes[0]) {
				var v any = "value-" + f
				switch {
				case f == "key" || slices.Contains(p.SecretFields, f):
					v = canary
				case urlField[f]:
					v = "https://example.com/" + f
				}
				if f == "key" || flatProviderArgs[f] {
					args[f] = v
				} else {
					conf[f] = v
				}
			}
			if len(conf) > 0 {
				args["configurations"] = conf
			}
			res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "create_integration", Arguments: args})
			if err != nil || res.IsError {
				t.Fatalf("create %s with %v: %v %s", p.Key, args, err, resultText(res))
			}
			slug := "integration-" + strings.ReplaceAll(p.Key, "_", "-")
			body := restGet(t, url+"/v1/integrations/"+slug, tok)
			if !strings.Contains(body, `"ai_provider_id":"`+p.Key+`"`) || !strings.Contains(body, "masked_") {
				t.Fatalf("get %s: %s", slug, body)
			}
			if list := restGet(t, url+"/v1/integrations?page_size=100", tok); !strings.Contains(list, `"slug":"`+slug+`"`) {
				t.Fatalf("list does not show %s: %s", slug, list)
			}
			res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "update_integration", Arguments: map[string]any{"slug": slug, "description": "updated"}})
			if err != nil || res.IsError {
				t.Fatalf("update %s: %v %s", slug, err, resultText(res))
			}
			if body := restGet(t, url+"/v1/integrations/"+slug, tok); !strings.Contains(body, `"description":"updated"`) || strings.Contains(body, canary) {
				t.Fatalf("after update: %s", body)
			}
		})
	}
	if strings.Contains(logs.String(), canary) {
		t.Fatal("a secret reached the log")
	}
}

func restGet(t *testing.T, url, token string) string {
	t.Helper()
	resp, b := doJSON(t, "GET", url, token, "")
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return string(b)
}

// The approval walk-through of the README: an operator's delete is held; an approver
// lists pending approvals and approves with the CLI from "a second terminal"; the held call
// is forwarded once and returns the upstream's answer.
func TestHeldDeleteReleasedByTheCLI(t *testing.T) {
	url, dir, _ := startServe(t)
	agent := mintToken(t, dir, "--sub", "agent-1", "--org", "acme", "--roles", "agent")
	op := mintToken(t, dir, "--sub", "olga", "--org", "acme", "--roles", "operator")
	sec := mintToken(t, dir, "--sub", "sam", "--org", "acme", "--roles", "security,approver")
	create, _ := http.NewRequest("POST", url+"/v1/integrations", strings.NewReader(`{"name":"doomed","ai_provider_id":"openai","key":"sk-doomed-0123456789"}`))
	create.Header.Set("Authorization", "Bearer "+agent)
	create.Header.Set("Content-Type", "application/json")
	if resp, err := http.DefaultClient.Do(create); err != nil || resp.StatusCode != 200 {
		t.Fatalf("create: %v %v", resp, err)
	}

	type result struct {
		status int
		body   string
	}
	held := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest("DELETE", url+"/v1/integrations/doomed", nil)
		req.Header.Set("Authorization", "Bearer "+op)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			held <- result{0, err.Error()}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		held <- result{resp.StatusCode, string(b)}
	}()

	var id string
	for i := 0; i < 100 && id == ""; i++ {
		var out, errb bytes.Buffer
		if code := runApprovals(context.Background(), []string{"list", "--url", url, "--token", sec}, &out, &errb); code != 0 {
			t.Fatalf("approvals list: %d %s", code, errb.String())
		}
		for _, line := range strings.Split(out.String(), "\n") {
			if f := strings.Fields(line); len(f) > 2 && f[2] == "delete_integration" {
				id = f[0]
			}
		}
		time.Sleep(30 * time.Millisecond)
	}
	if id == "" {
		t.Fatal("no pending approval listed")
	}
	var out, errb bytes.Buffer
	if code := runApprovals(context.Background(), []string{"approve", id, "--url", url, "--token", op}, &out, &errb); code == 0 {
		t.Fatal("the requester approved its own delete")
	}
	out.Reset()
	errb.Reset()
	if code := runApprovals(context.Background(), []string{"approve", id, "--url", url, "--token", sec, "--comment", "ok"}, &out, &errb); code != 0 {
		t.Fatalf("approve: %d %s", code, errb.String())
	}
	select {
	case r := <-held:
		if r.status != 200 || !strings.Contains(r.body, `"deleted":true`) {
			t.Fatalf("held delete: %d %s", r.status, r.body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the held call was not released by the approval")
	}
	get, _ := http.NewRequest("GET", url+"/v1/integrations/doomed", nil)
	get.Header.Set("Authorization", "Bearer "+agent)
	if resp, err := http.DefaultClient.Do(get); err != nil || resp.StatusCode != 404 {
		t.Fatalf("after the approved delete: %v %v", resp, err)
	}
}

// With log_level warn, the log keeps quiet but the audit witness does not: the
// checkpoint lines `audit verify --witness` reads are still written, and the witness
// check passes against them.
func TestWarnLogLevelKeepsTheWitness(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("PORTCULLIS_LOG_LEVEL", "warn")
	listen := freeAddr(t)
	stderr := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- runServe(ctx, []string{"--data-dir", dir, "--listen", listen, "--backend-listen", freeAddr(t)}, io.Discard, stderr)
	}()
	up := false
	for i := 0; i < 100 && !up; i++ {
		if resp, err := http.Post("http://"+listen+"/mcp", "application/json", strings.NewReader(`{}`)); err == nil {
			resp.Body.Close()
			up = resp.StatusCode == http.StatusUnauthorized // an auth_failed row
		} else {
			time.Sleep(50 * time.Millisecond)
		}
	}
	cancel()
	if code := <-done; code != 0 || !up {
		t.Fatalf("serve: exit %d, up %v\n%s", code, up, stderr.String())
	}
	logs := stderr.String()
	if strings.Contains(logs, `"level":"INFO","msg":"policy loaded"`) {
		t.Fatalf("log_level warn still writes INFO lines:\n%s", logs)
	}
	if !strings.Contains(logs, `"msg":"audit checkpoint"`) || !strings.Contains(logs, `"msg":"audit: log open"`) {
		t.Fatalf("log_level warn turned the witness (checkpoints, and the log id at start) off:\n%s", logs)
	}
	witness := filepath.Join(t.TempDir(), "serve.log")
	if err := os.WriteFile(witness, []byte(logs), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := runAudit(context.Background(), []string{"verify", "--data-dir", dir, "--witness", witness}, &out, &errb); code != 0 ||
		!strings.Contains(out.String(), "logged checkpoints checked") {
		t.Fatalf("verify --witness: exit %d\n%s%s", code, out.String(), errb.String())
	}
}

// serve writes its checkpoints to <data_dir>/witness.log itself (0600), and
// `audit verify --witness` reads that file while serve runs: no log redirection needed.
func TestServeWritesWitnessFile(t *testing.T) {
	url, dir, logs := startServe(t)
	resp, err := http.Post(url+"/mcp", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close() // 401: an auth_failed row, signed at once as the log's first
	path := filepath.Join(dir, "witness.log")
	var raw []byte
	for deadline := time.Now().Add(5 * time.Second); !bytes.Contains(raw, []byte(`"msg":"audit checkpoint"`)); {
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint in %s: %q\nlog:\n%s", path, raw, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
		raw, _ = os.ReadFile(path)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("witness file: %v %v, want mode 0600", st.Mode().Perm(), err)
	}
	var out, errb bytes.Buffer
	if code := runAudit(context.Background(), []string{"verify", "--data-dir", dir, "--witness", path}, &out, &errb); code != 0 ||
		!strings.Contains(out.String(), "logged checkpoints checked") {
		t.Fatalf("verify --witness %s: exit %d\n%s%s", path, code, out.String(), errb.String())
	}
}

// The example policy keeps an agent in its workspace on every route that creates an
// integration: /ai/llm spells the field workspaceId, and the route table hands it to
// policy as workspace_id, so the same rule refuses it.
func TestWorkspaceRuleHoldsOnEveryCreateRoute(t *testing.T) {
	url, dir, _ := startServe(t)
	agent := mintToken(t, dir, "--sub", "agent-1", "--org", "acme", "--roles", "agent")
	for _, tc := range []struct{ path, body string }{
		{"/v1/integrations", `{"name":"a1","ai_provider_id":"openai","key":"k-0123456789abcdef","workspace_id":"ws-victim"}`},
		{"/ai/llm", `{"name":"a2","aiType":"OPENAI","endpoint":"https://api.openai.com/v1","secret":"s-0123456789abcdef","workspaceId":"ws-victim"}`},
		{"/integrations/credentials", `{"name":"a3","provider":"postgresql","auth_type":"user_password","workspace_id":"ws-victim","config":{"host":"db.example.com","database":"d","username":"u"},"credentials":{"password":"p-0123456789"}}`},
	} {
		resp, b := postJSON(t, url+tc.path, agent, tc.body)
		if resp.StatusCode != 403 || !strings.Contains(string(b), `workspace_id is not the caller's workspace`) || strings.Contains(string(b), "ws-victim") {
			t.Errorf("POST %s into another workspace: %d %s, want 403 from the workspace rule", tc.path, resp.StatusCode, b)
		}
	}
}

// A stray word before flags is refused, not taken as the end of the flags: every flag
// after it would be dropped and the command would run on its defaults.
func TestStrayArgumentIsRefused(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		run  func(context.Context, []string, io.Writer, io.Writer) int
		args []string
	}{
		{runServe, []string{"extra", "--listen", freeAddr(t), "--data-dir", dir}},
		{runBackend, []string{"serve", "extra", "--data-dir", dir}},
		{runBackend, []string{"keys", "create", "--org", "acme", "extra", "--data-dir", dir}},
	} {
		var out, errb bytes.Buffer
		if code := tc.run(context.Background(), tc.args, &out, &errb); code != 2 || !strings.Contains(errb.String(), `unexpected argument "extra"`) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and the stray word named", tc.args, code, errb.String())
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "backend.db")); err == nil {
		t.Fatal("a refused command wrote its database anyway")
	}
}

// With metrics.listen (here PORTCULLIS_METRICS_LISTEN), serve scrapes without a token
// there, with the process and audit collectors, and the proxy listener has no /metrics;
// without it, /metrics on the proxy listener needs the metrics role.
func TestServeMetricsListenAndRole(t *testing.T) {
	metricsAddr := freeAddr(t)
	t.Setenv("PORTCULLIS_METRICS_LISTEN", metricsAddr)
	url, dir, logs := startServe(t)
	var body string
	for i := 0; i < 100; i++ {
		if resp, err := http.Get("http://" + metricsAddr + "/metrics"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(body, "portcullis_auth_failures_total") || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("metrics.listen scrape:\n%.500s\nlog:\n%s", body, logs.String())
	}
	tok := mintToken(t, dir, "--sub", "prometheus", "--org", "ops", "--roles", "metrics")
	req, _ := http.NewRequest("GET", url+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("/metrics on the proxy listener with metrics.listen set: %d, want 404", resp.StatusCode)
	}

	t.Setenv("PORTCULLIS_METRICS_LISTEN", "")
	url, dir, _ = startServe(t)
	if resp, err := http.Get(url + "/metrics"); err != nil || resp.StatusCode != 401 {
		t.Fatalf("anonymous /metrics on the proxy listener: %v %v", resp, err)
	}
	req, _ = http.NewRequest("GET", url+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+mintToken(t, dir, "--sub", "prometheus", "--org", "ops", "--roles", "metrics"))
	if resp, err = http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/metrics with the metrics role: %v %v", resp, err)
	}
	resp.Body.Close()
}
