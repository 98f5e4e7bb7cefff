package strictjson

import (
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func TestParseAccepts(t *testing.T) {
	cases := []struct {
		note string
		in   string
		want any
	}{
		{"object", `{"a":1,"b":"x"}`, map[string]any{"a": json.Number("1"), "b": "x"}},
		{"nested", `{"a":{"b":[true,false,null]}}`, map[string]any{"a": map[string]any{"b": []any{true, false, nil}}}},
		{"escapes", `"a\"b\\c\/\n\u00e9\ud83d\ude00"`, "a\"b\\c/\né😀"},
		{"number forms", `[-0,1.5e10,2E-3,12345678901234567890]`, []any{json.Number("-0"), json.Number("1.5e10"), json.Number("2E-3"), json.Number("12345678901234567890")}},
		{"whitespace", " \t\n{ } ", map[string]any{}},
		{"depth at limit", strings.Repeat("[", 32) + strings.Repeat("]", 32), nil},
		{"mixed-case keys that do not collide", `{"Name":"a","slug":"b"}`, map[string]any{"Name": "a", "slug": "b"}},
		{"non-ASCII keys", `{"clé":1,"Ключ":2}`, map[string]any{"clé": json.Number("1"), "Ключ": json.Number("2")}},
	}
	for _, tc := range cases {
		t.Run(tc.note, func(t *testing.T) {
			got, err := Parse([]byte(tc.in), DefaultMaxDepth)
			if err != nil {
				t.Fatalf("Parse(%q) error: %v", tc.in, err)
			}
			if tc.want != nil && !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Parse(%q) = %#v, want %#v", tc.in, got, tc.want)
			}
		})
	}
}

func TestParseRefuses(t *testing.T) {
	cases := []struct {
		note string
		in   string
		rule string
	}{
		{"duplicate key", `{"name":"a","name":"b"}`, "duplicate_key"},
		{"duplicate key nested", `{"params":{"arguments":{"k":1,"k":2}}}`, "duplicate_key"},
		{"duplicate key via escape", `{"name":"a","n\u0061me":"b"}`, "duplicate_key"},
		{"too deep objects", strings.Repeat(`{"a":`, 33) + "1" + strings.Repeat("}", 33), "max_depth"},
		{"too deep arrays", strings.Repeat("[", 33) + strings.Repeat("]", 33), "max_depth"},
		{"invalid utf8", "{\"a\":\"\xff\"}", "invalid_utf8"},
		{"lone high surrogate", `"\ud800"`, "invalid_utf8"},
		{"lone low surrogate", `"\udc00x"`, "invalid_utf8"},
		{"keys differing in case", `{"workspace_id":"a","Workspace_ID":"b"}`, "ambiguous_key"},
		{"kelvin sign key", "{\"\u212aey\":1}", "ambiguous_key"},
		{"kelvin sign escaped", `{"\u212aey":1}`, "ambiguous_key"},
		{"long s key", "{\"\u017fecret\":1}", "ambiguous_key"},
		{"trailing data", `{} {}`, "syntax"},
		{"trailing comma", `{"a":1,}`, "syntax"},
		{"single quotes", `{'a':1}`, "syntax"},
		{"control char", "\"a\tb\"", "syntax"},
		{"empty", ``, "syntax"},
		{"leading zero", `01`, "syntax"},
		{"NaN", `NaN`, "syntax"},
	}
	for _, tc := range cases {
		t.Run(tc.note, func(t *testing.T) {
			_, err := Parse([]byte(tc.in), DefaultMaxDepth)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Parse(%q) error = %v, want *Error", tc.in, err)
			}
			if e.Rule != tc.rule {
				t.Fatalf("Parse(%q) rule = %q (%v), want %q", tc.in, e.Rule, e, tc.rule)
			}
		})
	}
}

// Input that stops before its value is complete is reported as such, at the byte where it
// ends, whatever the parser expected next; input that is wrong before its end is not.
func TestParseEndOfInput(t *testing.T) {
	for _, in := range []string{
		`{"name":"x",`, `{"name":"x", `, `{"name"`, `{"name":`, `{"a":1`, `[1,`, `[`, `"abc`, `"ab\`,
		`{"a":tru`, `{"a":n`, `-`, `1.`, `1e+`, `"\u12`, `"\ud83d`, `"\ud83d\`, `"\ud83d\ude0`,
	} {
		_, err := Parse([]byte(in), DefaultMaxDepth)
		var e *Error
		if !errors.As(err, &e) || e.Rule != "syntax" || e.Offset != len(in) ||
			err.Error() != "json: unexpected end of JSON input at byte "+strconv.Itoa(len(in)) {
			t.Errorf("Parse(%q) = %v, want unexpected end of JSON input at byte %d", in, err, len(in))
		}
	}
	for _, in := range []string{`{"a":trux}`, `"\u12"`, `"\ud83d"`, `{"a":1}x`, `{"a" 1}`} {
		if _, err := Parse([]byte(in), DefaultMaxDepth); err == nil || strings.Contains(err.Error(), "end of JSON input") {
			t.Errorf("Parse(%q) = %v, want an error that is not about the end of input", in, err)
		}
	}
}

// FuzzParse checks that whatever Parse accepts, encoding/json reads the same way, and that
// Parse never panics.
func FuzzParse(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `[1,"x",{"b":null}]`, `"\ud83d\ude00"`, `{"a":{"a":1}}`, `-1.5e3`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := Parse(data, DefaultMaxDepth)
		if err != nil {
			return
		}
		var std any
		dec := json.NewDecoder(strings.NewReader(string(data)))
		dec.UseNumber()
		if err := dec.Decode(&std); err != nil {
			t.Fatalf("Parse accepted %q but encoding/json refused: %v", data, err)
		}
		if !reflect.DeepEqual(v, std) {
			t.Fatalf("Parse and encoding/json disagree on %q: %#v vs %#v", data, v, std)
		}
	})
}

func BenchmarkParseToolCall(b *testing.B) {
	body := []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"create_integration","arguments":{"name":"prod openai","ai_provider_id":"openai","key":"sk-test-1234567890abcdef","description":"main key"}}}`)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := Parse(body, DefaultMaxDepth); err != nil {
			b.Fatal(err)
		}
	}
}
