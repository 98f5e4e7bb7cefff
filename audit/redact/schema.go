package redact

import (
	"encoding/json"
	"sort"
	"strings"
)

// Schema holds the secret marks of a tool's JSON Schema: where in its arguments a value
// is secret. A field is marked by `writeOnly: true` or `format: "password"`; marks are
// read through properties, additionalProperties, patternProperties, items,
// prefixItems, allOf, anyOf, oneOf and local $refs (#/$defs/..., #/definitions/...).
// Anything the schema does not mark is still judged by IsSecretName and the value
// patterns: marks only ever add secrets. A nil *Schema marks nothing.
type Schema struct {
	secret     bool
	props      map[string]*Schema
	additional *Schema // properties not in props (additionalProperties, patternProperties)
	items      *Schema
}

// maxSchemaDepth bounds how deep marks are read (and $refs followed): a schema is
// upstream data, and a cycle must not hang the proxy.
const maxSchemaDepth = 32

// CompileSchema reads the secret marks of a JSON Schema given as raw JSON. It returns
// nil when the schema marks nothing (or is not an object), so an unmarked tool costs
// nothing when its arguments are redacted.
func CompileSchema(raw []byte) *Schema {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil
	}
	return CompileSchemaValue(v)
}

// CompileSchemaValue is CompileSchema for a decoded schema (map[string]any).
func CompileSchemaValue(v any) *Schema {
	root, _ := v.(map[string]any)
	if root == nil {
		return nil
	}
	c := compiler{root: root}
	return c.compile(root, 0)
}

type compiler struct{ root map[string]any }

func (c *compiler) compile(m map[string]any, depth int) *Schema {
	if m == nil || depth > maxSchemaDepth {
		return nil
	}
	s := &Schema{}
	if wo, _ := m["writeOnly"].(bool); wo {
		s.secret = true
	}
	if f, _ := m["format"].(string); strings.EqualFold(f, "password") {
		s.secret = true
	}
	if ref, _ := m["$ref"].(string); ref != "" {
		s = merge(s, c.compile(c.resolve(ref), depth+1))
	}
	s.additional = merge(s.additional, c.compile(asMap(m["additionalProperties"]), depth+1))
	if pp, ok := m["patternProperties"].(map[string]any); ok {
		// A pattern is not matched here: its marks apply to every property it could
		// cover, which redacts more, never less.
		for _, p := range pp {
			s.additional = merge(s.additional, c.compile(asMap(p), depth+1))
		}
	}
	if props, ok := m["properties"].(map[string]any); ok {
		for k, p := range props {
			cs := c.compile(asMap(p), depth+1)
			if cs == nil && s.additional != nil {
				cs = &Schema{} // a named property is not an additional one: nothing marked
			}
			if cs != nil {
				if s.props == nil {
					s.props = map[string]*Schema{}
				}
				s.props[k] = cs
			}
		}
	}
	switch it := m["items"].(type) {
	case map[string]any:
		s.items = merge(s.items, c.compile(it, depth+1))
	case []any:
		for _, e := range it {
			s.items = merge(s.items, c.compile(asMap(e), depth+1))
		}
	}
	if pi, ok := m["prefixItems"].([]any); ok {
		for _, e := range pi {
			s.items = merge(s.items, c.compile(asMap(e), depth+1))
		}
	}
	for _, k := range []string{"allOf", "anyOf", "oneOf"} {
		if l, ok := m[k].([]any); ok {
			for _, e := range l {
				s = merge(s, c.compile(asMap(e), depth+1))
			}
		}
	}
	if !s.secret && s.props == nil && s.additional == nil && s.items == nil {
		return nil
	}
	return s
}

// resolve finds a local reference (#/$defs/x, #/definitions/x, #/properties/a/...).
func (c *compiler) resolve(ref string) map[string]any {
	p, ok := strings.CutPrefix(ref, "#")
	if !ok {
		return nil // remote references are not fetched
	}
	cur := c.root
	for _, seg := range strings.Split(strings.TrimPrefix(p, "/"), "/") {
		if seg == "" {
			continue
		}
		seg = strings.ReplaceAll(strings.ReplaceAll(seg, "~1", "/"), "~0", "~")
		cur = asMap(cur[seg])
		if cur == nil {
			return nil
		}
	}
	return cur
}

func asMap(v any) map[string]any { m, _ := v.(map[string]any); return m }

