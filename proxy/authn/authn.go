package authn

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/portcullis/portcullis/audit/redact"
	"github.com/portcullis/portcullis/policies/principal"
	"github.com/portcullis/portcullis/proxy/strictjson"
)

// Identity is a verified caller. Identities may be served from the cache and shared
// between requests: callers must treat them, including Caller.Roles and Caller.Claims,
// as read-only.
type Identity struct {
	Caller  principal.Caller
	Expires time.Time
	TokenID string // jti, when present
}

// Authenticator verifies bearer tokens. It is safe for concurrent use.
type Authenticator struct {
	cfg    Config
	logger *slog.Logger
	now    func() time.Time // replaced in tests

	parser    *jwt.Parser
	validAlgs map[string]bool
	hsKey     []byte
	byKid     map[string]crypto.PublicKey
	fileKeys  []crypto.PublicKey
	jwks      *jwksSource
	cache     *tokenCache
	cancel    context.CancelFunc
}

var (
	errUnknownKey  = errors.New("signing key not found")
	errKeyMismatch = errors.New("algorithm does not match the key type")
)

// asymmetricAlgs are what a JWKS may verify; HS* never comes from a JWKS.
var asymmetricAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// New loads the key sources and starts the JWKS refresher (stopped by Close or ctx).
func New(ctx context.Context, cfg Config, logger *slog.Logger) (*Authenticator, error) {
	if logger == nil {
		return nil, errors.New("authn: nil logger")
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &Authenticator{
		cfg:       cfg,
		logger:    logger,
		now:       time.Now,
		validAlgs: map[string]bool{},
		byKid:     map[string]crypto.PublicKey{},
		cache:     newTokenCache(cfg.CacheSize),
	}

	secret := cfg.HS256Secret
	if cfg.HS256SecretFile != "" {
		raw, err := os.ReadFile(cfg.HS256SecretFile)
		if err != nil {
			return nil, fmt.Errorf("authn: reading hs256_secret_file: %w", err)
		}
		secret = strings.TrimSpace(string(raw))
		if len(secret) < minHS256SecretBytes {
			return nil, fmt.Errorf("authn: hs256_secret_file %s holds %d bytes; at least %d are required",
				cfg.HS256SecretFile, len(secret), minHS256SecretBytes)
		}
	}
	if secret != "" {
		a.hsKey = []byte(secret)
		a.validAlgs["HS256"] = true
	}

	var kids []string
	for _, entry := range cfg.PublicKeyFiles {
		kid, path := splitKeyFile(entry)
		key, err := loadPublicKeyFile(path)
		if err != nil {
			return nil, err
		}
		if kid == "" {
			if kid, err = Thumbprint(key); err != nil {
				return nil, err
			}
		}
		if _, dup := a.byKid[kid]; dup {
			return nil, fmt.Errorf("authn: public_key_files: kid %q is used twice", kid)
		}
		a.byKid[kid] = key
		a.fileKeys = append(a.fileKeys, key)
		for _, alg := range algsForKey(key) {
			a.validAlgs[alg] = true
		}
		kids = append(kids, kid)
	}

	ctx, a.cancel = context.WithCancel(ctx)
	if cfg.JWKSURL != "" {
		src, err := newJWKSSource(ctx, cfg.JWKSURL, cfg.JWKSRefresh, cfg.JWKSMinRefreshInterval, logger)
		if err != nil {
			a.cancel()
			return nil, err
		}
		a.jwks = src
		for _, alg := range asymmetricAlgs {
			a.validAlgs[alg] = true
		}
	}

	methods := make([]string, 0, len(a.validAlgs))
	for alg := range a.validAlgs {
		methods = append(methods, alg)
	}
	slices.Sort(methods)
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(methods),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithStrictDecoding(),
		jwt.WithTimeFunc(func() time.Time { return a.now() }),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	a.parser = jwt.NewParser(opts...)

	logger.Info("authn: ready", "algorithms", methods, "hs256", a.hsKey != nil, "key_ids", kids,
		"jwks_url", redact.URL(cfg.JWKSURL), "issuer", cfg.Issuer, "audience", cfg.Audience, "cache_size", max(cfg.CacheSize, 0))
	return a, nil
}

// Issuer is the iss every token must carry ("" when none is required).
func (a *Authenticator) Issuer() string { return a.cfg.Issuer }

// Close stops the JWKS refresher.
func (a *Authenticator) Close() { a.cancel() }

// Authenticate verifies the value of an Authorization header, which must be
// "Bearer <jwt>" (scheme case-insensitive). Every failure is an *Error.
func (a *Authenticator) Authenticate(header string) (*Identity, error) {
	tok, e := bearerToken(header)
	if e != nil {
		return nil, e
	}
	if len(tok) > a.cfg.MaxTokenBytes {
		return nil, tokenErr(descTooLarge, nil)
	}
	now := a.now()
	var key [32]byte
	if a.cache != nil {
		key = hashToken(tok)
		if id := a.cache.get(key, now.UnixNano()); id != nil {
			return id, nil
		}
	}
	id, err := a.verify(tok)
	if err != nil {
		return nil, err
	}
	if lim := a.cfg.MaxTokenLifetime; lim > 0 {
		from := now
		if iat, err := jwt.MapClaims(id.Caller.Claims).GetIssuedAt(); err == nil && iat != nil {
			from = iat.Time
		}
		if id.Expires.Sub(from) > lim {
			return nil, tokenErr(descTooLong, nil)
		}
	}
	if a.cache != nil && now.Before(id.Expires) {
		// Compared as times: UnixNano of an exp past 2262 overflows.
		until := now.Add(a.cfg.CacheTTL)
		if id.Expires.Before(until) {
			until = id.Expires
		}
		a.cache.put(key, id, until.UnixNano(), now.UnixNano())
	}
	return id, nil
}

// AuthenticateHeader is Authenticate for an Authorization header still in the
// server's buffer. A token already in the cache is found without copying the header:
// a cached token was verified in full, so the same bytes need no second look. Anything
// else goes through Authenticate, which keeps its own copy.
func (a *Authenticator) AuthenticateHeader(header []byte) (*Identity, error) {
	if id := a.CachedHeader(header); id != nil {
		return id, nil
	}
	return a.Authenticate(string(header))
}

// CachedHeader returns the identity of a "Bearer" header whose token is in the verified
// cache and unexpired, else nil. It costs a hash and a map read, allocates nothing and
// never verifies: the proxy uses it to let a known token pass what only unknown tokens
// must pay for (the per-address pre-authentication limit).
func (a *Authenticator) CachedHeader(header []byte) *Identity {
	const scheme = "bearer "
	if a.cache == nil || len(header) <= len(scheme) || len(header)-len(scheme) > a.cfg.MaxTokenBytes ||
		!strings.EqualFold(string(header[:len(scheme)]), scheme) {
		return nil
	}
	return a.cache.get(sha256.Sum256(header[len(scheme):]), a.now().UnixNano())
}

func bearerToken(header string) (string, *Error) {
	if strings.TrimSpace(header) == "" {
		return "", &Error{Code: CodeInvalidRequest, Description: descMissing, missing: true}
	}
	const scheme = "bearer "
	if len(header) <= len(scheme) || !strings.EqualFold(header[:len(scheme)], scheme) {
		return "", &Error{Code: CodeInvalidRequest, Description: descScheme}
	}
	tok := header[len(scheme):]
	if tok == "" || strings.ContainsAny(tok, " \t") {
		return "", &Error{Code: CodeInvalidRequest, Description: descMalformed}
	}
	return tok, nil
}

// verify runs the checks a cache miss needs: token shape, header policy, signature,
// registered claims, caller mapping.
func (a *Authenticator) verify(tok string) (*Identity, error) {
	if strings.Count(tok, ".") != 2 {
		return nil, tokenErr(descMalformed, nil)
	}
	h, e := a.checkHeader(tok[:strings.IndexByte(tok, '.')])
	if e != nil {
		return nil, e
	}
	claims := jwt.MapClaims{}
	_, err := a.parser.ParseWithClaims(tok, claims, func(t *jwt.Token) (any, error) {
		return a.keyFor(t, h)
	})
	if err == nil || errors.Is(err, jwt.ErrTokenInvalidClaims) {
		// The signature held (jwt checks dates only after it). A date beyond what the
		// parser can represent overflows when converted: nbf 1e19 became a date in the
		// past and passed. Refuse it for what it is, before any date comparison counts.
		if e := checkDateClaims(claims); e != nil {
			return nil, e
		}
	}
	if err != nil {
		return nil, a.mapParseError(err, claims)
	}
	// A claim named twice ({"org":"a","org":"b"}, also inside a nested claim such as
	// realm_access.roles, or as names differing only in case) is read as the last one by
	// the decoder: refuse it, as a header parameter named twice is, rather than pick one.
	payload := tok[strings.IndexByte(tok, '.')+1 : strings.LastIndexByte(tok, '.')]
	if raw, err := base64.RawURLEncoding.DecodeString(payload); err != nil {
		return nil, tokenErr(descMalformed, err)
	} else if _, err := strictjson.Parse(raw, strictjson.DefaultMaxDepth); err != nil {
		return nil, tokenErr(descDuplicateClaim, err)
	}
	return mapIdentity(claims, &a.cfg.Claims)
}

// refusedHeaders: crit demands extensions we do not implement; the rest would let the
// token choose its own verification key.
var refusedHeaders = []struct{ name, desc string }{
	{"crit", descCrit}, {"jku", descJKU}, {"jwk", descJWK}, {"x5u", descX5U}, {"x5c", descX5C},
}

type header struct {
	alg    string
	kid    string
	hasKid bool
}

// checkHeader applies our header policy before any key lookup or signature work.
func (a *Authenticator) checkHeader(seg string) (header, *Error) {
	var h header
	raw, err := base64.RawURLEncoding.Strict().DecodeString(seg)
	if err != nil {
		return h, tokenErr(descHeader, err)
	}
	fields, dup, err := decodeObject(raw)
	if err != nil {
		return h, tokenErr(descHeader, err)
	}
	if dup {
		return h, tokenErr(descDuplicateHeader, nil)
	}
	for _, f := range refusedHeaders {
		if _, ok := fields[f.name]; ok {
			return h, tokenErr(f.desc, nil)
		}
	}
	if json.Unmarshal(fields["alg"], &h.alg) != nil || !a.validAlgs[h.alg] {
		return h, tokenErr(descAlg, nil)
	}
	if v, ok := fields["kid"]; ok {
		if json.Unmarshal(v, &h.kid) != nil {
			return h, tokenErr(descKidType, nil)
		}
		if d := checkKid(h.kid); d != "" {
			return h, tokenErr(d, nil)
		}
		h.hasKid = true
	}
	if v, ok := fields["typ"]; ok {
		var typ string
		if json.Unmarshal(v, &typ) != nil {
			return h, tokenErr(descTyp, nil)
		}
		switch strings.ToLower(typ) {
		case "jwt", "at+jwt", "application/jwt", "application/at+jwt":
		default:
			return h, tokenErr(descTyp, nil)
		}
	}
	return h, nil
}

// decodeObject decodes a JSON object into raw members and reports duplicate names,
// which encoding/json would otherwise resolve silently (last one wins).
func decodeObject(raw []byte) (map[string]json.RawMessage, bool, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	t, err := dec.Token()
	if err != nil {
		return nil, false, err
	}
	if d, ok := t.(json.Delim); !ok || d != '{' {
		return nil, false, errors.New("not a JSON object")
	}
	fields := map[string]json.RawMessage{}
	dup := false
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, false, err
		}
		name, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, false, err
		}
		if _, seen := fields[name]; seen {
			dup = true
		}
		fields[name] = v
	}
	if _, err := dec.Token(); err != nil { // closing brace
		return nil, false, err
	}
	if dec.More() {
		return nil, false, errors.New("trailing data after header object")
	}
	return fields, dup, nil
}

