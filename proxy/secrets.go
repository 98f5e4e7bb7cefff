package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis/portcullis/audit/redact"
	"github.com/portcullis/portcullis/policies/principal"
)

// toolSecrets holds, per tool name, the secret marks of its arguments: writeOnly and
// format: password in the JSON Schema of the upstream's tools/list, and the schemas of
// the REST route table. Marks only add secrets to what redact.IsSecretName and the
// value patterns catch, for any upstream. The map is swapped whole, so a call reads it
// without a lock.
type toolSecrets struct {
	static map[string]*redact.Schema // from the route table, by tool name

	mu      sync.Mutex // serialises learn
	learned map[string]*redact.Schema
	// seen is the input schema (as JSON) each learned tool was compiled from: a
	// tools/list that repeats it (every agent session's) compiles and publishes nothing.
	seen map[string]string
	cur  atomic.Pointer[map[string]*redact.Schema] // static ∪ learned
}

// maxLearnedTools bounds what an upstream's tools/list can make the proxy keep.
const maxLearnedTools = 4096

func newToolSecrets(routes []Route) (*toolSecrets, error) {
	t := &toolSecrets{static: map[string]*redact.Schema{}, learned: map[string]*redact.Schema{}, seen: map[string]string{}}
	for i, r := range routes {
		if r.Schema == "" {
			continue
		}
		var v any
		if err := json.Unmarshal([]byte(r.Schema), &v); err != nil {
			return nil, fmt.Errorf("routes[%d] (%s %s): schema: not JSON: %v", i, r.Method, r.Path, err)
		}
		if _, ok := v.(map[string]any); !ok {
			return nil, fmt.Errorf("routes[%d] (%s %s): schema: must be a JSON object", i, r.Method, r.Path)
		}
		if sch := redact.CompileSchemaValue(v); sch != nil {
			t.static[r.Tool] = redact.Merge(t.static[r.Tool], sch)
		}
	}
	t.publish()
	return t, nil
}

// For returns the marks of tool's arguments; nil when none are known.
func (t *toolSecrets) For(tool string) *redact.Schema { return (*t.cur.Load())[tool] }

// publish swaps in static ∪ learned. Callers hold mu (or own t exclusively).
func (t *toolSecrets) publish() {
	m := make(map[string]*redact.Schema, len(t.static)+len(t.learned))
	for k, v := range t.static {
		m[k] = v
	}
	for k, v := range t.learned {
		m[k] = redact.Merge(m[k], v)
	}
	t.cur.Store(&m)
}

// learn reads the marks of every tool in a tools/list result (the "tools" array). A
// tool listed again replaces what was learned of it; a tool's static marks stay.
func (t *toolSecrets) learn(tools []any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	changed := false
	for _, raw := range tools {
		tm, _ := raw.(map[string]any)
		name, _ := tm["name"].(string)
		if name == "" {
			continue
		}
		// encoding/json writes map keys sorted: equal schemas give equal text.
		raw, err := json.Marshal(tm["inputSchema"])
		if err != nil {
			continue
		}
		if prev, ok := t.seen[name]; ok && prev == string(raw) {
			continue
		}
		sch := redact.CompileSchemaValue(tm["inputSchema"])
		_, had := t.learned[name]
		if !had && (sch == nil || len(t.learned) >= maxLearnedTools) {
			continue
		}
		if sch == nil {
			delete(t.learned, name)
			delete(t.seen, name)
		} else {
			t.learned[name], t.seen[name] = sch, string(raw)
		}
		changed = true
	}
	if changed {
		t.publish()
	}
}

// DiscoverTools lists the MCP upstream's tools, as the proxy itself (an identity
// assertion for sub "portcullis", org "portcullis", role "discovery"), and learns the
// secret marks of their input schemas, so arguments are redacted by the tool's schema
// before any client has listed the tools. Serve calls it at start and then on an
// interval; a failure leaves what was known in place.
func (s *Server) DiscoverTools(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	caller := &principal.Caller{Sub: "portcullis", Org: "portcullis", Roles: []string{"discovery"}}
	rt := &assertingTransport{s: s, caller: caller, headers: s.mcpUp.headers}
	client := mcp.NewClient(&mcp.Implementation{Name: "portcullis-discovery", Version: "1"}, nil)
	cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: s.mcpUp.base,
		HTTPClient: &http.Client{Transport: rt, Timeout: 10 * time.Second}, DisableStandaloneSSE: true}, nil)
	if err != nil {
		return 0, fmt.Errorf("proxy: discovering tools: connecting to %s: %w", s.mcpUp.cfg.Name, err)
	}
	defer cs.Close()
	var tools []any
	var cursor string
	for page := 0; page < 100; page++ {
		res, err := cs.ListTools(ctx, &mcp.ListToolsParams{Cursor: cursor})
		if err != nil {
			return 0, fmt.Errorf("proxy: discovering tools: tools/list: %w", err)
		}
		for _, tool := range res.Tools {
			b, err := json.Marshal(tool)
			if err != nil {
				continue
			}
			var m any
			if json.Unmarshal(b, &m) == nil {
				tools = append(tools, m)
			}
		}
		if res.NextCursor == "" {
			break
		}
		cursor = res.NextCursor
	}
	s.secrets.learn(tools)
	return len(tools), nil
}

// assertingTransport adds the proxy's identity assertion and the upstream's configured
// headers to the discovery client's requests.
type assertingTransport struct {
	s       *Server
	caller  *principal.Caller
	headers [][2]string
	n       atomic.Uint64
}

func (t *assertingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rid := fmt.Sprintf("discovery-%d", t.n.Add(1))
	tok, err := t.s.d.Identity.AppendSign(nil, t.caller, rid, "", time.Now())
	if err != nil {
		return nil, errors.New("proxy: discovering tools: signing the identity assertion failed")
	}
	r = r.Clone(r.Context())
	for _, h := range t.headers {
		r.Header.Set(h[0], h[1])
	}
	r.Header.Set(IdentityHeader, string(tok))
	r.Header.Set("X-Request-Id", rid)
	return http.DefaultTransport.RoundTrip(r)
}
