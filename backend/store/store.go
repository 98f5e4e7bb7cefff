package store

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"time"

	"github.com/portcullis/portcullis/audit/sqldb"
	"github.com/portcullis/portcullis/backend/crypto"
)

// migrationFiles holds each dialect's numbered schema files (sqldb.Migrations).
//
//go:embed migrations
var migrationFiles embed.FS

// Errors the service layer maps to statuses.
var (
	ErrNotFound = errors.New("store: not found")
	ErrConflict = errors.New("store: conflict")
	ErrLimit    = errors.New("store: limit reached")
	// ErrScope: the change reaches outside the caller's workspace.
	ErrScope = errors.New("store: outside the caller's workspace")
)

// FieldError is a conflict or limit tied to one request field.
type FieldError struct {
	Err     error // ErrConflict or ErrLimit
	Field   string
	Message string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }
func (e *FieldError) Unwrap() error { return e.Err }

// Scope limits every integration query to one org and, when Workspace is set, to
// org-level integrations plus that workspace's own.
type Scope struct {
	Org       string
	Workspace string
}

// Integration is one stored row. Configurations never holds a secret value.
type Integration struct {
	ID, Org, WorkspaceID, Slug, Name, Provider, AuthType, Description, Status string
	Configurations                                                            map[string]any
	MaskedKey                                                                 string
	AllowAllModels                                                            bool
	GlobalWorkspaceAccess                                                     map[string]any
	CreatedBy                                                                 string
	CreatedAt, UpdatedAt                                                      time.Time
}

// Secret is one sealed field of an integration.
type Secret struct {
	Field    string
	Envelope crypto.Envelope
}

// Model is one model setting of an integration. Configurations holds masked header
// values only; the real ones are Secrets with field "models/<slug>/...".
type Model struct {
	Slug           string         `json:"slug"`
	Enabled        bool           `json:"enabled"`
	ModelName      string         `json:"model_name,omitempty"`
	IsCustom       bool           `json:"is_custom"`
	IsFinetune     bool           `json:"is_finetune"`
	BaseModelSlug  string         `json:"base_model_slug,omitempty"`
	Configurations map[string]any `json:"configurations,omitempty"`
}

// Workspace is one workspace-access setting of an integration.
type Workspace struct {
	ID          string `json:"id"`
	Enabled     bool   `json:"enabled"`
	UsageLimits any    `json:"usage_limits"`
	RateLimits  any    `json:"rate_limits"`
}

// Store is the integrations store: SQLite (Open) or PostgreSQL (OpenPostgres), one
// implementation with the placeholders rebound for PostgreSQL.
type Store struct {
	db     *sql.DB
	x      dbx
	pg     bool
	path   string
	logger *slog.Logger
}