// merge returns a schema marking whatever a or b marks: a property is secret when it is
// under either, each read as its own schema reads it (its properties entry, else its
// additionalProperties). It may modify a; b is not modified.
func merge(a, b *Schema) *Schema {
	if a == nil {
		return b.clone()
	}
	if b == nil {
		return a
	}
	props := map[string]*Schema(nil)
	if a.props != nil || b.props != nil {
		props = map[string]*Schema{}
		for k := range a.props {
			props[k] = merge(a.Field(k).clone(), b.Field(k))
		}
		for k := range b.props {
			if _, done := props[k]; !done {
				props[k] = merge(a.Field(k).clone(), b.Field(k))
			}
		}
		for k, v := range props {
			if v == nil {
				props[k] = &Schema{}
			}
		}
	}
	a.secret = a.secret || b.secret
	a.props = props
	a.additional = merge(a.additional, b.additional)
	a.items = merge(a.items, b.items)
	return a
}

// Merge returns a schema marking what a or b marks. Neither argument is modified.
func Merge(a, b *Schema) *Schema { return merge(a.clone(), b) }

func (s *Schema) clone() *Schema {
	if s == nil {
		return nil
	}
	c := &Schema{secret: s.secret, additional: s.additional.clone(), items: s.items.clone()}
	if s.props != nil {
		c.props = make(map[string]*Schema, len(s.props))
		for k, v := range s.props {
			c.props[k] = v.clone()
		}
	}
	return c
}

// Marked is a value secret as a whole (writeOnly: true).
func Marked() *Schema { return &Schema{secret: true} }

// Object is an object whose properties have the given marks (an entry with a nil or
// empty schema is a known, unmarked property) and whose other properties have
// additional's.
func Object(props map[string]*Schema, additional *Schema) *Schema {
	s := &Schema{additional: additional}
	if len(props) > 0 {
		s.props = make(map[string]*Schema, len(props))
		for k, v := range props {
			if v == nil {
				v = &Schema{}
			}
			s.props[k] = v
		}
	}
	return s
}

// ArrayOf is an array whose elements have items' marks.
func ArrayOf(items *Schema) *Schema { return &Schema{items: items} }

// headerValues marks every value under a headers field (see IsSecretContainer), as an
// object of name: value or as a list.
var headerValues = &Schema{additional: &Schema{secret: true}, items: &Schema{secret: true}}

// Field says whether the value under key k of the object m is secret, and which marks
// apply below it. It is the one rule both the redactor and the backend's sealing
// follow: k is secret when the schema marks it, when its name is secret
// (IsSecretName), or when m is a name/value pair whose name is secret
// ({"name": "Authorization", "value": ...}); the values of a headers object
// (IsSecretContainer) are secret whatever their names.
func Field(m map[string]any, k string, sch *Schema) (secret bool, below *Schema) {
	below = sch.Field(k)
	var stack [64]byte
	n := normaliseInto(stack[:0], k) // once: this runs for every key of every call
	if containerNormal(n) {
		if below == nil {
			below = headerValues // shared, never modified
		} else {
			below = merge(below.clone(), headerValues)
		}
	}
	if below.Secret() || secretNormal(n) {
		return true, below
	}
	if k == "value" {
		if name, ok := m["name"].(string); ok && isSecretName(name) {
			return true, below
		}
	}
	return false, below
}

// Secret reports whether the value at this node is marked secret as a whole.
func (s *Schema) Secret() bool { return s != nil && s.secret }

// Field returns the marks of property k of an object at this node: its own
// properties entry (matched exactly, then ignoring case, as decoders that fold case
// would read it), else additionalProperties' marks. nil when none.
func (s *Schema) Field(k string) *Schema {
	if s == nil {
		return nil
	}
	if c, ok := s.props[k]; ok {
		return c
	}
	for name, c := range s.props {
		if strings.EqualFold(name, k) {
			return c
		}
	}
	return s.additional
}

// Items returns the marks of an array's elements at this node.
func (s *Schema) Items() *Schema {
	if s == nil {
		return nil
	}
	return s.items
}

// Paths lists the marked places, for logs and tests: "key", "configurations.*",
// "models[].configurations.custom_headers.*". Sorted.
func (s *Schema) Paths() []string {
	var out []string
	s.paths("", &out)
	sort.Strings(out)
	return out
}

func (s *Schema) paths(prefix string, out *[]string) {
	if s == nil {
		return
	}
	if s.secret {
		p := prefix
		if p == "" {
			p = "."
		}
		*out = append(*out, p)
	}
	join := func(k string) string {
		if prefix == "" {
			return k
		}
		return prefix + "." + k
	}
	for k, c := range s.props {
		c.paths(join(k), out)
	}
	s.additional.paths(join("*"), out)
	s.items.paths(prefix+"[]", out)
}
