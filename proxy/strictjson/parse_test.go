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
	for _, s := range []string{`{"a":1}`, `[1,"x",{"b":null}]`, `"\ud83d\ude00"`, `{"a":{"a":1}}`, `-1.5e3`,
		`{"a":1,"a":2}`, `[{"b":{"x":1},"B":2}]`, "{\"k\":1,\"\u212a\":2}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := Parse(data, DefaultMaxDepth)
		if err != nil {
			// A key rule points at the opening quote of the key it refuses.
			if e, ok := err.(*Error); ok && (e.Rule == "duplicate_key" || e.Rule == "ambiguous_key") &&
				(e.Offset >= len(data) || data[e.Offset] != '"') {
				t.Fatalf("Parse(%q) = %v: offset is not a key's opening quote", data, err)
			}
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

// Mixed-case keys take the case-fold check on the success path.
func BenchmarkParseMixedCaseKeys(b *testing.B) {
	body := []byte(`{"Name":"prod openai","AI_Provider_ID":"openai","Key":"sk-test-1234567890abcdef","description":"main key","Workspace":{"ID":"ws-1","Slug":"main"}}`)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := Parse(body, DefaultMaxDepth); err != nil {
			b.Fatal(err)
		}
	}
}

// A refused key is named in the message (quoted with %q, cut to 64 bytes) and the offset
// is that of the later, offending key's opening quote.
func TestParseKeyErrorsNameTheKey(t *testing.T) {
	long := strings.Repeat("0123456789", 10) // 100 bytes
	long64 := long[:64]
	cut := `"` + long64 + `"...`
	// 63 bytes then a 2-byte rune straddling byte 64: the cut backs off to a rune boundary.
	wide := strings.Repeat("a", 63) + "éé"
	cases := []struct {
		note   string
		in     string
		rule   string
		offset int
		msg    string
	}{
		{"duplicate key", `{"name":"c","name":"d"}`, "duplicate_key", 12,
			`json: duplicate object key "name" at byte 12`},
		{"duplicate key in an object in an array", `{"items":[{"id":1},{"id":2,"id":3}]}`, "duplicate_key", 27,
			`json: duplicate object key "id" at byte 27`},
		{"duplicate key via escape is named decoded", `{"name":"a","n\u0061me":"b"}`, "duplicate_key", 12,
			`json: duplicate object key "name" at byte 12`},
		{"duplicate key with a control character", `{"a\nb":1, "a\nb":2}`, "duplicate_key", 11,
			`json: duplicate object key "a\nb" at byte 11`},
		{"keys differing in case", `{"name":"c","Name":"d"}`, "ambiguous_key", 12,
			`json: object keys "name" and "Name" differ only in case at byte 12`},
		{"keys differing in case, upper first", `{"Name":"c","name":"d"}`, "ambiguous_key", 12,
			`json: object keys "Name" and "name" differ only in case at byte 12`},
		{"first clash in document order", `{"name":1,"x":{"y":2},"NAME":3,"Name":4,"X":5}`, "ambiguous_key", 22,
			`json: object keys "name" and "NAME" differ only in case at byte 22`},
		{"keys differing in case in an array", `[{"ok":1},{"id":1,"ID":2}]`, "ambiguous_key", 18,
			`json: object keys "id" and "ID" differ only in case at byte 18`},
		{"kelvin sign", "{\"k\":1,\"\u212a\":2}", "ambiguous_key", 7,
			"json: object key \"\u212a\" has a letter that case-folds to ASCII at byte 7"},
		{"kelvin sign first", "{\"\u212aey\":1,\"key\":2}", "ambiguous_key", 1,
			"json: object key \"\u212aey\" has a letter that case-folds to ASCII at byte 1"},
		{"long s", "{\"s\":1,\"\u017f\":2}", "ambiguous_key", 7,
			"json: object key \"\u017f\" has a letter that case-folds to ASCII at byte 7"},
		{"long duplicate key is cut", `{"` + long + `":1,"` + long + `":2}`, "duplicate_key", 106,
			`json: duplicate object key ` + cut + ` at byte 106`},
		{"long keys differing in case are cut", `{"` + long + `x":1,"` + long + `X":2}`, "ambiguous_key", 107,
			`json: object keys ` + cut + ` and ` + cut + ` differ only in case at byte 107`},
		{"64-byte key is not cut", `{"` + long64 + `":1,"` + long64 + `":2}`, "duplicate_key", 70,
			`json: duplicate object key "` + long64 + `" at byte 70`},
		{"cut at a rune boundary", `{"` + wide + `":1,"` + wide + `":2}`, "duplicate_key", 73,
			`json: duplicate object key "` + strings.Repeat("a", 63) + `"... at byte 73`},
	}
	for _, tc := range cases {
		t.Run(tc.note, func(t *testing.T) {
			for range 20 { // the case-fold check ranges over a map: the answer must not vary
				_, err := Parse([]byte(tc.in), DefaultMaxDepth)
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("Parse(%q) error = %v, want *Error", tc.in, err)
				}
				if e.Rule != tc.rule || e.Offset != tc.offset || err.Error() != tc.msg {
					t.Fatalf("Parse(%q) = rule %q, offset %d, %q\nwant rule %q, offset %d, %q",
						tc.in, e.Rule, e.Offset, err.Error(), tc.rule, tc.offset, tc.msg)
				}
				if tc.in[tc.offset] != '"' {
					t.Fatalf("test offset %d is not a key's opening quote", tc.offset)
				}
			}
		})
	}
}

// Numbers policy evaluation cannot take (OPA refuses binary exponents past 1e5) are a
// 400 before policy, not a policy error: out of range by exponent or by length.
func TestNumberRange(t *testing.T) {
	long := strings.Repeat("9", 400)
	for _, ok := range []string{"1e308", "1e4000", "-1E-4000", "1e+0400", long, "0." + strings.Repeat("0", 397) + "1", "123456789012345678901234567890", "1e00001", "2E-0004000"} {
		if _, err := Parse([]byte(`{"n":`+ok+`}`), DefaultMaxDepth); err != nil {
			t.Errorf("%.40s: %v, want accepted", ok, err)
		}
	}
	for _, bad := range []string{"1e999999", "1e4001", "-1E-4001", "2e10000", long + "9", "1e0004001"} {
		_, err := Parse([]byte(`{"n":`+bad+`}`), DefaultMaxDepth)
		var je *Error
		if !errors.As(err, &je) || je.Rule != "number_range" || je.Offset != 5 || !strings.Contains(je.Msg, "number out of range") {
			t.Errorf("%.40s: %v, want a number_range error at byte 5", bad, err)
		}
	}
}
