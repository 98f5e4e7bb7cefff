package audit

import (
	"context"
	"crypto/ed25519"
	"testing"
)

// A shipper given the running Log takes the rows it stores from it, not from SQLite;
// when it falls behind (the feed overflows) it reads SQLite and loses nothing; either
// way the central copy verifies.
func TestShipperTakesStoredRowsFromTheLogAndReadsSQLiteWhenBehind(t *testing.T) {
	c := openCentralTest(t, centralURL(t))
	cfg := testConfig(t)
	cfg.CheckpointEvery = 50
	l := openTest(t, cfg)
	ctx := context.Background()
	s, err := NewShipper(ctx, c, ShipperConfig{Path: cfg.Path, Log: l}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	s.feed.limit = 300
	id := logIDOf(t, cfg.Path)

	appendN(t, l, 200)
	waitStoredTest(t, l)
	if _, err := s.Ship(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := centralCount(t, c, id); n != 200 {
		t.Fatalf("%d rows central, want 200", n)
	}
	if s.feed.taken == 0 {
		t.Fatal("the shipper read back from SQLite the rows the log handed it")
	}
	missed := s.feed.missed

	// Behind: more rows than the feed holds arrive before the next pass.
	appendN(t, l, 1000)
	waitStoredTest(t, l)
	if _, err := s.Ship(ctx); err != nil {
		t.Fatal(err)
	}
	if s.feed.missed == missed {
		t.Fatal("the overflowed feed was used instead of SQLite")
	}
	appendN(t, l, 40)
	waitStoredTest(t, l)
	if _, err := s.Ship(ctx); err != nil {
		t.Fatal(err)
	}
	if n, maxSeq := centralCount(t, c, id); n != 1240 || maxSeq != 1240 {
		t.Fatalf("central holds %d rows to seq %d, want 1240 and 1240", n, maxSeq)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err := c.VerifyLog(ctx, id, []ed25519.PublicKey{pubKey(t, cfg)})
	if err != nil || !rep.OK || rep.Rows != 1240 {
		t.Fatalf("central verify: %+v %v", rep, err)
	}
}
