package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"strings"
	"testing"
)

// PostgresURL returns a URL whose search_path is a fresh schema (dropped at cleanup),
// or skips when PORTCULLIS_TEST_POSTGRES is unset.
func postgresURL(t *testing.T) string {
	t.Helper()
	base := os.Getenv("PORTCULLIS_TEST_POSTGRES")
	if base == "" {
		t.Skip("PORTCULLIS_TEST_POSTGRES not set; skipping PostgreSQL test")
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema := "pcb_test_" + hex.EncodeToString(b)
	db, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = db.Exec("DROP SCHEMA " + schema + " CASCADE")
		_ = db.Close()
	})
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return base + sep + "search_path=" + schema
}

func openPG(t *testing.T) *Store {
	s, err := OpenPostgres(context.Background(), postgresURL(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}
