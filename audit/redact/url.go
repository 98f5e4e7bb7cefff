package redact

import (
	"net/url"
	"strings"
)

// URLPlaceholder is what URL returns for a string that does not parse as a URL with
// a scheme and host: the string itself may hold a credential, so it is never echoed.
const URLPlaceholder = "<not an absolute URL>"

// URL returns raw fit to log or print: scheme, host and path only. A user name and
// password become "***@", and the query and fragment (which may carry tokens) are
// dropped. A string that does not parse, or has no scheme or host, yields
// URLPlaceholder, never raw; "" (nothing configured) yields "". Configured URLs
// (upstreams, public URLs, webhooks, JWKS, database and Redis URLs) go through it
// before any log line or message. An error from url.Parse or an HTTP client is never
// wrapped either: its text holds the URL.
func URL(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" || u.Opaque != "" {
		return URLPlaceholder
	}
	s := (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
	if u.User != nil {
		// url.User would escape the mask to %2A%2A%2A
		s = strings.Replace(s, "://", "://***@", 1)
	}
	return s
}
