package backend

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/portcullis/portcullis/backend/crypto"
	"github.com/portcullis/portcullis/backend/store"
)

// EnvKEK names the environment variable holding the primary KEK.
const EnvKEK = "PORTCULLIS_KEK"

// ServiceKeyPrefix starts every service key so leaked keys are recognisable by scanners.
const ServiceKeyPrefix = "pcsk_"

func stripLabel(s string) string {
	// "label:base64" is allowed for readability; base64 never contains ':'.
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// loadKeyring resolves the primary KEK (config, env, then generated file) and the
// previous ones.
func loadKeyring(cfg *Config, logger *slog.Logger) (*crypto.Keyring, error) {
	raw := cfg.KEK
	if raw == "" {
		raw = os.Getenv(EnvKEK)
	}
	var primary []byte
	var err error
	if raw != "" {
		if primary, err = crypto.ParseKEK(raw); err != nil {
			return nil, fmt.Errorf("backend: kek: %w", err)
		}
	} else {
		path := filepath.Join(cfg.DataDir, "kek.key")
		primary, err = loadOrCreateKeyFile(path, logger)
		if err != nil {
			return nil, err
		}
	}
	var prev [][]byte
	for i, p := range cfg.PreviousKEKs {
		k, err := crypto.ParseKEK(stripLabel(p))
		if err != nil {
			return nil, fmt.Errorf("backend: previous_keks[%d]: %w", i, err)
		}
		prev = append(prev, k)
	}
	return crypto.NewKeyring(primary, prev...)
}

func loadOrCreateKeyFile(path string, logger *slog.Logger) ([]byte, error) {
	b, err := readPrivateFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key := make([]byte, crypto.KeySize)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("backend: generating kek: %w", err)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("backend: creating %s: %w", filepath.Dir(path), err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("backend: creating %s: %w", path, err)
		}
		_, werr := f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n")
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return nil, fmt.Errorf("backend: writing %s: %w", path, werr)
		}
		logger.Warn("backend: generated a key-encryption key file; set PORTCULLIS_KEK (or kek) from a secret manager in production, and back this file up: without it stored secrets cannot be decrypted",
			"path", path, "key_id", crypto.KeyID(key))
		return key, nil
	}
	if err != nil {
		return nil, err
	}
	key, err := crypto.ParseKEK(string(b))
	if err != nil {
		return nil, fmt.Errorf("backend: %s: %w", path, err)
	}
	return key, nil
}

// readPrivateFile refuses key files that group or others can read.
func readPrivateFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("backend: %s: mode %o is readable by others; chmod 600 it", path, st.Mode().Perm())
	}
	return os.ReadFile(path)
}

// LoadIdentitySecret reads the proxy's HS256 secret file (base64 text, as written by
// the proxy). It returns (nil, nil) when the file does not exist.
func LoadIdentitySecret(path string) ([]byte, error) {
	b, err := readPrivateFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	s, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(s) < 32 {
		return nil, fmt.Errorf("backend: %s: must hold at least 32 base64-encoded bytes", path)
	}
	return s, nil
}

var orgRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$`)

func hashServiceKey(k string) []byte {
	h := sha256.Sum256([]byte(k))
	return h[:]
}

func newServiceKey(ctx context.Context, st *store.Store, org, name string) (string, error) {
	if !orgRe.MatchString(org) {
		return "", fmt.Errorf("backend: org: must match %s", orgRe)
	}
	if name == "" {
		name = "default"
	}
	if len(name) > 128 {
		return "", errors.New("backend: name: at most 128 characters")
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("backend: generating service key: %w", err)
	}
	key := ServiceKeyPrefix + base64.RawURLEncoding.EncodeToString(b)
	rec := store.ServiceKey{ID: uuid.NewString(), Org: org, Name: name, Prefix: key[:len(ServiceKeyPrefix)+4], CreatedAt: time.Now()}
	if err := st.CreateServiceKey(ctx, rec, hashServiceKey(key)); err != nil {
		return "", err
	}
	return key, nil
}

// CreateServiceKey creates a service key bound to org in the backend database of cfg
// and returns it. Only its SHA-256 is stored: the caller must show it once.
func CreateServiceKey(ctx context.Context, cfg Config, org, name string, logger *slog.Logger) (string, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg.SetDefaults()
	st, err := cfg.openStore(ctx, logger)
	if err != nil {
		return "", err
	}
	defer st.Close()
	return newServiceKey(ctx, st, org, name)
}

// Rewrap re-wraps every data key not under the primary KEK with the primary. Run it
// after making a new key primary and listing the old one in PreviousKEKs; afterwards
// the old key can be retired. It returns how many secrets were re-wrapped.
func Rewrap(ctx context.Context, cfg Config, logger *slog.Logger) (int, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return 0, err
	}
	kr, err := loadKeyring(&cfg, logger)
	if err != nil {
		return 0, err
	}
	st, err := cfg.openStore(ctx, logger)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	return rewrapStore(ctx, st, kr)
}

func rewrapStore(ctx context.Context, st *store.Store, kr *crypto.Keyring) (int, error) {
	n, err := st.RewrapAll(ctx, kr.PrimaryID(), func(org, id string, sec store.Secret) (crypto.Envelope, error) {
		env, _, err := kr.Rewrap(sec.Envelope, crypto.Binding{Org: org, IntegrationID: id, Field: sec.Field})
		return env, err
	})
	if err != nil {
		return 0, err
	}
	// Old wrapped keys must not linger in the WAL after rotation.
	if err := st.Checkpoint(ctx); err != nil {
		return n, fmt.Errorf("backend: rewrap: checkpoint: %w", err)
	}
	return n, nil
}
