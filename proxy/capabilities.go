package proxy

import (
	"context"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/audit/redact"
	"github.com/portcullis/portcullis/policies"
	"github.com/portcullis/portcullis/proxy/authn"
)

// The collaborators' interfaces are declared beside their use (Deps in server.go); the
// optional capabilities are declared here.
//
// Optional capabilities of the proxy's collaborators. The proxy checks for each at run
// time (a Decider without a shadow policy, an Authenticator without an issuer), so a
// renamed method would silently turn a feature off: the guards below make the bundled
// implementations fail to compile instead.

// ShadowDecider evaluates a candidate policy beside the live one. *policies.Engine
// implements it; ok is false when no shadow policy is configured.
type ShadowDecider interface {
	DecideShadow(ctx context.Context, in *policies.Input) (policies.Decision, bool)
}

// ReloadCounter is implemented by a Decider whose policy can be reloaded
// (*policies.Engine): /metrics then counts the reloads it refused.
type ReloadCounter interface {
	ReloadFailures() (live, shadow uint64)
}

// ShadowReviser is implemented by a Decider with a shadow policy (*policies.Engine);
// ShadowRevision is "" when none is configured.
type ShadowReviser interface {
	ShadowRevision() string
}

// IssuerReporter is implemented by an Authenticator that requires an issuer
// (*authn.Authenticator): an issuer that is an OAuth issuer identifier is then
// advertised as the authorization server in the resource metadata.
type IssuerReporter interface {
	Issuer() string
}

var (
	_ Decider        = (*policies.Engine)(nil)
	_ ShadowDecider  = (*policies.Engine)(nil)
	_ ReloadCounter  = (*policies.Engine)(nil)
	_ ShadowReviser  = (*policies.Engine)(nil)
	_ Authenticator  = (*authn.Authenticator)(nil)
	_ AuditLog       = (*audit.Log)(nil)
	_ AuditQuerier   = (*audit.Log)(nil)
	_ Redactor       = (*redact.Redactor)(nil)
	_ IssuerReporter = (*authn.Authenticator)(nil)
)
