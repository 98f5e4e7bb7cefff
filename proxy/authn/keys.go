package authn

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
)

const minRSABits = 2048

// algsForKey lists the JWS algorithms a public key may verify. Binding the algorithm to
// the key type (not just to the token header) is what stops algorithm confusion.
func algsForKey(key any) []string {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return nil
		}
		return []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return []string{"ES256"}
		case elliptic.P384():
			return []string{"ES384"}
		case elliptic.P521():
			return []string{"ES512"}
		}
	case ed25519.PublicKey:
		return []string{"EdDSA"}
	case []byte:
		return []string{"HS256"}
	}
	return nil
}

func keyAllows(key any, alg string) bool {
	for _, a := range algsForKey(key) {
		if a == alg {
			return true
		}
	}
	return false
}

// loadPublicKeyFile reads one PEM public key (PKIX, PKCS#1 RSA or a certificate).
func loadPublicKeyFile(path string) (crypto.PublicKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("authn: reading public key %s: %w", path, err)
	}
	key, err := parsePublicKeyPEM(raw)
	if err != nil {
		return nil, fmt.Errorf("authn: public key %s: %w", path, err)
	}
	return key, nil
}

func parsePublicKeyPEM(raw []byte) (crypto.PublicKey, error) {
	block, rest := pem.Decode(raw)
	if block == nil {
		return nil, fmt.Errorf("no PEM block")
	}
	if b2, _ := pem.Decode(rest); b2 != nil {
		return nil, fmt.Errorf("more than one PEM block; put one key per file")
	}
	var key any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		cert, err = x509.ParseCertificate(block.Bytes)
		if err == nil {
			key = cert.PublicKey
		}
	default:
		return nil, fmt.Errorf("PEM block %q is not a public key (a private key here would be a mistake)", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", block.Type, err)
	}
	if len(algsForKey(key)) == 0 {
		if k, ok := key.(*rsa.PublicKey); ok {
			return nil, fmt.Errorf("RSA key has %d bits; at least %d are required", k.N.BitLen(), minRSABits)
		}
		return nil, fmt.Errorf("unsupported key type %T", key)
	}
	return key, nil
}

// Thumbprint returns the RFC 7638 JWK thumbprint (SHA-256, base64url without padding)
// of an RSA, ECDSA or Ed25519 public key. It is the default key id for public key files
// and the kid `portcullis token` writes.
func Thumbprint(pub crypto.PublicKey) (string, error) {
	b64 := base64.RawURLEncoding.EncodeToString
	var members any
	// Struct field order is the lexicographic member order RFC 7638 requires.
	switch k := pub.(type) {
	case *rsa.PublicKey:
		members = struct {
			E   string `json:"e"`
			Kty string `json:"kty"`
			N   string `json:"n"`
		}{b64(big.NewInt(int64(k.E)).Bytes()), "RSA", b64(k.N.Bytes())}
	case *ecdsa.PublicKey:
		var crv string
		switch k.Curve {
		case elliptic.P256():
			crv = "P-256"
		case elliptic.P384():
			crv = "P-384"
		case elliptic.P521():
			crv = "P-521"
		default:
			return "", fmt.Errorf("authn: thumbprint: unsupported curve")
		}
		raw, err := k.Bytes() // uncompressed point 0x04 || X || Y, coordinates fixed-width
		if err != nil {
			return "", fmt.Errorf("authn: thumbprint: %w", err)
		}
		n := (len(raw) - 1) / 2
		members = struct {
			Crv string `json:"crv"`
			Kty string `json:"kty"`
			X   string `json:"x"`
			Y   string `json:"y"`
		}{crv, "EC", b64(raw[1 : 1+n]), b64(raw[1+n:])}
	case ed25519.PublicKey:
		members = struct {
			Crv string `json:"crv"`
			Kty string `json:"kty"`
			X   string `json:"x"`
		}{"Ed25519", "OKP", b64(k)}
	default:
		return "", fmt.Errorf("authn: thumbprint: unsupported key type %T", pub)
	}
	j, err := json.Marshal(members)
	if err != nil {
		return "", fmt.Errorf("authn: thumbprint: %w", err)
	}
	sum := sha256.Sum256(j)
	return b64(sum[:]), nil
}
