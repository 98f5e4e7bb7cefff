package backend

import (
	"context"
	"time"

	"github.com/portcullis/portcullis/backend/store"
)

// integrationItem is a list item: no key fields at all.
type integrationItem struct {
	ID             string `json:"id"`
	OrganisationID string `json:"organisation_id"`
	AIProviderID   string `json:"ai_provider_id"`
	Name           string `json:"name"`
	Slug           string `json:"slug"`
	Description    string `json:"description"`
	Status         string `json:"status"`
	WorkspaceID    string `json:"workspace_id,omitempty"`
	AuthType       string `json:"auth_type,omitempty"`
	CreatedAt      string `json:"created_at"`
	LastUpdatedAt  string `json:"last_updated_at"`
	Object         string `json:"object"`
}

// integrationDetail is GET /v1/integrations/{slug}: masked secrets only.
type integrationDetail struct {
	integrationItem
	MaskedKey                     string         `json:"masked_key"`
	Configurations                map[string]any `json:"configurations"`
	GlobalWorkspaceAccessSettings map[string]any `json:"global_workspace_access_settings"`
	AllowAllModels                bool           `json:"allow_all_models"`
	WorkspaceCount                int            `json:"workspace_count"`
}

type listResp struct {
	Object string `json:"object"`
	Total  int    `json:"total"`
	Data   any    `json:"data"`
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func toItem(it *store.Integration) integrationItem {
	return integrationItem{ID: it.ID, OrganisationID: it.Org, AIProviderID: it.Provider, Name: it.Name, Slug: it.Slug,
		Description: it.Description, Status: it.Status, WorkspaceID: it.WorkspaceID, AuthType: it.AuthType,
		CreatedAt: rfc3339(it.CreatedAt), LastUpdatedAt: rfc3339(it.UpdatedAt), Object: "integration"}
}

func (s *Server) toDetail(ctx context.Context, it *store.Integration) integrationDetail {
	n, err := s.store.WorkspaceCount(ctx, it.ID)
	if err != nil {
		s.logger.Warn("backend: workspace count", "err", err, "id", it.ID)
	}
	conf := it.Configurations
	if conf == nil {
		conf = map[string]any{}
	}
	gwa := it.GlobalWorkspaceAccess
	if gwa == nil {
		gwa = map[string]any{}
	}
	return integrationDetail{integrationItem: toItem(it), MaskedKey: it.MaskedKey, Configurations: conf,
		GlobalWorkspaceAccessSettings: gwa, AllowAllModels: it.AllowAllModels, WorkspaceCount: n}
}

func toItems(its []store.Integration) []integrationItem {
	out := make([]integrationItem, len(its))
	for i := range its {
		out[i] = toItem(&its[i])
	}
	return out
}

// subLister pages through one sub-resource (models, workspaces) of an integration.
type subLister[T any] func(ctx context.Context, id string, offset, limit int) ([]T, int, error)

// listSub is the list form of an integration's sub-resource, shared by REST and MCP:
// page parameters checked, the integration found within the caller's scope, then paged.
func listSub[T any](ctx context.Context, s *Server, c *Caller, slug, page, size string, fetch subLister[T]) (any, error) {
	var p problems
	pg := parsePage(&p, page, size)
	if ae := p.err(); ae != nil {
		return nil, ae
	}
	it, ae := s.getIntegration(ctx, c, slug)
	if ae != nil {
		return nil, ae
	}
	items, total, err := fetch(ctx, it.ID, pg.offset, pg.limit)
	if err != nil {
		return nil, s.storeErr(c, err, "integration")
	}
	return listResp{Object: "list", Total: total, Data: items}, nil
}

// maxScopeWorkspaces bounds the grants a scope answer lists; past it, workspaces_total
// says how many there are.
const maxScopeWorkspaces = 10000

// integrationScope is GET /v1/integrations/{slug}/scope: who owns an integration and which
// workspaces hold a grant, all a gateway's policy needs to decide a change to it (the
// proxy's resource resolver reads it). No secret, masked or not.
type integrationScope struct {
	Object string `json:"object"`
	ID     string `json:"id"`
	Slug   string `json:"slug"`
	Org    string `json:"org"`
	// WorkspaceID is the owner workspace, null for an organisation-level integration.
	WorkspaceID *string `json:"workspace_id"`
	// GlobalWorkspaceAccess: every workspace of the org may use it.
	GlobalWorkspaceAccess bool `json:"global_workspace_access"`
	// Workspaces holds a grant row each (enabled or not), sorted.
	Workspaces      []string `json:"workspaces"`
	WorkspacesTotal int      `json:"workspaces_total"`
}

func (s *Server) toScope(ctx context.Context, it *store.Integration) (integrationScope, error) {
	ids, total, err := s.store.WorkspaceIDs(ctx, it.ID, maxScopeWorkspaces)
	if err != nil {
		return integrationScope{}, err
	}
	sc := integrationScope{Object: "integration_scope", ID: it.ID, Slug: it.Slug, Org: it.Org,
		Workspaces: ids, WorkspacesTotal: total}
	if it.WorkspaceID != "" {
		ws := it.WorkspaceID
		sc.WorkspaceID = &ws
	}
	sc.GlobalWorkspaceAccess, _ = it.GlobalWorkspaceAccess["enabled"].(bool)
	return sc, nil
}
