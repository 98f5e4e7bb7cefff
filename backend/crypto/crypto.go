package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// KeySize is the size of KEKs and data keys (AES-256).
const KeySize = 32

// Errors callers may test for. Messages never contain key or plaintext material.
var (
	ErrUnknownKey = errors.New("crypto: unknown key id")
	ErrOpen       = errors.New("crypto: ciphertext does not open (tampered, moved to another record, or wrong key)")
)

// Envelope is one sealed value as stored.
type Envelope struct {
	KeyID      string // id of the KEK that wrapped DataKey
	WrappedKey []byte // nonce || AES-GCM(KEK, data key)
	Ciphertext []byte // nonce || AES-GCM(data key, plaintext)
}

// Binding is what a ciphertext belongs to; it becomes the GCM associated data.
type Binding struct {
	Org, IntegrationID, Field string
}

func (b Binding) aad(purpose string) []byte {
	// Length-prefixed so that ("a|b","c") and ("a","b|c") differ.
	var sb strings.Builder
	sb.WriteString("portcullis/v1/")
	sb.WriteString(purpose)
	for _, s := range []string{b.Org, b.IntegrationID, b.Field} {
		fmt.Fprintf(&sb, "|%d:%s", len(s), s)
	}
	return []byte(sb.String())
}

// Keyring holds the primary KEK (used to wrap) and older KEKs (used only to unwrap
// until `rewrap` has moved every data key to the primary).
type Keyring struct {
	primary string
	keys    map[string]cipher.AEAD
}

// KeyID derives a KEK's public id from the key itself, so configuration needs no
// separate id and two different keys never share one.
func KeyID(kek []byte) string {
	h := sha256.Sum256(append([]byte("portcullis-kek-id\x00"), kek...))
	return "kek-" + hex.EncodeToString(h[:8])
}

// ParseKEK decodes a base64 (std or URL, padded or not) 32-byte key.
func ParseKEK(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) != KeySize {
				return nil, fmt.Errorf("crypto: key must be %d bytes, got %d", KeySize, len(b))
			}
			return b, nil
		}
	}
	return nil, errors.New("crypto: key is not valid base64")
}

// NewKeyring builds a keyring whose primary is primary; previous keys can only unwrap.
func NewKeyring(primary []byte, previous ...[]byte) (*Keyring, error) {
	k := &Keyring{keys: map[string]cipher.AEAD{}}
	for i, key := range append([][]byte{primary}, previous...) {
		a, err := newAEAD(key)
		if err != nil {
			return nil, fmt.Errorf("crypto: key %d: %w", i, err)
		}
		id := KeyID(key)
		if i == 0 {
			k.primary = id
		}
		k.keys[id] = a
	}
	return k, nil
}

// PrimaryID is the id of the KEK new envelopes are wrapped with.
func (k *Keyring) PrimaryID() string { return k.primary }

func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("key must be %d bytes", KeySize)
	}
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(blk)
}

func seal(a cipher.AEAD, plaintext, aad []byte) ([]byte, error) {
	nonce := make([]byte, a.NonceSize(), a.NonceSize()+len(plaintext)+a.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("crypto: reading nonce: %w", err)
	}
	return a.Seal(nonce, nonce, plaintext, aad), nil
}

func open(a cipher.AEAD, sealed, aad []byte) ([]byte, error) {
	if len(sealed) < a.NonceSize()+a.Overhead() {
		return nil, ErrOpen
	}
	pt, err := a.Open(nil, sealed[:a.NonceSize()], sealed[a.NonceSize():], aad)
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}

// Seal encrypts plaintext under a fresh data key bound to b.
func (k *Keyring) Seal(plaintext []byte, b Binding) (Envelope, error) {
	dek := make([]byte, KeySize)
	if _, err := rand.Read(dek); err != nil {
		return Envelope{}, fmt.Errorf("crypto: reading data key: %w", err)
	}
	defer clear(dek)
	da, err := newAEAD(dek)
	if err != nil {
		return Envelope{}, err
	}
	ct, err := seal(da, plaintext, b.aad("data"))
	if err != nil {
		return Envelope{}, err
	}
	wk, err := seal(k.keys[k.primary], dek, b.aad("dek"))
	if err != nil {
		return Envelope{}, err
	}
	return Envelope{KeyID: k.primary, WrappedKey: wk, Ciphertext: ct}, nil
}

func (k *Keyring) unwrap(e Envelope, b Binding) ([]byte, error) {
	ka, ok := k.keys[e.KeyID]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownKey, e.KeyID)
	}
	return open(ka, e.WrappedKey, b.aad("dek"))
}

// Open decrypts e, which must have been sealed for exactly b.
func (k *Keyring) Open(e Envelope, b Binding) ([]byte, error) {
	dek, err := k.unwrap(e, b)
	if err != nil {
		return nil, err
	}
	defer clear(dek)
	da, err := newAEAD(dek)
	if err != nil {
		return nil, ErrOpen
	}
	return open(da, e.Ciphertext, b.aad("data"))
}

// Rewrap re-wraps e's data key with the primary KEK; the ciphertext is unchanged. It
// also opens the ciphertext first so a record that would not decrypt is reported now,
// not after the old key is gone.
func (k *Keyring) Rewrap(e Envelope, b Binding) (Envelope, bool, error) {
	if e.KeyID == k.primary {
		return e, false, nil
	}
	if _, err := k.Open(e, b); err != nil {
		return e, false, err
	}
	dek, err := k.unwrap(e, b)
	if err != nil {
		return e, false, err
	}
	defer clear(dek)
	wk, err := seal(k.keys[k.primary], dek, b.aad("dek"))
	if err != nil {
		return e, false, err
	}
	return Envelope{KeyID: k.primary, WrappedKey: wk, Ciphertext: e.Ciphertext}, true, nil
}
