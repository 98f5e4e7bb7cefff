// Package sqldbtest holds the test helpers every store's tests share.
package sqldbtest

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
)

// EnvPostgres names the PostgreSQL server tests use.
const EnvPostgres = "PORTCULLIS_TEST_POSTGRES"

// PostgresURL returns a URL of the server named by PORTCULLIS_TEST_POSTGRES whose
// search_path is a fresh schema, dropped at cleanup, so tests never see each
// other's tables. It skips the test when the variable is unset.
func PostgresURL(t testing.TB) string {
	t.Helper()
	base := os.Getenv(EnvPostgres)
	if base == "" {
		t.Skip(EnvPostgres + " not set; skipping PostgreSQL test")
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema := "pc_test_" + hex.EncodeToString(b)
	db, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE SCHEMA " + schema); err != nil {
		_ = db.Close()
		t.Fatalf("creating test schema: %v", err)
	}
	t.Cleanup(func() {
		_, _ = db.Exec("DROP SCHEMA " + schema + " CASCADE")
		_ = db.Close()
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("%s is not a URL", EnvPostgres)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
