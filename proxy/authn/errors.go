package authn

import (
	"strings"
)

// Error codes from RFC 6750 section 3.1.
const (
	CodeInvalidToken   = "invalid_token"
	CodeInvalidRequest = "invalid_request"
)

// Error is an authentication failure. Description is safe to show to the caller: it is
// always one of this package's constant strings and never contains token contents or
// attacker-controlled header values. The underlying cause (for logs) is reachable with
// errors.Unwrap / errors.Is.
type Error struct {
	Code        string
	Description string
	// missing marks a request that carried no credentials at all: RFC 6750 says the
	// challenge should then carry no error code.
	missing bool
	cause   error
}

var _ error = (*Error)(nil)

func (e *Error) Error() string {
	if e.cause != nil {
		return "authn: " + e.Code + ": " + e.Description + ": " + e.cause.Error()
	}
	return "authn: " + e.Code + ": " + e.Description
}

// Unwrap returns the cause, for logging and errors.Is.
func (e *Error) Unwrap() error { return e.cause }

// Missing reports whether the request carried no Authorization header at all.
func (e *Error) Missing() bool { return e.missing }

// WWWAuthenticate renders the challenge for a 401 response (RFC 6750 section 3 and
// RFC 9728 section 5.1). Empty realm or resourceMetadataURL are left out. When the
// request had no credentials the error attributes are omitted, as RFC 6750 asks.
func (e *Error) WWWAuthenticate(realm, resourceMetadataURL string) string {
	var b strings.Builder
	b.WriteString("Bearer")
	sep := " "
	add := func(k, v string) {
		b.WriteString(sep)
		sep = ", "
		b.WriteString(k)
		b.WriteString(`="`)
		b.WriteString(quoteEscape(v))
		b.WriteByte('"')
	}
	if realm != "" {
		add("realm", realm)
	}
	if !e.missing && e.Code != "" {
		add("error", e.Code)
		if e.Description != "" {
			add("error_description", e.Description)
		}
	}
	if resourceMetadataURL != "" {
		add("resource_metadata", resourceMetadataURL)
	}
	return b.String()
}

// quoteEscape makes v safe inside an HTTP quoted-string: backslash-escape quote and
// backslash, drop control characters (they would split or corrupt the header).
func quoteEscape(v string) string {
	if !strings.ContainsAny(v, "\"\\") && !hasCtl(v) {
		return v
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c == 0x7f:
			// dropped
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func hasCtl(v string) bool {
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] == 0x7f {
			return true
		}
	}
	return false
}

// Descriptions. Constant strings only: never format token contents into them.
const (
	descMissing         = "missing bearer token"
	descScheme          = "authorization scheme must be Bearer"
	descTooLarge        = "token exceeds the maximum size"
	descMalformed       = "token is malformed"
	descHeader          = "token header is malformed"
	descDuplicateHeader = "token header has a duplicate parameter"
	descAlg             = "token signing algorithm is not accepted"
	descCrit            = "token header parameter crit is not supported"
	descJKU             = "token header parameter jku is not accepted"
	descJWK             = "token header parameter jwk is not accepted"
	descX5U             = "token header parameter x5u is not accepted"
	descX5C             = "token header parameter x5c is not accepted"
	descKidType         = "token key id must be a string"
	descKidLong         = "token key id is too long"
	descKidChars        = "token key id has characters that are not allowed"
	descTyp             = "token type is not accepted"
	descUnknownKey      = "token signing key is not known"
	descSignature       = "token signature is invalid"
	descExpired         = "token is expired"
	descNotYetValid     = "token is not valid yet"
	descIssuedFuture    = "token was issued in the future"
	descNoExp           = "token has no exp claim"
	descDateRange       = "token has an exp, nbf or iat claim out of range (negative or after year 9999)"
	descTooLong         = "token lifetime (exp - iat) exceeds the configured maximum"
	descDuplicateClaim  = "token claims are ambiguous (a name given twice at some depth, or names differing only in case)"
	descNoAud           = "token has no aud claim"
	descNoIss           = "token has no iss claim"
	descAudience        = "token audience is not accepted"
	descIssuer          = "token issuer is not accepted"
	descClaims          = "token claims are invalid"
	descSub             = "token has no sub claim"
	descClaimType       = "token has a claim of the wrong type"
)

func tokenErr(desc string, cause error) *Error {
	return &Error{Code: CodeInvalidToken, Description: desc, cause: cause}
}
