package main

import (
	"bytes"
	"context"
	"database/sql"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The default targets need neither PostgreSQL nor Redis; naming replicas without them is
// a usage error that names the flag.
func TestBenchReplicasNeedsItsServersAndTheDefaultsDoNot(t *testing.T) {
	t.Setenv("PORTCULLIS_BENCH_POSTGRES", "")
	t.Setenv("PORTCULLIS_BENCH_REDIS", "")
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"replicas without --postgres", []string{"--targets", "full,replicas", "--redis", "127.0.0.1:1"}, "--postgres"},
		{"replicas without --redis", []string{"--targets", "replicas", "--postgres", "postgres://u@127.0.0.1:1/x"}, "--redis"},
		{"min-ratelimit-redis without --redis", []string{"--targets", "min-ratelimit-redis"}, "--redis"},
		{"--postgres not a postgres URL", []string{"--targets", "replicas", "--postgres", "mysql://u:canary@h/x", "--redis", "h:1"}, "postgres:// or postgresql://"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := runBench(context.Background(), c.args, &out, &errb); code != 2 {
				t.Fatalf("exit %d, want 2\n%s%s", code, out.String(), errb.String())
			}
			if !strings.Contains(errb.String(), c.want) || strings.Contains(errb.String(), "canary") {
				t.Fatalf("stderr does not name %s (or echoes the URL): %s", c.want, errb.String())
			}
		})
	}

	var out, errb bytes.Buffer
	if code := runBench(context.Background(), []string{"--targets", "direct,full", "--duration", "100ms", "--rounds", "1", "--conns", "2"}, &out, &errb); code != 0 {
		t.Fatalf("direct,full without PostgreSQL or Redis: exit %d\n%s%s", code, out.String(), errb.String())
	}
	if !regexp.MustCompile(`(?m)^full\s+\d+`).MatchString(out.String()) || strings.Contains(out.String(), "replicas") {
		t.Fatalf("output:\n%s", out.String())
	}
}

// Two replicas over one PostgreSQL and one Redis, on the allowed call and on a
// rate-limited one: each row is there without errors, the load reached both replicas,
// both logs reached the central store and it caught up, the ratios are printed, and the
// run's schemas are gone afterwards.
func TestBenchReplicasTargetReachesBothReplicasAndShipsBothLogs(t *testing.T) {
	pg, rd := os.Getenv("PORTCULLIS_TEST_POSTGRES"), os.Getenv("PORTCULLIS_TEST_REDIS")
	if pg == "" || rd == "" {
		t.Skip("PORTCULLIS_TEST_POSTGRES (a postgres:// URL) and PORTCULLIS_TEST_REDIS (host:port) must both be set; skipping the replicas bench")
	}
	var out, errb bytes.Buffer
	code := runBench(context.Background(), []string{"--targets", "full,min-ratelimit,replicas,replicas-ratelimit", "--duration", "300ms", "--rounds", "1", "--conns", "4",
		"--postgres", pg, "--redis", rd}, &out, &errb)
	text := out.String()
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, text, errb.String())
	}
	t.Log(text)

	for _, ratio := range []string{`replicas / full \(single-node SQLite, the same allowed call\)`, `replicas-ratelimit / min-ratelimit \(single node, same policy, in-memory limiter\)`} {
		if !regexp.MustCompile(`(?m)^` + ratio + `: \d+\.\d\dx req/s`).MatchString(text) {
			t.Errorf("no ratio line %s", ratio)
		}
	}
	var schemas []string
	for _, target := range []string{"replicas", "replicas-ratelimit"} {
		row := regexp.MustCompile(`(?m)^` + target + `\s+(\d+)\s.*\s(\d+)$`).FindStringSubmatch(text)
		if row == nil || row[1] == "0" || row[2] != "0" {
			t.Fatalf("no %s row with requests and no errors (%q)", target, row)
		}
		served := regexp.MustCompile(target + `: requests answered at 4 connections \(all rounds\): ` + target + `-a (\d+), ` + target + `-b (\d+)`).FindStringSubmatch(text)
		if served == nil {
			t.Fatalf("%s: no per-replica request counts", target)
		}
		for _, n := range served[1:] {
			if v, _ := strconv.Atoi(n); v == 0 {
				t.Errorf("a replica answered no request: %q", served[0])
			}
		}
		central := regexp.MustCompile(target + `: central store \(schema (bench_[0-9a-f]+), dropped at exit\) holds 2 logs: ([0-9a-f]+) through seq (\d+), ([0-9a-f]+) through seq (\d+)`).FindStringSubmatch(text)
		if central == nil || central[2] == central[4] || central[3] == "0" || central[5] == "0" {
			t.Fatalf("%s: the central store does not hold rows of two logs: %q", target, central)
		}
		schemas = append(schemas, central[1])
	}
	if !regexp.MustCompile(`(?m)^\s+4 conns: \d+ \+ \d+ rows, caught up in `).MatchString(text) || strings.Contains(text, "NOT caught up") {
		t.Error("the shipping lag at the end of the measurement is not reported as caught up")
	}

	db, err := sql.Open("pgx", pg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, schema := range schemas {
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1`, schema).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("schema %s is still there after the run", schema)
		}
	}
}
