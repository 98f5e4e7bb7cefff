package approvals

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/portcullis/portcullis/policies/principal"
)

const maxCanonicalDepth = 64

// CanonicalHash identifies one request for approval purposes: SHA-256 (hex) over the
// caller's sub, org, workspace and session, the tool, the target (where the call goes:
// the proxy passes surface, method, path and upstream name, so an approval given for a
// REST call cannot be spent on the same tool over MCP, or against another upstream), the
// policy revision and the canonical JSON of the arguments (object keys sorted, number
// literals kept as written, no insignificant whitespace). Each part is length-prefixed so
// no two different requests share an encoding. Empty rawArgs means {}. Duplicate keys,
// invalid UTF-8 and trailing data are errors: they are inputs that could be read two ways.
func CanonicalHash(caller principal.Caller, tool, target string, rawArgs []byte, revision string) (string, error) {
	canon, err := canonicalJSON(rawArgs)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	io.WriteString(h, "portcullis.approval.v2\n")
	var lenBuf [binary.MaxVarintLen64]byte
	for _, part := range [][]byte{
		[]byte(caller.Sub), []byte(caller.Org), []byte(caller.Workspace), []byte(caller.Session),
		[]byte(tool), []byte(target), []byte(revision), canon,
	} {
		h.Write(lenBuf[:binary.PutUvarint(lenBuf[:], uint64(len(part)))])
		h.Write(part)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func canonicalJSON(raw []byte) ([]byte, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return []byte("{}"), nil
	}
	if !utf8.Valid(raw) {
		return nil, errors.New("approvals: arguments: invalid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var buf bytes.Buffer
	if err := canonicalValue(dec, &buf, 0); err != nil {
		return nil, fmt.Errorf("approvals: arguments: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("approvals: arguments: trailing data after the JSON value")
	}
	return buf.Bytes(), nil
}

func canonicalValue(dec *json.Decoder, out *bytes.Buffer, depth int) error {
	if depth > maxCanonicalDepth {
		return fmt.Errorf("nested deeper than %d", maxCanonicalDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			type member struct {
				key string
				val []byte
			}
			var members []member
			seen := make(map[string]struct{})
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return err
				}
				key, ok := kt.(string)
				if !ok {
					return errors.New("object key is not a string")
				}
				if _, dup := seen[key]; dup {
					return fmt.Errorf("duplicate key %q", key)
				}
				seen[key] = struct{}{}
				var v bytes.Buffer
				if err := canonicalValue(dec, &v, depth+1); err != nil {
					return err
				}
				members = append(members, member{key, v.Bytes()})
			}
			if _, err := dec.Token(); err != nil { // '}'
				return err
			}
			slices.SortFunc(members, func(a, b member) int { return strings.Compare(a.key, b.key) })
			out.WriteByte('{')
			for i, m := range members {
				if i > 0 {
					out.WriteByte(',')
				}
				writeString(out, m.key)
				out.WriteByte(':')
				out.Write(m.val)
			}
			out.WriteByte('}')
		case '[':
			out.WriteByte('[')
			for i := 0; dec.More(); i++ {
				if i > 0 {
					out.WriteByte(',')
				}
				if err := canonicalValue(dec, out, depth+1); err != nil {
					return err
				}
			}
			if _, err := dec.Token(); err != nil { // ']'
				return err
			}
			out.WriteByte(']')
		default:
			return fmt.Errorf("unexpected %q", t)
		}
	case string:
		writeString(out, t)
	case json.Number:
		out.WriteString(t.String())
	case bool:
		if t {
			out.WriteString("true")
		} else {
			out.WriteString("false")
		}
	case nil:
		out.WriteString("null")
	default:
		return fmt.Errorf("unexpected token %T", tok)
	}
	return nil
}

func writeString(out *bytes.Buffer, s string) {
	b, _ := json.Marshal(s) // cannot fail for a string
	out.Write(b)
}
