package authn

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"gopkg.in/yaml.v3"
)

// assertRefused checks the rejection is an *Error with the wanted code and description,
// and that neither the description, the error text nor the challenge leaks the token.
func assertRefused(t *testing.T, tok string, err error, code, desc string) {
	t.Helper()
	var ae *Error
	if !errors.As(err, &ae) {
		t.Fatalf("want *Error, got %T: %v", err, err)
	}
	if ae.Code != code || ae.Description != desc {
		t.Fatalf("got %s %q, want %s %q (cause: %v)", ae.Code, ae.Description, code, desc, ae.Unwrap())
	}
	for _, part := range strings.Split(tok, ".") {
		if len(part) < 8 {
			continue
		}
		for what, s := range map[string]string{"description": ae.Description, "error": ae.Error(),
			"challenge": ae.WWWAuthenticate("portcullis", "https://p/.well-known/oauth-protected-resource")} {
			if strings.Contains(s, part) {
				t.Fatalf("%s leaks a token segment: %q", what, s)
			}
		}
	}
}

// TestStrictJWT pins strict JWT verification: every token here must be refused for the stated reason.
func TestStrictJWT(t *testing.T) {
	k := testKeySet(t)
	ecKid := thumb(t, &k.ec.PublicKey)
	rsaPEM := pubPEMBytes(t, &k.rsa.PublicKey)
	good := baseClaims()
	es := func(hdr map[string]any, c jwt.MapClaims) string {
		h := map[string]any{"kid": ecKid}
		for k, v := range hdr {
			h[k] = v
		}
		return sign(t, jwt.SigningMethodES256, k.ec, h, c)
	}
	valid := es(nil, good)
	segs := strings.Split(valid, ".")
	otherValid := es(nil, with(good, "sub", "agent-2"))

	rsaOnly := func(c *Config) { c.HS256Secret = ""; c.PublicKeyFiles = c.PublicKeyFiles[:1] }

	cases := []struct {
		note   string
		cfg    func(*Config)
		header string // full Authorization header; "" means "Bearer " + tok
		tok    string
		code   string
		desc   string
	}{
		{note: "alg none", tok: rawToken(`{"alg":"none","typ":"JWT"}`, good, nil), desc: descAlg},
		{note: "alg NONE", tok: rawToken(`{"alg":"NONE","typ":"JWT"}`, good, nil), desc: descAlg},
		{note: "alg None with a signature", tok: rawToken(`{"alg":"None"}`, good, []byte("x")), desc: descAlg},
		{note: "alg missing", tok: rawToken(`{"typ":"JWT"}`, good, []byte("x")), desc: descAlg},
		{note: "alg HS512 not configured", tok: sign(t, jwt.SigningMethodHS512, []byte(testSecret), nil, good), desc: descAlg},
		{note: "HS256 signed with the RSA public key PEM, no HS secret configured", cfg: rsaOnly,
			tok: sign(t, jwt.SigningMethodHS256, rsaPEM, map[string]any{"kid": "rsa1"}, good), desc: descAlg},
		{note: "HS256 signed with the RSA public key PEM, HS secret configured",
			tok: sign(t, jwt.SigningMethodHS256, rsaPEM, map[string]any{"kid": "rsa1"}, good), desc: descSignature},
		{note: "ES256 header naming the RSA key", tok: sign(t, jwt.SigningMethodES256, k.ec, map[string]any{"kid": "rsa1"}, good), desc: descAlg},
		{note: "no exp", tok: es(nil, with(good, "exp", nil)), desc: descNoExp},
		{note: "exp as a string", tok: es(nil, with(good, "exp", "tomorrow")), desc: descClaims},
		{note: "expired beyond leeway", tok: es(nil, with(good, "exp", t0.Add(-31*time.Second).Unix())), desc: descExpired},
		{note: "nbf in the future", tok: es(nil, with(good, "nbf", t0.Add(time.Minute).Unix())), desc: descNotYetValid},
		{note: "iat in the future", tok: es(nil, with(good, "iat", t0.Add(time.Minute).Unix())), desc: descIssuedFuture},
		// Dates past what a time can hold overflowed when converted: nbf 1e19 landed in the
		// past and was accepted while 1e18 was refused as "not valid yet".
		{note: "nbf 1e19 (past int64 seconds)", tok: es(nil, with(good, "nbf", 1e19)), desc: descDateRange},
		{note: "nbf 1e18", tok: es(nil, with(good, "nbf", 1e18)), desc: descDateRange},
		{note: "nbf int64 max", tok: es(nil, with(good, "nbf", json.RawMessage("9223372036854775807"))), desc: descDateRange},
		{note: "nbf 2^64", tok: es(nil, with(good, "nbf", json.RawMessage("18446744073709551616"))), desc: descDateRange},
		{note: "nbf negative", tok: es(nil, with(good, "nbf", -1)), desc: descDateRange},
		{note: "nbf 1e400 (not a number a decoder can hold)", tok: es(nil, with(good, "nbf", json.RawMessage("1e400"))), desc: descMalformed},
		{note: "exp 1e19", tok: es(nil, with(good, "exp", 1e19)), desc: descDateRange},
		{note: "exp in year 10000", tok: es(nil, with(good, "exp", maxNumericDate+1)), desc: descDateRange},
		{note: "exp negative", tok: es(nil, with(good, "exp", -1e19)), desc: descDateRange},
		{note: "iat 1e19", tok: es(nil, with(good, "iat", 1e19)), desc: descDateRange},
		{note: "iat negative", tok: es(nil, with(good, "iat", -0.5)), desc: descDateRange},
		{note: "out-of-range date behind a bad signature is a signature failure", tok: sign(t, jwt.SigningMethodES256, k.attacker,
			map[string]any{"kid": ecKid}, with(good, "nbf", 1e19)), desc: descSignature},
		{note: "wrong aud", tok: es(nil, with(good, "aud", "someone-else")), desc: descAudience},
		{note: "wrong aud in a list", tok: es(nil, with(good, "aud", []any{"a", "b"})), desc: descAudience},
		{note: "missing aud", tok: es(nil, with(good, "aud", nil)), desc: descNoAud},
		{note: "wrong iss", tok: es(nil, with(good, "iss", "https://evil.test")), desc: descIssuer},
		{note: "missing iss", tok: es(nil, with(good, "iss", nil)), desc: descNoIss},
		{note: "stripped signature", tok: segs[0] + "." + segs[1] + ".", desc: descSignature},
		{note: "foreign signature (attacker key, our kid)", tok: sign(t, jwt.SigningMethodES256, k.attacker, map[string]any{"kid": ecKid}, good), desc: descSignature},
		{note: "foreign signature (attacker key, no kid)", tok: sign(t, jwt.SigningMethodES256, k.attacker, map[string]any{}, good), desc: descSignature},
		{note: "signature spliced from another token", tok: segs[0] + "." + segs[1] + "." + strings.Split(otherValid, ".")[2], desc: descSignature},
		{note: "claims tampered after signing", tok: segs[0] + "." + strings.Split(es(nil, with(good, "roles", []any{"admin"})), ".")[1] + "." + segs[2], desc: descSignature},
		{note: "non-canonical base64 in signature", tok: segs[0] + "." + segs[1] + "." + flipLastBits(segs[2]), desc: descMalformed},
		{note: "2 segments", tok: segs[0] + "." + segs[1], desc: descMalformed},
		{note: "4 segments", tok: valid + "." + segs[2], desc: descMalformed},
		{note: "1 segment", tok: segs[1], desc: descMalformed},
		{note: "kid path traversal", tok: es(map[string]any{"kid": "../../../../etc/passwd"}, good), desc: descKidChars},
		{note: "kid with NUL", tok: es(map[string]any{"kid": "a\x00b"}, good), desc: descKidChars},
		{note: "kid 3 KB", tok: es(map[string]any{"kid": strings.Repeat("k", 3072)}, good), desc: descKidLong},
		{note: "kid not a string", tok: es(map[string]any{"kid": 7}, good), desc: descKidType},
		{note: "unknown kid", tok: es(map[string]any{"kid": "nobody"}, good), desc: descUnknownKey},
		{note: "jku pointing at the attacker's key set", tok: sign(t, jwt.SigningMethodES256, k.attacker,
			map[string]any{"kid": "evil", "jku": "https://evil.test/jwks.json"}, good), desc: descJKU},
		{note: "jwk embedding the attacker's key", tok: sign(t, jwt.SigningMethodES256, k.attacker,
			map[string]any{"jwk": map[string]any{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}}, good), desc: descJWK},
		{note: "x5u pointing at the attacker's certificate", tok: sign(t, jwt.SigningMethodES256, k.attacker,
			map[string]any{"x5u": "https://evil.test/cert.pem"}, good), desc: descX5U},
		{note: "x5c embedding a certificate", tok: es(map[string]any{"x5c": []string{"MIIB"}}, good), desc: descX5C},
		{note: "crit header", tok: es(map[string]any{"crit": []string{"exp"}, "exp": 1}, good), desc: descCrit},
		{note: "crit b64", tok: es(map[string]any{"crit": []string{"b64"}, "b64": false}, good), desc: descCrit},
		{note: "duplicate alg in header", tok: signRawES256(t, k.ec, `{"alg":"ES256","kid":"`+ecKid+`","alg":"none"}`, good), desc: descDuplicateHeader},
		{note: "header not JSON", tok: b64raw("not json") + "." + segs[1] + "." + segs[2], desc: descHeader},
		{note: "header a JSON array", tok: b64raw(`["alg","ES256"]`) + "." + segs[1] + "." + segs[2], desc: descHeader},
		{note: "typ JWE", tok: es(map[string]any{"typ": "JWE"}, good), desc: descTyp},
		{note: "token over 8 KB", tok: es(nil, with(good, "pad", strings.Repeat("p", 8192))), desc: descTooLarge},
		{note: "missing sub", tok: es(nil, with(good, "sub", nil)), desc: descSub},
		{note: "empty sub", tok: es(nil, with(good, "sub", "")), desc: descSub},
		{note: "sub not a string", tok: es(nil, with(good, "sub", 42)), desc: descClaimType},
		{note: "roles not strings", tok: es(nil, with(good, "roles", []any{"a", 1})), desc: descClaimType},
		{note: "org not a string", tok: es(nil, with(good, "org", map[string]any{"x": 1})), desc: descClaimType},
		{note: "no header", header: "-", code: CodeInvalidRequest, desc: descMissing},
		{note: "basic scheme", header: "Basic " + b64raw("user:pass"), code: CodeInvalidRequest, desc: descScheme},
		{note: "bearer without token", header: "Bearer", code: CodeInvalidRequest, desc: descScheme},
		{note: "bearer with blank token", header: "Bearer  ", code: CodeInvalidRequest, desc: descMalformed},
		{note: "token without scheme", header: valid, code: CodeInvalidRequest, desc: descScheme},
		{note: "two tokens", header: "Bearer " + valid + " " + otherValid, code: CodeInvalidRequest, desc: descMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.note, func(t *testing.T) {
			a := newAuth(t, tc.cfg)
			h := "Bearer " + tc.tok
			switch tc.header {
			case "":
			case "-":
				h = ""
			default:
				h = tc.header
			}
			code := tc.code
			if code == "" {
				code = CodeInvalidToken
			}
			id, err := a.Authenticate(h)
			if id != nil {
				t.Fatalf("accepted: %+v", id.Caller)
			}
			assertRefused(t, tc.tok, err, code, tc.desc)
			// A refusal is never cached: the same token is refused again the same way.
			_, err = a.Authenticate(h)
			assertRefused(t, tc.tok, err, code, tc.desc)
		})
	}

	// Positive controls: the same builders produce accepted tokens, so the refusals
	// above are about the stated defect, not about the builders.
	a := newAuth(t, nil)
	for note, tok := range map[string]string{
		"valid ES256":              valid,
		"expired within leeway":    es(nil, with(good, "exp", t0.Add(-10*time.Second).Unix())),
		"nbf within leeway":        es(nil, with(good, "nbf", t0.Add(10*time.Second).Unix())),
		"nbf with a fraction":      es(nil, with(good, "nbf", float64(t0.Unix())-0.5)),
		"exp at the end of 9999":   es(nil, with(good, "exp", maxNumericDate)),
		"typ at+jwt":               es(map[string]any{"typ": "at+jwt"}, good),
		"aud list containing ours": es(nil, with(good, "aud", []any{"x", testAudience})),
		"kid with slash and colon": sign(t, jwt.SigningMethodES256, k.ec, map[string]any{"kid": "arn:aws:kms/abc"}, good),
	} {
		t.Run("accepted/"+note, func(t *testing.T) {
			if note == "kid with slash and colon" {
				// unknown kid, but it passes the header checks and fails on lookup only
				_, err := a.Authenticate("Bearer " + tok)
				assertRefused(t, tok, err, CodeInvalidToken, descUnknownKey)
				return
			}
			id, err := a.Authenticate("Bearer " + tok)
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if id.Caller.Sub != "agent-1" {
				t.Fatalf("sub = %q", id.Caller.Sub)
			}
		})
	}
}

