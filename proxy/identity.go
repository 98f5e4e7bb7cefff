package proxy

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/portcullis/portcullis/audit/jsonenc"
	"github.com/portcullis/portcullis/policies/principal"
)

// IdentityHeader carries the proxy's signed assertion of who the caller is. The caller's
// own token never goes upstream.
const IdentityHeader = "X-Portcullis-Identity"

// IdentitySigner mints the short-lived identity assertion sent with every forwarded call.
type IdentitySigner struct {
	header   string // base64url of the constant JOSE header
	key      any
	audience string
	ttl      time.Duration
	secret   []byte
	pub      ed25519.PublicKey
	macs     sync.Pool // of hmac.New(sha256.New, secret)
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
		s.key, s.secret = secret, secret
		s.header = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
		s.macs.New = func() any { return hmac.New(sha256.New, secret) }
	case "EdDSA":
		key, err := loadOrCreateEd25519(cfg.KeyFile)
		if err != nil {
			return nil, err
		}
		s.key, s.pub = key, key.Public().(ed25519.PublicKey)
		s.header = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"EdDSA","typ":"JWT"}`))
	default:
		return nil, fmt.Errorf("proxy: identity: unsupported alg %q", cfg.Alg)
	}
	return s, nil
}

// Secret is the HS256 secret (nil for EdDSA); the bundled backend verifies with it.
func (s *IdentitySigner) Secret() []byte { return s.secret }

// PublicKey is the Ed25519 public key (nil for HS256).
func (s *IdentitySigner) PublicKey() ed25519.PublicKey { return s.pub }

// AppendSign appends the assertion for one forwarded call to dst. It runs on every
// forwarded request, so the JWT is assembled by hand: the header is constant, the
// claims are appended to a pooled buffer, and the HMAC state is pooled.
// TestIdentityAssertionVerifies checks the result with golang-jwt.
func (s *IdentitySigner) AppendSign(dst []byte, c *principal.Caller, requestID, decisionID string, now time.Time) ([]byte, error) {
	bp := signBufs.Get().(*signBuf)
	defer signBufs.Put(bp)
	claims := bp.claims[:0]
	claims = append(claims, `{"iss":"portcullis","sub":`...)
	claims = jsonenc.AppendString(claims, c.Sub)
	claims = append(claims, `,"aud":`...)
	claims = jsonenc.AppendString(claims, s.audience)
	claims = append(claims, `,"org":`...)
	claims = jsonenc.AppendString(claims, c.Org)
	if c.Workspace != "" {
		claims = append(claims, `,"ws":`...)
		claims = jsonenc.AppendString(claims, c.Workspace)
	}
	claims = append(claims, `,"roles":[`...)
	for i, r := range c.Roles {
		if i > 0 {
			claims = append(claims, ',')
		}
		claims = jsonenc.AppendString(claims, r)
	}
	claims = append(claims, `],"rid":`...)
	claims = jsonenc.AppendString(claims, requestID)
	if decisionID != "" {
		claims = append(claims, `,"did":`...)
		claims = jsonenc.AppendString(claims, decisionID)
	}
	// The request id is unique per process (random prefix + counter), so it serves as jti.
	claims = append(claims, `,"jti":`...)
	claims = jsonenc.AppendString(claims, requestID)
	claims = append(claims, `,"iat":`...)
	claims = strconv.AppendInt(claims, now.Unix(), 10)
	claims = append(claims, `,"exp":`...)
	claims = strconv.AppendInt(claims, now.Add(s.ttl).Unix(), 10)
	claims = append(claims, '}')
	bp.claims = claims

	start := len(dst)
	tok := append(dst, s.header...)
	tok = append(tok, '.')
	tok = base64.RawURLEncoding.AppendEncode(tok, claims)
	switch {
	case s.secret != nil:
		mac := s.macs.Get().(hash.Hash)
		mac.Reset()
		mac.Write(tok[start:])
		var sum [sha256.Size]byte
		tok = append(tok, '.')
		tok = base64.RawURLEncoding.AppendEncode(tok, mac.Sum(sum[:0]))
		s.macs.Put(mac)
	default:
		sig := ed25519.Sign(s.key.(ed25519.PrivateKey), tok[start:])
		tok = append(tok, '.')
		tok = base64.RawURLEncoding.AppendEncode(tok, sig)
	}
	return tok, nil
}

type signBuf struct{ claims, token []byte }

var signBufs = sync.Pool{New: func() any { return &signBuf{claims: make([]byte, 0, 256), token: make([]byte, 0, 512)} }}

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
