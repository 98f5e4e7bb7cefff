package crypto

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"
)

func key(t *testing.T) []byte {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealOpenRoundTrip(t *testing.T) {
	kr, err := NewKeyring(key(t))
	if err != nil {
		t.Fatal(err)
	}
	b := Binding{Org: "acme", IntegrationID: "i1", Field: "key"}
	env, err := kr.Seal([]byte("sk-canary-123"), b)
	if err != nil {
		t.Fatal(err)
	}
	if env.KeyID != kr.PrimaryID() {
		t.Fatalf("key id %q, want primary %q", env.KeyID, kr.PrimaryID())
	}
	if bytes.Contains(env.Ciphertext, []byte("sk-canary-123")) || bytes.Contains(env.WrappedKey, []byte("sk-canary")) {
		t.Fatal("plaintext visible in envelope")
	}
	pt, err := kr.Open(env, b)
	if err != nil || string(pt) != "sk-canary-123" {
		t.Fatalf("Open = %q, %v", pt, err)
	}
}

func TestSamePlaintextTwiceDiffers(t *testing.T) {
	kr, _ := NewKeyring(key(t))
	b := Binding{Org: "acme", IntegrationID: "i1", Field: "key"}
	e1, _ := kr.Seal([]byte("same"), b)
	e2, _ := kr.Seal([]byte("same"), b)
	if bytes.Equal(e1.Ciphertext, e2.Ciphertext) || bytes.Equal(e1.WrappedKey, e2.WrappedKey) {
		t.Fatal("sealing the same plaintext twice gave equal ciphertext or wrapped key")
	}
}

// Row 6: a ciphertext is bound to its record; any change is an error, never garbage.
func TestTamperAndMisbinding(t *testing.T) {
	kr, _ := NewKeyring(key(t))
	b := Binding{Org: "acme", IntegrationID: "i1", Field: "key"}
	env, _ := kr.Seal([]byte("secret-value"), b)
	other, _ := kr.Seal([]byte("other-value"), Binding{Org: "acme", IntegrationID: "i2", Field: "key"})

	flip := func(p []byte, i int) []byte {
		c := bytes.Clone(p)
		c[i] ^= 0x01
		return c
	}
	cases := []struct {
		name    string
		env     Envelope
		binding Binding
		want    error
	}{
		{"other org", env, Binding{Org: "evil", IntegrationID: "i1", Field: "key"}, ErrOpen},
		{"other integration", env, Binding{Org: "acme", IntegrationID: "i2", Field: "key"}, ErrOpen},
		{"other field", env, Binding{Org: "acme", IntegrationID: "i1", Field: "configurations.password"}, ErrOpen},
		{"ambiguous split", env, Binding{Org: "acme|i1", IntegrationID: "", Field: "key"}, ErrOpen},
		{"ciphertext swapped from i2", Envelope{KeyID: env.KeyID, WrappedKey: env.WrappedKey, Ciphertext: other.Ciphertext}, b, ErrOpen},
		{"whole envelope of i2", other, b, ErrOpen},
		{"wrapped key swapped from i2", Envelope{KeyID: env.KeyID, WrappedKey: other.WrappedKey, Ciphertext: env.Ciphertext}, b, ErrOpen},
		{"flip first ciphertext bit", Envelope{env.KeyID, env.WrappedKey, flip(env.Ciphertext, 0)}, b, ErrOpen},
		{"flip last ciphertext bit", Envelope{env.KeyID, env.WrappedKey, flip(env.Ciphertext, len(env.Ciphertext)-1)}, b, ErrOpen},
		{"flip middle ciphertext bit", Envelope{env.KeyID, env.WrappedKey, flip(env.Ciphertext, 14)}, b, ErrOpen},
		{"flip wrapped key bit", Envelope{env.KeyID, flip(env.WrappedKey, 20), env.Ciphertext}, b, ErrOpen},
		{"truncated ciphertext", Envelope{env.KeyID, env.WrappedKey, env.Ciphertext[:10]}, b, ErrOpen},
		{"empty ciphertext", Envelope{env.KeyID, env.WrappedKey, nil}, b, ErrOpen},
		{"unknown key id", Envelope{"kek-0000000000000000", env.WrappedKey, env.Ciphertext}, b, ErrUnknownKey},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pt, err := kr.Open(tc.env, tc.binding)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if pt != nil {
				t.Fatalf("returned plaintext %q alongside an error", pt)
			}
		})
	}
}

func TestRotationAndRewrap(t *testing.T) {
	oldK, newK := key(t), key(t)
	oldRing, _ := NewKeyring(oldK)
	b := Binding{Org: "acme", IntegrationID: "i1", Field: "key"}
	env, _ := oldRing.Seal([]byte("v"), b)

	newOnly, _ := NewKeyring(newK)
	if _, err := newOnly.Open(env, b); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("new key alone opened an old envelope: %v", err)
	}
	both, _ := NewKeyring(newK, oldK)
	if pt, err := both.Open(env, b); err != nil || string(pt) != "v" {
		t.Fatalf("previous key did not open: %q %v", pt, err)
	}
	re, changed, err := both.Rewrap(env, b)
	if err != nil || !changed || re.KeyID != KeyID(newK) {
		t.Fatalf("Rewrap = %v %v %v", re.KeyID, changed, err)
	}
	if !bytes.Equal(re.Ciphertext, env.Ciphertext) {
		t.Fatal("rewrap changed the data ciphertext")
	}
	if pt, err := newOnly.Open(re, b); err != nil || string(pt) != "v" {
		t.Fatalf("after rewrap the new key alone failed: %q %v", pt, err)
	}
	if _, changed, _ := both.Rewrap(re, b); changed {
		t.Fatal("rewrap of a primary-wrapped envelope reported a change")
	}
	// Rewrap refuses a record that does not open under its binding.
	if _, _, err := both.Rewrap(env, Binding{Org: "x", IntegrationID: "i1", Field: "key"}); !errors.Is(err, ErrOpen) {
		t.Fatalf("rewrap of misbound envelope: %v", err)
	}
}

func TestParseKEK(t *testing.T) {
	cases := []struct {
		name, in string
		ok       bool
	}{
		{"std base64 32 bytes", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", true},
		{"raw url base64", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", true},
		{"16 bytes", "AAAAAAAAAAAAAAAAAAAAAA==", false},
		{"not base64", "not base64 at all!", false},
		{"empty", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseKEK(tc.in)
			if (err == nil) != tc.ok {
				t.Fatalf("ParseKEK(%q) err = %v, want ok=%v", tc.in, err, tc.ok)
			}
		})
	}
	if KeyID([]byte("a")) == KeyID([]byte("b")) {
		t.Fatal("distinct keys share an id")
	}
}
