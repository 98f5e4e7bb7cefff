package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// helpOf runs `portcullis <args> -h` and returns what it printed; -h exits 0.
func helpOf(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := run(context.Background(), append(args, "-h"), &out, &errb); code != 0 {
		t.Fatalf("%s -h: exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
	}
	return out.String() + errb.String()
}

// Every subcommand's -h opens with its own `Usage: portcullis <path>` line and lists its
// own flags, spelt with two dashes (one for a single letter), with defaults and the
// environment variables they read, and none of its sibling's flags.
func TestEverySubcommandHelpListsItsOwnFlags(t *testing.T) {
	t.Setenv("PORTCULLIS_DATA_DIR", "")
	for path, want := range map[string][]string{
		"serve":               {"--config FILE", "--listen HOST:PORT", "--backend-listen", "--data-dir DIR", "--policy PATH", "--mcp-upstream URL", "--rest-upstream URL", "PORTCULLIS_LISTEN", "PORTCULLIS_CONFIG"},
		"backend serve":       {"--listen HOST:PORT", "--catalog", "--max-per-provider", "--data-dir", "--db FILE", "--database-url", "--previous-kek", "(default 50)", "PORTCULLIS_BACKEND_DATABASE_URL"},
		"backend keys create": {"--org", "--name", "--data-dir"},
		"backend rewrap":      {"--previous-kek BASE64", "PORTCULLIS_PREVIOUS_KEKS", "--data-dir"},
		"token":               {"--sub", "--org", "--workspace", "--roles", "--session", "--ttl duration", `(default 1h0m0s)`, "--allow-long-ttl", "--iss", `(default "portcullis-dev")`, "--aud"},
		"policy test":         {"-v ", "--allow-network"},
		"policy check":        {"--allow-network"},
		"policy eval":         {"--policy PATH", "--input FILE", "--allow-network", "--timeout duration", "(default 25ms)"},
		"audit verify":        {"--data-dir DIR", `(default "./data"; env PORTCULLIS_DATA_DIR)`, "--db FILE", "--key FILE", "--pubkey BASE64", "--archive FILE", "--witness FILE", "witness.log"},
		"audit export":        {"--format FORMAT", `(default "jsonl")`, "--since TIME", "--until TIME", "--tool", "--sub", "--org", "--decision DECISION", "--approval-id", "--approver", "--request-id", "--out FILE", "rate_limited"},
		"audit tail":          {"-n int", "(default 20)", "--follow", "--json", "--interval duration", "(default 1s)"},
		"audit prune":         {"--before TIME", "--archive FILE", "--key FILE"},
		"approvals list":      {"--url", "--token", "--status", `(default "pending")`, "--limit", "PORTCULLIS_TOKEN"},
		"approvals approve":   {"--url", "--token", "--comment"},
		"approvals deny":      {"--url", "--token", "--comment"},
		"migrate":             {"--config FILE", "--data-dir DIR", "--audit-to URL", "audit.central_url", "PORTCULLIS_AUDIT_CENTRAL_URL", "--approvals-to URL", "approvals.database_url", "PORTCULLIS_APPROVALS_DATABASE_URL", "--pubkey BASE64", "Exit status"},
		"bench":               {"--duration", "--rounds", "--conns", "--targets", "--cpuprofile", "--memprofile", "--postgres URL", "--redis ADDR", "PORTCULLIS_BENCH_POSTGRES", "PORTCULLIS_BENCH_REDIS", "replicas"},
	} {
		help := helpOf(t, strings.Fields(path)...)
		if !strings.HasPrefix(help, "Usage: portcullis "+path+" ") {
			t.Errorf("%s -h does not open with its own usage line:\n%s", path, help)
		}
		for _, w := range want {
			if !strings.Contains(help, w) {
				t.Errorf("%s -h lacks %q:\n%s", path, w, help)
			}
		}
		if m := regexp.MustCompile(`(?m)^\s+-[a-z][a-z-]+\b`).FindString(help); m != "" {
			t.Errorf("%s -h spells a flag with one dash: %q", path, m)
		}
		if strings.Contains(help, "Commands:") {
			t.Errorf("%s -h prints its group's text:\n%s", path, help)
		}
	}
	// A sibling's flags are not listed.
	if help := helpOf(t, "audit", "verify"); strings.Contains(help, "--format") || strings.Contains(help, "--before") {
		t.Errorf("audit verify -h lists export's or prune's flags:\n%s", help)
	}
}

// A group's -h lists every subcommand, including backend keys create and rewrap, and is
// not titled after one of them.
func TestGroupHelpListsEverySubcommand(t *testing.T) {
	for group, subs := range map[string][]string{
		"backend":   {"backend serve", "backend keys create", "backend rewrap", "PORTCULLIS_KEK"},
		"policy":    {"policy test", "policy check", "policy eval"},
		"audit":     {"audit verify", "audit export", "audit tail", "audit prune"},
		"approvals": {"approvals list", "approvals approve", "approvals deny"},
	} {
		help := helpOf(t, group)
		if !strings.HasPrefix(help, "Usage: portcullis "+group+" COMMAND") {
			t.Errorf("%s -h: %q", group, help)
		}
		for _, s := range subs {
			if !strings.Contains(help, "portcullis "+s) && !strings.Contains(help, s) {
				t.Errorf("%s -h does not list %s:\n%s", group, s, help)
			}
		}
	}
	var out, errb bytes.Buffer
	run(context.Background(), []string{"--help"}, &out, &errb)
	for _, c := range []string{"version", "completion", "serve", "approvals", "migrate"} {
		if !strings.Contains(out.String(), "\n  "+c+" ") {
			t.Errorf("portcullis --help does not list %s:\n%s", c, out.String())
		}
	}
}

func TestVersionPrintsModuleCommitAndGo(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"version"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "portcullis ") || !strings.HasPrefix(lines[1], "commit ") ||
		!regexp.MustCompile(`^go1\.\d+`).MatchString(lines[2]) {
		t.Fatalf("version output:\n%s", out.String())
	}
	if code := run(context.Background(), []string{"version", "extra"}, &out, &errb); code != 2 {
		t.Fatalf("version with a stray word: exit %d, want 2", code)
	}
}

