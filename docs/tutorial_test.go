//go:build unix

// Package docs holds the documentation's tests: the tutorials' commands run as written.
package docs

import (
	"bufio"
	"context"
	"fmt"
	"hash/crc32"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// block is one fenced ```sh block of a tutorial, with what its output must show.
type block struct {
	line       int      // where it starts in the Markdown file
	script     string   // the commands, as written
	background bool     // ```sh background: a server the reader leaves running in a terminal
	retry      bool     // ```sh retry: the reader may run it again until it shows the change
	want       []string // the ```text block after it: each line, its "…"-separated parts in order
}

// readBlocks parses the ```sh blocks of a Markdown file and the ```text block that
// follows each (its expected output).
func readBlocks(t *testing.T, path string) []block {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var blocks []block
	var cur *block
	var body []string
	inFence, fenceKind, n := false, "", 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
		line := sc.Text()
		switch {
		case !inFence && strings.HasPrefix(line, "```"):
			inFence, body = true, nil
			info := strings.Fields(strings.TrimPrefix(line, "```"))
			fenceKind = ""
			if len(info) > 0 {
				fenceKind = info[0]
			}
			if fenceKind == "sh" {
				blocks = append(blocks, block{line: n})
				cur = &blocks[len(blocks)-1]
				for _, w := range info[1:] {
					switch w {
					case "background":
						cur.background = true
					case "retry":
						cur.retry = true
					default:
						t.Fatalf("%s:%d: unknown block mark %q", path, n, w)
					}
				}
			}
		case inFence && line == "```":
			inFence = false
			switch {
			case fenceKind == "sh":
				cur.script = strings.Join(body, "\n")
			case fenceKind == "text" && cur != nil && cur.want == nil:
				for _, l := range body {
					if strings.TrimSpace(l) != "" {
						cur.want = append(cur.want, strings.TrimSpace(l))
					}
				}
			}
			if fenceKind != "sh" {
				cur = nil // a text block belongs to the sh block right before it only
			}
		case inFence:
			body = append(body, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return blocks
}

// shows reports the first expected line out does not show, or "".
func shows(out string, want []string) string {
	for _, w := range want {
		rest := out
		for _, part := range strings.Split(w, "…") {
			i := strings.Index(rest, strings.TrimSpace(part))
			if i < 0 {
				return w
			}
			rest = rest[i+len(strings.TrimSpace(part)):]
		}
	}
	return ""
}

// copyRepo copies the module (without .git and what tutorials and servers leave
// behind) to dst, so a tutorial runs on a fresh tree.
func copyRepo(t *testing.T, src, dst string) {
	t.Helper()
	skip := map[string]bool{".git": true, "data": true, "my-policy": true, "portcullis": true}
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if rel != "." && filepath.Dir(rel) == "." && skip[rel] {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// tail is the end of s, at most n bytes, for a readable failure.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// The first-policy tutorial, run as a reader runs it: every ```sh block in order, in one
// shell (variables carry over), on a fresh copy of the repository; a background block
// stays running like a server in another terminal; each block's output must show its
// ```text block. Only the proxy's addresses change (free ports instead of 8080/8081).
func TestFirstPolicyTutorialRunsAsWritten(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the tutorial builds the binary and starts serve")
	}
	for _, tool := range []string{"bash", "curl", "go", "sed"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed: the tutorial needs it", tool)
		}
	}
	blocks := readBlocks(t, "first-policy.md")
	if len(blocks) < 8 {
		t.Fatalf("first-policy.md: found %d ```sh blocks; the parser or the file changed", len(blocks))
	}
	work := t.TempDir()
	// The copy goes to the same directory every run: the Go build cache keys a package by
	// its directory, so a new directory would compile the whole module again each time.
	abs, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	repo := filepath.Join(os.TempDir(), fmt.Sprintf("portcullis-tutorial-%08x", crc32.ChecksumIEEE([]byte(abs))))
	if err := os.RemoveAll(repo); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(repo) })
	copyRepo(t, "..", repo)
	listen, backendListen := freePort(t), freePort(t)

	// One bash script: each block's output goes to its own file; a retry block runs
	// again (up to 10 s) until its output shows what the tutorial says.
	var sh strings.Builder
	sh.WriteString("set -u\nbg=()\n")
	fmt.Fprintf(&sh, "waitup() { for i in $(seq 1 300); do curl -fsS http://%s/healthz >/dev/null 2>&1 && return 0; sleep 0.1; done; echo 'serve did not come up' >&2; return 1; }\n", listen)
	for i, b := range blocks {
		fmt.Fprintf(&sh, "echo \"block at line %d starts at $SECONDS s\"\n", b.line)
		script := strings.NewReplacer("localhost:8080", listen, "127.0.0.1:8080", listen).Replace(b.script)
		out := filepath.Join(work, fmt.Sprintf("block%d.out", i))
		switch {
		case b.background:
			fmt.Fprintf(&sh, "%s >%q 2>&1 &\nbg+=($!)\nwaitup || exit 1\n", script, out)
		case b.retry:
			var checks []string
			for _, w := range b.want {
				// The same check as shows(), in the shell: every part, in order, is enough here.
				for _, part := range strings.Split(w, "…") {
					checks = append(checks, fmt.Sprintf("grep -qF -- %q %q", strings.TrimSpace(part), out))
				}
			}
			fmt.Fprintf(&sh, "for try in $(seq 1 50); do\n{\n%s\n} >%q 2>&1\n%s && break\nsleep 0.2\ndone\n", script, out, strings.Join(append(checks, "true"), " && "))
		default:
			if strings.HasPrefix(script, "rm ") {
				// The reader stops serve (Ctrl-C) before cleaning up.
				sh.WriteString("for p in \"${bg[@]}\"; do kill -INT $p; wait $p; done; bg=()\n")
			}
			fmt.Fprintf(&sh, "{\n%s\n} >%q 2>&1 || { echo \"block at line %d failed: $?\" >&2; cat %q >&2; exit 1; }\n", script, out, b.line, out)
		}
	}
	sh.WriteString("for p in \"${bg[@]}\"; do kill -INT $p; wait $p; done\n")

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", sh.String())
	cmd.Dir = repo
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	env := []string{"PORTCULLIS_LISTEN=" + listen, "PORTCULLIS_BACKEND_LISTEN=" + backendListen, "PORTCULLIS_URL=http://" + listen}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PORTCULLIS_") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	outb, err := cmd.CombinedOutput()
	defer func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }()
	serveLog := ""
	for i, b := range blocks {
		if b.background {
			l, _ := os.ReadFile(filepath.Join(work, fmt.Sprintf("block%d.out", i)))
			serveLog = string(l)
		}
	}
	t.Logf("the tutorial's run:\n%s", outb)
	if err != nil {
		t.Fatalf("the tutorial stopped: %v\n%s\n--- serve's output:\n%s", err, tail(string(outb), 3000), tail(serveLog, 3000))
	}
	for i, b := range blocks {
		got, _ := os.ReadFile(filepath.Join(work, fmt.Sprintf("block%d.out", i)))
		if miss := shows(string(got), b.want); miss != "" {
			t.Errorf("first-policy.md:%d: the output does not show %q:\n%s", b.line, miss, tail(string(got), 3000))
		}
	}
	if !strings.Contains(serveLog, `"msg":"policy reloaded"`) {
		t.Errorf("serve did not log the reload the tutorial promises:\n%s", tail(serveLog, 3000))
	}
	// What the tutorial leaves is cleaned up by its last step, or ignored by git.
	for _, p := range []string{"my-policy", "data", "portcullis"} {
		if _, err := os.Stat(filepath.Join(repo, p)); err == nil {
			t.Errorf("%s is left behind after the clean-up step", p)
		}
	}
}
