package strictjson

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// DefaultMaxDepth is the nesting limit the proxy applies to request bodies.
const DefaultMaxDepth = 32

// Error says what is wrong with the input and where. Its message names a byte offset and a
// rule; of the input's content it names only the object keys a key rule refused, quoted with
// %q (so control characters are escaped) and cut to maxKeyInMsg bytes, never a value.
type Error struct {
	Offset int
	Rule   string // "duplicate_key" | "ambiguous_key" | "max_depth" | "number_range" | "invalid_utf8" | "syntax"
	Msg    string
}

func (e *Error) Error() string { return fmt.Sprintf("json: %s at byte %d", e.Msg, e.Offset) }

// Parse decodes data into map[string]any, []any, string, json.Number, bool or nil.
// Numbers stay json.Number so no precision is lost between policy, audit and upstream.
func Parse(data []byte, maxDepth int) (any, error) {
	if !utf8.Valid(data) {
		return nil, &Error{Offset: invalidUTF8Offset(data), Rule: "invalid_utf8", Msg: "invalid UTF-8"}
	}
	p := parser{data: data, maxDepth: maxDepth}
	p.skipSpace()
	v, err := p.value(0)
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.pos != len(p.data) {
		return nil, p.errorf("syntax", "unexpected data after the top-level value")
	}
	return v, nil
}

func invalidUTF8Offset(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(b)
}

type parser struct {
	data     []byte
	pos      int
	maxDepth int
}

// errEOF is the message of every error caused by input that stops before the value is
// complete, whatever the parser expected next (the wording of encoding/json).
const errEOF = "unexpected end of JSON input"

func (p *parser) errorf(rule, format string, args ...any) error {
	if rule == "syntax" && p.pos >= len(p.data) {
		return &Error{Offset: len(p.data), Rule: rule, Msg: errEOF}
	}
	return &Error{Offset: p.pos, Rule: rule, Msg: fmt.Sprintf(format, args...)}
}

// truncated reports whether the rest of the input is a proper prefix of want: the input
// ended inside a literal or an escape.
func (p *parser) truncated(want func(i int, c byte) bool, n int) bool {
	rest := p.data[p.pos:]
	if len(rest) >= n {
		return false
	}
	for i, c := range rest {
		if !want(i, c) {
			return false
		}
	}
	return true
}

func (p *parser) skipSpace() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *parser) value(depth int) (any, error) {
	if p.pos >= len(p.data) {
		return nil, p.errorf("syntax", "unexpected end of input")
	}
	switch c := p.data[p.pos]; {
	case c == '{':
		return p.object(depth + 1)
	case c == '[':
		return p.array(depth + 1)
	case c == '"':
		return p.string()
	case c == 't':
		return true, p.literal("true")
	case c == 'f':
		return false, p.literal("false")
	case c == 'n':
		return nil, p.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	default:
		return nil, p.errorf("syntax", "unexpected character %q", c)
	}
}

func (p *parser) literal(word string) error {
	if len(p.data)-p.pos < len(word) || string(p.data[p.pos:p.pos+len(word)]) != word {
		if p.truncated(func(i int, c byte) bool { return word[i] == c }, len(word)) {
			p.pos = len(p.data)
		}
		return p.errorf("syntax", "invalid literal")
	}
	p.pos += len(word)
	return nil
}

func (p *parser) object(depth int) (any, error) {
	if depth > p.maxDepth {
		return nil, p.errorf("max_depth", "nesting deeper than %d", p.maxDepth)
	}
	p.pos++ // '{'
	m := make(map[string]any)
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		p.pos++
		return m, nil
	}
	objAt := p.pos
	needFold := false
	for {
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != '"' {
			return nil, p.errorf("syntax", "expected a string key")
		}
		keyAt := p.pos
		k, err := p.string()
		if err != nil {
			return nil, err
		}
		if _, dup := m[k]; dup {
			return nil, &Error{Offset: keyAt, Rule: "duplicate_key", Msg: "duplicate object key " + QuoteKey(k)}
		}
		if fold, err := foldClass(k, keyAt); err != nil {
			return nil, err
		} else if fold {
			needFold = true
		}
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return nil, p.errorf("syntax", "expected ':' after object key")
		}
		p.pos++
		p.skipSpace()
		v, err := p.value(depth)
		if err != nil {
			return nil, err
		}
		m[k] = v
		p.skipSpace()
		if p.pos >= len(p.data) {
			return nil, p.errorf("syntax", "unexpected end of input in object")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
		case '}':
			p.pos++
			if needFold {
				if err := p.foldCollision(m, objAt, depth); err != nil {
					return nil, err
				}
			}
			return m, nil
		default:
			return nil, p.errorf("syntax", "expected ',' or '}' in object")
		}
	}
}

