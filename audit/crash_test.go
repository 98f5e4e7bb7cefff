package audit

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const crashChildEnv = "PORTCULLIS_AUDIT_CRASH_CHILD"

// TestCrashSafety re-executes the test binary as a writer under load, SIGKILLs it
// mid-run, and checks that the database is intact, the chain verifies, and every
// Append the child saw succeed has its row.
func TestCrashSafety(t *testing.T) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir)
		return
	}
	dir := t.TempDir()
	acked := killAfterAcks(t, "^TestCrashSafety$", 3000, 20*time.Second, crashChildEnv+"="+dir)

	cfg := crashConfig(dir)
	pub := pubKey(t, cfg)
	// Before the restart, an acknowledged row is in the database or in the journal,
	// and the two together verify.
	onDisk := map[int64]string{}
	db, err := sql.Open("sqlite", cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	var ic string
	if err := db.QueryRow(`PRAGMA integrity_check`).Scan(&ic); err != nil || ic != "ok" {
		t.Fatalf("integrity_check after the kill: %q %v", ic, err)
	}
	rs, err := db.Query(`SELECT seq, request_id FROM audit_events`)
	if err != nil {
		t.Fatal(err)
	}
	for rs.Next() {
		var seq int64
		var req string
		if err := rs.Scan(&seq, &req); err != nil {
			t.Fatal(err)
		}
		onDisk[seq] = req
	}
	rs.Close()
	db.Close()
	inDB := len(onDisk)
	scan, err := readJournal(cfg.Path + JournalSuffix)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range scan.rows {
		onDisk[r.Seq] = r.RequestID
	}
	missing := 0
	for req, seq := range acked {
		if onDisk[seq] != req {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged rows missing from the database and the journal", missing, len(acked))
	}
	rep, err := Verify(context.Background(), cfg.Path, pub)
	if err != nil || !rep.OK || rep.LastSeq < int64(len(onDisk)) {
		t.Fatalf("verify after crash: %+v %v", rep, err)
	}
	rows := rep.Rows
	// Restart: the log stores the journal's rows, re-verifies and signs the tail, then
	// carries on. Every acknowledged row is now in the database.
	l := openTest(t, cfg)
	appendN(t, l, 10)
	l.Close()
	db, err = sql.Open("sqlite", cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`PRAGMA integrity_check`).Scan(&ic); err != nil || ic != "ok" {
		t.Fatalf("integrity_check after restart: %q %v", ic, err)
	}
	for req, seq := range acked {
		var got string
		if err := db.QueryRow(`SELECT request_id FROM audit_events WHERE seq = ?`, seq).Scan(&got); err != nil || got != req {
			missing++
		}
	}
	db.Close()
	if missing > 0 {
		t.Fatalf("after restart, %d of %d acknowledged rows missing from the database", missing, len(acked))
	}
	rep, err = Verify(context.Background(), cfg.Path, pub)
	if err != nil || !rep.OK || rep.UnsignedTail != 0 || rep.Rows != rows+10 {
		t.Fatalf("verify after restart: %+v %v", rep, err)
	}
	if j, err := os.Stat(cfg.Path + JournalSuffix); err != nil || j.Size() != 0 {
		t.Fatalf("journal not emptied after a clean close: %v %v", j, err)
	}
	t.Logf("killed after %d acks; %d rows in the database and %d in the journal", len(acked), inDB, len(scan.rows))
}

func crashConfig(dir string) Config {
	cfg := Config{CheckpointEvery: 500, CheckpointInterval: time.Hour}
	cfg.SetDefaults(dir)
	return cfg
}

// crashChild appends forever from 16 goroutines, printing each acknowledged row.
func crashChild(dir string) {
	l, err := Open(context.Background(), crashConfig(dir), nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(2)
	}
	l.rotateAt = 64 << 10 // rotate often, so the kill finds a rotated journal too
	var mu sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				ev := sampleEvent(i)
				ev.RequestID = fmt.Sprintf("g%d-%d", g, i)
				if err := l.Append(context.Background(), ev); err != nil {
					fmt.Fprintln(os.Stderr, "child append:", err)
					os.Exit(3)
				}
				mu.Lock()
				fmt.Fprintf(w, "ACK %s %d\n", ev.RequestID, ev.Seq)
				w.Flush() // the parent must only see acks that really returned
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

const tailChildEnv = "PORTCULLIS_AUDIT_TAIL_CHILD"

// tailInterval is the checkpoint interval of TestErasedTailAfterKillIsCaughtByWitness's
// writer. tailSlack is what the test allows on top: how far the database is behind the
// journal when a tick comes (a checkpoint covers rows the database holds), plus the
// checkpoint's commit and witness line. That is milliseconds normally; the race
// detector slows SQLite about tenfold, and the ingester falls that far behind.
const tailInterval = 200 * time.Millisecond

func tailSlack() time.Duration {
	if raceEnabled {
		return time.Second
	}
	return 150 * time.Millisecond
}

func tailConfig(dir string) Config {
	// Only timed checkpoints: the window under test is the interval's.
	cfg := Config{CheckpointEvery: 1 << 30, CheckpointInterval: tailInterval}
	cfg.SetDefaults(dir)
	return cfg
}

// TestErasedTailAfterKillIsCaughtByWitness is the review's attack on the unsigned tail:
// a writer under steady load is killed, and before any restart the newest rows are
// erased from the database and the journal, with the checkpoints covering them and the
// lookup entries, so that the database alone still verifies. Every acknowledged row
// older than the checkpoint interval (plus slack for writing a checkpoint) is covered
// by a checkpoint in the witness file, so erasing from the newest such row on is caught.
func TestErasedTailAfterKillIsCaughtByWitness(t *testing.T) {
	if dir := os.Getenv(tailChildEnv); dir != "" {
		tailChild(dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestErasedTailAfterKillIsCaughtByWitness$")
	cmd.Env = append(os.Environ(), tailChildEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	type ack struct {
		seq int64
		at  time.Time
	}
	var acks []ack
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var killAt time.Time
	// Several intervals of steady load, at a random phase of the checkpoint ticker.
	killAfter := 6*tailInterval + tailSlack() + time.Duration(rand.Int64N(int64(tailInterval)))
	deadline := time.After(20 * time.Second)
read:
	for {
		select {
		case ln, ok := <-lines:
			if !ok {
				break read
			}
			f := strings.Fields(ln)
			if len(f) != 3 || f[0] != "ACK" {
				continue
			}
			seq, _ := strconv.ParseInt(f[1], 10, 64)
			ns, _ := strconv.ParseInt(f[2], 10, 64)
			acks = append(acks, ack{seq, time.Unix(0, ns)})
			// A kill with appends in flight.
			if killAt.IsZero() && time.Since(acks[0].at) > killAfter {
				killAt = time.Now()
				cmd.Process.Signal(syscall.SIGKILL)
			}
		case <-deadline:
			cmd.Process.Kill()
			t.Fatalf("child too slow: %d acks", len(acks))
		}
	}
	cmd.Wait()
	if killAt.IsZero() {
		t.Fatalf("child exited before being killed (%d acks)", len(acks))
	}
	// A machine too busy to run the child shows in its acknowledgements: the writers
	// append every 2ms, so a longer pause before the kill is time the ingester did not get
	// either (the checkpoint tick waits for it). Allow that pause on top of the slack.
	slack := tailSlack()
	byTime := make([]time.Time, len(acks))
	for i, a := range acks {
		byTime[i] = a.at
	}
	slices.SortFunc(byTime, time.Time.Compare)
	var stall time.Duration
	for i := 1; i < len(byTime); i++ {
		if byTime[i].After(killAt.Add(-tailInterval - slack - 2*time.Second)) {
			stall = max(stall, byTime[i].Sub(byTime[i-1]))
		}
	}
	if stall > 20*time.Millisecond {
		slack += stall
	}
	// The newest row acknowledged more than an interval (and the slack) before the kill.
	var old ack
	for _, a := range acks {
		if a.at.Before(killAt.Add(-tailInterval-slack)) && a.seq > old.seq {
			old = a
		}
	}
	if old.seq == 0 {
		t.Fatalf("no row acknowledged more than %s before the kill (%d acks)", tailInterval+slack, len(acks))
	}
	cfg := tailConfig(dir)
	pub := pubKey(t, cfg)
	witness := readWitnessFile(t, cfg.WitnessPath)
	rep, err := VerifyWitnessed(context.Background(), cfg.Path, pub, witness)
	if err != nil || !rep.OK {
		t.Fatalf("after the kill, before any edit, the files and the witness agree: %+v %v", rep, err)
	}
	newest := witness[len(witness)-1]
	if newest.Seq < old.seq {
		t.Fatalf("row seq %d was acknowledged %s before the kill, but the newest witnessed checkpoint covers only seq %d (signed %s before the kill)",
			old.seq, killAt.Sub(old.at), newest.Seq, killAt.Sub(time.Unix(0, newest.TS)))
	}
	var lastAck ack
	for _, a := range acks {
		if a.seq == newest.Seq {
			lastAck = a
		}
	}
	t.Logf("%d acks; killed %s after the newest witnessed row (seq %d) was acknowledged; %d rows after it unsigned; longest pause in acks %s",
		len(acks), killAt.Sub(lastAck.at).Round(time.Millisecond), newest.Seq, acks[len(acks)-1].seq-newest.Seq, stall.Round(time.Millisecond))

	// The edit: erase from that row on, everywhere the database and journal hold it.
	n := strconv.FormatInt(old.seq, 10)
	m := strconv.FormatInt(old.seq-1, 10)
	tamper(t, cfg.Path, `DELETE FROM audit_events WHERE seq >= `+n, `DELETE FROM audit_checkpoints WHERE seq >= `+n,
		`DELETE FROM audit_lookup WHERE seq >= `+n,
		`UPDATE audit_meta SET value = CAST(MIN(CAST(value AS INTEGER), `+m+`) AS TEXT) WHERE key = 'lookup_through'`)
	for _, p := range []string{cfg.Path + JournalSuffix, cfg.Path + JournalSuffix + ".old"} {
		if err := os.Truncate(p, 0); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	rep, err = Verify(context.Background(), cfg.Path, pub)
	if err != nil || !rep.OK || rep.LastSeq != old.seq-1 {
		t.Fatalf("the edited database alone still verifies (the attack the witness is for): %+v %v", rep, err)
	}
	rep, err = VerifyWitnessed(context.Background(), cfg.Path, pub, witness)
	if err != nil || rep.OK || !strings.Contains(strings.Join(rep.Problems, ";"), "rows removed") {
		t.Fatalf("erased rows acknowledged %s before the kill were not caught by the witness file: %+v %v",
			killAt.Sub(old.at).Round(time.Millisecond), rep, err)
	}
}

// tailChild appends from 2 goroutines at a steady pace (a busy gateway, not an
// overload), printing each acknowledged row's seq and the time Append returned.
func tailChild(dir string) {
	l, err := Open(context.Background(), tailConfig(dir), nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(2)
	}
	var mu sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	for g := 0; g < 2; g++ {
		go func() {
			for i := 0; ; i++ {
				ev := sampleEvent(i)
				ev.RequestID = fmt.Sprintf("g%d-%d", g, i)
				if err := l.Append(context.Background(), ev); err != nil {
					fmt.Fprintln(os.Stderr, "child append:", err)
					os.Exit(3)
				}
				now := time.Now().UnixNano()
				mu.Lock()
				fmt.Fprintf(w, "ACK %d %d\n", ev.Seq, now)
				w.Flush()
				mu.Unlock()
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	select {}
}

// killAfterAcks re-runs this test binary on the test named by run, with env added; the
// child prints "ACK <request id> <seq>" for every append it saw acknowledged. After n
// acknowledgements it is killed with SIGKILL while appends are in flight. It returns
// the acknowledged seq of each request id.
func killAfterAcks(t *testing.T, run string, n int, within time.Duration, env ...string) map[string]int64 {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run="+run)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[string]int64{}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	killed := false
	deadline := time.After(within)
read:
	for {
		select {
		case ln, ok := <-lines:
			if !ok {
				break read
			}
			f := strings.Fields(ln)
			if len(f) != 3 || f[0] != "ACK" {
				continue
			}
			seq, _ := strconv.ParseInt(f[2], 10, 64)
			acked[f[1]] = seq
			if len(acked) == n && !killed {
				cmd.Process.Signal(syscall.SIGKILL)
				killed = true
			}
		case <-deadline:
			cmd.Process.Kill()
			t.Fatalf("child too slow: %d acks", len(acked))
		}
	}
	cmd.Wait()
	if !killed {
		t.Fatalf("child exited before being killed (%d acks)", len(acked))
	}
	return acked
}