func b64raw(s string) string { return rawURL.EncodeToString([]byte(s)) }

// flipLastBits changes the unused low bits of the last base64url character, which a
// lenient decoder ignores: the decoded signature is the same, the token text is not.
func flipLastBits(s string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, s[len(s)-1])
	return s[:len(s)-1] + string(alphabet[last^1])
}

func TestHappyPaths(t *testing.T) {
	k := testKeySet(t)
	good := baseClaims()
	cases := []struct {
		note string
		cfg  func(*Config)
		tok  string
	}{
		{note: "RS256 with kid", tok: sign(t, jwt.SigningMethodRS256, k.rsa, map[string]any{"kid": "rsa1"}, good)},
		{note: "PS256 with kid", tok: sign(t, jwt.SigningMethodPS256, k.rsa, map[string]any{"kid": "rsa1"}, good)},
		{note: "RS256 without kid", tok: sign(t, jwt.SigningMethodRS256, k.rsa, nil, good)},
		{note: "ES256 with thumbprint kid", tok: sign(t, jwt.SigningMethodES256, k.ec, map[string]any{"kid": thumb(t, &k.ec.PublicKey)}, good)},
		{note: "ES256 without kid", tok: sign(t, jwt.SigningMethodES256, k.ec, nil, good)},
		{note: "EdDSA with kid", tok: sign(t, jwt.SigningMethodEdDSA, k.ed, map[string]any{"kid": "ed1"}, good)},
		{note: "HS256", tok: sign(t, jwt.SigningMethodHS256, []byte(testSecret), nil, good)},
		{note: "HS256 from secret file", tok: sign(t, jwt.SigningMethodHS256, []byte(testSecret), nil, good),
			cfg: func(c *Config) { c.HS256Secret = ""; c.HS256SecretFile = writeFile(t, testSecret+"\n", 0o600) }},
		{note: "no iss/aud configured, none present", tok: sign(t, jwt.SigningMethodHS256, []byte(testSecret), nil, with(good, "iss", nil, "aud", nil)),
			cfg: func(c *Config) { c.Issuer, c.Audience = "", "" }},
	}
	for _, tc := range cases {
		t.Run(tc.note, func(t *testing.T) {
			a := newAuth(t, tc.cfg)
			id, err := a.Authenticate("bEaReR " + tc.tok)
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			c := id.Caller
			if c.Sub != "agent-1" || c.Org != "acme" || c.Workspace != "ws-1" || c.Session != "s-1" ||
				!slices.Equal(c.Roles, []string{"agent", "operator"}) || id.TokenID != "j-1" ||
				!id.Expires.Equal(t0.Add(time.Hour)) || c.Claims["iss"] == nil && tc.cfg == nil {
				t.Fatalf("identity = %+v", id)
			}
		})
	}
}