// Open opens (creating, mode 0600) the database at path and migrates it.
func Open(ctx context.Context, path string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// Writers take the lock at BEGIN (sqldb's immediate transactions), so two
	// creates cannot both pass the per-provider count and then both insert.
	db, err := sqldb.OpenSQLite(ctx, sqldb.SQLite{Path: path, Pragmas: []string{"secure_delete(1)"}, MaxOpenConns: 8})
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	s := &Store{db: db, x: dbx{db: db}, path: path, logger: logger}
	if err := s.migrate(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// Path is the database file.
func (s *Store) Path() string { return s.path }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// migrate runs the dialect's migrations. A database from before schema_migrations
// recorded its version in PRAGMA user_version (SQLite) or backend_schema_migrations
// (PostgreSQL); that tracking is adopted and left in place.
func (s *Store) migrate(ctx context.Context) error {
	m := sqldb.Migrations{Component: "backend", Logger: s.logger, Legacy: legacySQLiteVersion}
	dir := "migrations/sqlite"
	if s.pg {
		m.Dialect, m.Legacy, dir = sqldb.PostgresDialect, legacyPostgresVersion, "migrations/postgres"
	}
	sub, err := fs.Sub(migrationFiles, dir)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	m.FS = sub
	if _, err := m.Run(ctx, s.db); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

func legacySQLiteVersion(ctx context.Context, tx *sql.Tx) (int, error) {
	var v int
	err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v)
	return v, err
}

func legacyPostgresVersion(ctx context.Context, tx *sql.Tx) (int, error) {
	var exists bool
	if err := tx.QueryRowContext(ctx, `SELECT to_regclass('backend_schema_migrations') IS NOT NULL`).Scan(&exists); err != nil || !exists {
		return 0, err
	}
	var v int
	err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM backend_schema_migrations`).Scan(&v)
	return v, err
}

const cols = `id, org, workspace_id, slug, name, provider, auth_type, description, status,
 configurations, masked_key, allow_all_models, global_workspace_access, created_by, created_at, updated_at`

type scanner interface{ Scan(...any) error }

func scanIntegration(r scanner) (*Integration, error) {
	var it Integration
	var conf, gwa, created, updated string
	var allow int
	if err := r.Scan(&it.ID, &it.Org, &it.WorkspaceID, &it.Slug, &it.Name, &it.Provider, &it.AuthType,
		&it.Description, &it.Status, &conf, &it.MaskedKey, &allow, &gwa, &it.CreatedBy, &created, &updated); err != nil {
		return nil, err
	}
	it.AllowAllModels = allow != 0
	if err := json.Unmarshal([]byte(conf), &it.Configurations); err != nil {
		return nil, fmt.Errorf("store: integration %s: configurations: %w", it.ID, err)
	}
	if err := json.Unmarshal([]byte(gwa), &it.GlobalWorkspaceAccess); err != nil {
		return nil, fmt.Errorf("store: integration %s: global_workspace_access: %w", it.ID, err)
	}
	it.CreatedAt, _ = time.Parse(time.RFC3339Nano, created)
	it.UpdatedAt, _ = time.Parse(time.RFC3339Nano, updated)
	return &it, nil
}

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func mustJSON(v any) string {
	if v == nil {
		return "{}"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "{}"
	}
	return string(b)
}

func scopeWhere(sc Scope) (string, []any) {
	if sc.Workspace == "" {
		return "org = ?", []any{sc.Org}
	}
	return "org = ? AND (workspace_id = '' OR workspace_id = ?)", []any{sc.Org, sc.Workspace}
}

// CreateOptions controls Create.
type CreateOptions struct {
	MaxPerProvider int
	AutoSlug       bool // slug came from the name: add -2, -3... on collision
}

// Create inserts it (ID, Slug, timestamps set by the caller) with its secrets. The
// per-provider limit and uniqueness are checked in the same write transaction.
func (s *Store) Create(ctx context.Context, it *Integration, secrets []Secret, opt CreateOptions) error {
	tx, err := s.begin(ctx)
	if err != nil {
		return fmt.Errorf("store: create: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if err := s.lockOrg(ctx, tx, it.Org); err != nil {
		return err
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM integrations WHERE org = ? AND provider = ?`,
		it.Org, it.Provider).Scan(&n); err != nil {
		return fmt.Errorf("store: create: counting: %w", err)
	}
	if opt.MaxPerProvider > 0 && n >= opt.MaxPerProvider {
		return &FieldError{Err: ErrLimit, Field: "ai_provider_id",
			Message: fmt.Sprintf("at most %d integrations per provider per organisation; %q has %d", opt.MaxPerProvider, it.Provider, n)}
	}
	var exists int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM integrations WHERE org = ? AND workspace_id = ? AND name = ?`,
		it.Org, it.WorkspaceID, it.Name).Scan(&exists); err != nil {
		return fmt.Errorf("store: create: %w", err)
	}
	if exists > 0 {
		return &FieldError{Err: ErrConflict, Field: "name", Message: "an integration with this name already exists in this workspace"}
	}
	base := it.Slug
	for i := 2; ; i++ {
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM integrations WHERE org = ? AND slug = ?`,
			it.Org, it.Slug).Scan(&exists); err != nil {
			return fmt.Errorf("store: create: %w", err)
		}
		if exists == 0 {
			break
		}
		if !opt.AutoSlug {
			return &FieldError{Err: ErrConflict, Field: "slug", Message: "slug already in use in this organisation"}
		}
		if i > 1000 {
			return &FieldError{Err: ErrConflict, Field: "slug", Message: "could not find a free slug"}
		}
		it.Slug = fmt.Sprintf("%s-%d", base, i)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO integrations (`+cols+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		it.ID, it.Org, it.WorkspaceID, it.Slug, it.Name, it.Provider, it.AuthType, it.Description, it.Status,
		mustJSON(it.Configurations), it.MaskedKey, boolInt(it.AllowAllModels), mustJSON(it.GlobalWorkspaceAccess),
		it.CreatedBy, ts(it.CreatedAt), ts(it.UpdatedAt)); err != nil {
		return fmt.Errorf("store: create: inserting: %w", err)
	}
	if err := putSecrets(ctx, tx, it.ID, secrets); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: create: commit: %w", err)
	}
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func putSecrets(ctx context.Context, tx *txx, id string, secrets []Secret) error {
	for _, sec := range secrets {
		if _, err := tx.ExecContext(ctx, `INSERT INTO secrets (integration_id, field, key_id, wrapped_key, ciphertext)
			VALUES (?,?,?,?,?) ON CONFLICT (integration_id, field) DO UPDATE SET key_id = excluded.key_id,
			wrapped_key = excluded.wrapped_key, ciphertext = excluded.ciphertext`,
			id, sec.Field, sec.Envelope.KeyID, sec.Envelope.WrappedKey, sec.Envelope.Ciphertext); err != nil {
			return fmt.Errorf("store: writing secret %s: %w", sec.Field, err)
		}
	}
	return nil
}

// EscapeSegment makes a map key or slug safe as one segment of a secret's field path
// ("." and "/" separate segments).
func EscapeSegment(k string) string {
	return strings.NewReplacer("%", "%25", ".", "%2E", "/", "%2F").Replace(k)
}

// ModelSecretPrefix starts the field path of every secret of model slug.
func ModelSecretPrefix(slug string) string { return "models/" + EscapeSegment(slug) + "/" }

// Get returns the integration whose slug (or id) is ref, within sc.
func (s *Store) Get(ctx context.Context, sc Scope, ref string) (*Integration, error) {
	return get(ctx, s.x, sc, ref)
}

// IsID reports whether ref has the shape of an integration id (a lowercase UUID).
func IsID(ref string) bool {
	if len(ref) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := ref[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
		}
	}
	return true
}

type querier interface {
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

var (
	_ querier = dbx{}
	_ querier = (*txx)(nil)
)

func get(ctx context.Context, q querier, sc Scope, ref string) (*Integration, error) {
	where, args := scopeWhere(sc)
	// A reference is an id when it has an id's shape, else a slug: never both, so a slug
	// cannot stand in for another integration's id.
	by := ` AND slug = ?`
	if IsID(ref) {
		by = ` AND id = ?`
	}
	it, err := scanIntegration(q.QueryRowContext(ctx, `SELECT `+cols+` FROM integrations WHERE `+where+by, append(args, ref)...))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: get: %w", err)
	}
	return it, nil
}

// ListFilter selects integrations.
type ListFilter struct {
	WorkspaceID string // only this workspace's integrations (plus org-level unless Type says otherwise)
	Type        string // "workspace" | "organisation" | "all" | ""
	Provider    string
	Offset      int
	Limit       int
}

// List returns one page and the total count matching f within sc.
func (s *Store) List(ctx context.Context, sc Scope, f ListFilter) ([]Integration, int, error) {
	where, args := scopeWhere(sc)
	switch f.Type {
	case "workspace":
		where += " AND workspace_id != ''"
	case "organisation":
		where += " AND workspace_id = ''"
	}
	if f.WorkspaceID != "" {
		where += " AND (workspace_id = ? OR workspace_id = '')"
		args = append(args, f.WorkspaceID)
		if f.Type == "workspace" {
			where += " AND workspace_id = ?"
			args = append(args, f.WorkspaceID)
		}
	}
	if f.Provider != "" {
		where += " AND provider = ?"
		args = append(args, f.Provider)
	}
	var total int
	if err := s.x.QueryRowContext(ctx, `SELECT count(*) FROM integrations WHERE `+where, args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("store: list: counting: %w", err)
	}
	rows, err := s.x.QueryContext(ctx, `SELECT `+cols+` FROM integrations WHERE `+where+
		` ORDER BY created_at, id LIMIT ? OFFSET ?`, append(args, f.Limit, f.Offset)...)
	if err != nil {
		return nil, 0, fmt.Errorf("store: list: %w", err)
	}
	defer rows.Close()
	out := []Integration{}
	for rows.Next() {
		it, err := scanIntegration(rows)
		if err != nil {
			return nil, 0, fmt.Errorf("store: list: %w", err)
		}
		out = append(out, *it)
	}
	return out, total, rows.Err()
}

// Change is what an Update callback asks for beyond the row itself.
type Change struct {
	Put           []Secret
	DeletePrefix  []string // secret fields equal to, or starting with prefix + "." / "/", are removed
	ReplaceModels []Model  // nil: untouched
}

// Update loads the integration ref within sc in a write transaction, lets fn modify it,
// and writes it back with fn's secret changes.
func (s *Store) Update(ctx context.Context, sc Scope, ref string, fn func(*Integration) (Change, error)) (*Integration, error) {
	tx, err := s.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: update: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if err := s.lockOrg(ctx, tx, sc.Org); err != nil {
		return nil, err
	}
	it, err := get(ctx, tx, sc, ref)
	if err != nil {
		return nil, err
	}
	oldName := it.Name
	ch, err := fn(it)
	if err != nil {
		return nil, err
	}
	if it.Name != oldName {
		var exists int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM integrations WHERE org = ? AND workspace_id = ? AND name = ? AND id != ?`,
			it.Org, it.WorkspaceID, it.Name, it.ID).Scan(&exists); err != nil {
			return nil, fmt.Errorf("store: update: %w", err)
		}
		if exists > 0 {
			return nil, &FieldError{Err: ErrConflict, Field: "name", Message: "an integration with this name already exists in this workspace"}
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE integrations SET name = ?, description = ?, status = ?, configurations = ?,
		masked_key = ?, allow_all_models = ?, global_workspace_access = ?, auth_type = ?, updated_at = ? WHERE id = ? AND org = ?`,
		it.Name, it.Description, it.Status, mustJSON(it.Configurations), it.MaskedKey, boolInt(it.AllowAllModels),
		mustJSON(it.GlobalWorkspaceAccess), it.AuthType, ts(it.UpdatedAt), it.ID, it.Org); err != nil {
		return nil, fmt.Errorf("store: update: %w", err)
	}
	for _, p := range ch.DeletePrefix {
		if _, err := tx.ExecContext(ctx, `DELETE FROM secrets WHERE integration_id = ? AND (field = ? OR substr(field, 1, ?) = ? OR substr(field, 1, ?) = ?)`,
			it.ID, p, len(p)+1, p+".", len(p)+1, p+"/"); err != nil {
			return nil, fmt.Errorf("store: update: deleting secrets: %w", err)
		}
	}
	if err := putSecrets(ctx, tx, it.ID, ch.Put); err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("store: update: commit: %w", err)
	}
	return it, nil
}

// Delete removes the integration ref within sc (secrets, models and workspace settings
// go with it).
func (s *Store) Delete(ctx context.Context, sc Scope, ref string) (*Integration, error) {
	tx, err := s.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: delete: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	it, err := get(ctx, tx, sc, ref)
	if err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM integrations WHERE id = ? AND org = ?`, it.ID, it.Org); err != nil {
		return nil, fmt.Errorf("store: delete: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("store: delete: commit: %w", err)
	}
	return it, nil
}

// Secrets returns the sealed secrets of integration id (the caller has already
// resolved id within its scope).
func (s *Store) Secrets(ctx context.Context, id string) ([]Secret, error) {
	rows, err := s.x.QueryContext(ctx, `SELECT field, key_id, wrapped_key, ciphertext FROM secrets WHERE integration_id = ? ORDER BY field`, id)
	if err != nil {
		return nil, fmt.Errorf("store: secrets: %w", err)
	}
	defer rows.Close()
	var out []Secret
	for rows.Next() {
		var sec Secret
		if err := rows.Scan(&sec.Field, &sec.Envelope.KeyID, &sec.Envelope.WrappedKey, &sec.Envelope.Ciphertext); err != nil {
			return nil, fmt.Errorf("store: secrets: %w", err)
		}
		out = append(out, sec)
	}
	return out, rows.Err()
}

// PutSecretRaw overwrites one stored envelope as is. Only tests and rewrap use it.
func (s *Store) PutSecretRaw(ctx context.Context, id string, sec Secret) error {
	_, err := s.x.ExecContext(ctx, `UPDATE secrets SET key_id = ?, wrapped_key = ?, ciphertext = ? WHERE integration_id = ? AND field = ?`,
		sec.Envelope.KeyID, sec.Envelope.WrappedKey, sec.Envelope.Ciphertext, id, sec.Field)
	if err != nil {
		return fmt.Errorf("store: writing secret %s: %w", sec.Field, err)
	}
	return nil
}

// RewrapAll calls fn for every secret whose key id is not keep, with its org and
// integration id, and stores what fn returns. It returns how many were rewritten.
func (s *Store) RewrapAll(ctx context.Context, keep string, fn func(org, id string, sec Secret) (crypto.Envelope, error)) (int, error) {
	tx, err := s.begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("store: rewrap: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	rows, err := tx.QueryContext(ctx, `SELECT i.org, s.integration_id, s.field, s.key_id, s.wrapped_key, s.ciphertext
		FROM secrets s JOIN integrations i ON i.id = s.integration_id WHERE s.key_id != ?`, keep)
	if err != nil {
		return 0, fmt.Errorf("store: rewrap: %w", err)
	}
	type item struct {
		org, id string
		sec     Secret
	}
	var items []item
	for rows.Next() {
		var it item
		if err := rows.Scan(&it.org, &it.id, &it.sec.Field, &it.sec.Envelope.KeyID, &it.sec.Envelope.WrappedKey, &it.sec.Envelope.Ciphertext); err != nil {
			rows.Close()
			return 0, fmt.Errorf("store: rewrap: %w", err)
		}
		items = append(items, it)
	}
	rows.Close()
	for _, it := range items {
		env, err := fn(it.org, it.id, it.sec)
		if err != nil {
			return 0, fmt.Errorf("store: rewrap: integration %s field %s: %w", it.id, it.sec.Field, err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE secrets SET key_id = ?, wrapped_key = ? WHERE integration_id = ? AND field = ?`,
			env.KeyID, env.WrappedKey, it.id, it.sec.Field); err != nil {
			return 0, fmt.Errorf("store: rewrap: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("store: rewrap: commit: %w", err)
	}
	return len(items), nil
}

// Models lists the model settings of integration id.
func (s *Store) Models(ctx context.Context, id string, offset, limit int) ([]Model, int, error) {
	var total int
	if err := s.x.QueryRowContext(ctx, `SELECT count(*) FROM integration_models WHERE integration_id = ?`, id).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("store: models: %w", err)
	}
	rows, err := s.x.QueryContext(ctx, `SELECT slug, enabled, model_name, is_custom, is_finetune, base_model_slug, configurations
		FROM integration_models WHERE integration_id = ? ORDER BY slug LIMIT ? OFFSET ?`, id, limit, offset)
	if err != nil {
		return nil, 0, fmt.Errorf("store: models: %w", err)
	}
	defer rows.Close()
	out := []Model{}
	for rows.Next() {
		var m Model
		var conf string
		if err := rows.Scan(&m.Slug, &m.Enabled, &m.ModelName, &m.IsCustom, &m.IsFinetune, &m.BaseModelSlug, &conf); err != nil {
			return nil, 0, fmt.Errorf("store: models: %w", err)
		}
		_ = json.Unmarshal([]byte(conf), &m.Configurations)
		out = append(out, m)
	}
	return out, total, rows.Err()
}

// PutModels upserts models of integration id (already resolved in scope) with the
// secrets of their configurations, and sets allow_all_models when given.
func (s *Store) PutModels(ctx context.Context, id string, allowAll *bool, models []Model, secrets []Secret, now time.Time) error {
	tx, err := s.begin(ctx)
	if err != nil {
		return fmt.Errorf("store: put models: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	for _, m := range models {
		if _, err := tx.ExecContext(ctx, `INSERT INTO integration_models (integration_id, slug, enabled, model_name, is_custom,
			is_finetune, base_model_slug, configurations, updated_at) VALUES (?,?,?,?,?,?,?,?,?)
			ON CONFLICT (integration_id, slug) DO UPDATE SET enabled = excluded.enabled, model_name = excluded.model_name,
			is_custom = excluded.is_custom, is_finetune = excluded.is_finetune, base_model_slug = excluded.base_model_slug,
			configurations = excluded.configurations, updated_at = excluded.updated_at`,
			id, m.Slug, boolInt(m.Enabled), m.ModelName, boolInt(m.IsCustom), boolInt(m.IsFinetune), m.BaseModelSlug,
			mustJSON(m.Configurations), ts(now)); err != nil {
			return fmt.Errorf("store: put models: %w", err)
		}
		p := ModelSecretPrefix(m.Slug)
		if _, err := tx.ExecContext(ctx, `DELETE FROM secrets WHERE integration_id = ? AND substr(field, 1, ?) = ?`,
			id, len(p), p); err != nil {
			return fmt.Errorf("store: put models: %w", err)
		}
	}
	if err := putSecrets(ctx, tx, id, secrets); err != nil {
		return err
	}
	if allowAll != nil {
		if _, err := tx.ExecContext(ctx, `UPDATE integrations SET allow_all_models = ?, updated_at = ? WHERE id = ?`,
			boolInt(*allowAll), ts(now), id); err != nil {
			return fmt.Errorf("store: put models: %w", err)
		}
	}
	return tx.Commit()
}

// DeleteModels removes the named models of integration id and their secrets; it
// returns how many existed.
func (s *Store) DeleteModels(ctx context.Context, id string, slugs []string) (int, error) {
	tx, err := s.begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("store: delete models: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	n := 0
	for _, sl := range slugs {
		res, err := tx.ExecContext(ctx, `DELETE FROM integration_models WHERE integration_id = ? AND slug = ?`, id, sl)
		if err != nil {
			return 0, fmt.Errorf("store: delete models: %w", err)
		}
		k, _ := res.RowsAffected()
		n += int(k)
		p := ModelSecretPrefix(sl)
		if _, err := tx.ExecContext(ctx, `DELETE FROM secrets WHERE integration_id = ? AND substr(field, 1, ?) = ?`, id, len(p), p); err != nil {
			return 0, fmt.Errorf("store: delete models: %w", err)
		}
	}
	return n, tx.Commit()
}

// Workspaces lists the workspace-access settings of integration id.
func (s *Store) Workspaces(ctx context.Context, id string, offset, limit int) ([]Workspace, int, error) {
	var total int
	if err := s.x.QueryRowContext(ctx, `SELECT count(*) FROM integration_workspaces WHERE integration_id = ?`, id).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("store: workspaces: %w", err)
	}
	rows, err := s.x.QueryContext(ctx, `SELECT workspace_id, enabled, usage_limits, rate_limits FROM integration_workspaces
		WHERE integration_id = ? ORDER BY workspace_id LIMIT ? OFFSET ?`, id, limit, offset)
	if err != nil {
		return nil, 0, fmt.Errorf("store: workspaces: %w", err)
	}
	defer rows.Close()
	out := []Workspace{}
	for rows.Next() {
		var w Workspace
		var ul, rl string
		if err := rows.Scan(&w.ID, &w.Enabled, &ul, &rl); err != nil {
			return nil, 0, fmt.Errorf("store: workspaces: %w", err)
		}
		_ = json.Unmarshal([]byte(ul), &w.UsageLimits)
		_ = json.Unmarshal([]byte(rl), &w.RateLimits)
		out = append(out, w)
	}
	return out, total, rows.Err()
}

// PutWorkspaces upserts workspace settings; override replaces all existing ones. bound is
// the workspace the caller is bound to ("" for an org-wide caller): its override may
// remove only that workspace's own grant. One that would remove another's fails with
// ErrScope, and the delete is limited to bound's row in any case, so a grant added while
// this runs is never removed either.
func (s *Store) PutWorkspaces(ctx context.Context, id, bound string, global map[string]any, override bool, ws []Workspace, now time.Time) error {
	tx, err := s.begin(ctx)
	if err != nil {
		return fmt.Errorf("store: put workspaces: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	switch {
	case override && bound != "":
		var others int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM integration_workspaces WHERE integration_id = ? AND workspace_id != ?`,
			id, bound).Scan(&others); err != nil {
			return fmt.Errorf("store: put workspaces: %w", err)
		}
		if others > 0 {
			return &FieldError{Err: ErrScope, Field: "override_existing_workspace_access",
				Message: fmt.Sprintf("would remove the grants of %d other workspace(s); a caller bound to a workspace may replace only its own grant", others)}
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM integration_workspaces WHERE integration_id = ? AND workspace_id = ?`, id, bound); err != nil {
			return fmt.Errorf("store: put workspaces: %w", err)
		}
	case override:
		if _, err := tx.ExecContext(ctx, `DELETE FROM integration_workspaces WHERE integration_id = ?`, id); err != nil {
			return fmt.Errorf("store: put workspaces: %w", err)
		}
	}
	for _, w := range ws {
		ul, _ := json.Marshal(w.UsageLimits)
		rl, _ := json.Marshal(w.RateLimits)
		if _, err := tx.ExecContext(ctx, `INSERT INTO integration_workspaces (integration_id, workspace_id, enabled, usage_limits, rate_limits, updated_at)
			VALUES (?,?,?,?,?,?) ON CONFLICT (integration_id, workspace_id) DO UPDATE SET enabled = excluded.enabled,
			usage_limits = excluded.usage_limits, rate_limits = excluded.rate_limits, updated_at = excluded.updated_at`,
			id, w.ID, boolInt(w.Enabled), string(ul), string(rl), ts(now)); err != nil {
			return fmt.Errorf("store: put workspaces: %w", err)
		}
	}
	if global != nil {
		if _, err := tx.ExecContext(ctx, `UPDATE integrations SET global_workspace_access = ?, updated_at = ? WHERE id = ?`,
			mustJSON(global), ts(now), id); err != nil {
			return fmt.Errorf("store: put workspaces: %w", err)
		}
	}
	return tx.Commit()
}

// WorkspaceIDs lists the workspaces holding a grant row of integration id (enabled or
// not), sorted, at most limit of them, and how many there are in all.
func (s *Store) WorkspaceIDs(ctx context.Context, id string, limit int) ([]string, int, error) {
	var total int
	if err := s.x.QueryRowContext(ctx, `SELECT count(*) FROM integration_workspaces WHERE integration_id = ?`, id).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("store: workspace ids: %w", err)
	}
	rows, err := s.x.QueryContext(ctx, `SELECT workspace_id FROM integration_workspaces WHERE integration_id = ? ORDER BY workspace_id LIMIT ?`, id, limit)
	if err != nil {
		return nil, 0, fmt.Errorf("store: workspace ids: %w", err)
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var w string
		if err := rows.Scan(&w); err != nil {
			return nil, 0, fmt.Errorf("store: workspace ids: %w", err)
		}
		out = append(out, w)
	}
	return out, total, rows.Err()
}

// WorkspaceCount is the number of workspaces with access enabled.
func (s *Store) WorkspaceCount(ctx context.Context, id string) (int, error) {
	var n int
	err := s.x.QueryRowContext(ctx, `SELECT count(*) FROM integration_workspaces WHERE integration_id = ? AND enabled = 1`, id).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("store: workspace count: %w", err)
	}
	return n, nil
}

