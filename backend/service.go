package backend

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/google/uuid"

	"github.com/portcullis/portcullis/backend/catalog"
	"github.com/portcullis/portcullis/backend/crypto"
	"github.com/portcullis/portcullis/backend/ssrf"
	"github.com/portcullis/portcullis/backend/store"
)

var (
	slugRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	wsRe   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$`)
)

const (
	maxNameLen   = 128
	maxDescLen   = 1024
	maxSecretLen = 16 << 10
	maxConfDepth = 8
	maxConfNodes = 256
)

// createReq is POST /v1/integrations (and what the MCP tool and seed shapes fold into).
type createReq struct {
	Name           string         `json:"name"`
	AIProviderID   string         `json:"ai_provider_id"`
	Key            *string        `json:"key,omitempty"`
	Slug           string         `json:"slug,omitempty"`
	Description    string         `json:"description,omitempty"`
	WorkspaceID    string         `json:"workspace_id,omitempty"`
	Configurations map[string]any `json:"configurations,omitempty"`
	// AuthType is an extension for seed 004 providers (user_password, key_file...).
	AuthType string `json:"auth_type,omitempty"`
	// forceSecret names top-level configuration keys that are secret whatever their
	// name (seed 004 "credentials" values).
	forceSecret map[string]bool
}

// updateReq is PUT /v1/integrations/{slug}.
type updateReq struct {
	Name        *string `json:"name,omitempty"`
	Key         *string `json:"key,omitempty"`
	Description *string `json:"description,omitempty"`
	// Configurations merges by top-level key: a key given replaces the stored value
	// (secrets included), null removes it, keys not given are kept.
	Configurations map[string]any `json:"configurations,omitempty"`
	Status         *string        `json:"status,omitempty"`
	forceSecret    map[string]bool
}

func checkName(p *problems, field, name string) {
	switch {
	case strings.TrimSpace(name) == "":
		p.add(field, "is required")
	case len([]rune(name)) > maxNameLen:
		p.add(field, "must be at most %d characters", maxNameLen)
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		p.add(field, "must not contain control characters")
	}
}

func checkConfigurations(p *problems, prov *catalog.Provider, conf map[string]any) {
	if conf == nil {
		return
	}
	if d, n := jsonShape(conf, 1); d > maxConfDepth || n > maxConfNodes {
		p.add("configurations", "must nest at most %d levels and hold at most %d values (valid UTF-8)", maxConfDepth, maxConfNodes)
		return
	}
	if f := reservedMasked("configurations", conf); f != "" {
		p.add(f, "names starting with %q are reserved for masked values", maskedPrefix)
	}
	for k, v := range conf {
		if v == nil || !prov.IsURL(k) {
			continue
		}
		s, ok := v.(string)
		if !ok || !isHTTPURL(s) {
			p.add("configurations."+k, "must be an absolute http or https URL, without credentials, query string or fragment")
		}
	}
}

func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.User == nil &&
		u.RawQuery == "" && !u.ForceQuery && u.Fragment == ""
}

// checkNotMasked refuses a secret (key included) sent back in its masked form
// ("sk-****abcd", as a read shows it): storing the mask would destroy the credential it
// stands for.
func checkNotMasked(p *problems, vals []sealedValue) {
	for _, v := range vals {
		if bytes.Contains(v.value, []byte("****")) {
			p.add(v.field, "looks like a masked value (it holds \"****\"); send the secret itself, or leave the field out to keep the stored one")
		}
	}
}

// hasField reports whether a required field is present in stored (masked) form.
func hasField(conf map[string]any, f string) bool {
	if _, ok := conf[maskedPrefix+f]; ok {
		return true
	}
	switch v := conf[f].(type) {
	case nil:
		return false
	case string:
		return strings.TrimSpace(v) != ""
	default:
		return true
	}
}

func checkRequired(p *problems, prov *catalog.Provider, authType string, hasKey bool, conf map[string]any) {
	for _, f := range prov.Required(authType) {
		if f == "key" {
			if !hasKey {
				p.add("key", "is required for provider %s", prov.Key)
			}
			continue
		}
		if !hasField(conf, f) {
			p.add("configurations."+f, "is required for provider %s", prov.Key)
		}
	}
}

// Slugify lowercases name and joins its letters and digits with single dashes.
func Slugify(name string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(name) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			b.WriteRune(r)
			dash = false
		} else {
			dash = true
		}
		if b.Len() >= 48 {
			break
		}
	}
	s := strings.Trim(b.String(), "-")
	if s == "" {
		return "integration"
	}
	if store.IsID(s) {
		return "integration-" + s // never an id's shape (routes take a slug or an id)
	}
	return s
}

func (s *Server) provider(p *problems, field, key string) *catalog.Provider {
	if key == "" {
		p.add(field, "is required")
		return nil
	}
	prov, ok := s.catalog.Get(key)
	if !ok {
		// The value is not echoed: a key pasted into the wrong field must not come back.
		p.add(field, "unknown provider; known providers: %s", strings.Join(s.catalog.Keys(), ", "))
		return nil
	}
	return prov
}

func (s *Server) seal(org, id string, vals []sealedValue) ([]store.Secret, error) {
	out := make([]store.Secret, 0, len(vals))
	for _, v := range vals {
		env, err := s.keys.Seal(v.value, crypto.Binding{Org: org, IntegrationID: id, Field: v.field})
		if err != nil {
			return nil, err
		}
		out = append(out, store.Secret{Field: v.field, Envelope: env})
	}
	return out, nil
}

func (s *Server) createIntegration(ctx context.Context, c *Caller, r createReq) (*store.Integration, error) {
	var p problems
	checkName(&p, "name", r.Name)
	prov := s.provider(&p, "ai_provider_id", r.AIProviderID)
	if r.Slug != "" && !slugRe.MatchString(r.Slug) {
		p.add("slug", "must be lowercase letters, digits and '-', 1-63 characters, starting with a letter or digit")
	} else if store.IsID(r.Slug) {
		p.add("slug", "must not have the shape of an integration id (a UUID): routes take either, and an id always means the id")
	}
	if len([]rune(r.Description)) > maxDescLen {
		p.add("description", "must be at most %d characters", maxDescLen)
	}
	if r.WorkspaceID != "" && !wsRe.MatchString(r.WorkspaceID) {
		p.add("workspace_id", "must be 1-128 letters, digits or _ . : -")
	}
	hasKey := r.Key != nil && strings.TrimSpace(*r.Key) != ""
	if r.Key != nil && *r.Key != "" && !hasKey {
		p.add("key", "must not be blank")
	}
	if hasKey && len(*r.Key) > maxSecretLen {
		p.add("key", "must be at most %d bytes", maxSecretLen)
	}
	if prov != nil {
		if r.AuthType == "" {
			r.AuthType = prov.AuthTypes[0]
		} else if !slices.Contains(prov.AuthTypes, r.AuthType) {
			p.add("auth_type", "must be one of %s for provider %s", strings.Join(prov.AuthTypes, ", "), prov.Key)
		}
		checkConfigurations(&p, prov, r.Configurations)
	}
	if len(p) > 0 {
		return nil, p.err()
	}
	if c.Workspace != "" && r.WorkspaceID != "" && r.WorkspaceID != c.Workspace {
		return nil, errField(http.StatusForbidden, "forbidden", "workspace_id", "caller is bound to another workspace")
	}
	// A caller bound to a workspace creates in it: without workspace_id the integration
	// would be organisation-level, which only an org-wide caller may create.
	if c.Workspace != "" && r.WorkspaceID == "" {
		return nil, errField(http.StatusForbidden, "forbidden", "workspace_id", "is required for a caller bound to a workspace (it must be that workspace)")
	}
	id := uuid.NewString()
	var vals []sealedValue
	if hasKey {
		vals = append(vals, sealedValue{field: "key", value: []byte(*r.Key)})
	}
	conf := map[string]any{}
	if r.Configurations != nil {
		conf = extractSecrets("configurations", r.Configurations, configSchema(prov, r.forceSecret), &vals).(map[string]any)
	}
	checkRequired(&p, prov, r.AuthType, hasKey, conf)
	checkNotMasked(&p, vals)
	if len(p) > 0 {
		return nil, p.err()
	}
	it := &store.Integration{ID: id, Org: c.Org, WorkspaceID: r.WorkspaceID, Name: strings.TrimSpace(r.Name),
		Provider: prov.Key, AuthType: r.AuthType, Description: r.Description, Status: "active",
		Configurations: conf, AllowAllModels: true, GlobalWorkspaceAccess: map[string]any{"enabled": false},
		CreatedBy: c.Sub, Slug: r.Slug}
	if hasKey {
		it.MaskedKey = Mask(*r.Key)
	}
	secrets, err := s.seal(c.Org, id, vals)
	if err != nil {
		s.logger.Error("backend: sealing secrets", "err", err, "request_id", c.RequestID)
		return nil, errInternal()
	}
	now := time.Now().UTC()
	it.CreatedAt, it.UpdatedAt = now, now
	auto := it.Slug == ""
	if auto {
		it.Slug = Slugify(it.Name)
	}
	err = s.store.Create(ctx, it, secrets, store.CreateOptions{MaxPerProvider: s.cfg.MaxPerProvider, AutoSlug: auto})
	if err != nil {
		return nil, s.storeErr(c, err, "integration")
	}
	s.logger.Info("backend: integration created", "org", c.Org, "id", it.ID, "slug", it.Slug,
		"provider", it.Provider, "secret_fields", len(secrets), "request_id", c.RequestID)
	return it, nil
}

// mayChange refuses a caller bound to a workspace acting on an integration outside it.
// Such a caller reads organisation-level integrations (the store's scope lets it), but
// changing one changes it for every workspace that uses it, so only an org-wide caller may.
// Integrations of other workspaces are outside its scope already (404).
func mayChange(c *Caller, it *store.Integration) error {
	if c.Workspace == "" || it.WorkspaceID == c.Workspace {
		return nil
	}
	if it.WorkspaceID == "" {
		return errField(http.StatusForbidden, "forbidden", "slug",
			"is an organisation-level integration; a caller bound to workspace "+strconv.Quote(c.Workspace)+" may not change it")
	}
	return errField(http.StatusForbidden, "forbidden", "slug", "is not in the caller's workspace "+strconv.Quote(c.Workspace))
}

// changeable finds the integration ref within the caller's scope and checks the caller
// may change it. The owner workspace of an integration never changes, so the check holds
// for the id it returns.
func (s *Server) changeable(ctx context.Context, c *Caller, ref string) (*store.Integration, error) {
	it, ae := s.getIntegration(ctx, c, ref)
	if ae != nil {
		return nil, ae
	}
	if ae := mayChange(c, it); ae != nil {
		return nil, ae
	}
	return it, nil
}

func (s *Server) storeErr(c *Caller, err error, what string) error {
	var fe *store.FieldError
	switch {
	case errors.As(err, &fe) && errors.Is(err, store.ErrScope):
		return errField(http.StatusForbidden, "forbidden", fe.Field, fe.Message)
	case errors.As(err, &fe) && errors.Is(err, store.ErrLimit):
		return errField(http.StatusConflict, "limit_exceeded", fe.Field, fe.Message)
	case errors.As(err, &fe):
		return errField(http.StatusConflict, "conflict", fe.Field, fe.Message)
	case errors.Is(err, store.ErrNotFound):
		return errNotFound(what)
	}
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	s.logger.Error("backend: store error", "err", err, "org", c.Org, "request_id", c.RequestID)
	return errInternal()
}

func (s *Server) getIntegration(ctx context.Context, c *Caller, ref string) (*store.Integration, error) {
	it, err := s.store.Get(ctx, c.scope(), ref)
	if err != nil {
		return nil, s.storeErr(c, err, "integration")
	}
	return it, nil
}

func (s *Server) updateIntegration(ctx context.Context, c *Caller, ref string, r updateReq) (*store.Integration, error) {
	var p problems
	if r.Name != nil {
		checkName(&p, "name", *r.Name)
	}
	if r.Description != nil && len([]rune(*r.Description)) > maxDescLen {
		p.add("description", "must be at most %d characters", maxDescLen)
	}
	if r.Key != nil && strings.TrimSpace(*r.Key) == "" {
		p.add("key", "must not be empty or blank; omit key to keep the stored one")
	}
	if r.Key != nil && len(*r.Key) > maxSecretLen {
		p.add("key", "must be at most %d bytes", maxSecretLen)
	}
	if r.Status != nil && *r.Status != "active" && *r.Status != "archived" {
		p.add("status", "must be active or archived")
	}
	if len(p) > 0 {
		return nil, p.err()
	}
	it, err := s.store.Update(ctx, c.scope(), ref, func(it *store.Integration) (store.Change, error) {
		var ch store.Change
		if ae := mayChange(c, it); ae != nil {
			return ch, ae
		}
		prov, ok := s.catalog.Get(it.Provider)
		if !ok {
			return ch, errField(http.StatusConflict, "conflict", "ai_provider_id", fmt.Sprintf("provider %q is no longer in the catalog", it.Provider))
		}
		var p problems
		checkConfigurations(&p, prov, r.Configurations)
		if len(p) > 0 {
			return ch, p.err()
		}
		if r.Name != nil {
			it.Name = strings.TrimSpace(*r.Name)
		}
		if r.Description != nil {
			it.Description = *r.Description
		}
		if r.Status != nil {
			it.Status = *r.Status
		}
		var vals []sealedValue
		if r.Key != nil {
			vals = append(vals, sealedValue{field: "key", value: []byte(*r.Key)})
			it.MaskedKey = Mask(*r.Key)
		}
		if it.Configurations == nil {
			it.Configurations = map[string]any{}
		}
		for k, v := range r.Configurations {
			delete(it.Configurations, k)
			delete(it.Configurations, maskedPrefix+k)
			ch.DeletePrefix = append(ch.DeletePrefix, "configurations."+escapeSeg(k))
			if v == nil {
				continue
			}
			part := extractSecrets("configurations", map[string]any{k: v}, configSchema(prov, r.forceSecret), &vals).(map[string]any)
			for pk, pv := range part {
				it.Configurations[pk] = pv
			}
		}
		checkRequired(&p, prov, it.AuthType, it.MaskedKey != "", it.Configurations)
		checkNotMasked(&p, vals)
		if len(p) > 0 {
			return ch, p.err()
		}
		secrets, err := s.seal(it.Org, it.ID, vals)
		if err != nil {
			return ch, err
		}
		ch.Put = secrets
		it.UpdatedAt = time.Now().UTC()
		return ch, nil
	})
	if err != nil {
		return nil, s.storeErr(c, err, "integration")
	}
	s.logger.Info("backend: integration updated", "org", c.Org, "id", it.ID, "slug", it.Slug,
		"key_replaced", r.Key != nil, "request_id", c.RequestID)
	return it, nil
}

func (s *Server) deleteIntegration(ctx context.Context, c *Caller, ref string) (*store.Integration, error) {
	if c.Workspace != "" {
		// Checked on the integration this ref names now, then deleted by its id: a
		// delete and re-create under the same slug in between is a 404, never the new one.
		found, ae := s.changeable(ctx, c, ref)
		if ae != nil {
			return nil, ae
		}
		ref = found.ID
	}
	it, err := s.store.Delete(ctx, c.scope(), ref)
	if err != nil {
		return nil, s.storeErr(c, err, "integration")
	}
	s.logger.Info("backend: integration deleted", "org", c.Org, "id", it.ID, "slug", it.Slug, "request_id", c.RequestID)
	return it, nil
}

// page is a validated current_page / page_size pair. Pages count from 1; 0 is read as
// the first page so 0-based clients also work.
type page struct{ offset, limit int }

func parsePage(p *problems, cur, size string) page {
	pg := page{limit: 50}
	if size != "" {
		n, err := strconv.Atoi(size)
		if err != nil || n < 1 || n > 100 {
			p.add("page_size", "must be an integer from 1 to 100")
		} else {
			pg.limit = n
		}
	}
	if cur != "" {
		n, err := strconv.Atoi(cur)
		if err != nil || n < 0 || n > 1_000_000 {
			p.add("current_page", "must be an integer from 1 to 1000000 (0 is read as 1)")
		} else if n > 1 {
			pg.offset = (n - 1) * pg.limit
		}
	}
	return pg
}

type listReq struct {
	CurrentPage, PageSize, WorkspaceID, Type, Provider string
	// ProviderField is the query parameter Provider came from (for errors).
	ProviderField string
}

func (s *Server) listIntegrations(ctx context.Context, c *Caller, r listReq) ([]store.Integration, int, error) {
	var p problems
	pg := parsePage(&p, r.CurrentPage, r.PageSize)
	switch r.Type {
	case "", "all", "workspace", "organisation":
	default:
		p.add("type", "must be workspace, organisation or all")
	}
	if r.WorkspaceID != "" && !wsRe.MatchString(r.WorkspaceID) {
		p.add("workspace_id", "must be 1-128 letters, digits or _ . : -")
	}
	if r.Provider != "" {
		// An unknown provider is an error, not an empty list; an alias finds its provider.
		field := r.ProviderField
		if field == "" {
			field = "ai_provider_id"
		}
		if prov := s.provider(&p, field, r.Provider); prov != nil {
			r.Provider = prov.Key
		}
	}
	if len(p) > 0 {
		return nil, 0, p.err()
	}
	items, total, err := s.store.List(ctx, c.scope(), store.ListFilter{WorkspaceID: r.WorkspaceID, Type: r.Type,
		Provider: r.Provider, Offset: pg.offset, Limit: pg.limit})
	if err != nil {
		return nil, 0, s.storeErr(c, err, "integration")
	}
	return items, total, nil
}

// modelIn is one model of PUT /v1/integrations/{slug}/models.
type modelIn struct {
	Slug           string         `json:"slug"`
	Enabled        *bool          `json:"enabled"`
	ModelName      string         `json:"model_name,omitempty"`
	IsCustom       bool           `json:"is_custom,omitempty"`
	IsFinetune     bool           `json:"is_finetune,omitempty"`
	BaseModelSlug  string         `json:"base_model_slug,omitempty"`
	Configurations map[string]any `json:"configurations,omitempty"`
}

type modelsReq struct {
	AllowAllModels *bool     `json:"allow_all_models,omitempty"`
	Models         []modelIn `json:"models"`
}

var modelSlugRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,127}$`)

