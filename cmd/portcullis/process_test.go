package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis/portcullis/proxy/authn"
)

// runMainEnv makes the test binary act as the portcullis binary: TestMain runs `run`
// with the JSON array of arguments it holds, so a test can start real serve and
// backend processes without building the binary first.
const runMainEnv = "PORTCULLIS_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if argv := os.Getenv(runMainEnv); argv != "" {
		var args []string
		if err := json.Unmarshal([]byte(argv), &args); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", runMainEnv, err)
			os.Exit(2)
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := run(ctx, args, os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// process is a portcullis process a test started (see startProcess).
type process struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer // stdout and stderr
	done chan struct{}
}

// startProcess runs `portcullis args...` as a child process with env added to this
// process's environment. The test ends it with SIGTERM (then SIGKILL) if it still runs.
func startProcess(t *testing.T, name string, env []string, args ...string) *process {
	t.Helper()
	argv, _ := json.Marshal(args)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(append(os.Environ(), env...), runMainEnv+"="+string(argv))
	p := &process{name: name, cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop(syscall.SIGTERM)
		if t.Failed() {
			t.Logf("%s output (last 4 KiB):\n%s", name, tail(p.out.String(), 4096))
		}
	})
	return p
}

// stop sends sig and waits for the process to exit (SIGKILL after 10 s).
func (p *process) stop(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// waitUp waits until url answers (any status), failing the test with the process's
// output after 20 s or if the process exits.
func (p *process) waitUp(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			t.Fatalf("%s exited: %s\n%s", p.name, p.cmd.ProcessState, tail(p.out.String(), 4096))
		default:
		}
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s did not answer %s in 20 s:\n%s", p.name, url, tail(p.out.String(), 4096))
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:][strings.IndexByte(s[len(s)-n:], '\n')+1:]
}

// startFleetBackend prepares what a fleet's processes share and starts its one
// integrations backend on backendDir: every dir holds one identity secret (the replicas
// sign their assertions to the backend with it), and every replica dir the first
// replica dir's dev token key (tokens are minted with mintToken on replicaDirs[0]). It
// returns the backend's URL once it answers.
func startFleetBackend(t *testing.T, backendDir string, replicaDirs ...string) string {
	t.Helper()
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	for _, d := range append([]string{backendDir}, replicaDirs...) {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "identity.secret"), []byte(base64.StdEncoding.EncodeToString(secret)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := authn.LoadOrCreateDevKey(replicaDirs[0], slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
	devKey, err := os.ReadFile(authn.DevKeyPath(replicaDirs[0]))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range replicaDirs[1:] {
		if err := os.WriteFile(authn.DevKeyPath(d), devKey, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	backendURL := "http://" + freeAddr(t)
	be := startProcess(t, "backend", nil, "backend", "serve", "--data-dir", backendDir, "--listen", strings.TrimPrefix(backendURL, "http://"))
	be.waitUp(t, backendURL+"/healthz")
	return backendURL
}
