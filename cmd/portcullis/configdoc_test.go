package main

import (
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// configKey is one key of the config file: its dotted path and the kind of value.
type configKey struct {
	path, typ string
}

// configKeys lists every key yaml.v3 decodes into t, depth first, as dotted paths.
// Structs are walked into (inline ones flattened); lists of structs are walked into as
// path[].field; maps and other lists are leaves.
func configKeys(t reflect.Type, prefix string) []configKey {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var out []configKey
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == "-" {
			continue
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if strings.Contains(opts, "inline") {
			out = append(out, configKeys(ft, prefix)...)
			continue
		}
		if tag == "" {
			tag = strings.ToLower(f.Name)
		}
		path := prefix + tag
		switch {
		case ft == reflect.TypeFor[time.Duration]():
			out = append(out, configKey{path, "duration"})
		case ft.Kind() == reflect.Struct:
			out = append(out, configKeys(ft, path+".")...)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			out = append(out, configKey{path, "list"})
			out = append(out, configKeys(ft.Elem(), path+"[].")...)
		default:
			out = append(out, configKey{path, ft.Kind().String()})
		}
	}
	return out
}

// docConfigRows reads docs/configuration.md's key tables: for each key named in a row's
// first cell, the row's default cell.
func docConfigRows(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	tick := regexp.MustCompile("`([^`]+)`")
	rows := map[string]string{}
	for _, line := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|") // no cell of these tables holds a |
		if len(cells) < 3 {
			continue
		}
		for _, m := range tick.FindAllStringSubmatch(cells[0], -1) {
			if strings.HasPrefix(m[1], "-") || strings.HasPrefix(m[1], "PORTCULLIS_") {
				break // the flags and environment table
			}
			if _, dup := rows[m[1]]; dup {
				t.Errorf("docs/configuration.md lists %s twice", m[1])
			}
			rows[m[1]] = strings.TrimSpace(cells[1])
		}
	}
	return rows
}

// docs/configuration.md lists every key of the config struct and no other, and each
// default it writes as a plain value is the default serve applies.
func TestConfigurationDocListsEveryKey(t *testing.T) {
	rows := docConfigRows(t)
	keys := map[string]bool{}
	for _, k := range configKeys(reflect.TypeFor[Config](), "") {
		keys[k.path] = true
		if _, ok := rows[k.path]; !ok {
			t.Errorf("docs/configuration.md does not list %s (%s)", k.path, k.typ)
		}
	}
	for k := range rows {
		if !keys[k] {
			t.Errorf("docs/configuration.md lists %s, which the config does not have", k)
		}
	}

	// Defaults, as loadConfig applies them with no file, no environment and no flags.
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "PORTCULLIS_") {
			t.Setenv(name, "")
		}
	}
	t.Chdir(t.TempDir())
	cfg, err := loadConfig(overrides{})
	if err != nil {
		t.Fatal(err)
	}
	literal := regexp.MustCompile("^`([^`<\\[]*)`$")
	checked := 0
	for key, def := range rows {
		m := literal.FindStringSubmatch(def)
		if m == nil || keys[m[1]] || strings.Contains(key, "[]") {
			continue // prose, a path inside data_dir, a list, or another key's value
		}
		v := reflect.ValueOf(cfg).Elem()
		for _, name := range strings.Split(key, ".") {
			for v.Kind() == reflect.Pointer {
				v = v.Elem()
			}
			v = v.FieldByIndex(yamlFieldIndex(v.Type(), name))
		}
		var got string
		switch x := v.Interface().(type) {
		case time.Duration:
			want, err := time.ParseDuration(m[1])
			if err != nil || want != x {
				t.Errorf("%s: docs/configuration.md says %s, serve's default is %s", key, m[1], x)
			}
			checked++
			continue
		default:
			got = fmt.Sprint(x)
		}
		if got != m[1] {
			t.Errorf("%s: docs/configuration.md says %q, serve's default is %q", key, m[1], got)
		}
		checked++
	}
	if checked < 40 {
		t.Errorf("only %d defaults were checked; the table format changed?", checked)
	}
}

// docs/config.example.yaml sets every key (lists of structs by their key alone), so a
// user who copies it sees every knob. backend.enabled is there as a comment: set, it would
// change the default (on unless both upstreams are set).
func TestConfigExampleSetsEveryKey(t *testing.T) {
	raw, err := os.ReadFile("../../docs/config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		if n.Kind == yaml.DocumentNode {
			for _, c := range n.Content {
				walk(c, prefix)
			}
			return
		}
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			path := prefix + n.Content[i].Value
			have[path] = true
			walk(n.Content[i+1], path+".")
		}
	}
	walk(&doc, "")
	for _, k := range configKeys(reflect.TypeFor[Config](), "") {
		if strings.Contains(k.path, "[]") || k.path == "backend.enabled" {
			continue
		}
		if !have[k.path] {
			t.Errorf("docs/config.example.yaml does not set %s", k.path)
		}
	}
	if !strings.Contains(string(raw), "# enabled:") {
		t.Error("docs/config.example.yaml lost its backend.enabled comment")
	}
}
