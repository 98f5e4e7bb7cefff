package redact

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

func TestIsSecretField(t *testing.T) {
	r := New(testKey)
	tests := []struct {
		name   string
		secret bool
	}{
		{"key", true}, {"api_key", true}, {"X-Api-Key", true}, {"AWS_Secret-Access-Key", true},
		{"secretAccessKey", true}, {"password", true}, {"db.passwd", true}, {"client_secret", true},
		{"Authorization", true}, {"access_token", true}, {"refresh-token", true}, {"private_key", true},
		{"credentials", true}, {"connection_string", true}, {"SESSION TOKEN", true}, {"pwd", true},
		{"Set-Cookie", true}, {"basic_auth", true}, {"api_keys", true}, {"dsn", true},
		{"aws_access_key_id", false}, {"key_id", false}, {"private_key_id", false},
		{"masked_key", false}, {"public_key", false}, {"idempotency-key", false},
		{"max_tokens", false}, {"token_url", false}, {"name", false}, {"ai_provider_id", false},
		{"author", false}, {"description", false}, {"", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := r.IsSecretField(tc.name); got != tc.secret {
				t.Fatalf("IsSecretField(%q) = %v, want %v", tc.name, got, tc.secret)
			}
		})
	}
}

func TestRedactValuePatterns(t *testing.T) {
	r := New(testKey)
	mac := func(s string) string { return r.mac(s) }
	jwt := "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl"
	pemKey := "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----"
	tests := []struct {
		name, in, want string
	}{
		{"openai", "sk-proj-abcdefghijklmnop", mac("sk-proj-abcdefghijklmnop")},
		{"stripe in text", "use sk_live_abcdefghijklmnop now", "use " + mac("sk_live_abcdefghijklmnop") + " now"},
		{"aws key id", "AKIAIOSFODNN7EXAMPLE", mac("AKIAIOSFODNN7EXAMPLE")},
		{"aws sts id", "id=ASIAIOSFODNN7EXAMPLE,", "id=" + mac("ASIAIOSFODNN7EXAMPLE") + ","},
		{"pem block", "cfg:\n" + pemKey + "\nend", "cfg:\n" + mac(pemKey) + "\nend"},
		{"pem unterminated", "x " + "-----BEGIN PRIVATE KEY-----\nMIIE", "x " + mac("-----BEGIN PRIVATE KEY-----\nMIIE")},
		{"slack", "xoxb-1234-5678-abcdef", mac("xoxb-1234-5678-abcdef")},
		{"github", "ghp_abcdefghijklmnopqrstuvwxyz0123", mac("ghp_abcdefghijklmnopqrstuvwxyz0123")},
		{"jwt", "token " + jwt, "token " + mac(jwt)},
		{"bearer", "Authorization: Bearer abc.def-ghi_jkl", "Authorization: Bearer " + mac("abc.def-ghi_jkl")},
		{"url password", "postgres://admin:hunter2@db:5432/x", "postgres://admin:" + mac("hunter2") + "@db:5432/x"},
		{"query secret", "https://h/p?api_key=abc123&x=1", "https://h/p?api_key=" + mac("abc123") + "&x=1"},
		{"conn string", "Server=db;Password=pa55;User=sa", "Server=db;Password=" + mac("pa55") + ";User=sa"},
		{"basic auth", "Authorization: Basic dXNlcjpodW50ZXIy", "Authorization: Basic " + mac("dXNlcjpodW50ZXIy")},
		{"yaml-ish", "password: hunter2 and more", "password: " + mac("hunter2") + " and more"},
		{"json in a string", `{"apiKey":"plainsecret123","password":"hunter2","name":"x"}`,
			`{"apiKey":"` + mac("plainsecret123") + `","password":"` + mac("hunter2") + `","name":"x"}`},
		{"single quotes", `{'client_secret': 'abc def'}`, `{'client_secret': '` + mac("abc def") + `'}`},
		{"not a secret name", `{"note":"hello"} time: 10:30`, `{"note":"hello"} time: 10:30`},
		{"in a path", "/v1/integrations/sk-ant-abcdefghijklmnop/models", "/v1/integrations/" + mac("sk-ant-abcdefghijklmnop") + "/models"},
		// Not secrets.
		{"masked", "sk-****abcd", "sk-****abcd"},
		{"short sk", "risk-assessment", "risk-assessment"},
		{"word with sk", "task-abcdefghijklmnopqrstu", "task-abcdefghijklmnopqrstu"},
		{"akia too short", "AKIA123", "AKIA123"},
		{"plain", "prod openai", "prod openai"},
		{"already redacted", mac("x"), mac("x")},
		{"url without password", "https://user@host/p", "https://user@host/p"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := r.Value(tc.in); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRedactStructure(t *testing.T) {
	r := New(testKey)
	var in map[string]any
	if err := json.Unmarshal([]byte(`{
		"name": "prod", "key": "s3cr3t", "limit": 10, "enabled": true, "nothing": null,
		"configurations": {"AWS_Secret-Access-Key": "abc", "region": "us-east-1",
			"credentials": {"user": "u", "nested": [1, "two", {"x": "y"}], "on": false}},
		"items": [{"password": 1234}, "plain"]
	}`), &in); err != nil {
		t.Fatal(err)
	}
	orig, _ := json.Marshal(in)
	out := r.Value(in).(map[string]any)
	if again, _ := json.Marshal(in); string(again) != string(orig) {
		t.Fatal("input was mutated")
	}
	cfg := out["configurations"].(map[string]any)
	creds := cfg["credentials"].(map[string]any)
	checks := []struct {
		name      string
		got, want any
	}{
		{"plain kept", out["name"], "prod"},
		{"number kept", out["limit"], float64(10)},
		{"bool kept", out["enabled"], true},
		{"null kept", out["nothing"], nil},
		{"secret string", out["key"], r.mac("s3cr3t")},
		{"odd case secret", cfg["AWS_Secret-Access-Key"], r.mac("abc")},
		{"sibling kept", cfg["region"], "us-east-1"},
		{"leaf under secret object", creds["user"], r.mac("u")},
		{"number leaf under secret", creds["nested"].([]any)[0], r.mac("1")},
		{"deep leaf under secret", creds["nested"].([]any)[2].(map[string]any)["x"], r.mac("y")},
		{"bool under secret kept", creds["on"], false},
		{"secret number in array item", out["items"].([]any)[0].(map[string]any)["password"], r.mac("1234")},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: got %#v, want %#v", c.name, c.got, c.want)
		}
	}
	// Same secret, same mark; other key, other mark.
	if r.Value(map[string]any{"token": "s3cr3t"}).(map[string]any)["token"] != out["key"] {
		t.Error("same secret gave different marks")
	}
	if New([]byte("another-key-another-key")).mac("s3cr3t") == r.mac("s3cr3t") {
		t.Error("mark does not depend on the key")
	}
	// Redacting twice changes nothing (policy input and audit share one pass).
	if twice := r.Value(out); !reflect.DeepEqual(twice, any(out)) {
		t.Errorf("not idempotent: %v", twice)
	}
	// Unexpected Go types are normalised, not passed through.
	odd := r.Value(map[string]any{"headers": map[string]string{"Authorization": "Basic abc"}})
	if strings.Contains(jsonString(odd), "Basic abc") {
		t.Errorf("typed map leaked: %s", jsonString(odd))
	}
}

func TestRedactJSON(t *testing.T) {
	r := New(testKey)
	out, err := r.JSON([]byte(`{"api_key":"sk-abcdefghijklmnopqrst","n":12345678901234567890}`))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "abcdefghijklmnopqrst") || !strings.Contains(string(out), "12345678901234567890") {
		t.Fatalf("got %s", out)
	}
	if _, err := r.JSON([]byte(`{"a":`)); err == nil {
		t.Fatal("want error for bad JSON")
	}
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// FuzzRedactCanary: a canary under any secret-ish key, at any depth, in any
// container shape, never survives redaction.
func FuzzRedactCanary(f *testing.F) {
	f.Add("password", uint8(0), uint8(0), "hunter2-canary")
	f.Add("AWS_Secret-Access-Key", uint8(3), uint8(5), "x")
	f.Add("x-api-key", uint8(7), uint8(2), "sk-something")
	f.Add("Client.Secret", uint8(12), uint8(1), "with \"quotes\" and \\")
	f.Add("refresh_token", uint8(31), uint8(6), "ünïcödé")
	r := New(testKey)
	secretish := []string{"key", "password", "secret", "token", "apikey", "authorization", "credentials", "private_key", "passwd"}
	f.Fuzz(func(t *testing.T, key string, depth, shape uint8, canary string) {
		// Skip canaries that could be read inside our own output: the mark's
		// alphabet, the fixed keys of the test document, or the key name itself.
		if len(canary) < 4 || strings.Trim(canary, "0123456789abcdefhms-:") == "" ||
			strings.Contains("levelinnerotherfine", canary) || strings.Contains(key, canary) {
			return
		}
		if !r.IsSecretField(key) {
			// Make the key secret-ish by decorating a known word with the fuzzed text.
			key = key + "_" + secretish[int(shape)%len(secretish)]
			if !r.IsSecretField(key) {
				return // a not-secret suffix won (e.g. ..._key_id is impossible here)
			}
		}
		var leaf any = canary
		switch shape % 3 {
		case 1:
			leaf = []any{"a", canary}
		case 2:
			leaf = map[string]any{"inner": canary}
		}
		var v any = map[string]any{key: leaf, "other": "fine"}
		for i := 0; i < int(depth%16); i++ {
			if (int(shape)+i)%2 == 0 {
				v = map[string]any{"level": v}
			} else {
				v = []any{v, 1.5}
			}
		}
		out := r.Value(v)
		if containsString(out, canary) {
			t.Fatalf("canary %q survived under %q: %s", canary, key, jsonString(out))
		}
	})
}

func containsString(v any, s string) bool {
	switch x := v.(type) {
	case string:
		return strings.Contains(x, s)
	case map[string]any:
		for k, e := range x {
			if strings.Contains(k, s) || containsString(e, s) {
				return true
			}
		}
	case []any:
		for _, e := range x {
			if containsString(e, s) {
				return true
			}
		}
	}
	return false
}

// A decoder that folds case reads these names as "key" and "secret"; so must redaction.
func TestIsSecretFieldFoldsUnicode(t *testing.T) {
	r := New([]byte("k"))
	for _, name := range []string{"\u212aey", "API_\u212aEY", "client_\u017Fecret", "Pa\u017F\u017Fword"} {
		if !r.IsSecretField(name) {
			t.Errorf("%q is not treated as secret", name)
		}
	}
	if r.IsSecretField("clé_publique") {
		t.Error("an unrelated non-ASCII name is treated as secret")
	}
}

// Arguments without secrets are shared, not copied (this runs on every call); a change
// anywhere copies the maps and slices on its path and leaves the input as it was.
func TestRedactCopiesOnlyWhatChanges(t *testing.T) {
	r := New(testKey)
	clean := map[string]any{"slug": "prod", "tags": []any{"a", "b"}, "cfg": map[string]any{"region": "eu"}}
	if out := r.Value(clean).(map[string]any); reflect.ValueOf(out).UnsafePointer() != reflect.ValueOf(clean).UnsafePointer() {
		t.Error("a map without secrets was copied")
	}
	tags := []any{"a", "sk-abcdefghijklmnop1234", "c"}
	in := map[string]any{"slug": "prod", "tags": tags, "cfg": map[string]any{"region": "eu"}, "sk-abcdefghijklmnop5678": true}
	out := r.Value(in).(map[string]any)
	if reflect.ValueOf(out).UnsafePointer() == reflect.ValueOf(in).UnsafePointer() {
		t.Fatal("a map with a secret was not copied")
	}
	if tags[1] != "sk-abcdefghijklmnop1234" || in["sk-abcdefghijklmnop5678"] != true {
		t.Fatal("input was modified")
	}
	gotTags := out["tags"].([]any)
	if gotTags[0] != "a" || gotTags[2] != "c" || gotTags[1] != r.mac("sk-abcdefghijklmnop1234") {
		t.Errorf("tags = %v", gotTags)
	}
	if _, leaked := out["sk-abcdefghijklmnop5678"]; leaked || out[r.mac("sk-abcdefghijklmnop5678")] != true || len(out) != 4 {
		t.Errorf("secret key not replaced: %v", out)
	}
	if reflect.ValueOf(out["cfg"]).UnsafePointer() != reflect.ValueOf(in["cfg"]).UnsafePointer() {
		t.Error("an unchanged nested map was copied")
	}
}

// A name/value pair is secret when its name is; pass, pin and otp are secret names.
func TestRedactPairsAndShortNames(t *testing.T) {
	r := New(testKey)
	mac := func(s string) string { return r.mac(s) }
	var in any
	if err := json.Unmarshal([]byte(`{"params":[{"name":"Authorization","value":"Basic-less opaque"},{"name":"X-Trace","value":"t-1"}],
		"pass":"hunter2","pin":"1234","spin":"fast","otp":"999111"}`), &in); err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(r.Value(in))
	for _, want := range []string{`"value":"` + mac("Basic-less opaque") + `"`, `"value":"t-1"`, `"pass":"` + mac("hunter2") + `"`,
		`"pin":"` + mac("1234") + `"`, `"spin":"fast"`, `"otp":"` + mac("999111") + `"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("redacted %s lacks %s", out, want)
		}
	}
}

// Scrubbing is idempotent (text redacted once, e.g. a reason quoting redacted input, keeps
// its marks when the row scrubs it again), and ordinary prose is left alone.
func TestScrubIsIdempotentAndSparesProse(t *testing.T) {
	r := New(testKey)
	for _, in := range []string{
		"Authorization: Bearer abcdefghijkl.mnop", "Authorization: Basic dXNlcjpodW50ZXIy",
		"postgres://admin:hunter2@db:5432/x", "password=pa55;x", "password: hunter2", `{"apiKey":"plainsecret123"}`,
		"sk-proj-abcdefghijklmnop", "AKIAIOSFODNN7EXAMPLE", "ghp_abcdefghijklmnopqrstuvwxyz0123",
		"Authorization: Basic dXNlcjpwYXNzd29yZA==.", "Authorization: Basic dXNlcjpwYXNzd29yZA",
	} {
		once := r.String(in)
		if once == in {
			t.Errorf("%q: nothing redacted", in)
		}
		if twice := r.String(once); twice != once {
			t.Errorf("%q: scrubbed twice %q, once %q", in, twice, once)
		}
	}
	for _, prose := range []string{"a basic question about integrations", "missing token: provide the header",
		"key: the slug of the integration", "Basic plan includes everything", "/v1/users/me/password:reset"} {
		if got := r.String(prose); got != prose {
			t.Errorf("prose %q became %q", prose, got)
		}
	}
}
