package policies

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/util"
	"gopkg.in/yaml.v3"
)

// Bounds on what a policy source may be. A policy set is small text; these stop a
// misconfigured path (a home directory, a log file) from being slurped into memory.
const (
	maxFileBytes  = 8 << 20
	maxTotalBytes = 64 << 20
	maxFiles      = 2000
)

// source is one file of a policy set, as read from disk or given in Options.Modules.
type source struct {
	name    string // path relative to the policy root, slash separated (Modules: the map key); hashed
	display string // the path as the operator gave it, used in compiler messages
	body    []byte
}

// sourceSet is everything one load read: Rego modules, Rego test modules and data files.
type sourceSet struct {
	modules []source // *.rego except *_test.rego
	tests   []source // *_test.rego
	data    []source // data.json, data.yaml, data.yml
}

func isTestFile(name string) bool { return strings.HasSuffix(name, "_test.rego") }

func isDataFile(name string) bool {
	switch filepath.Base(name) {
	case "data.json", "data.yaml", "data.yml":
		return true
	}
	return false
}

// readSources reads the policy set named by opts. A file path loads that file (and, with
// withTests, its sibling NAME_test.rego); a directory loads every .rego and data file below
// it, skipping hidden entries; an empty path uses opts.Modules.
func readSources(opts *Options, withTests bool) (*sourceSet, error) {
	set := &sourceSet{}
	add := func(name, display string, body []byte) {
		src := source{name: name, display: display, body: body}
		switch {
		case isDataFile(name):
			set.data = append(set.data, src)
		case isTestFile(name):
			if withTests {
				set.tests = append(set.tests, src)
			}
		case strings.HasSuffix(name, ".rego"):
			set.modules = append(set.modules, src)
		}
	}

	if opts.Path == "" {
		if len(opts.Modules) == 0 {
			return nil, errors.New("policies: no policy: set Path or Modules")
		}
		for name, body := range opts.Modules {
			if !strings.HasSuffix(name, ".rego") && !isDataFile(name) {
				return nil, fmt.Errorf("policies: module %q: name must end in .rego or be data.json/data.yaml", name)
			}
			add(name, name, []byte(body))
		}
		return set.sorted(), nil
	}

	st, err := os.Stat(opts.Path)
	if err != nil {
		return nil, fmt.Errorf("policies: reading %s: %w", opts.Path, err)
	}
	if !st.IsDir() {
		if !strings.HasSuffix(opts.Path, ".rego") {
			return nil, fmt.Errorf("policies: %s: a policy file must end in .rego", opts.Path)
		}
		body, err := readBounded(opts.Path)
		if err != nil {
			return nil, err
		}
		add(filepath.Base(opts.Path), opts.Path, body)
		if withTests && !isTestFile(opts.Path) {
			sibling := strings.TrimSuffix(opts.Path, ".rego") + "_test.rego"
			if body, err := readBounded(sibling); err == nil {
				add(filepath.Base(sibling), sibling, body)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return nil, err
			}
		}
		return set.sorted(), nil
	}

	var total, count int
	err = filepath.WalkDir(opts.Path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != opts.Path && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() || !(strings.HasSuffix(p, ".rego") || isDataFile(p)) {
			return nil
		}
		count++
		if count > maxFiles {
			return fmt.Errorf("more than %d policy files", maxFiles)
		}
		body, err := readBounded(p)
		if err != nil {
			return err
		}
		total += len(body)
		if total > maxTotalBytes {
			return fmt.Errorf("policy files exceed %d bytes in total", maxTotalBytes)
		}
		rel, err := filepath.Rel(opts.Path, p)
		if err != nil {
			return err
		}
		add(filepath.ToSlash(rel), p, body)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("policies: reading %s: %w", opts.Path, err)
	}
	if len(set.modules) == 0 {
		return nil, fmt.Errorf("policies: %s: no .rego policy files found", opts.Path)
	}
	return set.sorted(), nil
}

func readBounded(p string) ([]byte, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("policies: reading %s: %w", p, err)
	}
	if st.Size() > maxFileBytes {
		return nil, fmt.Errorf("policies: %s: %d bytes exceeds the %d byte limit", p, st.Size(), maxFileBytes)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("policies: reading %s: %w", p, err)
	}
	return b, nil
}

func (s *sourceSet) sorted() *sourceSet {
	for _, l := range [][]source{s.modules, s.tests, s.data} {
		sort.Slice(l, func(i, j int) bool { return l[i].name < l[j].name })
	}
	return s
}

// revision is the content hash of the modules and data that decide (tests excluded, so
// editing a test does not look like a policy change in the audit trail). Names are part
// of the hash: moving a data file changes where its values land.
func (s *sourceSet) revision() string {
	h := sha256.New()
	for _, l := range [][]source{s.modules, s.data} {
		for _, src := range l {
			fmt.Fprintf(h, "%d:%s\n%d:", len(src.name), src.name, len(src.body))
			h.Write(src.body)
			h.Write([]byte{'\n'})
		}
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))[:16]
}

// parseModules parses Rego sources as Rego v1 (imports of rego.v1 remain accepted).
func parseModules(srcs ...[]source) (map[string]*ast.Module, error) {
	mods := map[string]*ast.Module{}
	var errs []error
	for _, l := range srcs {
		for _, src := range l {
			m, err := ast.ParseModuleWithOpts(src.display, string(src.body), ast.ParserOptions{RegoVersion: ast.RegoV1})
			if err != nil {
				errs = append(errs, err)
				continue
			}
			mods[src.display] = m
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("policies: parsing: %w", errors.Join(errs...))
	}
	return mods, nil
}

// loadData merges the data files into one document. A data file in directory a/b is
// mounted at data.a.b, as OPA does; two files defining the same key conflict.
func loadData(srcs []source) (map[string]any, error) {
	root := map[string]any{}
	for _, src := range srcs {
		var doc any
		var err error
		if strings.HasSuffix(src.name, ".json") {
			err = util.UnmarshalJSON(src.body, &doc)
		} else {
			doc, err = yamlToJSON(src.body)
		}
		if err != nil {
			return nil, fmt.Errorf("policies: data file %s: %w", src.display, err)
		}
		obj, ok := doc.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("policies: data file %s: top level must be an object", src.display)
		}
		dir := filepath.ToSlash(filepath.Dir(src.name))
		node := root
		if dir != "." {
			for _, seg := range strings.Split(dir, "/") {
				next, ok := node[seg].(map[string]any)
				if !ok {
					if _, exists := node[seg]; exists {
						return nil, fmt.Errorf("policies: data file %s: %q is already a value", src.display, seg)
					}
					next = map[string]any{}
					node[seg] = next
				}
				node = next
			}
		}
		for k, v := range obj {
			if _, exists := node[k]; exists {
				return nil, fmt.Errorf("policies: data file %s: key %q is defined twice", src.display, k)
			}
			node[k] = v
		}
	}
	return root, nil
}

// yamlToJSON decodes YAML and round-trips it through JSON so that only JSON types
// (string keys, json.Number) reach the store.
func yamlToJSON(b []byte) (any, error) {
	var v any
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&v); err != nil {
		if errors.Is(err, io.EOF) {
			return map[string]any{}, nil
		}
		return nil, err
	}
	j, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	if err := util.UnmarshalJSON(j, &out); err != nil {
		return nil, err
	}
	return out, nil
}
