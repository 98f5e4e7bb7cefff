package approvals

import (
	"context"
	"database/sql"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/audit/sqldb/sqldbtest"
)

// copyFixture is a SQLite store holding one approval in each status (with deciders,
// comments and times), and a fresh PostgreSQL store with the URL of its schema.
func copyFixture(t *testing.T) (src, dst Store, pgURL string, ids map[Status]string) {
	t.Helper()
	ctx := context.Background()
	pgURL = sqldbtest.PostgresURL(t)
	src, err := OpenSQLite(ctx, filepath.Join(t.TempDir(), "approvals.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	dst, err = OpenPostgres(ctx, pgURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dst.Close() })
	ids = map[Status]string{}
	for i, st := range []Status{StatusPending, StatusApproved, StatusDenied, StatusExpired, StatusUsed} {
		created := storeEpoch.Add(time.Duration(i) * time.Second)
		a := newApproval(hashOf(100+i), "acme", created)
		a.ExpiresAt = created.Add(time.Hour)
		mustCreate(t, src, a, created)
		ids[st] = a.ID
		at := created.Add(time.Second)
		switch st {
		case StatusApproved, StatusUsed:
			if ok, err := src.Decide(ctx, a.ID, StatusApproved, "sam", "ok", at); !ok || err != nil {
				t.Fatalf("approve: %v %v", ok, err)
			}
		case StatusDenied:
			if ok, err := src.Decide(ctx, a.ID, StatusDenied, "sam", "not today", at); !ok || err != nil {
				t.Fatalf("deny: %v %v", ok, err)
			}
		case StatusExpired:
			if ok, err := src.Expire(ctx, a.ID, StatusPending); !ok || err != nil {
				t.Fatalf("expire: %v %v", ok, err)
			}
		}
		if st == StatusUsed {
			if got, err := src.Consume(ctx, a.Hash, at.Add(time.Second)); err != nil || got == nil {
				t.Fatalf("consume: %v %v", got, err)
			}
		}
	}
	return src, dst, pgURL, ids
}

// Every approval, in every status, arrives in PostgreSQL with every field as SQLite held
// it; a second copy copies nothing and counts each as present.
func TestCopyMovesEveryApprovalWithEveryFieldAndTwiceCopiesNothing(t *testing.T) {
	ctx := context.Background()
	src, dst, _, ids := copyFixture(t)
	rep, err := Copy(ctx, dst, src, CopyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[Status]int{StatusPending: 1, StatusApproved: 1, StatusDenied: 1, StatusExpired: 1, StatusUsed: 1}
	if !reflect.DeepEqual(rep.Copied, want) || len(rep.Present) != 0 {
		t.Fatalf("first copy: copied %v, present %v; want %v copied", rep.Copied, rep.Present, want)
	}
	for st, id := range ids {
		a, err := src.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		b, err := dst.Get(ctx, id)
		if err != nil {
			t.Fatalf("%s approval %s not in PostgreSQL: %v", st, id, err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("%s approval differs after the copy:\nsqlite   %+v\npostgres %+v", st, a, b)
		}
		if st == StatusDenied && (b.DecidedBy != "sam" || b.Comment != "not today" || b.DecidedAt == nil) {
			t.Fatalf("denial lost its decider or comment: %+v", b)
		}
		if st == StatusUsed && b.UsedAt == nil {
			t.Fatalf("used approval lost used_at: %+v", b)
		}
	}
	// The copied pending approval is the live one for its request in PostgreSQL.
	if got, err := dst.Find(ctx, hashOf(100), storeEpoch); err != nil || got == nil || got.ID != ids[StatusPending] {
		t.Fatalf("Find in PostgreSQL after the copy: %v %v", got, err)
	}
	rep, err = Copy(ctx, dst, src, CopyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Copied) != 0 || !reflect.DeepEqual(rep.Present, want) {
		t.Fatalf("second copy: copied %v, present %v; want nothing copied and %v present", rep.Copied, rep.Present, want)
	}
	list, err := dst.List(ctx, "acme", "", 100)
	if err != nil || len(list) != 5 {
		t.Fatalf("PostgreSQL holds %d approvals after two copies (%v), want 5", len(list), err)
	}
	// Newest first, as SQLite lists them.
	srcList, _ := src.List(ctx, "acme", "", 100)
	for i := range list {
		if list[i].ID != srcList[i].ID {
			t.Fatalf("order differs at %d: %s in PostgreSQL, %s in SQLite", i, list[i].ID, srcList[i].ID)
		}
	}
}

// A target copy that differs (here decided since) is an error naming the id, and the
// failed copy leaves the target as it was: the approval is not overwritten and the new
// one in the source is not copied either.
func TestCopyRefusesADifferingApprovalAndCopiesNothing(t *testing.T) {
	ctx := context.Background()
	src, dst, pgURL, ids := copyFixture(t)
	if _, err := Copy(ctx, dst, src, CopyOptions{}); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("pgx", pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE approvals SET comment = 'changed there' WHERE id = $1`, ids[StatusDenied]); err != nil {
		t.Fatal(err)
	}
	late := newApproval(hashOf(200), "acme", storeEpoch.Add(time.Minute))
	mustCreate(t, src, late, late.CreatedAt)
	_, err = Copy(ctx, dst, src, CopyOptions{})
	if err == nil || !strings.Contains(err.Error(), "approval "+ids[StatusDenied]+": the target holds it with other contents") ||
		!strings.Contains(err.Error(), "nothing was copied") {
		t.Fatalf("copy over a differing approval: %v", err)
	}
	if got, err := dst.Get(ctx, ids[StatusDenied]); err != nil || got.Comment != "changed there" {
		t.Fatalf("the differing approval was overwritten: %+v %v", got, err)
	}
	if _, err := dst.Get(ctx, late.ID); err != ErrNotFound {
		t.Fatalf("an approval was copied by a copy that failed: %v", err)
	}

	// A pending approval in the target for the same request under another id: refused,
	// naming both.
	other := newApproval(hashOf(300), "acme", storeEpoch.Add(2*time.Minute))
	mustCreate(t, dst, other, other.CreatedAt)
	mine := newApproval(hashOf(300), "acme", storeEpoch.Add(2*time.Minute))
	mustCreate(t, src, mine, mine.CreatedAt)
	// (the denial put back as the source has it)
	if _, err := db.Exec(`UPDATE approvals SET comment = 'not today' WHERE id = $1`, ids[StatusDenied]); err != nil {
		t.Fatal(err)
	}
	_, err = Copy(ctx, dst, src, CopyOptions{})
	if err == nil || !strings.Contains(err.Error(), "approval "+mine.ID+": the target holds another pending approval ("+other.ID+")") {
		t.Fatalf("copy onto another pending approval of the same request: %v", err)
	}
}

// An approval that does not hold together on its own terms (approved by its own
// requester, approved with no decision time, used with no time of use) is refused, and
// then nothing is copied: whoever can edit approvals.db must not plant one.
func TestCopyRefusesAnApprovalThatDoesNotHoldTogether(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct{ name, set, want string }{
		{"self-approved", "decided_by = caller_sub", "decided by its own requester"},
		{"no decision time", "decided_at = NULL", "approved, but no decider or decision time"},
		{"used without a time", "status = 'used', used_at = NULL", "used, but no time of use"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, dst, _, ids := copyFixture(t)
			db := src.(sqlBacked).base().db
			if _, err := db.ExecContext(ctx, `UPDATE approvals SET `+tc.set+` WHERE id = ?`, ids[StatusApproved]); err != nil {
				t.Fatal(err)
			}
			_, err := Copy(ctx, dst, src, CopyOptions{})
			if err == nil || !strings.Contains(err.Error(), "approval "+ids[StatusApproved]+": "+tc.want) || !strings.Contains(err.Error(), "nothing was copied") {
				t.Fatalf("copy: %v", err)
			}
			if list, err := dst.List(ctx, "acme", "", 100); err != nil || len(list) != 0 {
				t.Fatalf("the target holds %d approvals after a refused copy (%v)", len(list), err)
			}
		})
	}
}
