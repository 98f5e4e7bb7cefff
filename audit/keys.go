package audit

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// SigningKeyEnv overrides the signing key file with a base64 Ed25519 seed.
const SigningKeyEnv = "PORTCULLIS_AUDIT_SIGNING_KEY"

// LoadSigningKey returns the checkpoint signing key: from PORTCULLIS_AUDIT_SIGNING_KEY
// when set, else from path (PKCS#8 PEM or a base64 seed). It does not create one.
func LoadSigningKey(path string) (ed25519.PrivateKey, error) {
	if v := os.Getenv(SigningKeyEnv); v != "" {
		return parseSeed(v, SigningKeyEnv)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("audit: reading signing key %s: %w", path, err)
	}
	return parseSigningKey(b, path)
}

// PublicKey parses a base64 (std or URL) raw 32-byte Ed25519 public key.
func PublicKey(b64 string) (ed25519.PublicKey, error) {
	b, err := decodeB64(strings.TrimSpace(b64))
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, errors.New("audit: public key must be base64 of 32 bytes")
	}
	return ed25519.PublicKey(b), nil
}

// KeyID names a public key in checkpoints: the first 8 bytes of its SHA-256, hex.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

func parseSigningKey(b []byte, name string) (ed25519.PrivateKey, error) {
	if blk, _ := pem.Decode(b); blk != nil {
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("audit: signing key %s: not PKCS#8: %w", name, err)
		}
		ek, ok := k.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("audit: signing key %s: not an Ed25519 key", name)
		}
		return ek, nil
	}
	return parseSeed(string(b), name)
}

func parseSeed(v, name string) (ed25519.PrivateKey, error) {
	seed, err := decodeB64(strings.TrimSpace(v))
	if err != nil || len(seed) != ed25519.SeedSize {
		// Never echo the value: it is the key.
		return nil, fmt.Errorf("audit: signing key %s: want PKCS#8 PEM or base64 of a 32-byte seed", name)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

func decodeB64(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding,
		base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("not base64")
}

// loadOrCreateSigningKey is LoadSigningKey that generates and saves a key (0600)
// when neither the env variable nor the file exists.
func loadOrCreateSigningKey(path string, logger *slog.Logger) (ed25519.PrivateKey, error) {
	k, err := LoadSigningKey(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("audit: generating signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("audit: encoding signing key: %w", err)
	}
	if err := writeKeyFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
		return nil, err
	}
	logger.Warn("audit: generated a new checkpoint signing key; keep it (and a copy of its public key) away from the database",
		"path", path, "key_id", KeyID(priv.Public().(ed25519.PublicKey)),
		"public_key", base64.StdEncoding.EncodeToString(priv.Public().(ed25519.PublicKey)))
	return priv, nil
}

// HMACKeyEnv overrides the redaction HMAC key file with a base64 key of at least
// 32 bytes. Replicas that share approvals must share this key (see HMACKeyID).
const HMACKeyEnv = "PORTCULLIS_AUDIT_HMAC_KEY"

// minEnvHMACKey is the shortest key HMACKeyEnv takes (openssl rand -base64 32). Files
// written by earlier releases may hold 16 bytes; they stay accepted.
const minEnvHMACKey = 32

// HMACKeyID names a redaction key without revealing it: the first 8 bytes of the
// SHA-256 of a domain string and the key, hex. Replicas publish it to check that they
// redact alike; it is not the key id of the checkpoint signing key (KeyID).
func HMACKeyID(key []byte) string {
	h := sha256.New()
	h.Write([]byte("portcullis.audit.hmac-key-id.v1\n"))
	h.Write(key)
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// LoadHMACKey returns the redaction key: from PORTCULLIS_AUDIT_HMAC_KEY when set
// (base64 of at least 32 bytes), else from path (base64 of at least 16 bytes). It does
// not create one; a missing file is an error wrapping fs.ErrNotExist. Errors never
// include the key.
func LoadHMACKey(path string) ([]byte, error) {
	if v := os.Getenv(HMACKeyEnv); v != "" {
		k, err := decodeB64(strings.TrimSpace(v))
		if err != nil || len(k) < minEnvHMACKey {
			// Never echo the value: it is the key.
			return nil, fmt.Errorf("audit: %s: want base64 of at least %d random bytes (openssl rand -base64 32)", HMACKeyEnv, minEnvHMACKey)
		}
		return k, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("audit: reading hmac key %s: %w", path, err)
	}
	k, err := decodeB64(strings.TrimSpace(string(b)))
	if err != nil || len(k) < 16 {
		return nil, fmt.Errorf("audit: hmac key %s: want base64 of at least 16 bytes", path)
	}
	return k, nil
}

// loadOrCreateHMACKey is LoadHMACKey that generates and saves a 32-byte key (0600)
// when neither the env variable nor the file exists.
func loadOrCreateHMACKey(path string, logger *slog.Logger) ([]byte, error) {
	k, err := LoadHMACKey(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	k = make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("audit: generating hmac key: %w", err)
	}
	if err := writeKeyFile(path, []byte(base64.StdEncoding.EncodeToString(k)+"\n")); err != nil {
		return nil, err
	}
	logger.Warn("audit: generated a new redaction hmac key; replicas that share approvals need the same one (PORTCULLIS_AUDIT_HMAC_KEY)",
		"path", path, "hmac_key_id", HMACKeyID(k))
	return k, nil
}

// writeKeyFile creates path with mode 0600, refusing to overwrite.
func writeKeyFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("audit: creating key dir for %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("audit: creating key file %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("audit: writing key file %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("audit: syncing key file %s: %w", path, err)
	}
	return f.Close()
}
