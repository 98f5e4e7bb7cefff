package authn

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Development defaults shared by `portcullis serve` and `portcullis token`.
const (
	DevIssuer   = "portcullis-dev"
	DevAudience = "portcullis"

	devKeyFile    = "dev-signing-key.pem"
	devPubKeyFile = "dev-signing-key.pub.pem"
)

// DevKeyPath is the dev private key file in dataDir.
func DevKeyPath(dataDir string) string { return filepath.Join(dataDir, devKeyFile) }

// DevPublicKeyPath is the dev public key file that LoadOrCreateDevKey keeps next to the
// private key; put it in Config.PublicKeyFiles (its kid is its thumbprint, which is what
// Mint callers pass via Thumbprint).
func DevPublicKeyPath(dataDir string) string { return filepath.Join(dataDir, devPubKeyFile) }

// LoadOrCreateDevKey returns the ES256 (P-256) development signing key from
// <dataDir>/dev-signing-key.pem, creating it (PKCS#8 PEM, mode 0600, directory 0700)
// when absent. It refuses a key file readable or writable by group or others. It also
// (re)writes dev-signing-key.pub.pem (0644) from the private key, so the two never drift.
func LoadOrCreateDevKey(dataDir string, logger *slog.Logger) (*ecdsa.PrivateKey, bool, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, false, fmt.Errorf("authn: creating data dir %s: %w", dataDir, err)
	}
	if st, err := os.Stat(dataDir); err == nil && st.Mode().Perm()&0o077 != 0 {
		logger.Warn("authn: data dir is accessible to group or others; 0700 is recommended",
			"dir", dataDir, "mode", fmt.Sprintf("%04o", st.Mode().Perm()))
	}
	path := DevKeyPath(dataDir)
	key, err := readDevKey(path)
	created := false
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if key, err = createDevKey(path); err != nil {
			if !errors.Is(err, fs.ErrExist) {
				return nil, false, err
			}
			// Another process created it first: use theirs.
			if key, err = readDevKey(path); err != nil {
				return nil, false, err
			}
		} else {
			created = true
			logger.Info("authn: created development signing key", "path", path)
		}
	case err != nil:
		return nil, false, err
	}
	if err := writePublicKey(DevPublicKeyPath(dataDir), &key.PublicKey); err != nil {
		return nil, false, err
	}
	return key, created, nil
}

func readDevKey(path string) (*ecdsa.PrivateKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("authn: opening dev key: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("authn: stat dev key %s: %w", path, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("authn: dev key %s has mode %04o; it must not be accessible to group or others (chmod 600)",
			path, st.Mode().Perm())
	}
	raw, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("authn: reading dev key %s: %w", path, err)
	}
	block, _ := pem.Decode(raw)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("authn: dev key %s: no PKCS#8 PRIVATE KEY PEM block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("authn: dev key %s: %w", path, err)
	}
	ec, ok := k.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, fmt.Errorf("authn: dev key %s: not an ECDSA P-256 key", path)
	}
	return ec, nil
}

func createDevKey(path string) (*ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("authn: generating dev key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("authn: encoding dev key: %w", err)
	}
	// O_EXCL: never overwrite a key someone else just wrote.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("authn: creating dev key: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("authn: writing dev key %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("authn: writing dev key %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("authn: writing dev key %s: %w", path, err)
	}
	return key, nil
}

func writePublicKey(path string, pub crypto.PublicKey) error {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return fmt.Errorf("authn: encoding public key: %w", err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	if old, err := os.ReadFile(path); err == nil && string(old) == string(data) {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".pub-*")
	if err != nil {
		return fmt.Errorf("authn: writing public key %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("authn: writing public key %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("authn: writing public key %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("authn: writing public key %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("authn: writing public key %s: %w", path, err)
	}
	return nil
}

// MintOptions are the claims of a minted token.
type MintOptions struct {
	Sub, Org, Workspace, Session string
	Roles                        []string
	TTL                          time.Duration
	Issuer, Audience             string
	// Extra claims; they may not replace the ones above or the registered ones.
	Extra map[string]any
}

var reservedClaims = []string{"sub", "org", "workspace", "sid", "roles", "iss", "aud", "exp", "iat", "nbf", "jti"}

// Mint signs a token with key: ES256/ES384 for ECDSA P-256/P-384, EdDSA for Ed25519,
// RS256 for RSA. It sets iat, exp (now+TTL) and a random jti; kid goes in the header
// when non-empty. Claims use the default names (sub, org, workspace, roles, sid).
func Mint(key crypto.Signer, kid string, o MintOptions) (string, error) {
	if o.Sub == "" {
		return "", errors.New("authn: mint: sub is required")
	}
	if o.TTL <= 0 {
		return "", fmt.Errorf("authn: mint: ttl is %s; it must be positive", o.TTL)
	}
	var method jwt.SigningMethod
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			method = jwt.SigningMethodES256
		case elliptic.P384():
			method = jwt.SigningMethodES384
		default:
			return "", errors.New("authn: mint: unsupported ECDSA curve")
		}
	case ed25519.PrivateKey:
		method = jwt.SigningMethodEdDSA
	case *rsa.PrivateKey:
		method = jwt.SigningMethodRS256
	default:
		return "", fmt.Errorf("authn: mint: unsupported key type %T", key)
	}
	claims := jwt.MapClaims{}
	for k, v := range o.Extra {
		claims[k] = v
	}
	for _, r := range reservedClaims {
		if _, ok := o.Extra[r]; ok {
			return "", fmt.Errorf("authn: mint: extra claim %q would replace a standard claim", r)
		}
	}
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", fmt.Errorf("authn: mint: %w", err)
	}
	now := time.Now()
	claims["sub"] = o.Sub
	claims["iat"] = now.Unix()
	claims["exp"] = now.Add(o.TTL).Unix()
	claims["jti"] = hex.EncodeToString(jti[:])
	for k, v := range map[string]string{"org": o.Org, "workspace": o.Workspace, "sid": o.Session, "iss": o.Issuer, "aud": o.Audience} {
		if v != "" {
			claims[k] = v
		}
	}
	if len(o.Roles) > 0 {
		claims["roles"] = o.Roles
	}
	t := jwt.NewWithClaims(method, claims)
	if kid != "" {
		t.Header["kid"] = kid
	}
	s, err := t.SignedString(key)
	if err != nil {
		return "", fmt.Errorf("authn: mint: signing: %w", err)
	}
	return s, nil
}