func (p *parser) array(depth int) (any, error) {
	if depth > p.maxDepth {
		return nil, p.errorf("max_depth", "nesting deeper than %d", p.maxDepth)
	}
	p.pos++ // '['
	a := make([]any, 0, 4)
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		p.pos++
		return a, nil
	}
	for {
		p.skipSpace()
		v, err := p.value(depth)
		if err != nil {
			return nil, err
		}
		a = append(a, v)
		p.skipSpace()
		if p.pos >= len(p.data) {
			return nil, p.errorf("syntax", "unexpected end of input in array")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
		case ']':
			p.pos++
			return a, nil
		default:
			return nil, p.errorf("syntax", "expected ',' or ']' in array")
		}
	}
}

func (p *parser) number() (any, error) {
	start := p.pos
	if p.data[p.pos] == '-' {
		p.pos++
	}
	digits := func() int {
		n := 0
		for p.pos < len(p.data) && p.data[p.pos] >= '0' && p.data[p.pos] <= '9' {
			p.pos++
			n++
		}
		return n
	}
	if p.pos < len(p.data) && p.data[p.pos] == '0' {
		p.pos++
	} else if digits() == 0 {
		return nil, p.errorf("syntax", "invalid number")
	}
	if p.pos < len(p.data) && p.data[p.pos] == '.' {
		p.pos++
		if digits() == 0 {
			return nil, p.errorf("syntax", "invalid number fraction")
		}
	}
	if p.pos < len(p.data) && (p.data[p.pos] == 'e' || p.data[p.pos] == 'E') {
		p.pos++
		if p.pos < len(p.data) && (p.data[p.pos] == '+' || p.data[p.pos] == '-') {
			p.pos++
		}
		expAt := p.pos
		if digits() == 0 {
			return nil, p.errorf("syntax", "invalid number exponent")
		}
		for expAt < p.pos-1 && p.data[expAt] == '0' { // 1e0005 is 1e5
			expAt++
		}
		if p.pos-expAt > 4 || (p.pos-expAt == 4 && string(p.data[expAt:p.pos]) > strconv.Itoa(maxExponent)) {
			return nil, &Error{Offset: start, Rule: "number_range", Msg: "number out of range (exponent beyond ±" + strconv.Itoa(maxExponent) + ")"}
		}
	}
	if p.pos-start > maxNumberLen {
		return nil, &Error{Offset: start, Rule: "number_range", Msg: "number out of range (longer than " + strconv.Itoa(maxNumberLen) + " characters)"}
	}
	return json.Number(p.data[start:p.pos]), nil
}

// Numbers stay literals (json.Number), but policy evaluation refuses those whose binary
// exponent passes 1e5, and big literals cost big-number arithmetic: a number is refused
// here, as a 400 before policy, past maxNumberLen characters or with an exponent past
// ±maxExponent. Both are far beyond any quantity an API call carries.
const (
	maxNumberLen = 400
	maxExponent  = 4000
)

func (p *parser) string() (string, error) {
	p.pos++ // opening quote
	start := p.pos
	// Fast path: no escapes.
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		if c == '"' {
			s := string(p.data[start:p.pos])
			p.pos++
			return s, nil
		}
		if c == '\\' {
			break
		}
		if c < 0x20 {
			return "", p.errorf("syntax", "control character in string")
		}
		p.pos++
	}
	buf := make([]byte, 0, p.pos-start+16)
	buf = append(buf, p.data[start:p.pos]...)
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		switch {
		case c == '"':
			p.pos++
			return string(buf), nil
		case c < 0x20:
			return "", p.errorf("syntax", "control character in string")
		case c != '\\':
			buf = append(buf, c)
			p.pos++
			continue
		}
		p.pos++ // backslash
		if p.pos >= len(p.data) {
			break
		}
		e := p.data[p.pos]
		p.pos++
		switch e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			r, err := p.hex4()
			if err != nil {
				return "", err
			}
			if utf16.IsSurrogate(r) {
				// A surrogate must be a high one followed by an escaped low one; a lone
				// surrogate decodes differently in different parsers, so it is refused.
				if r < 0xDC00 && p.truncated(func(i int, c byte) bool { return c == `\u`[i] }, 2) {
					p.pos = len(p.data) // the input ends where the low surrogate belongs
					return "", p.errorf("syntax", "unterminated surrogate pair")
				}
				if r >= 0xDC00 || p.pos+1 >= len(p.data) || p.data[p.pos] != '\\' || p.data[p.pos+1] != 'u' {
					return "", &Error{Offset: p.pos, Rule: "invalid_utf8", Msg: "lone UTF-16 surrogate escape"}
				}
				p.pos += 2
				r2, err := p.hex4()
				if err != nil {
					return "", err
				}
				r = utf16.DecodeRune(r, r2)
				if r == utf8.RuneError {
					return "", &Error{Offset: p.pos, Rule: "invalid_utf8", Msg: "invalid UTF-16 surrogate pair"}
				}
			}
			buf = utf8.AppendRune(buf, r)
		default:
			return "", p.errorf("syntax", "invalid escape")
		}
	}
	return "", p.errorf("syntax", "unterminated string")
}