func (s *Server) putModels(ctx context.Context, c *Caller, ref string, r modelsReq) (int, error) {
	var p problems
	if r.Models == nil {
		p.add("models", "is required (an array, may be empty)")
	}
	if len(r.Models) > 500 {
		p.add("models", "at most 500 per request")
	}
	seen := map[string]bool{}
	for i, m := range r.Models {
		f := fmt.Sprintf("models[%d]", i)
		if !modelSlugRe.MatchString(m.Slug) {
			p.add(f+".slug", "is required: 1-128 letters, digits or _ . : @ / -")
		} else if seen[m.Slug] {
			p.add(f+".slug", "duplicates the slug of an earlier model")
		}
		seen[m.Slug] = true
		if m.Enabled == nil {
			p.add(f+".enabled", "is required (true or false)")
		}
		if d, n := jsonShape(m.Configurations, 1); d > maxConfDepth || n > maxConfNodes {
			p.add(f+".configurations", "too deep or too large")
		}
		if rp := reservedMasked(f+".configurations", m.Configurations); rp != "" {
			p.add(rp, "names starting with %q are reserved for masked values", maskedPrefix)
		}
		if v, ok := m.Configurations["custom_host"]; ok && v != nil {
			if sv, ok := v.(string); !ok || !isHTTPURL(sv) {
				p.add(f+".configurations.custom_host", "must be an absolute http or https URL, without credentials, query string or fragment")
			}
		}
		if h, ok := m.Configurations["custom_headers"]; ok && h != nil {
			if _, ok := h.(map[string]any); !ok {
				p.add(f+".configurations.custom_headers", "must be an object of header names to values")
			}
		}
	}
	if len(p) > 0 {
		return 0, p.err()
	}
	it, ae := s.changeable(ctx, c, ref)
	if ae != nil {
		return 0, ae
	}
	var vals []sealedValue
	models := make([]store.Model, 0, len(r.Models))
	for _, m := range r.Models {
		sm := store.Model{Slug: m.Slug, Enabled: *m.Enabled, ModelName: m.ModelName, IsCustom: m.IsCustom,
			IsFinetune: m.IsFinetune, BaseModelSlug: m.BaseModelSlug}
		if m.Configurations != nil {
			sm.Configurations = extractSecrets(store.ModelSecretPrefix(m.Slug)+"configurations", m.Configurations,
				modelConfSchema, &vals).(map[string]any)
		}
		models = append(models, sm)
	}
	secrets, err := s.seal(it.Org, it.ID, vals)
	if err != nil {
		return 0, s.storeErr(c, err, "integration")
	}
	if err := s.store.PutModels(ctx, it.ID, r.AllowAllModels, models, secrets, time.Now()); err != nil {
		return 0, s.storeErr(c, err, "integration")
	}
	return len(models), nil
}