// ServiceKey is a stored service key (never the key itself).
type ServiceKey struct {
	ID, Org, Name, Prefix string
	CreatedAt             time.Time
}

// CreateServiceKey stores the SHA-256 hash of a new key.
func (s *Store) CreateServiceKey(ctx context.Context, k ServiceKey, hash []byte) error {
	_, err := s.x.ExecContext(ctx, `INSERT INTO service_keys (id, org, name, hash, prefix, created_at) VALUES (?,?,?,?,?,?)`,
		k.ID, k.Org, k.Name, hash, k.Prefix, ts(k.CreatedAt))
	if err != nil {
		return fmt.Errorf("store: creating service key: %w", err)
	}
	return nil
}

// ServiceKeyByHash finds the key with this hash.
func (s *Store) ServiceKeyByHash(ctx context.Context, hash []byte) (*ServiceKey, error) {
	var k ServiceKey
	var created string
	err := s.x.QueryRowContext(ctx, `SELECT id, org, name, prefix, created_at FROM service_keys WHERE hash = ?`, hash).
		Scan(&k.ID, &k.Org, &k.Name, &k.Prefix, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: service key: %w", err)
	}
	k.CreatedAt, _ = time.Parse(time.RFC3339Nano, created)
	return &k, nil
}

// Checkpoint folds the WAL into the main file (tests read raw bytes after it; rewrap
// runs it so old wrapped keys leave the -wal file).
func (s *Store) Checkpoint(ctx context.Context) error {
	if s.pg {
		return nil
	}
	_, err := s.x.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`)
	return err
}
