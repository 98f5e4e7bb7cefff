package proxy

import (
	"encoding/json"
	"testing"
)

// Every agent session lists the tools: a tools/list that repeats what was learned
// compiles and publishes nothing, and one that changes a tool's schema replaces it.
func TestARepeatedToolsListPublishesNothing(t *testing.T) {
	ts, err := newToolSecrets(nil)
	if err != nil {
		t.Fatal(err)
	}
	list := func(prop string) []any {
		var v []any
		if err := json.Unmarshal([]byte(`[{"name":"store","inputSchema":{"type":"object","properties":{"`+prop+`":{"type":"string","writeOnly":true}}}}]`), &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	ts.learn(list("blob"))
	first := ts.cur.Load()
	if ts.For("store") == nil {
		t.Fatal("the first tools/list taught nothing")
	}
	for i := 0; i < 3; i++ {
		ts.learn(list("blob"))
	}
	if ts.cur.Load() != first {
		t.Fatal("an unchanged tools/list republished the marks")
	}
	ts.learn(list("other"))
	if ts.cur.Load() == first {
		t.Fatal("a changed schema was not published")
	}
	if _, ok := (*ts.cur.Load())["store"]; !ok {
		t.Fatal("the changed schema's marks are missing")
	}
}