// The bash script completes subcommands and each subcommand's own flags, as bash itself
// runs it; zsh's wraps the same; fish's names every path.
func TestCompletionCompletesSubcommandsAndFlags(t *testing.T) {
	script := func(shell string) string {
		var out, errb bytes.Buffer
		if code := run(context.Background(), []string{"completion", shell}, &out, &errb); code != 0 {
			t.Fatalf("completion %s: exit %d: %s", shell, code, errb.String())
		}
		return out.String()
	}
	fish := script("fish")
	for _, w := range []string{"-l approval-id", "-l witness", "-s n", "'__portcullis_is \"backend keys\"' -a create"} {
		if !strings.Contains(fish, w) {
			t.Errorf("fish completion lacks %q", w)
		}
	}
	if z := script("zsh"); !strings.Contains(z, "bashcompinit") || !strings.Contains(z, "complete -o default -F _portcullis portcullis") {
		t.Errorf("zsh completion:\n%s", z)
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash not installed: the bash script is not run")
	}
	file := filepath.Join(t.TempDir(), "portcullis.bash")
	if err := os.WriteFile(file, []byte(script("bash")), 0o644); err != nil {
		t.Fatal(err)
	}
	for line, want := range map[string]string{
		"portcullis au":                  "audit",
		"portcullis audit ":              "verify export tail prune",
		"portcullis audit export --app":  "--approval-id --approver",
		"portcullis audit verify --wit":  "--witness",
		"portcullis backend keys ":       "create",
		"portcullis --x policy eval --i": "--input",
		"portcullis policy test -":       "--allow-network -v",
		"portcullis mig":                 "migrate",
		"portcullis migrate --app":       "--approvals-to",
	} {
		words := strings.Split(line, " ")
		cmd := exec.Command(bash, "-c", `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _portcullis; echo "${COMPREPLY[*]}"`,
			"bash", file)
		cmd.Args = append(cmd.Args, words...)
		got, err := cmd.CombinedOutput()
		if err != nil || strings.TrimSpace(string(got)) != want {
			t.Errorf("completing %q: got %q (%v), want %q", line, strings.TrimSpace(string(got)), err, want)
		}
	}
}

// -h prints defaults; a token or a database password in the environment must not be
// among them.
func TestHelpDoesNotPrintSecretsFromTheEnvironment(t *testing.T) {
	t.Setenv("PORTCULLIS_TOKEN", "eyJcanary-token")
	t.Setenv("PORTCULLIS_URL", "http://127.0.0.1:9/canary-url")
	t.Setenv("PORTCULLIS_BACKEND_DATABASE_URL", "postgres://u:canary-password@db/x")
	t.Setenv("PORTCULLIS_AUDIT_CENTRAL_URL", "postgres://u:canary-password@db/audit")
	t.Setenv("PORTCULLIS_APPROVALS_DATABASE_URL", "postgres://u:canary-password@db/approvals")
	t.Setenv("PORTCULLIS_BENCH_POSTGRES", "postgres://u:canary-password@db/x")
	t.Setenv("PORTCULLIS_BENCH_REDIS", "redis://:canary-password@db:6379")
	t.Setenv("PORTCULLIS_HEALTH_URL", "http://u:canary-password@127.0.0.1:9/readyz")
	for _, args := range [][]string{{"approvals", "list"}, {"approvals", "approve"}, {"backend", "serve"}, {"backend", "rewrap"}, {"backend", "keys", "create"},
		{"migrate"}, {"audit", "verify"}, {"audit", "export"}, {"bench"}, {"health"}} {
		if help := helpOf(t, args...); strings.Contains(help, "canary") {
			t.Errorf("%s -h prints a value from the environment:\n%s", strings.Join(args, " "), help)
		}
	}
}
