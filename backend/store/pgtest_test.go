package store

import (
	"context"
	"testing"

	"github.com/portcullis/portcullis/audit/sqldb/sqldbtest"
)

func openPG(t *testing.T) *Store {
	s, err := OpenPostgres(context.Background(), sqldbtest.PostgresURL(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}