func TestClaimMapping(t *testing.T) {
	good := baseClaims()
	hs := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, []byte(testSecret), nil, c) }
	cases := []struct {
		note      string
		names     ClaimNames
		claims    jwt.MapClaims
		roles     []string
		session   string
		org       string
		workspace string
	}{
		{note: "roles array", claims: good, roles: []string{"agent", "operator"}, session: "s-1", org: "acme", workspace: "ws-1"},
		{note: "roles space separated string", claims: with(good, "roles", "agent operator"), roles: []string{"agent", "operator"}, session: "s-1", org: "acme", workspace: "ws-1"},
		{note: "roles comma separated string", claims: with(good, "roles", "agent, operator,,"), roles: []string{"agent", "operator"}, session: "s-1", org: "acme", workspace: "ws-1"},
		{note: "no roles", claims: with(good, "roles", nil), roles: []string{}, session: "s-1", org: "acme", workspace: "ws-1"},
		{note: "no org, workspace, session", claims: with(good, "org", nil, "workspace", nil, "sid", nil), roles: []string{"agent", "operator"}},
		{note: "renamed claims with nested roles (Keycloak style)",
			names:  ClaimNames{Org: "tenant", Workspace: "project", Roles: "realm_access.roles", Session: "session_id"},
			claims: with(good, "tenant", "t-9", "project", "p-9", "realm_access", map[string]any{"roles": []any{"auditor"}}, "session_id", "x-1"),
			roles:  []string{"auditor"}, session: "x-1", org: "t-9", workspace: "p-9"},
		{note: "renamed session falls back to sid",
			names:  ClaimNames{Session: "session_id"},
			claims: good, roles: []string{"agent", "operator"}, session: "s-1", org: "acme", workspace: "ws-1"},
		{note: "literal dotted name wins over path",
			names:  ClaimNames{Roles: "a.b"},
			claims: with(good, "a.b", "lit", "a", map[string]any{"b": "nested"}), roles: []string{"lit"}, session: "s-1", org: "acme", workspace: "ws-1"},
	}
	for _, tc := range cases {
		t.Run(tc.note, func(t *testing.T) {
			a := newAuth(t, func(c *Config) { c.Claims = tc.names })
			id, err := a.Authenticate("Bearer " + hs(tc.claims))
			if err != nil {
				t.Fatal(err)
			}
			c := id.Caller
			if !slices.Equal(c.Roles, tc.roles) || c.Roles == nil || c.Session != tc.session || c.Org != tc.org || c.Workspace != tc.workspace {
				t.Fatalf("caller = %+v", c)
			}
			if c.Claims["sub"] != "agent-1" || len(c.Claims) != len(tc.claims) {
				t.Fatalf("claims = %v", c.Claims)
			}
		})
	}
}

