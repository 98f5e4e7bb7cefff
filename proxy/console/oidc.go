package console

import (
	"context"
	"crypto/sha256"
	"fmt"
	"html"
	"net/http"
	"strings"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/gofiber/fiber/v2"
	"golang.org/x/oauth2"

	"github.com/portcullis/portcullis/policies/principal"
	"github.com/portcullis/portcullis/proxy/apierror"
)

// loginCookie binds an OIDC sign-in in flight to the browser that started it. It is Lax,
// not Strict: the provider's redirect back is a cross-site navigation, and a Strict
// cookie would not come with it. It holds a random value only, and lives ten minutes.
const loginCookie = "portcullis_console_login"

type oidcClient struct {
	cfg      OIDCConfig
	oauth    oauth2.Config
	verifier *oidc.IDTokenVerifier
	client   *http.Client
}

func newOIDCClient(ctx context.Context, cfg OIDCConfig, hc *http.Client) (*oidcClient, error) {
	ctx = oidc.ClientContext(ctx, hc)
	p, err := oidc.NewProvider(ctx, cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("console.oidc.issuer: discovery failed: %w", err)
	}
	return &oidcClient{
		cfg: cfg,
		oauth: oauth2.Config{
			ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, Endpoint: p.Endpoint(),
			RedirectURL: cfg.RedirectURL, Scopes: append([]string{oidc.ScopeOpenID}, cfg.Scopes...),
		},
		verifier: p.Verifier(&oidc.Config{ClientID: cfg.ClientID}),
		client:   hc,
	}, nil
}

// oidcLogin is GET /console/auth/login: it starts the authorization code flow with PKCE
// (S256), a state bound to this browser and a nonce, and redirects to the provider.
func (c *Console) oidcLogin(ctx *fiber.Ctx) error {
	if c.oidc == nil {
		return apierror.NotFound("OIDC sign-in is not configured (console.oidc)")
	}
	state, binding := randomToken(), randomToken()
	p := &pendingLogin{verifier: oauth2.GenerateVerifier(), nonce: randomToken(), binding: sha256.Sum256([]byte(binding)),
		expires: c.d.Now().Add(loginTTL), returnTo: safeReturn(strings.Clone(ctx.Query("return_to"))), addr: clientAddr(ctx), network: clientNetwork(ctx)}
	sctx, cancel := storeCtx()
	defer cancel()
	if err := c.store.putLogin(sctx, hashKey(state), p); err != nil {
		if e := refusedFull(err); e != nil {
			return e
		}
		return c.storeDown("starting an OIDC sign-in", err)
	}
	ctx.Cookie(&fiber.Cookie{Name: loginCookie, Value: binding, Path: Prefix + "/auth", MaxAge: int(loginTTL.Seconds()),
		Secure: true, HTTPOnly: true, SameSite: fiber.CookieSameSiteLaxMode})
	u := c.oidc.oauth.AuthCodeURL(state, oauth2.S256ChallengeOption(p.verifier), oidc.Nonce(p.nonce))
	return ctx.Redirect(u, fiber.StatusFound)
}

// safeReturn keeps a return path only if it is a console page.
func safeReturn(p string) string {
	if strings.HasPrefix(p, Prefix+"/") && !strings.HasPrefix(p, Prefix+"//") && !strings.ContainsAny(p, "\\\r\n") && !strings.Contains(p, "/../") {
		return p
	}
	return Prefix + "/"
}

