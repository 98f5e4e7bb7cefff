package backend

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// A type error or an unknown field inside an array is named with its index.
func TestDecodeErrorsNameTheArrayIndex(t *testing.T) {
	for _, tc := range []struct{ body, field string }{
		{`{"models":[{"slug":"a","enabled":true},{"slug":"b","enabled":"yes"}]}`, "models[1].enabled"},
		{`{"models":[{"slug":"a","enabled":true,"extra":1}]}`, "models[0].extra"},
		{`{"models":[{"slug":"a","enabled":true},{"slug":{"x":1},"enabled":true}]}`, "models[1].slug"},
		{`{"models":"nope"}`, "models"},
	} {
		var req modelsReq
		r := httptest.NewRequest("PUT", "/", strings.NewReader(tc.body))
		ae := decodeStrict(r, &req)
		if ae == nil || ae.Field != tc.field {
			t.Errorf("%s: %+v, want field %s", tc.body, ae, tc.field)
		}
	}
	raw := []byte(`{"a":[1,2,{"b":[true,"x"]}]}`)
	if p := pathAt(raw, int64(strings.Index(string(raw), `"x"`)+3)); p != "a[2].b[1]" {
		t.Errorf("pathAt = %q, want a[2].b[1]", p)
	}
}
