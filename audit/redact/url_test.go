package redact

import (
	"strings"
	"testing"
)

func TestURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://api.example.com/v1/mcp", "https://api.example.com/v1/mcp"},
		{"http://svc:CANARYPW@127.0.0.1:19994/mcp", "http://***@127.0.0.1:19994/mcp"},
		{"http://CANARYUSER@host/", "http://***@host/"},
		{"https://host/path?token=CANARYTOK&x=1", "https://host/path"},
		{"https://host/path#CANARYFRAG", "https://host/path"},
		{"http://u:CANARYV6@[::1]:8080/mcp?token=CANARYQ", "http://***@[::1]:8080/mcp"},
		{"postgres://user:CANARYDB@db.internal:5432/portcullis?sslmode=disable&password=CANARYQ2", "postgres://***@db.internal:5432/portcullis"},
		{"redis://:CANARYREDIS@redis:6379/0", "redis://***@redis:6379/0"},
		// unparsable or not a URL: a fixed placeholder, never the input
		{"http://u:CANARYX6@[::1", URLPlaceholder},
		{"http://u:CANARY%zz@host/", URLPlaceholder},
		{"CANARYNOSCHEME", URLPlaceholder},
		{"/relative/CANARY?token=CANARY", URLPlaceholder},
		{"mailto:CANARY@example.com", URLPlaceholder},
		{"http:CANARY", URLPlaceholder},
		{"", ""},
		{"ht tp://u:CANARY@host", URLPlaceholder},
	} {
		got := URL(tc.in)
		if got != tc.want {
			t.Errorf("URL(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if strings.Contains(got, "CANARY") {
			t.Errorf("URL(%q) = %q leaks the canary", tc.in, got)
		}
	}
}
