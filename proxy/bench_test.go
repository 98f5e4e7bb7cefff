package proxy_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/proxy"
)

// BenchmarkMCPToolCall is one allowed tools/call through the whole request path (JWT,
// strict parse, redaction, policy, audit before acting, identity assertion, forward) to
// an upstream on 127.0.0.1; client and upstream costs are included.
func BenchmarkMCPToolCall(b *testing.B) {
	// The pre-auth limiter is on, but only the token's first verification spends it: a
	// cached token passes without (the limit is high enough never to trip anyway).
	g := newGateway(b, gwOptions{cfg: func(c *proxy.Config) { c.PreAuthRate = 1 << 30 }})
	tok := token(b, "agent-1", "acme", "agent")
	body := toolCall("echo", `{"slug":"prod-openai","page":1}`)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ReportAllocs()
	b.SetParallelism(16) // 32 callers on 2 cores: the audit trail's group commit has company
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest("POST", g.url+"/mcp", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+tok)
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
}
