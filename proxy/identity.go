package proxy

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/portcullis/portcullis/policies"
)

// IdentityHeader carries the proxy's signed assertion of who the caller is. The caller's
// own token never goes upstream.
const IdentityHeader = "X-Portcullis-Identity"

// IdentitySigner mints the short-lived identity assertion sent with every forwarded call.
type IdentitySigner struct {
	method   jwt.SigningMethod
	key      any
	audience string
	ttl      time.Duration
	secret   []byte
	pub      ed25519.PublicKey
}

// NewIdentitySigner loads (or creates, mode 0600) the key named by cfg.
func NewIdentitySigner(cfg IdentityConfig) (*IdentitySigner, error) {
	s := &IdentitySigner{audience: cfg.Audience, ttl: cfg.TTL}
	switch cfg.Alg {
	case "HS256":
		secret, err := LoadOrCreateSecret(cfg.SecretFile)
		if err != nil {
			return nil, err
		}
		s.method, s.key, s.secret = jwt.SigningMethodHS256, secret, secret
	case "EdDSA":
		key, err := loadOrCreateEd25519(cfg.KeyFile)
		if err != nil {
			return nil, err
		}
		s.method, s.key, s.pub = jwt.SigningMethodEdDSA, key, key.Public().(ed25519.PublicKey)
	default:
		return nil, fmt.Errorf("proxy: identity: unsupported alg %q", cfg.Alg)
	}
	return s, nil
}

// Secret is the HS256 secret (nil for EdDSA); the bundled backend verifies with it.
func (s *IdentitySigner) Secret() []byte { return s.secret }

// PublicKey is the Ed25519 public key (nil for HS256).
func (s *IdentitySigner) PublicKey() ed25519.PublicKey { return s.pub }

type identityClaims struct {
	Org   string   `json:"org"`
	WS    string   `json:"ws,omitempty"`
	Roles []string `json:"roles"`
	RID   string   `json:"rid"`
	DID   string   `json:"did,omitempty"`
	jwt.RegisteredClaims
}

// Sign returns the assertion for one forwarded call.
func (s *IdentitySigner) Sign(c *policies.Caller, requestID, decisionID string, now time.Time) (string, error) {
	var jti [12]byte
	_, _ = rand.Read(jti[:])
	roles := c.Roles
	if roles == nil {
		roles = []string{}
	}
	claims := identityClaims{
		Org: c.Org, WS: c.Workspace, Roles: roles, RID: requestID, DID: decisionID,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    "portcullis",
			Subject:   c.Sub,
			Audience:  jwt.ClaimStrings{s.audience},
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(s.ttl)),
			ID:        hex.EncodeToString(jti[:]),
		},
	}
	tok, err := jwt.NewWithClaims(s.method, claims).SignedString(s.key)
	if err != nil {
		return "", fmt.Errorf("proxy: signing identity assertion: %w", err)
	}
	return tok, nil
}

// LoadOrCreateSecret reads a base64 secret file, creating a 32-byte one (0600) if absent.
// A file readable by group or others is refused: it holds a signing secret.
func LoadOrCreateSecret(path string) ([]byte, error) {
	b, err := readPrivateFile(path)
	if errors.Is(err, os.ErrNotExist) {
		secret := make([]byte, 32)
		if _, err := rand.Read(secret); err != nil {
			return nil, err
		}
		if err := writePrivateFile(path, []byte(base64.StdEncoding.EncodeToString(secret)+"\n")); err != nil {
			return nil, err
		}
		return secret, nil
	}
	if err != nil {
		return nil, err
	}
	secret, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(secret) < 32 {
		return nil, fmt.Errorf("proxy: %s: must hold at least 32 base64-encoded bytes", path)
	}
	return secret, nil
}

func loadOrCreateEd25519(path string) (ed25519.PrivateKey, error) {
	b, err := readPrivateFile(path)
	if errors.Is(err, os.ErrNotExist) {
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, err
		}
		if err := writePrivateFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
			return nil, err
		}
		return key, nil
	}
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("proxy: %s: no PEM block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("proxy: %s: %w", path, err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("proxy: %s: not an Ed25519 key", path)
	}
	return key, nil
}

func readPrivateFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("proxy: %s: permissions %v are too open (want 0600)", path, st.Mode().Perm())
	}
	return os.ReadFile(path)
}

func writePrivateFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("proxy: creating %s: %w", filepath.Dir(path), err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("proxy: creating %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