// workspaceIn is one workspace of PUT /v1/integrations/{slug}/workspaces.
type workspaceIn struct {
	ID          string `json:"id"`
	Enabled     *bool  `json:"enabled"`
	UsageLimits any    `json:"usage_limits,omitempty"`
	RateLimits  any    `json:"rate_limits,omitempty"`
}

type workspacesReq struct {
	GlobalWorkspaceAccess           any           `json:"global_workspace_access,omitempty"`
	OverrideExistingWorkspaceAccess bool          `json:"override_existing_workspace_access,omitempty"`
	Workspaces                      []workspaceIn `json:"workspaces"`
}

func (s *Server) putWorkspaces(ctx context.Context, c *Caller, ref string, r workspacesReq) (int, error) {
	var p problems
	if r.Workspaces == nil {
		p.add("workspaces", "is required (an array, may be empty)")
	}
	if len(r.Workspaces) > 500 {
		p.add("workspaces", "at most 500 per request")
	}
	for i, w := range r.Workspaces {
		f := fmt.Sprintf("workspaces[%d]", i)
		if !wsRe.MatchString(w.ID) {
			p.add(f+".id", "is required: 1-128 letters, digits or _ . : -")
		}
		if w.Enabled == nil {
			p.add(f+".enabled", "is required (true or false)")
		}
		for name, v := range map[string]any{"usage_limits": w.UsageLimits, "rate_limits": w.RateLimits} {
			switch v.(type) {
			case nil, map[string]any, []any:
			default:
				p.add(f+"."+name, "must be an object or a list of limits (or left out)")
				continue
			}
			if d, n := jsonShape(v, 1); d > 4 || n > 64 {
				p.add(f+"."+name, "too deep or too large")
			}
		}
	}
	var global map[string]any
	switch g := r.GlobalWorkspaceAccess.(type) {
	case nil:
	case bool:
		global = map[string]any{"enabled": g}
	case map[string]any:
		if _, ok := g["enabled"].(bool); !ok || len(g) != 1 {
			p.add("global_workspace_access", `must be {"enabled": true|false}`)
		}
		global = g
	default:
		p.add("global_workspace_access", `must be {"enabled": true|false} or a boolean`)
	}
	if len(p) > 0 {
		return 0, p.err()
	}
	it, ae := s.changeable(ctx, c, ref)
	if ae != nil {
		return 0, ae
	}
	if c.Workspace != "" {
		// A caller bound to a workspace changes its own workspace's grant only: granting
		// or revoking another workspace, or opening the integration to all of them, is an
		// org-wide change.
		for i, w := range r.Workspaces {
			if w.ID != c.Workspace {
				return 0, errField(http.StatusForbidden, "forbidden", fmt.Sprintf("workspaces[%d].id", i),
					"is another workspace; a caller bound to workspace "+strconv.Quote(c.Workspace)+" may change only its own grant")
			}
		}
		if r.GlobalWorkspaceAccess != nil {
			return 0, errField(http.StatusForbidden, "forbidden", "global_workspace_access",
				"changes the access of every workspace; a caller bound to a workspace may not set it")
		}
	}
	ws := make([]store.Workspace, 0, len(r.Workspaces))
	for _, w := range r.Workspaces {
		ws = append(ws, store.Workspace{ID: w.ID, Enabled: *w.Enabled, UsageLimits: w.UsageLimits, RateLimits: w.RateLimits})
	}
	if err := s.store.PutWorkspaces(ctx, it.ID, c.Workspace, global, r.OverrideExistingWorkspaceAccess, ws, time.Now()); err != nil {
		return 0, s.storeErr(c, err, "integration")
	}
	return len(ws), nil
}

