package authn

import (
	"encoding/json"
	"math"
	"strings"

	"github.com/golang-jwt/jwt/v5"
	"github.com/portcullis/portcullis/policies/principal"
)

const maxRoles = 256

// maxNumericDate is 9999-12-31T23:59:59Z in seconds: the latest exp, nbf or iat taken.
// Beyond it a date means nothing, and past about 9.2e18 (int64 seconds) the conversion
// to a time overflows.
const maxNumericDate = 253402300799

// dateClaims are the registered claims that hold a NumericDate (RFC 7519 section 2).
var dateClaims = [...]string{"exp", "nbf", "iat"}

// checkDateClaims refuses a numeric exp, nbf or iat that is negative, not finite or past
// maxNumericDate. Other types are left to the parser, which refuses them.
func checkDateClaims(claims jwt.MapClaims) *Error {
	for _, name := range dateClaims {
		var f float64
		switch v := claims[name].(type) {
		case float64:
			f = v
		case json.Number:
			var err error
			if f, err = v.Float64(); err != nil {
				return tokenErr(descDateRange, nil)
			}
		default:
			continue
		}
		if math.IsNaN(f) || f < 0 || f > maxNumericDate {
			return tokenErr(descDateRange, nil)
		}
	}
	return nil
}

// mapIdentity turns verified claims into an Identity. The claims map was freshly decoded
// for this token, so the Caller owns it; nothing else holds a reference.
func mapIdentity(claims jwt.MapClaims, names *ClaimNames) (*Identity, error) {
	exp, err := claims.GetExpirationTime()
	if err != nil || exp == nil {
		return nil, tokenErr(descNoExp, err)
	}
	sub, ok, bad := stringClaim(claims, names.Sub)
	if bad {
		return nil, tokenErr(descClaimType, nil)
	}
	if !ok || sub == "" {
		return nil, tokenErr(descSub, nil)
	}
	c := principal.Caller{Sub: sub, Claims: map[string]any(claims)}
	for _, f := range []struct {
		dst  *string
		name string
	}{{&c.Org, names.Org}, {&c.Workspace, names.Workspace}, {&c.Session, names.Session}} {
		v, _, bad := stringClaim(claims, f.name)
		if bad {
			return nil, tokenErr(descClaimType, nil)
		}
		*f.dst = v
	}
	if c.Session == "" && names.Session != "sid" {
		v, _, bad := stringClaim(claims, "sid")
		if bad {
			return nil, tokenErr(descClaimType, nil)
		}
		c.Session = v
	}
	roles, ok := parseRoles(lookupClaim(claims, names.Roles))
	if !ok {
		return nil, tokenErr(descClaimType, nil)
	}
	c.Roles = roles
	jti, _, bad := stringClaim(claims, "jti")
	if bad {
		return nil, tokenErr(descClaimType, nil)
	}
	return &Identity{Caller: c, Expires: exp.Time, TokenID: jti}, nil
}

// lookupClaim finds name literally, then as a dotted path into nested objects.
func lookupClaim(claims map[string]any, name string) any {
	if v, ok := claims[name]; ok {
		return v
	}
	if !strings.Contains(name, ".") {
		return nil
	}
	var cur any = claims
	for _, part := range strings.Split(name, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		if cur, ok = m[part]; !ok {
			return nil
		}
	}
	return cur
}

// stringClaim returns the claim's value; bad is set when present with a non-string type.
func stringClaim(claims map[string]any, name string) (v string, ok, bad bool) {
	raw := lookupClaim(claims, name)
	if raw == nil {
		return "", false, false
	}
	s, isStr := raw.(string)
	if !isStr {
		return "", false, true
	}
	return s, true, false
}

// parseRoles accepts an array of strings or one space/comma separated string.
func parseRoles(raw any) ([]string, bool) {
	roles := []string{}
	switch v := raw.(type) {
	case nil:
	case string:
		roles = append(roles, strings.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == ',' })...)
	case []any:
		for _, x := range v {
			s, ok := x.(string)
			if !ok {
				return nil, false
			}
			if s = strings.TrimSpace(s); s != "" {
				roles = append(roles, s)
			}
		}
	default:
		return nil, false
	}
	if len(roles) > maxRoles {
		return nil, false
	}
	return roles, true
}
