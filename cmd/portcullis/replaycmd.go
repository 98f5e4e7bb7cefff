package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/policies"
	"github.com/portcullis/portcullis/policies/replay"
	"github.com/portcullis/portcullis/proxy"
)

const replayAbout = `Replay the recorded audit trail through a candidate policy (--policy) and the live one
(--live; default the configured policy.path, ./policy.example.rego, or the embedded
example), and report how many past calls would be decided differently, by tool and by
caller, with examples. Each call is rebuilt from its audit row (the config's route table
gives tool info). Arguments are recorded redacted: a call whose decision depends on a
redacted value (a rule reads a secret, which the trail holds only as its HMAC) is counted
and marked, not guessed. The audit database is only read; a server may be running.

Exit status: 0 report printed; 1 a policy does not compile or the trail cannot be read;
2 usage errors.`

func policyReplayCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := policyFlagSet("replay", stderr)
	candPath := fs.String("policy", "", "candidate policy: a .rego file or a directory (required)")
	livePath := fs.String("live", "", "live policy to compare with (default: the configured one)")
	since := fs.Duration("since", 24*time.Hour, "how far back to replay")
	cfgPath := fs.String("config", os.Getenv("PORTCULLIS_CONFIG"), "serve's YAML config (env PORTCULLIS_CONFIG): audit path, routes, policy")
	dataDir := fs.String("data-dir", "", "data directory (default ./data; env PORTCULLIS_DATA_DIR)")
	org := fs.String("org", "", "replay one org's calls only")
	maxRows := fs.Int("max-rows", 50000, "replay at most this many decision rows (newest first)")
	examples := fs.Int("examples", 5, "examples kept per kind of change")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if code, ok := parseFlagsOnly(fs, args); !ok {
		return code
	}
	switch {
	case *candPath == "":
		fmt.Fprintf(stderr, "portcullis policy replay: --policy: required (the candidate policy); see portcullis policy replay -h\n")
		return 2
	case *since <= 0:
		fmt.Fprintf(stderr, "portcullis policy replay: --since: must be positive, got %s\n", *since)
		return 2
	case *maxRows < 1 || *examples < 1:
		fmt.Fprintf(stderr, "portcullis policy replay: --max-rows and --examples: must be at least 1\n")
		return 2
	}
	cfg, err := loadConfig(overrides{configPath: *cfgPath, dataDir: *dataDir})
	if err != nil {
		fmt.Fprintf(stderr, "portcullis policy replay: invalid configuration:\n%v\n", err)
		return 2
	}
	cand, err := policies.New(ctx, policies.Options{Path: *candPath, Timeout: cfg.Policy.Timeout, AllowNetwork: cfg.Policy.AllowNetwork, CacheSize: -1})
	if err != nil {
		fmt.Fprintf(stderr, "portcullis policy replay: --policy %s: %v\n", *candPath, err)
		return 1
	}
	lopts := policyOptions(cfg.Policy.Path, cfg.Policy.Timeout, cfg.Policy.AllowNetwork, nil)
	liveName := cfg.Policy.Path
	if *livePath != "" {
		lopts.Path, lopts.Modules, liveName = *livePath, nil, *livePath
	} else if liveName == "" {
		liveName = "embedded policy.example.rego"
	}
	lopts.CacheSize = -1
	live, err := policies.New(ctx, lopts)
	if err != nil {
		fmt.Fprintf(stderr, "portcullis policy replay: live policy %s: %v\n", liveName, err)
		return 1
	}
	rd, err := audit.OpenReader(ctx, cfg.Audit.Path)
	if err != nil {
		fmt.Fprintf(stderr, "portcullis policy replay: %v\n", err)
		return 1
	}
	defer rd.Close()
	now := time.Now().UTC()
	rep, err := replay.Run(ctx, rd, proxy.NewInputRebuilder(cfg.Proxy).Input, live, cand,
		replay.Options{Since: now.Add(-*since), Until: now.Add(time.Second), Org: *org, MaxRows: *maxRows, Examples: *examples})
	if err != nil {
		fmt.Fprintf(stderr, "portcullis policy replay: %v\n", err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(map[string]any{"candidate": *candPath, "candidate_revision": cand.Revision(), "live": liveName,
			"live_revision": live.Revision(), "report": rep})
		return 0
	}
	printReplay(stdout, rep, *candPath, cand.Revision(), liveName, live.Revision())
	return 0
}

func printReplay(w io.Writer, r *replay.Report, cand, candRev, live, liveRev string) {
	fmt.Fprintf(w, "Candidate %s (%s) against live %s (%s)\n", cand, candRev, live, liveRev)
	fmt.Fprintf(w, "Replayed %d calls since %s (%d decision rows read, %d not decided by policy).\n",
		r.Replayed, r.Since.Format(time.RFC3339), r.Scanned, r.Skipped)
	fmt.Fprintf(w, "%d would be decided differently.\n", r.Changed)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	section := func(title string, rows []replay.Count, total bool) {
		if len(rows) == 0 {
			return
		}
		fmt.Fprintf(tw, "\n%s\n", title)
		for _, c := range rows {
			if total {
				fmt.Fprintf(tw, "  %s\t%d of %d\n", c.Key, c.Changed, c.Total)
			} else {
				fmt.Fprintf(tw, "  %s\t%d\n", c.Key, c.Changed)
			}
		}
	}
	section("Changes:", r.Transitions, false)
	section("By tool:", r.ByTool, true)
	section("By caller:", r.ByCaller, true)
	_ = tw.Flush()
	if len(r.Examples) > 0 {
		fmt.Fprintln(w, "\nExamples:")
		for _, x := range r.Examples {
			mark := ""
			if x.ReadsRedacted {
				mark = "  [depends on a redacted value]"
			}
			fmt.Fprintf(w, "  %s  %s  %s  %s: live %s -> candidate %s (%q; recorded %s)%s\n", x.Time.Format(time.RFC3339), x.RequestID,
				x.Tool, x.Caller, x.Live, x.Candidate, x.Reason, x.Recorded, mark)
		}
	}
	if len(r.Notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range r.Notes {
			fmt.Fprintln(w, "Note: "+n)
		}
	}
}