// verifySecrets opens every sealed field of it. A record whose ciphertext was moved,
// altered or wrapped by an unknown key fails here with an error, never garbage.
func (s *Server) verifySecrets(ctx context.Context, it *store.Integration) error {
	secs, err := s.store.Secrets(ctx, it.ID)
	if err != nil {
		return err
	}
	for _, sec := range secs {
		pt, err := s.keys.Open(sec.Envelope, crypto.Binding{Org: it.Org, IntegrationID: it.ID, Field: sec.Field})
		if err != nil {
			return fmt.Errorf("backend: secret %s: %w", sec.Field, err)
		}
		clear(pt)
	}
	return nil
}

// probe checks the provider endpoint of a configuration through the SSRF guard.
func (s *Server) probe(ctx context.Context, prov *catalog.Provider, conf map[string]any) (ssrf.Result, error) {
	if prov.Connection == "tcp" {
		host, _ := conf["host"].(string)
		if host == "" {
			return ssrf.Result{}, errField(http.StatusBadRequest, "validation_error", "configurations.host", "is required to test the connection")
		}
		port := prov.DefaultPort
		switch v := conf["port"].(type) {
		case float64:
			port = int(v)
		case string:
			n, err := strconv.Atoi(v)
			if err != nil {
				return ssrf.Result{}, errField(http.StatusBadRequest, "validation_error", "configurations.port", "must be a port number")
			}
			port = n
		}
		res, err := s.guard.ProbeTCP(ctx, host, port)
		return res, s.probeErr("configurations.host", err)
	}
	target, _ := conf["custom_host"].(string)
	field := "configurations.custom_host"
	if target == "" {
		if prov.BaseURL == "" {
			return ssrf.Result{}, errField(http.StatusBadRequest, "validation_error", field, "is required to test provider "+prov.Key+" (it has no default URL)")
		}
		u, err := prov.ResolveBaseURL(conf)
		if err != nil {
			return ssrf.Result{}, &apiError{Status: http.StatusBadRequest, Code: "validation_error", Field: strings.SplitN(err.Error(), ":", 2)[0], Message: err.Error()}
		}
		target, field = u, "ai_provider_id"
	}
	res, err := s.guard.ProbeHTTP(ctx, target)
	return res, s.probeErr(field, err)
}

