package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
)

// completionTree is every command path and its subcommands. Flags are not listed here:
// they are read from each command's own -h, so completion cannot drift from them.
var completionTree = map[string][]string{
	"":              {"serve", "backend", "token", "policy", "audit", "approvals", "migrate", "bench", "health", "version", "completion", "help"},
	"backend":       {"serve", "keys", "rewrap"},
	"backend keys":  {"create"},
	"policy":        {"test", "check", "eval"},
	"audit":         {"verify", "export", "tail", "prune"},
	"approvals":     {"list", "approve", "deny"},
	"completion":    {"bash", "zsh", "fish"},
	"serve":         nil,
	"token":         nil,
	"migrate":       nil,
	"bench":         nil,
	"health":        nil,
	"backend serve": nil, "backend rewrap": nil, "backend keys create": nil,
	"policy test": nil, "policy check": nil, "policy eval": nil,
	"audit verify": nil, "audit export": nil, "audit tail": nil, "audit prune": nil,
	"approvals list": nil, "approvals approve": nil, "approvals deny": nil,
}

const completionUsage = `Usage: portcullis completion bash|zsh|fish

Print a shell completion script for commands, subcommands and flags. Load it with:
  bash:  source <(portcullis completion bash)     (or save it in /etc/bash_completion.d/)
  zsh:   source <(portcullis completion zsh)
  fish:  portcullis completion fish | source      (or save it in ~/.config/fish/completions/)
`

func runCompletion(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && isHelp(args[0]) {
		fmt.Fprint(stdout, completionUsage)
		return 0
	}
	if len(args) != 1 {
		fmt.Fprint(stderr, completionUsage)
		return 2
	}
	words := completionWords(ctx)
	switch args[0] {
	case "bash":
		fmt.Fprint(stdout, bashCompletion(words))
	case "zsh":
		fmt.Fprint(stdout, "#compdef portcullis\nautoload -U +X bashcompinit && bashcompinit\n"+bashCompletion(words))
	case "fish":
		fmt.Fprint(stdout, fishCompletion(words))
	default:
		fmt.Fprintf(stderr, "portcullis completion: unknown shell %q (want bash, zsh or fish)\n\n%s", args[0], completionUsage)
		return 2
	}
	return 0
}

// completionWords is, for each command path, its subcommands and the flags its -h lists.
func completionWords(ctx context.Context) map[string][]string {
	out := make(map[string][]string, len(completionTree))
	for path, subs := range completionTree {
		words := append([]string(nil), subs...)
		if len(subs) == 0 && path != "" {
			words = append(words, helpFlags(ctx, path)...)
		}
		out[path] = words
	}
	return out
}

// helpFlags runs `portcullis <path> --help` and collects the flags it lists.
func helpFlags(ctx context.Context, path string) []string {
	var buf bytes.Buffer
	run(ctx, append(strings.Fields(path), "--help"), &buf, &buf)
	var flags []string
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "  -") {
			continue
		}
		if f := strings.Fields(line)[0]; f != "-h" {
			flags = append(flags, f)
		}
	}
	return flags
}

func sortedPaths(words map[string][]string) []string {
	paths := make([]string, 0, len(words))
	for p := range words {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	return paths
}

func bashCompletion(words map[string][]string) string {
	var known, cases strings.Builder
	for _, p := range sortedPaths(words) {
		if p != "" {
			fmt.Fprintf(&known, "      %q) path=%q ;;\n", "x "+p, "x "+p)
		}
		fmt.Fprintf(&cases, "    %q) words=%q ;;\n", "x"+prefixed(p), strings.Join(words[p], " "))
	}
	return `# bash completion for portcullis (portcullis completion bash)
_portcullis() {
  local cur="${COMP_WORDS[COMP_CWORD]}" path="x" w i words=""
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="${COMP_WORDS[i]}"
    [[ $w == -* ]] && continue
    case "$path $w" in
` + known.String() + `    esac
  done
  case "$path" in
` + cases.String() + `  esac
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -o default -F _portcullis portcullis
`
}

// prefixed is " path" for a non-empty path, "" for the top level.
func prefixed(p string) string {
	if p == "" {
		return ""
	}
	return " " + p
}

func fishCompletion(words map[string][]string) string {
	var b strings.Builder
	b.WriteString(`# fish completion for portcullis (portcullis completion fish)
function __portcullis_path
    set -l path
    for w in (commandline -opc)[2..-1]
        string match -q -- '-*' $w; and continue
        set -l next (string trim -- "$path $w")
        contains -- $next $__portcullis_paths; and set path $next
    end
    echo $path
end
function __portcullis_is
    set -l p (__portcullis_path)
    test "$p" = "$argv[1]"
end
`)
	var paths []string
	for _, p := range sortedPaths(words) {
		if p != "" {
			paths = append(paths, fmt.Sprintf("%q", p))
		}
	}
	fmt.Fprintf(&b, "set -g __portcullis_paths %s\n", strings.Join(paths, " "))
	for _, p := range sortedPaths(words) {
		cond := fmt.Sprintf("__portcullis_is %q", p)
		for _, w := range words[p] {
			switch {
			case strings.HasPrefix(w, "--"):
				fmt.Fprintf(&b, "complete -c portcullis -n '%s' -l %s\n", cond, w[2:])
			case strings.HasPrefix(w, "-"):
				fmt.Fprintf(&b, "complete -c portcullis -n '%s' -s %s\n", cond, w[1:])
			default:
				fmt.Fprintf(&b, "complete -c portcullis -f -n '%s' -a %s\n", cond, w)
			}
		}
	}
	return b.String()
}
