package proxy

import (
	"encoding/json"
	"errors"
	"iter"
	"reflect"
	"testing"

	"github.com/portcullis/portcullis/proxy/apierror"
)

func queryOf(kv ...string) iter.Seq2[[]byte, []byte] {
	return func(yield func([]byte, []byte) bool) {
		for i := 0; i+1 < len(kv); i += 2 {
			if !yield([]byte(kv[i]), []byte(kv[i+1])) {
				return
			}
		}
	}
}

// REST arguments come from the query, the body and the path, under the route's names;
// whatever could be read two ways is refused, naming the argument.
func TestRESTArgumentsHaveOneReading(t *testing.T) {
	cases := []struct {
		name      string
		query     []string
		body      string
		params    map[string]string
		renames   map[string]string
		want      string // JSON of the arguments
		wantCode  string
		wantField string
	}{
		{name: "query, body and path", query: []string{"page", "2"}, body: `{"name":"x","n":1}`, params: map[string]string{"slug": "s"},
			want: `{"n":1,"name":"x","page":"2","slug":"s"}`},
		{name: "no body", query: []string{"a", "1"}, want: `{"a":"1"}`},
		{name: "non-object body is read as body", body: `["a"]`, want: `{"body":["a"]}`},
		{name: "repeated query parameter", query: []string{"a", "1", "a", "2"}, wantCode: "ambiguous_argument", wantField: "a"},
		{name: "query and body", query: []string{"name", "q"}, body: `{"name":"b"}`, wantCode: "ambiguous_argument", wantField: "name"},
		{name: "query body beside a non-object body", query: []string{"body", "x"}, body: `"s"`, wantCode: "ambiguous_argument", wantField: "body"},
		{name: "body differs from the path", body: `{"slug":"other"}`, params: map[string]string{"slug": "s"}, wantCode: "ambiguous_argument", wantField: "slug"},
		{name: "body agrees with the path", body: `{"slug":"s"}`, params: map[string]string{"slug": "s"}, want: `{"slug":"s"}`},
		{name: "rename", body: `{"workspaceId":"ws-1"}`, renames: map[string]string{"workspaceId": "workspace_id"}, want: `{"workspace_id":"ws-1"}`},
		{name: "both spellings of a renamed argument", body: `{"workspaceId":"ws-1","workspace_id":"ws-2"}`, renames: map[string]string{"workspaceId": "workspace_id"},
			wantCode: "ambiguous_argument", wantField: "workspaceId"},
		{name: "duplicate body key", body: `{"a":1,"a":2}`, wantCode: "invalid_json", wantField: "body"},
		{name: "truncated body", body: `{"a":`, wantCode: "invalid_json", wantField: "body"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args, err := restArguments(queryOf(tc.query...), []byte(tc.body), tc.params, tc.renames, "tool")
			if tc.wantCode != "" {
				var he *apierror.Error
				if !errors.As(err, &he) || he.Code != tc.wantCode || he.Field != tc.wantField || he.Status != 400 {
					t.Fatalf("err %v (%+v), want 400 %s naming %s", err, he, tc.wantCode, tc.wantField)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var want map[string]any
			if err := json.Unmarshal([]byte(tc.want), &want); err != nil {
				t.Fatal(err)
			}
			got, _ := json.Marshal(args)
			var gotv map[string]any
			_ = json.Unmarshal(got, &gotv)
			if !reflect.DeepEqual(gotv, want) {
				t.Fatalf("args %s, want %s", got, tc.want)
			}
		})
	}
}