func (s *Server) probeErr(field string, err error) error {
	if err == nil {
		return nil
	}
	// The HTTP client's error names the URL, query string included: only the cause may
	// be repeated.
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, ssrf.ErrRefused) {
		return errField(http.StatusBadRequest, "target_refused", field, strings.TrimPrefix(err.Error(), "ssrf: "))
	}
	return errField(http.StatusBadGateway, "unreachable", field, "the provider endpoint did not answer: "+conciseNetErr(err))
}

func conciseNetErr(err error) string {
	msg := err.Error()
	for _, k := range []string{"connection refused", "no such host", "timeout", "deadline exceeded", "network is unreachable", "certificate"} {
		if strings.Contains(msg, k) {
			return k
		}
	}
	return "connection failed"
}

func (s *Server) testIntegration(ctx context.Context, c *Caller, ref string) (map[string]any, error) {
	it, ae := s.getIntegration(ctx, c, ref)
	if ae != nil {
		return nil, ae
	}
	if err := s.verifySecrets(ctx, it); err != nil {
		s.logger.Error("backend: stored secret failed to open", "err", err, "org", it.Org, "id", it.ID, "request_id", c.RequestID)
		return nil, &apiError{Status: http.StatusInternalServerError, Code: "secret_integrity",
			Message: "a stored secret of this integration failed to decrypt; it may have been tampered with"}
	}
	prov, ok := s.catalog.Get(it.Provider)
	if !ok {
		return nil, errField(http.StatusConflict, "conflict", "ai_provider_id", "provider is no longer in the catalog")
	}
	res, ae := s.probe(ctx, prov, it.Configurations)
	if ae != nil {
		return nil, ae
	}
	return map[string]any{"ok": res.Reachable, "id": it.ID, "slug": it.Slug, "provider": it.Provider,
		"target": res.Target, "status_code": res.StatusCode, "latency_ms": res.LatencyMS}, nil
}
