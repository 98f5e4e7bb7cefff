package jsonenc

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
)

// Append must write exactly what json.Marshal writes: stored arguments are hashed,
// and rows written before and after it replaced json.Marshal must not differ in form.
func TestAppendJSONMatchesMarshal(t *testing.T) {
	cases := []any{
		nil, true, false, "", "plain", json.Number("12"), json.Number("-0.5e+10"), json.Number(""),
		"quote \" backslash \\ slash / <script>&amp; \u2028 \u2029 tab\t nl\n cr\r bs\b ff\f \x00 \x1f \x7f",
		"invalid \xff utf8 \xc3", "émoji 😀 中文",
		map[string]any{}, []any{}, map[string]any(nil), []any(nil),
		map[string]any{"b": json.Number("1"), "a": []any{"x", nil, true, map[string]any{"z": "", "<": ">"}}, "": "empty key"},
		map[string]any{"nested": map[string]any{"deeper": map[string]any{"k": []any{json.Number("1.5")}}}},
		map[string]string{"other": "type"}, 3.25, 7,
	}
	for _, v := range cases {
		want, werr := json.Marshal(v)
		got, gerr := Append(nil, v)
		if (werr == nil) != (gerr == nil) || string(got) != string(want) {
			t.Errorf("Append(%#v) = %q, %v; json.Marshal = %q, %v", v, got, gerr, want, werr)
		}
	}
	if _, err := Append(nil, json.Number("12abc")); err == nil {
		t.Error("an invalid json.Number must be an error, as in json.Marshal")
	}
	if _, err := Append(nil, map[string]any{"n": json.Number("true")}); err == nil {
		t.Error(`json.Number("true") must be an error, as in json.Marshal`)
	}
}

func TestAppendJSONRandomTrees(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	alphabet := []string{"a", "B", "<", ">", "&", "\"", "\\", "\n", "\x01", "é", "\u2028", "\xff", "sk-", " ", "z"}
	str := func() string {
		var b strings.Builder
		for range rng.IntN(8) {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		return b.String()
	}
	var gen func(depth int) any
	gen = func(depth int) any {
		switch k := rng.IntN(7); {
		case depth > 4 || k == 0:
			return str()
		case k == 1:
			return json.Number([]string{"0", "-1", "3.14", "1e9", "-2.5E-3"}[rng.IntN(5)])
		case k == 2:
			return rng.IntN(2) == 0
		case k == 3:
			return nil
		case k == 4:
			a := make([]any, rng.IntN(4))
			for i := range a {
				a[i] = gen(depth + 1)
			}
			return a
		default:
			m := map[string]any{}
			for range rng.IntN(20) {
				m[str()] = gen(depth + 1)
			}
			return m
		}
	}
	for i := 0; i < 2000; i++ {
		v := gen(0)
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Append([]byte("prefix"), v)
		if err != nil || string(got) != "prefix"+string(want) {
			t.Fatalf("tree %d: Append = %q, %v; json.Marshal = %q", i, got, err, want)
		}
	}
}

func BenchmarkArgumentsEncoding(b *testing.B) {
	v := map[string]any{"slug": "prod-openai", "name": "Production <OpenAI>", "limits": map[string]any{"rpm": json.Number("600")}, "tags": []any{"a", "b"}}
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = json.Marshal(v)
		}
	})
	b.Run("Append", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf, _ = Append(buf[:0], v)
		}
	})
}
