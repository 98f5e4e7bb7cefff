package main

import (
	"flag"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
)

// commandFlags makes the flag set of `portcullis <path>`. Its -h prints
//
//	Usage: portcullis <path> <args>
//
//	<about>
//
//	Flags:
//	  --name VALUE   what it does (default ...; env ...)
//
// so every command explains itself the same way. args is what follows the path in the
// synopsis ("[flags]", "[flags] [PATH]").
func commandFlags(path, args, about string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("portcullis "+path, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { printCommandUsage(fs.Output(), fs, path, args, about) }
	return fs
}

func printCommandUsage(w io.Writer, fs *flag.FlagSet, path, args, about string) {
	fmt.Fprintf(w, "Usage: portcullis %s %s\n", path, args)
	if about = strings.TrimSpace(about); about != "" {
		fmt.Fprintf(w, "\n%s\n", about)
	}
	var b strings.Builder
	n := 0
	fs.VisitAll(func(f *flag.Flag) {
		n++
		name, usage := flag.UnquoteUsage(f)
		head := "  " + flagSpelling(f.Name)
		if name != "" {
			head += " " + name
		}
		if def := flagDefault(f); def != "" && !strings.Contains(usage, "(default") {
			// "... (env X)" becomes "... (default D; env X)": one parenthesis.
			if i := strings.LastIndex(usage, "(env "); i >= 0 && strings.HasSuffix(usage, ")") {
				usage = usage[:i] + "(default " + def + "; " + usage[i+1:]
			} else {
				usage += " (default " + def + ")"
			}
		}
		// Short heads share the line with the usage; long ones get a line of their own.
		if len(head) <= 24 {
			fmt.Fprintf(&b, "%-26s%s\n", head, usage)
		} else {
			fmt.Fprintf(&b, "%s\n%26s%s\n", head, "", usage)
		}
	})
	if n > 0 {
		fmt.Fprintf(w, "\nFlags:\n%s", b.String())
	}
}

// flagSpelling is how help writes a flag: -n and -v with one dash, every longer name
// with two (the flag package accepts either).
func flagSpelling(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// flagDefault is a flag's default as help shows it, or "" for a zero value.
func flagDefault(f *flag.Flag) string {
	switch f.DefValue {
	case "", "0", "false", "0s", "[]":
		return ""
	}
	if g, ok := f.Value.(flag.Getter); ok {
		if _, isString := g.Get().(string); isString {
			return fmt.Sprintf("%q", f.DefValue)
		}
	}
	return f.DefValue
}

// groupUsage is the help of a command with subcommands: each synopsis on a line, then
// where to read more.
func groupUsage(path string, subs [][2]string, after string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: portcullis %s COMMAND [flags]\n\nCommands:\n", path)
	width := 0
	for _, s := range subs {
		width = max(width, len(s[0]))
	}
	for _, s := range subs {
		fmt.Fprintf(&b, "  portcullis %s %-*s  %s\n", path, width, s[0], s[1])
	}
	fmt.Fprintf(&b, "\nRun 'portcullis %s COMMAND -h' for the flags of a command.\n", path)
	if after = strings.TrimSpace(after); after != "" {
		fmt.Fprintf(&b, "\n%s\n", after)
	}
	return b.String()
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	return arg == "-h" || arg == "--help" || arg == "-help" || arg == "help"
}

// versionInfo is what `portcullis version` prints: the module version (a tag when built
// with `go install ...@v1.2.3`, "(devel)" from a checkout), the VCS commit and whether the
// tree was modified, and the Go version.
func versionInfo() string {
	version, commit, modified, goVersion := "(devel)", "unknown", "", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
		if v := bi.Main.Version; v != "" {
			version = v
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					modified = " (modified)"
				}
			}
		}
	}
	return fmt.Sprintf("portcullis %s\ncommit %s%s\n%s\n", version, commit, modified, goVersion)
}