func TestWWWAuthenticate(t *testing.T) {
	cases := []struct {
		note, realm, meta, want string
		err                     *Error
	}{
		{note: "invalid token with metadata", realm: "portcullis", meta: "https://p.test/.well-known/oauth-protected-resource",
			err:  tokenErr(descExpired, nil),
			want: `Bearer realm="portcullis", error="invalid_token", error_description="token is expired", resource_metadata="https://p.test/.well-known/oauth-protected-resource"`},
		{note: "missing credentials carry no error", realm: "portcullis",
			err: &Error{Code: CodeInvalidRequest, Description: descMissing, missing: true}, want: `Bearer realm="portcullis"`},
		{note: "no realm", err: &Error{Code: CodeInvalidRequest, Description: descScheme},
			want: `Bearer error="invalid_request", error_description="authorization scheme must be Bearer"`},
		{note: "quotes and control characters escaped", realm: "a\"b\\c\r\nd", err: tokenErr(descSignature, nil),
			want: `Bearer realm="a\"b\\cd", error="invalid_token", error_description="token signature is invalid"`},
	}
	for _, tc := range cases {
		t.Run(tc.note, func(t *testing.T) {
			if got := tc.err.WWWAuthenticate(tc.realm, tc.meta); got != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestThumbprintRFC7638(t *testing.T) {
	// The example key of RFC 7638 section 3.1 and its published thumbprint.
	n := "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
	pub := &rsaPub{n: n, e: 65537}
	got := thumb(t, pub.key(t))
	if want := "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"; got != want {
		t.Fatalf("thumbprint = %s, want %s", got, want)
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		note string
		cfg  Config
		want []string // substrings, each must appear
	}{
		{note: "no key source", cfg: Config{}, want: []string{"no key source"}},
		{note: "short secret is reported without the secret", cfg: Config{HS256Secret: "tooshort-secret-value"},
			want: []string{"hs256_secret is 21 bytes"}},
		{note: "everything wrong at once", cfg: Config{HS256Secret: strings.Repeat("s", 40), HS256SecretFile: "/x",
			PublicKeyFiles: []string{"", "=/path", "bad..kid=/p"}, JWKSURL: "http://idp.example.com/jwks",
			JWKSRefresh: time.Millisecond, JWKSMinRefreshInterval: -1, Leeway: time.Hour, MaxTokenBytes: 10, CacheSize: 1 << 30},
			want: []string{"both set", "public_key_files[0]: empty path", "public_key_files[1]: empty kid",
				"public_key_files[2]: kid", "jwks_url: http is allowed only for loopback", "jwks_refresh",
				"jwks_min_refresh_interval", "leeway", "max_token_bytes", "cache_size"}},
		{note: "jwks scheme", cfg: Config{JWKSURL: "file:///etc/jwks.json"}, want: []string{"jwks_url: scheme must be https"}},
		{note: "jwks credentials", cfg: Config{JWKSURL: "https://u:p@idp/jwks"}, want: []string{"jwks_url: credentials"}},
	}
	for _, tc := range cases {
		t.Run(tc.note, func(t *testing.T) {
			cfg := tc.cfg
			cfg.SetDefaults()
			if tc.cfg.JWKSRefresh != 0 {
				cfg.JWKSRefresh = tc.cfg.JWKSRefresh
			}
			err := cfg.Validate()
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("missing %q in:\n%v", w, err)
				}
			}
			if got := len(strings.Split(err.Error(), "\n")); got != len(tc.want) {
				t.Errorf("%d problems reported, want %d:\n%v", got, len(tc.want), err)
			}
			if strings.Contains(err.Error(), "tooshort") || strings.Contains(err.Error(), "ssss") {
				t.Errorf("secret leaked: %v", err)
			}
		})
	}
	ok := Config{JWKSURL: "http://127.0.0.1:9/jwks"}
	ok.SetDefaults()
	if err := ok.Validate(); err != nil {
		t.Fatalf("loopback http jwks refused: %v", err)
	}
}

func TestNewRefusesBadKeys(t *testing.T) {
	k := testKeySet(t)
	dir := t.TempDir()
	small, err := rsaKey(1024)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		note string
		cfg  Config
		want string
	}{
		{note: "missing file", cfg: Config{PublicKeyFiles: []string{dir + "/nope.pem"}}, want: "reading public key"},
		{note: "private key instead of public", cfg: Config{PublicKeyFiles: []string{writeFile(t, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", 0o600)}}, want: "not a public key"},
		{note: "not PEM", cfg: Config{PublicKeyFiles: []string{writeFile(t, "hello", 0o600)}}, want: "no PEM block"},
		{note: "RSA 1024", cfg: Config{PublicKeyFiles: []string{writePubPEM(t, dir, "small.pem", &small.PublicKey)}}, want: "at least 2048"},
		{note: "duplicate kid", cfg: Config{PublicKeyFiles: []string{"a=" + writePubPEM(t, dir, "e1.pem", &k.ec.PublicKey), "a=" + writePubPEM(t, dir, "e2.pem", &k.attacker.PublicKey)}}, want: `kid "a" is used twice`},
		{note: "short secret file", cfg: Config{HS256SecretFile: writeFile(t, "short\n", 0o600)}, want: "holds 5 bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.note, func(t *testing.T) {
			a, err := New(t.Context(), tc.cfg, discardLogger())
			if err == nil {
				a.Close()
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestConfigYAML(t *testing.T) {
	var cfg Config
	src := `
hs256_secret_file: /run/secrets/jwt
public_key_files: ["idp=/etc/portcullis/idp.pem"]
jwks_url: https://idp.example.com/.well-known/jwks.json
jwks_refresh: 5m
jwks_min_refresh_interval: 10s
issuer: https://idp.example.com
audience: portcullis
leeway: 45s
claims: {roles: realm_access.roles, session: session_id}
cache_size: 500
max_token_bytes: 4096
`
	if err := yaml.Unmarshal([]byte(src), &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.JWKSRefresh != 5*time.Minute || cfg.JWKSMinRefreshInterval != 10*time.Second || cfg.Leeway != 45*time.Second ||
		cfg.Claims.Roles != "realm_access.roles" || cfg.Claims.Sub != "sub" || cfg.CacheSize != 500 || cfg.MaxTokenBytes != 4096 ||
		cfg.PublicKeyFiles[0] != "idp=/etc/portcullis/idp.pem" {
		t.Fatalf("decoded %+v", cfg)
	}
}