// oidcCallback is GET /console/auth/callback: it checks the state against this browser's
// login cookie, redeems the code with the PKCE verifier, verifies the ID token (issuer,
// audience, expiry, signature, nonce), reads sub, org and roles from the configured
// claims and starts a session.
func (c *Console) oidcCallback(ctx *fiber.Ctx) error {
	if c.oidc == nil {
		return apierror.NotFound("OIDC sign-in is not configured (console.oidc)")
	}
	ctx.Cookie(&fiber.Cookie{Name: loginCookie, Value: "", Path: Prefix + "/auth", MaxAge: -1,
		Secure: true, HTTPOnly: true, SameSite: fiber.CookieSameSiteLaxMode})
	if e := ctx.Query("error"); e != "" {
		return apierror.New(fiber.StatusUnauthorized, "sign_in_refused", "the identity provider refused the sign-in: %s", quoteShort(e))
	}
	state := ctx.Query("state")
	if state == "" {
		return apierror.BadRequest("invalid_request", "state", "state: missing from the provider's redirect")
	}
	sctx, cancel := storeCtx()
	p, err := c.store.takeLogin(sctx, hashKey(state))
	cancel()
	if err != nil {
		return c.storeDown("finishing an OIDC sign-in", err)
	}
	if p == nil {
		return apierror.BadRequest("invalid_request", "state", "state: unknown or expired sign-in; start again")
	}
	if sha256.Sum256([]byte(ctx.Cookies(loginCookie))) != p.binding {
		return apierror.BadRequest("invalid_request", "state", "state: this sign-in was started in another browser")
	}
	code := ctx.Query("code")
	if code == "" {
		return apierror.BadRequest("invalid_request", "code", "code: missing from the provider's redirect")
	}
	rctx, cancel := context.WithTimeout(oidc.ClientContext(context.Background(), c.oidc.client), c.d.HTTPClient.Timeout)
	defer cancel()
	tok, err := c.oidc.oauth.Exchange(rctx, code, oauth2.VerifierOption(p.verifier))
	if err != nil {
		c.log.Warn("console: OIDC code exchange failed", "err", err)
		return apierror.New(fiber.StatusUnauthorized, "sign_in_failed", "the identity provider did not accept the sign-in code")
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return apierror.New(fiber.StatusUnauthorized, "sign_in_failed", "the identity provider returned no ID token")
	}
	idt, err := c.oidc.verifier.Verify(rctx, raw)
	if err != nil {
		c.log.Warn("console: ID token refused", "err", err)
		return apierror.New(fiber.StatusUnauthorized, "sign_in_failed", "the ID token was refused: %v", err)
	}
	if idt.Nonce != p.nonce {
		return apierror.New(fiber.StatusUnauthorized, "sign_in_failed", "the ID token's nonce does not match this sign-in")
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return apierror.New(fiber.StatusUnauthorized, "sign_in_failed", "the ID token's claims do not decode")
	}
	caller, err := c.oidc.caller(claims)
	if err != nil {
		return apierror.New(fiber.StatusForbidden, "forbidden", "%v", err)
	}
	expires := c.d.Now().Add(c.cfg.AbsoluteTimeout)
	if _, err := c.newSession(ctx, caller, "oidc", expires); err != nil {
		return err
	}
	// The provider's redirect is a cross-site navigation: the new Strict cookie would not
	// come with a redirect followed from it. A page of our own that moves on does.
	ctx.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
	target := html.EscapeString(p.returnTo)
	return ctx.SendString(`<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="0;url=` + target +
		`"><title>Signed in</title><p>Signed in. <a href="` + target + `">Continue to the console</a>.</p>`)
}

// caller reads the person's sub, org and roles from verified ID token claims.
func (o *oidcClient) caller(claims map[string]any) (principal.Caller, error) {
	sub, _ := lookupClaim(claims, o.cfg.Claims.Sub).(string)
	org, _ := lookupClaim(claims, o.cfg.Claims.Org).(string)
	if sub == "" {
		return principal.Caller{}, fmt.Errorf("the ID token has no %q claim (console.oidc.claims.sub)", o.cfg.Claims.Sub)
	}
	if org == "" {
		return principal.Caller{}, fmt.Errorf("the ID token has no %q claim naming your org (console.oidc.claims.org)", o.cfg.Claims.Org)
	}
	var roles []string
	switch v := lookupClaim(claims, o.cfg.Claims.Roles).(type) {
	case []any:
		for _, r := range v {
			if s, ok := r.(string); ok && s != "" {
				roles = append(roles, s)
			}
		}
	case string:
		roles = strings.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == ',' })
	}
	session, _ := claims["sid"].(string)
	return principal.Caller{Sub: sub, Org: org, Roles: roles, Session: session}, nil
}

// lookupClaim finds name in claims, or, failing that and with dots in name, the path.
func lookupClaim(claims map[string]any, name string) any {
	if v, ok := claims[name]; ok {
		return v
	}
	var cur any = claims
	for _, part := range strings.Split(name, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[part]
	}
	return cur
}
