// Command portcullis is the Portcullis gateway: an authorization proxy that authenticates
// AI agents and scripts, decides each call with Rego policy, audits it, and forwards it to
// an admin API, with a bundled integrations backend.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

const usage = `portcullis: an authorization proxy and policy gateway for admin APIs and MCP servers

Usage: portcullis COMMAND [flags]

Commands:
  serve        run the proxy with the bundled backend (default: SQLite in ./data, example policy, dev keys)
  backend      run the bundled integrations backend alone; backend keys create; backend rewrap
  token        mint a dev JWT with the dev key serve created in the data dir
  policy       policy test | check | eval: run Rego tests, compile, or evaluate an input
  audit        audit verify | export | tail | prune: work with the audit trail
  approvals    approvals list | approve | deny: act on pending approvals through the admin API
  migrate      move a single node's audit trail and approvals into PostgreSQL, verified (for replicas)
  bench        load benchmark: direct vs plain proxy vs Portcullis
  health       GET a server's /readyz; exit 0 when ready (for container health checks)
  version      print the version, commit and Go version
  completion   completion bash | zsh | fish: print a shell completion script

Run 'portcullis COMMAND -h' for the flags of a command. Docs: README.md and docs/.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return runServe(ctx, rest, stdout, stderr)
	case "backend":
		return runBackend(ctx, rest, stdout, stderr)
	case "token":
		return runToken(ctx, rest, stdout, stderr)
	case "policy":
		return runPolicy(ctx, rest, stdout, stderr)
	case "audit":
		return runAudit(ctx, rest, stdout, stderr)
	case "approvals":
		return runApprovals(ctx, rest, stdout, stderr)
	case "migrate":
		return runMigrate(ctx, rest, stdout, stderr)
	case "bench":
		return runBench(ctx, rest, stdout, stderr)
	case "health":
		return runHealth(ctx, rest, stdout, stderr)
	case "version", "--version":
		if len(rest) > 0 && !isHelp(rest[0]) {
			fmt.Fprintf(stderr, "portcullis version: unexpected argument %q\n", rest[0])
			return 2
		}
		if len(rest) > 0 {
			fmt.Fprintln(stdout, "Usage: portcullis version\n\nPrints the module version, the commit it was built from and the Go version.")
			return 0
		}
		fmt.Fprint(stdout, versionInfo())
		return 0
	case "completion":
		return runCompletion(ctx, rest, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "portcullis: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
}

// parseFlags parses a command's flags. ok is false when the command must stop with code:
// 0 after -h or --help (the flag package has printed the usage), 2 on a bad flag.
// parseFlagsOnly is parseFlags for commands that take no positional arguments: a stray
// word ends flag parsing, and every flag after it would otherwise be dropped silently
// (`serve extra --listen ...` serving on the default address).
func parseFlagsOnly(fs *flag.FlagSet, args []string) (code int, ok bool) {
	if code, ok := parseFlags(fs, args); !ok {
		return code, false
	}
	if fs.NArg() > 0 {
		name := fs.Name()
		if !strings.HasPrefix(name, "portcullis ") {
			name = "portcullis " + name
		}
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q (this command takes flags only; any after it would be ignored)\n", name, fs.Arg(0))
		return 2, false
	}
	return 0, true
}

func parseFlags(fs *flag.FlagSet, args []string) (code int, ok bool) {
	err := fs.Parse(args)
	switch {
	case err == nil:
		return 0, true
	case errors.Is(err, flag.ErrHelp):
		return 0, false
	default:
		return 2, false
	}
}