func (p *parser) hex4() (rune, error) {
	if len(p.data)-p.pos < 4 {
		if p.truncated(func(_ int, c byte) bool { return isHex(c) }, 4) {
			p.pos = len(p.data)
		}
		return 0, p.errorf("syntax", "short unicode escape")
	}
	v, err := strconv.ParseUint(string(p.data[p.pos:p.pos+4]), 16, 32)
	if err != nil {
		return 0, p.errorf("syntax", "invalid unicode escape")
	}
	p.pos += 4
	return rune(v), nil
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// Decoders that match object keys to fields ignoring case (encoding/json does, with
// Unicode folding) read {"Workspace_ID": ...} as workspace_id, while a policy reads keys
// exactly. So keys that differ only in case are refused, and so are the two non-ASCII
// letters that fold to ASCII ones (U+212A KELVIN SIGN -> k, U+017F LONG S -> s).

// foldClass reports whether k needs the case-fold collision check (it has an upper-case
// or non-ASCII letter), and refuses keys holding a letter that folds to ASCII.
func foldClass(k string, at int) (bool, error) {
	need := false
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c >= 'A' && c <= 'Z' {
			need = true
		} else if c >= 0x80 {
			need = true
			if strings.ContainsRune(k, '\u212A') || strings.ContainsRune(k, '\u017F') {
				return false, &Error{Offset: at, Rule: "ambiguous_key", Msg: "object key " + QuoteKey(k) + " has a letter that case-folds to ASCII"}
			}
			break
		}
	}
	return need, nil
}

// foldCollision refuses the object m, whose first key starts at objAt, if two of its keys
// differ only in case. The map has lost the keys' order and offsets, so only when there is a
// collision is the object read again to name the first key, in document order, that
// collides with an earlier one: the success path pays nothing for the message.
func (p *parser) foldCollision(m map[string]any, objAt, depth int) error {
	seen := make(map[string]struct{}, len(m))
	for k := range m {
		f := strings.ToLower(k)
		if _, dup := seen[f]; dup {
			return p.locateFoldCollision(objAt, depth)
		}
		seen[f] = struct{}{}
	}
	return nil
}

// locateFoldCollision reads again the object whose first key starts at objAt, which has
// already parsed without error, and reports the first key that differs only in case from
// an earlier one, at that later key's offset.
func (p *parser) locateFoldCollision(objAt, depth int) error {
	q := parser{data: p.data, pos: objAt, maxDepth: p.maxDepth}
	first := make(map[string]string) // folded key -> the first key folding to it
	for {
		q.skipSpace()
		keyAt := q.pos
		k, err := q.string()
		if err != nil {
			break
		}
		f := strings.ToLower(k)
		if prev, ok := first[f]; ok {
			return &Error{Offset: keyAt, Rule: "ambiguous_key",
				Msg: "object keys " + QuoteKey(prev) + " and " + QuoteKey(k) + " differ only in case"}
		}
		first[f] = k
		q.skipSpace()
		q.pos++ // ':'
		q.skipSpace()
		if _, err := q.value(depth); err != nil {
			break
		}
		q.skipSpace()
		if q.pos >= len(q.data) || q.data[q.pos] != ',' {
			break
		}
		q.pos++
	}
	// Unreachable: the object parsed once and foldCollision found a collision in it.
	return &Error{Offset: objAt, Rule: "ambiguous_key", Msg: "object keys that differ only in case"}
}

// maxKeyInMsg bounds how much of a key an error message repeats.
const maxKeyInMsg = 64

// QuoteKey renders a key for an error message as %q does, cut to its first maxKeyInMsg
// bytes (backing off to a rune boundary, so a rune is never split into \x escapes) and
// followed by "..." outside the quotes when cut, so a message never echoes a huge key.
func QuoteKey(k string) string {
	if len(k) <= maxKeyInMsg {
		return strconv.Quote(k)
	}
	n := maxKeyInMsg
	for n > 0 && !utf8.RuneStart(k[n]) {
		n--
	}
	return strconv.Quote(k[:n]) + "..."
}