const maxKidLen = 128

// checkKid returns a description when kid is unacceptable. The kid is never used as a
// path, but refusing traversal-looking and odd values keeps logs and lookups boring.
func checkKid(kid string) string {
	if kid == "" || len(kid) > maxKidLen {
		if kid == "" {
			return descKidChars
		}
		return descKidLong
	}
	if strings.Contains(kid, "..") || kid[0] == '/' {
		return descKidChars
	}
	for i := 0; i < len(kid); i++ {
		c := kid[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-_.:+=~/@", c) >= 0:
		default:
			return descKidChars
		}
	}
	return ""
}

// keyFor picks the verification key. The algorithm is checked against the key type
// here as well as by jwt's signing methods, so an HS256 token can never be checked
// against public key bytes.
func (a *Authenticator) keyFor(t *jwt.Token, h header) (any, error) {
	if h.alg == "HS256" {
		if a.hsKey == nil {
			return nil, errKeyMismatch
		}
		return a.hsKey, nil
	}
	if h.hasKid {
		if k, ok := a.byKid[h.kid]; ok {
			if !keyAllows(k, h.alg) {
				return nil, errKeyMismatch
			}
			return k, nil
		}
		if a.jwks == nil {
			return nil, errUnknownKey
		}
		k, err := a.jwks.key(t)
		if err != nil {
			return nil, err
		}
		if _, sym := k.([]byte); sym || !keyAllows(k, h.alg) {
			return nil, errKeyMismatch
		}
		return k, nil
	}
	var set jwt.VerificationKeySet
	for _, k := range a.fileKeys {
		if keyAllows(k, h.alg) {
			set.Keys = append(set.Keys, k)
		}
	}
	if len(set.Keys) == 0 {
		return nil, errUnknownKey
	}
	return set, nil
}

func (a *Authenticator) mapParseError(err error, claims jwt.MapClaims) *Error {
	missing := func(name string) bool { _, ok := claims[name]; return !ok }
	var desc string
	switch {
	case errors.Is(err, errKeyMismatch):
		desc = descAlg
	case errors.Is(err, errUnknownKey):
		desc = descUnknownKey
	case errors.Is(err, jwt.ErrTokenMalformed):
		desc = descMalformed
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		desc = descSignature
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		desc = descUnknownKey
	case errors.Is(err, jwt.ErrTokenExpired):
		desc = descExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		desc = descNotYetValid
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		desc = descIssuedFuture
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing) && missing("exp"):
		desc = descNoExp
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing) && a.cfg.Audience != "" && missing("aud"):
		desc = descNoAud
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing) && a.cfg.Issuer != "" && missing("iss"):
		desc = descNoIss
	case errors.Is(err, jwt.ErrTokenInvalidAudience), errors.Is(err, jwt.ErrTokenRequiredClaimMissing) && a.cfg.Audience != "":
		desc = descAudience
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		desc = descIssuer
	default:
		desc = descClaims
	}
	return tokenErr(desc, err)
}
