package backend

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
)

// apiError is every error a handler returns to a client: a code, a message fit for the
// client (never a secret, never an internal error text) and the field it is about.
type apiError struct {
	Status  int            `json:"-"`
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Field   string         `json:"field,omitempty"`
	Details []fieldProblem `json:"details,omitempty"`
	// RequestID is the request's id (X-Request-Id, set by the proxy), as in the
	// proxy's own error bodies, so a client can quote it.
	RequestID string `json:"request_id,omitempty"`
}

type fieldProblem struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

// asAPIError is err as the client sees it: the *apiError it holds, or a 500 that says
// nothing of err (callers log it). nil stays nil. Functions return error, never a typed
// nil *apiError, so a nil check on their result means what it says.
func asAPIError(err error) *apiError {
	if err == nil {
		return nil
	}
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	return errInternal()
}

func errNotFound(what string) *apiError {
	return &apiError{Status: http.StatusNotFound, Code: "not_found", Message: what + " not found"}
}

func errInternal() *apiError {
	return &apiError{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error; see the backend log with the request id"}
}

func errField(status int, code, field, msg string) *apiError {
	return &apiError{Status: status, Code: code, Field: field, Message: field + ": " + msg}
}

// problems collects validation failures so a client sees all of them at once.
type problems []fieldProblem

func (p *problems) add(field, format string, args ...any) {
	*p = append(*p, fieldProblem{Field: field, Message: fmt.Sprintf(format, args...)})
}

func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	msgs := make([]string, len(p))
	for i, x := range p {
		msgs[i] = x.Field + ": " + x.Message
	}
	return &apiError{Status: http.StatusBadRequest, Code: "validation_error", Field: p[0].Field,
		Message: strings.Join(msgs, "; "), Details: p}
}

const maxBody = 1 << 20

// decodeStrict reads one JSON object into v: unknown fields, trailing data, wrong
// types and bodies over 1 MiB are refused with the field named.
func decodeStrict(r *http.Request, v any) error {
	raw, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxBody))
	if err != nil {
		return jsonError(err)
	}
	if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] != '{' {
		return errField(http.StatusBadRequest, "invalid_json", "body", "must be a JSON object")
	}
	// Unknown (or inexactly spelt) keys first, by their full path with array indexes
	// (models[1].extra), which the decoder's own error lacks.
	var generic any
	if err := json.Unmarshal(raw, &generic); err == nil {
		if field := inexactKey(generic, reflect.TypeOf(v), ""); field != "" {
			return errField(http.StatusBadRequest, "validation_error", field, "unknown field (field names are case-sensitive)")
		}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) && ute.Type != nil {
			if p := pathAt(raw, ute.Offset); p != "" {
				return errField(http.StatusBadRequest, "validation_error", p, "must be "+jsonKind(ute.Type.Kind().String()))
			}
		}
		return jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errField(http.StatusBadRequest, "invalid_json", "body", "must hold exactly one JSON object")
	}
	// (encoding/json matches field names ignoring case, and Unicode folds such as the
	// Kelvin sign for k, so "Workspace_ID" would fill workspace_id although the proxy's
	// policy, which reads keys exactly, never saw a workspace_id: the inexactKey check
	// above lets only exact names pass.)
	return nil
}

// pathAt names the JSON value that ends at byte off of raw, as a path with array indexes
// ("models[1].enabled"), or "" when it cannot tell.
func pathAt(raw []byte, off int64) string {
	type frame struct {
		array     bool
		index     int
		key       string
		expectKey bool
	}
	var stack []frame
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	path := func() string {
		var b strings.Builder
		for _, f := range stack {
			if f.array {
				fmt.Fprintf(&b, "[%d]", f.index)
			} else if f.key != "" {
				if b.Len() > 0 {
					b.WriteByte('.')
				}
				b.WriteString(f.key)
			}
		}
		return b.String()
	}
	// value marks a value starting in the innermost container.
	value := func() {
		if n := len(stack); n > 0 && stack[n-1].array {
			stack[n-1].index++
		}
	}
	for {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		top := len(stack) - 1
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				value()
				if dec.InputOffset() >= off {
					return path() // an object or array where the field wants something else
				}
				stack = append(stack, frame{array: t == '[', index: -1, expectKey: t == '{'})
			default:
				stack = stack[:top]
				if n := len(stack); n > 0 && !stack[n-1].array {
					stack[n-1].expectKey = true
				}
			}
			continue
		case string:
			if top >= 0 && !stack[top].array && stack[top].expectKey {
				stack[top].key, stack[top].expectKey = t, false
				continue
			}
		}
		value()
		if dec.InputOffset() >= off {
			return path()
		}
		if top >= 0 && !stack[top].array {
			stack[top].expectKey = true
		}
	}
}

// inexactKey returns the path of the first object key that matches no field of t by its
// exact JSON name, or "". Maps accept any key; structs are checked recursively.
func inexactKey(v any, t reflect.Type, path string) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch x := v.(type) {
	case map[string]any:
		if t.Kind() != reflect.Struct {
			if t.Kind() == reflect.Map {
				for k, e := range x {
					if f := inexactKey(e, t.Elem(), path+k+"."); f != "" {
						return f
					}
				}
			}
			return ""
		}
		fields := map[string]reflect.Type{}
		for i := 0; i < t.NumField(); i++ {
			sf := t.Field(i)
			if !sf.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
			if name == "-" {
				continue
			}
			if name == "" {
				name = sf.Name
			}
			fields[name] = sf.Type
		}
		for k, e := range x {
			ft, ok := fields[k]
			if !ok {
				return path + k
			}
			if f := inexactKey(e, ft, path+k+"."); f != "" {
				return f
			}
		}
	case []any:
		if t.Kind() == reflect.Slice || t.Kind() == reflect.Array {
			for i, e := range x {
				if f := inexactKey(e, t.Elem(), strings.TrimSuffix(path, ".")+"["+strconv.Itoa(i)+"]."); f != "" {
					return f
				}
			}
		}
	}
	return ""
}

func jsonError(err error) *apiError {
	var mbe *http.MaxBytesError
	var ute *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &mbe):
		return errField(http.StatusRequestEntityTooLarge, "body_too_large", "body", fmt.Sprintf("must be at most %d bytes", maxBody))
	case errors.As(err, &ute):
		f := ute.Field
		if f == "" {
			f = "body"
		}
		return errField(http.StatusBadRequest, "validation_error", f, "must be "+jsonKind(ute.Type.Kind().String()))
	case errors.As(err, &se), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return errField(http.StatusBadRequest, "invalid_json", "body", "is not valid JSON")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return errField(http.StatusBadRequest, "validation_error", f, "unknown field")
	}
	return errField(http.StatusBadRequest, "invalid_json", "body", "could not be decoded")
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "map", "struct":
		return "an object"
	case "slice", "array":
		return "an array"
	case "ptr", "interface":
		return "a valid value"
	}
	return "a number"
}
