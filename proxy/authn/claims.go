package authn

import (
	"strings"

	"github.com/golang-jwt/jwt/v5"
	"github.com/portcullis/portcullis/policies/principal"
)

const maxRoles = 256

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
