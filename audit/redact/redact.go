package redact

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"hash"
	"strconv"
	"strings"
	"sync"
	"unicode"
)

// Prefix starts every redacted value.
const Prefix = "hmac-sha256:"

// redactedLen is len(Prefix) + 16 hex digits (the first 8 bytes of the MAC:
// enough to correlate uses of one secret, too short to be worth attacking).
const redactedLen = len(Prefix) + 16

// Redactor replaces secrets in decoded JSON values with a keyed HMAC. It is safe
// for concurrent use. The same Redactor must feed policy input, audit rows and
// logs so a secret gets the same mark everywhere.
type Redactor struct {
	macs sync.Pool // of hash.Hash (HMAC-SHA256 with the key)
}

// NewRedactor returns a Redactor keyed with key (at least 16 random bytes; the
// Log loads or generates it from Config.HMACKeyPath). The key is copied.
func New(key []byte) *Redactor {
	k := bytes.Clone(key)
	r := &Redactor{}
	r.macs.New = func() any { return hmac.New(sha256.New, k) }
	return r
}

// Value returns v, a decoded JSON value (map[string]any, []any, string, float64,
// json.Number, bool, nil), with secrets replaced by
// "hmac-sha256:<16 hex>". Every string and number leaf under a secret-named field
// is replaced, at any depth; elsewhere, credential-looking substrings of strings
// (and map keys) are replaced in place. Booleans and nulls are kept so a policy
// can still test whether a secret is present. v is not modified: maps and slices
// that change are copied, and those that do not are shared with v, so neither the
// result nor v may be modified afterwards. Values of other
// Go types are round-tripped through encoding/json first, so nothing escapes
// redaction by having an unexpected type.
func (r *Redactor) Value(v any) any {
	out, _ := r.walk(v, false, nil)
	return out
}

// ValueSchema is Value with a tool's secret marks (see Schema): a value the schema
// marks writeOnly or format: password is replaced whatever its name. A nil schema
// is Value.
func (r *Redactor) ValueSchema(v any, s *Schema) any {
	out, _ := r.walk(v, s.Secret(), s)
	return out
}

// JSON redacts a JSON document and returns it re-encoded. It is Value for callers
// that hold raw bytes; numbers keep their exact text.
func (r *Redactor) JSON(raw []byte) (json.RawMessage, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return json.Marshal(r.Value(v))
}

// String redacts credential-looking substrings of s (value patterns only).
func (r *Redactor) String(s string) string { return r.scrub(s) }

