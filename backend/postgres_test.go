package backend

import (
	"context"
	"database/sql"
	"testing"

	"github.com/portcullis/portcullis/audit/sqldb/sqldbtest"
)

// The same API on PostgreSQL: lifecycle, masking, isolation, limits, and no canary in
// any stored row.
func TestPostgresEndToEnd(t *testing.T) {
	url := sqldbtest.PostgresURL(t)
	e := newEnv(t, func(c *Config) { c.DatabaseURL = url; c.MaxPerProvider = 2 })
	a, b := e.as("acme", ""), e.as("globex", "")
	id, slug := e.mustCreate(a, map[string]any{"name": "Prod Bedrock", "ai_provider_id": "aws-bedrock", "key": canary,
		"configurations": map[string]any{"aws_region": "us-east-1", "AWS_Secret-Access-Key": canary}})
	g := e.do("GET", "/v1/integrations/"+slug, a, nil)
	if g.status != 200 || g.json["masked_key"] != "CAN****e7f8" {
		t.Fatalf("get: %s", g.body)
	}
	if r := e.do("GET", "/v1/integrations/"+slug, b, nil); r.status != 404 {
		t.Fatalf("cross org: %d", r.status)
	}
	if r := e.do("PUT", "/v1/integrations/"+slug, a, map[string]any{"description": "x"}); r.status != 200 || r.json["masked_key"] != "CAN****e7f8" {
		t.Fatalf("update: %s", r.body)
	}
	e.mustCreate(a, map[string]any{"name": "second", "ai_provider_id": "aws-bedrock", "configurations": map[string]any{"aws_region": "us-east-1"}})
	if r := e.create(a, map[string]any{"name": "third", "ai_provider_id": "aws-bedrock", "configurations": map[string]any{"aws_region": "us-east-1"}}); r.status != 409 {
		t.Fatalf("limit: %s", r.body)
	}
	if l := e.do("GET", "/v1/integrations?page_size=1&current_page=2", a, nil); l.json["total"] != float64(2) || len(l.json["data"].([]any)) != 1 {
		t.Fatalf("list: %s", l.body)
	}
	m := e.mcpClient(t, a)
	if r := m.call(t, "get_integration", map[string]any{"slug": slug}); r.res.IsError {
		t.Fatalf("mcp: %s", r.raw)
	}
	it, err := e.srv.store.Get(context.Background(), h2scope("acme"), id)
	if err != nil || e.srv.verifySecrets(context.Background(), it) != nil {
		t.Fatalf("secrets do not open: %v", err)
	}
	for i, body := range e.bodies {
		assertNoCanary(t, "response "+string(rune('0'+i)), []byte(body))
	}
	assertNoCanary(t, "logs", []byte(e.logs.String()))
	db, _ := sql.Open("pgx", url)
	defer db.Close()
	for _, table := range []string{"integrations", "secrets", "integration_models", "integration_workspaces", "service_keys"} {
		rows, err := db.Query("SELECT t::text FROM " + table + " t")
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var s string
			_ = rows.Scan(&s)
			assertNoCanary(t, "postgres table "+table, []byte(s))
		}
		rows.Close()
	}
	if d := e.do("DELETE", "/v1/integrations/"+slug, a, nil); d.status != 200 {
		t.Fatalf("delete: %s", d.body)
	}
}