// walk returns v redacted and whether that differs from v. A map or slice in which
// nothing needed redacting is returned as is, not copied: most arguments hold no
// secret, and this runs on every call. A copy is made only where something changed,
// so v itself is never modified.
func (r *Redactor) walk(v any, secret bool, sch *Schema) (any, bool) {
	switch x := v.(type) {
	case nil:
		return nil, false
	case bool:
		return x, false
	case string:
		if secret {
			if x == "" || isRedacted(x) {
				return x, false
			}
			return r.mac(x), true
		}
		out := r.scrub(x)
		return out, len(out) != len(x) || out != x
	case float64:
		if secret {
			return r.mac(strconv.FormatFloat(x, 'g', -1, 64)), true
		}
		return x, false
	case json.Number:
		if secret {
			return r.mac(string(x)), true
		}
		return x, false
	case map[string]any:
		type change struct {
			k, nk string
			nv    any
		}
		var changes []change
		for k, val := range x {
			nk := r.scrub(k)
			fs, below := Field(x, k, sch)
			nv, ch := r.walk(val, secret || fs, below)
			if ch || nk != k {
				changes = append(changes, change{k, nk, nv})
			}
		}
		if len(changes) == 0 {
			return x, false
		}
		out := make(map[string]any, len(x))
		for k, val := range x {
			out[k] = val
		}
		for _, c := range changes {
			delete(out, c.k)
		}
		for _, c := range changes {
			out[c.nk] = c.nv
		}
		return out, true
	case []any:
		var out []any
		is := sch.Items()
		for i, val := range x {
			nv, ch := r.walk(val, secret || is.Secret(), is)
			if ch && out == nil {
				out = make([]any, len(x))
				copy(out, x)
			}
			if out != nil {
				out[i] = nv
			}
		}
		if out == nil {
			return x, false
		}
		return out, true
	default:
		// An unexpected Go type (map[string]string, a struct...): normalise through
		// JSON rather than let it pass unredacted.
		b, err := json.Marshal(x)
		if err != nil {
			return r.mac("unencodable"), true
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		var generic any
		if err := dec.Decode(&generic); err != nil {
			return r.mac(string(b)), true
		}
		out, _ := r.walk(generic, secret, sch)
		return out, true
	}
}

func isRedacted(s string) bool {
	if len(s) != redactedLen || !strings.HasPrefix(s, Prefix) {
		return false
	}
	for i := len(Prefix); i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func (r *Redactor) mac(s string) string {
	return string(r.appendMAC(make([]byte, 0, redactedLen), s))
}

func (r *Redactor) appendMAC(dst []byte, secret string) []byte {
	h := r.macs.Get().(hash.Hash)
	h.Reset()
	h.Write([]byte(secret))
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	r.macs.Put(h)
	dst = append(dst, Prefix...)
	return hex.AppendEncode(dst, sum[:8])
}

// Field-name rules, applied to the normalised name (lower case, letters and digits
// only). Not-secret suffixes win first: they name identifiers, counts, or masked or
// public material (aws_access_key_id, client_id, max_tokens, token_url, masked_key,
// public_key); an AKIA... value under aws_access_key_id is still caught by its value
// pattern.
var (
	notSecretSuffixes = []string{"id", "ids", "maskedkey", "publickey", "sortkey",
		"partitionkey", "primarykey", "foreignkey", "idempotencykey", "cachekey",
		"tokens", "tokenurl", "tokenuri", "tokenendpoint"}
	secretInfixes = []string{"secret", "password", "passwd", "passphrase", "credential",
		"privatekey", "apikey", "accesskey", "authorization", "connectionstring", "connstr",
		"signingkey", "encryptionkey", "cookie", "token", "signature"}
	secretSuffixes = []string{"key", "keys", "pwd", "dsn", "auth"}
	// secretNames are secret as whole names only ("pin", not "spin" or "pinned").
	secretNames = []string{"pass", "pin", "otp", "totp", "passcode"}
)

// IsSecretName reports whether a field of this name holds a secret. It is the one
// name rule of the product: the proxy redacts by it and the backend seals by it. The
// name is normalised (lower case, Unicode letters folded, everything but letters and
// digits dropped), so AWS_Secret-Access-Key and secretAccessKey are the same. Secret:
// anything containing secret, password, passwd, passphrase, credential, privatekey,
// apikey, accesskey, authorization, connectionstring, connstr, signingkey,
// encryptionkey, cookie, token or signature, anything ending in key, keys, pwd, dsn or
// auth, and the whole names pass, pin, otp, totp and passcode. Not secret, checked
// first: names ending in id or ids (identifiers of a secret), tokens (counts),
// tokenurl, tokenuri, tokenendpoint, maskedkey, publickey, sortkey, partitionkey,
// primarykey, foreignkey, idempotencykey or cachekey.
func IsSecretName(name string) bool { return isSecretName(name) }

// IsSecretContainer reports whether every value under a field of this name is secret
// whatever its own name: headers (custom_headers, extra_headers, headers) carry
// credentials under names nobody can list in advance.
func IsSecretContainer(name string) bool {
	var stack [64]byte
	return containerNormal(normaliseInto(stack[:0], name))
}

func containerNormal(n []byte) bool { return bytes.HasSuffix(n, []byte("headers")) }

// IsSecretField is IsSecretName; a Redactor method so that callers holding one need
// no second import.
func (r *Redactor) IsSecretField(name string) bool { return isSecretName(name) }

func normalise(name string) []byte { return normaliseInto(make([]byte, 0, len(name)), name) }

// normaliseInto appends name's normal form to n; it allocates only for non-ASCII names,
// whose Unicode letters are folded too, so that a decoder that matches names ignoring
// case (KELVIN SIGN is k, LONG S is s) cannot be handed a secret under a name this
// check does not recognise.
func normaliseInto(n []byte, name string) []byte {
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		case c >= 'a' && c <= 'z' || c >= '0' && c <= '9':
		case c >= 0x80:
			return normaliseFolded(name)
		default:
			continue
		}
		n = append(n, c)
	}
	return n
}

func normaliseFolded(name string) []byte {
	f := foldName(name)
	n := make([]byte, 0, len(f))
	for i := 0; i < len(f); i++ {
		if c := f[i]; c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
			n = append(n, c)
		}
	}
	return n
}

func isSecretName(name string) bool {
	var stack [64]byte
	return secretNormal(normaliseInto(stack[:0], name))
}

// secretNormal is isSecretName of a name already normalised.
func secretNormal(n []byte) bool {
	for _, s := range notSecretSuffixes {
		if bytes.HasSuffix(n, []byte(s)) {
			return false
		}
	}
	for _, s := range secretInfixes {
		if bytes.Contains(n, []byte(s)) {
			return true
		}
	}
	for _, s := range secretSuffixes {
		if bytes.HasSuffix(n, []byte(s)) {
			return true
		}
	}
	for _, s := range secretNames {
		if string(n) == s {
			return true
		}
	}
	return false
}

// scrub replaces credential-looking substrings of s. It allocates only when it
// finds one.
func (r *Redactor) scrub(s string) string {
	var out []byte
	last := 0
	for i := 0; i < len(s); {
		start, end := r.matchAt(s, i)
		if end <= start {
			i++
			continue
		}
		if out == nil {
			out = make([]byte, 0, len(s)+redactedLen)
		}
		out = append(out, s[last:start]...)
		out = r.appendMAC(out, s[start:end])
		last, i = end, end
	}
	if out == nil {
		return s
	}
	return string(append(out, s[last:]...))
}

// matchAt reports the secret span [start, end) of a pattern beginning at s[i], or
// end <= start when none begins there.
func (r *Redactor) matchAt(s string, i int) (start, end int) {
	c := s[i]
	switch c {
	case 's': // sk-... / sk_... (OpenAI, Anthropic, Stripe)
		if boundaryBefore(s, i) && i+3 < len(s) && s[i+1] == 'k' && (s[i+2] == '-' || s[i+2] == '_') {
			if n := run(s, i+3, isTokenChar); n >= 12 {
				return i, i + 3 + n
			}
		}
	case 'A': // AKIA / ASIA + 16 upper alnum (AWS access key ids)
		if boundaryBefore(s, i) && i+20 <= len(s) && (s[i+1:i+4] == "KIA" || s[i+1:i+4] == "SIA") &&
			run(s, i+4, isUpperAlnum) == 16 && (i+20 == len(s) || !isAlnum(s[i+20])) {
			return i, i + 20
		}
	case '-': // PEM private key block; an unterminated one runs to the end
		if strings.HasPrefix(s[i:], "-----BEGIN ") {
			rest := s[i+11:]
			hdrEnd := strings.Index(rest, "-----")
			if hdrEnd >= 0 && strings.Contains(rest[:hdrEnd], "PRIVATE KEY") {
				tail := rest[hdrEnd+5:]
				e := strings.Index(tail, "-----END ")
				if e < 0 {
					return i, len(s)
				}
				tail2 := tail[e+9:]
				f := strings.Index(tail2, "-----")
				if f < 0 {
					return i, len(s)
				}
				return i, len(s) - len(tail2) + f + 5
			}
		}
	case 'x': // Slack xoxb-/xoxp-/xoxa-/xoxr-/xoxs-
		if boundaryBefore(s, i) && i+5 < len(s) && s[i+1] == 'o' && s[i+2] == 'x' &&
			strings.IndexByte("bpars", s[i+3]) >= 0 && s[i+4] == '-' {
			if n := run(s, i+5, isTokenChar); n >= 8 {
				return i, i + 5 + n
			}
		}
	case 'g': // GitHub tokens
		if boundaryBefore(s, i) {
			p := 0
			if i+4 <= len(s) && s[i+1] == 'h' && strings.IndexByte("pousr", s[i+2]) >= 0 && s[i+3] == '_' {
				p = 4
			} else if strings.HasPrefix(s[i:], "github_pat_") {
				p = 11
			}
			if p > 0 {
				if n := run(s, i+p, isTokenChar); n >= 20 {
					return i, i + p + n
				}
			}
		}
	case 'e': // JWT: eyJ... . ... . ...
		if boundaryBefore(s, i) && strings.HasPrefix(s[i:], "eyJ") {
			n1 := run(s, i, isB64URL)
			j := i + n1
			if n1 >= 10 && j < len(s) && s[j] == '.' {
				n2 := run(s, j+1, isB64URL)
				k := j + 1 + n2
				if n2 >= 2 && k < len(s) && s[k] == '.' {
					return i, k + 1 + run(s, k+1, isB64URL)
				}
			}
		}
	case 'B', 'b': // Bearer <token> / Basic <base64>: the credential goes, the word stays
		if boundaryBefore(s, i) && i+6 < len(s) {
			j := 0
			if i+7 < len(s) && strings.EqualFold(s[i:i+7], "bearer ") {
				j = i + 7
			} else if strings.EqualFold(s[i:i+6], "basic ") {
				j = i + 6
			}
			basic := j == i+6
			if j > 0 {
				for j < len(s) && s[j] == ' ' {
					j++
				}
				if strings.HasPrefix(s[j:], Prefix) {
					return 0, 0 // redacted already: scrubbing twice changes nothing
				}
				// "Basic" must hold base64 of user:password, so "a basic question" stays.
				if basic {
					if n := run(s, j, isB64Std); n >= 8 && isBasicCredential(s[j:j+n]) {
						return j, j + n
					}
				} else if n := run(s, j, isBearerChar); n >= 8 {
					return j, j + n
				}
			}
		}
	case ':': // scheme://user:password@host: the password goes; password: x / "password":"x" too
		if start, end := r.secretAfterColon(s, i); end > start {
			return start, end
		}
		if i+3 < len(s) && s[i+1] == '/' && s[i+2] == '/' {
			auth := s[i+3:]
			if e := strings.IndexAny(auth, "/?# \t\r\n\"'<>"); e >= 0 {
				auth = auth[:e]
			}
			if at := strings.LastIndexByte(auth, '@'); at > 0 {
				if colon := strings.IndexByte(auth[:at], ':'); colon >= 0 && colon+1 < at && !isRedacted(auth[colon+1:at]) {
					return i + 3 + colon + 1, i + 3 + at
				}
			}
		}
	case '=': // password=..., api_key=... in query and connection strings
		k := i
		for k > 0 && (isAlnum(s[k-1]) || s[k-1] == '_' || s[k-1] == '-' || s[k-1] == '.') {
			k--
		}
		if k < i && r.IsSecretField(s[k:i]) {
			j := i + 1
			n := 0
			for j+n < len(s) && strings.IndexByte(";& \t\r\n,\"'", s[j+n]) < 0 {
				n++
			}
			if n > 0 && !isRedacted(s[j:j+n]) {
				return j, j + n
			}
		}
	}
	return 0, 0
}

// secretAfterColon matches "name: value", "name":"value" and 'name': 'value' where name
// is a secret field name (JSON or YAML held in a string, a header line, a comment): the
// value goes, up to its closing quote or the next delimiter.
func (r *Redactor) secretAfterColon(s string, i int) (start, end int) {
	k := i
	quote := byte(0)
	if k > 0 && (s[k-1] == '"' || s[k-1] == '\'') {
		quote = s[k-1]
		k--
	}
	e := k
	for k > 0 && (isAlnum(s[k-1]) || s[k-1] == '_' || s[k-1] == '-' || s[k-1] == '.') {
		k--
	}
	if k == e || (quote != 0 && (k == 0 || s[k-1] != quote)) || !r.IsSecretField(s[k:e]) {
		return 0, 0
	}
	// Unquoted, "name: value" is also prose ("missing token: provide it"): only names
	// that say secret outright (password, api_key, client_secret...) count there.
	if quote == 0 && !strongSecretName(s[k:e]) {
		return 0, 0
	}
	j := i + 1
	for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
		j++
	}
	if quote == 0 && j == i+1 {
		return 0, 0 // unquoted needs a blank after the colon: "password: x", not "password:reset"
	}
	stop := ";&,\t\r\n\"'}] "
	if j < len(s) && (s[j] == '"' || s[j] == '\'') {
		stop = string(s[j]) + "\r\n"
		j++
	}
	n := 0
	for j+n < len(s) && strings.IndexByte(stop, s[j+n]) < 0 {
		n++
	}
	if n == 0 || isRedacted(s[j:j+n]) {
		return 0, 0
	}
	if v := s[j : j+n]; strings.EqualFold(v, "bearer") || strings.EqualFold(v, "basic") {
		return 0, 0 // "Authorization: Bearer x": the scheme's own pattern takes the credential
	}
	return j, j + n
}

// strongSecretName reports a secret name by its infix (password, secret, apikey...),
// not by a suffix such as key or token, which ordinary words end in too.
func strongSecretName(name string) bool {
	if !isSecretName(name) {
		return false
	}
	n := normalise(name)
	for _, w := range secretInfixes {
		if w != "token" && w != "signature" && bytes.Contains(n, []byte(w)) {
			return true
		}
	}
	return false
}

// isBasicCredential reports whether tok is base64 (padded or not) of "user:password".
func isBasicCredential(tok string) bool {
	b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(tok, "="))
	return err == nil && bytes.IndexByte(b, ':') > 0
}

func isB64Std(c byte) bool { return isAlnum(c) || c == '+' || c == '/' || c == '=' }

func run(s string, i int, ok func(byte) bool) int {
	n := 0
	for i+n < len(s) && ok(s[i+n]) {
		n++
	}
	return n
}

func boundaryBefore(s string, i int) bool { return i == 0 || !isAlnum(s[i-1]) }

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
func isUpperAlnum(c byte) bool { return c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' }
func isTokenChar(c byte) bool  { return isAlnum(c) || c == '-' || c == '_' }
func isB64URL(c byte) bool     { return isAlnum(c) || c == '-' || c == '_' }
func isBearerChar(c byte) bool {
	return isAlnum(c) || strings.IndexByte("-._~+/=", c) >= 0
}

// foldName lower-cases name with Unicode folding and maps the non-ASCII letters that
// case-fold to ASCII ones onto them; the result holds no such letters.
func foldName(name string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '\u212A':
			return 'k'
		case '\u017F':
			return 's'
		case '\u0130': // LATIN CAPITAL I WITH DOT ABOVE
			return 'i'
		}
		if r >= 0x80 {
			if l := unicode.ToLower(r); l < 0x80 {
				return l
			}
		}
		return unicode.ToLower(r)
	}, name)
}
