package backend

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/portcullis/portcullis/audit/redact"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// envelope is seed 000's tool result: {ok, data} or {ok:false, error}.
type envelope struct {
	OK    bool      `json:"ok" jsonschema:"Whether the tool call succeeded and returned structured data"`
	Data  any       `json:"data,omitempty" jsonschema:"Structured success payload when ok is true"`
	Error *apiError `json:"error,omitempty" jsonschema:"Structured error payload when ok is false"`
}

// providerArgs are the flat provider fields the MCP layer folds into configurations.
type providerArgs struct {
	CustomHost         string `json:"custom_host,omitempty" jsonschema:"Custom base URL for the provider"`
	APIVersion         string `json:"api_version,omitempty" jsonschema:"API version (for Azure OpenAI)"`
	ResourceName       string `json:"resource_name,omitempty" jsonschema:"Resource name (for Azure OpenAI)"`
	DeploymentName     string `json:"deployment_name,omitempty" jsonschema:"Deployment name (for Azure OpenAI)"`
	AWSRegion          string `json:"aws_region,omitempty" jsonschema:"AWS region (for AWS Bedrock)"`
	AWSAccessKeyID     string `json:"aws_access_key_id,omitempty" jsonschema:"AWS access key ID (for AWS Bedrock)"`
	AWSSecretAccessKey string `json:"aws_secret_access_key,omitempty" jsonschema:"AWS secret access key (for AWS Bedrock)"`
	VertexProjectID    string `json:"vertex_project_id,omitempty" jsonschema:"GCP project ID (for Vertex AI)"`
	VertexRegion       string `json:"vertex_region,omitempty" jsonschema:"GCP region (for Vertex AI)"`
}

func (a providerArgs) fold() map[string]any {
	m := map[string]any{}
	for k, v := range map[string]string{"custom_host": a.CustomHost, "api_version": a.APIVersion,
		"resource_name": a.ResourceName, "deployment_name": a.DeploymentName, "aws_region": a.AWSRegion,
		"aws_access_key_id": a.AWSAccessKeyID, "aws_secret_access_key": a.AWSSecretAccessKey,
		"vertex_project_id": a.VertexProjectID, "vertex_region": a.VertexRegion} {
		if v != "" {
			m[k] = v
		}
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

// mergeConfigurations joins the flat provider arguments and the configurations object.
// A field given both ways is refused rather than one silently winning.
func mergeConfigurations(flat, extra map[string]any) (map[string]any, error) {
	if len(extra) == 0 {
		return flat, nil
	}
	if flat == nil {
		flat = map[string]any{}
	}
	for k, v := range extra {
		if _, dup := flat[k]; dup {
			return nil, errField(http.StatusBadRequest, "validation_error", "configurations."+k, "is also given as the flat argument "+k)
		}
		flat[k] = v
	}
	return flat, nil
}

type createIntegrationIn struct {
	Name         string `json:"name" jsonschema:"Human-readable name for the integration"`
	AIProviderID string `json:"ai_provider_id" jsonschema:"ID of the AI provider (e.g., 'openai', 'anthropic', 'azure-openai', 'aws-bedrock', 'vertex-ai')"`
	Key          string `json:"key,omitempty" jsonschema:"API key for the provider (if required)"`
	Slug         string `json:"slug,omitempty" jsonschema:"URL-friendly identifier (auto-generated from name if not provided)"`
	Description  string `json:"description,omitempty" jsonschema:"Optional description of the integration"`
	WorkspaceID  string `json:"workspace_id,omitempty" jsonschema:"Workspace ID for workspace-scoped integrations"`
	// AuthType and Configurations extend Portkey's arguments for the credential providers
	// (postgresql, sftp, aws_ses, microsoft, sharepoint...) whose fields have no flat name.
	AuthType       string         `json:"auth_type,omitempty" jsonschema:"How the provider authenticates (api_key, user_password, key_file, oauth2...); default the provider's first"`
	Configurations map[string]any `json:"configurations,omitempty" jsonschema:"Provider fields without a flat argument (e.g. host, database, username, password for postgresql); secret fields are stored encrypted"`
	providerArgs
}

type listIntegrationsIn struct {
	CurrentPage int    `json:"current_page,omitempty" jsonschema:"Page number, from 1"`
	PageSize    int    `json:"page_size,omitempty" jsonschema:"Items per page (1-100)"`
	WorkspaceID string `json:"workspace_id,omitempty" jsonschema:"Only integrations visible to this workspace"`
	Type        string `json:"type,omitempty" jsonschema:"workspace, organisation or all"`
}

type slugIn struct {
	Slug string `json:"slug" jsonschema:"Slug (or id) of the integration"`
}

type updateIntegrationIn struct {
	Slug           string         `json:"slug" jsonschema:"Slug (or id) of the integration"`
	Name           string         `json:"name,omitempty" jsonschema:"New name"`
	Key            string         `json:"key,omitempty" jsonschema:"New API key; omit to keep the stored key"`
	Description    string         `json:"description,omitempty" jsonschema:"New description"`
	Configurations map[string]any `json:"configurations,omitempty" jsonschema:"Provider fields without a flat argument; null removes a field"`
	providerArgs
}

type pagedSlugIn struct {
	Slug        string `json:"slug" jsonschema:"Slug (or id) of the integration"`
	CurrentPage int    `json:"current_page,omitempty" jsonschema:"Page number, from 1"`
	PageSize    int    `json:"page_size,omitempty" jsonschema:"Items per page (1-100)"`
}

type modelConfArg struct {
	CustomHost    string            `json:"custom_host,omitempty" jsonschema:"Custom base URL for this model"`
	CustomHeaders map[string]string `json:"custom_headers,omitempty" jsonschema:"Extra request headers; values are stored encrypted and shown masked"`
}

type modelArg struct {
	Slug           string        `json:"slug" jsonschema:"Model slug"`
	Enabled        bool          `json:"enabled" jsonschema:"Whether the model is enabled"`
	ModelName      string        `json:"model_name,omitempty" jsonschema:"Display name"`
	IsCustom       bool          `json:"is_custom,omitempty" jsonschema:"Custom model"`
	IsFinetune     bool          `json:"is_finetune,omitempty" jsonschema:"Fine-tuned model"`
	BaseModelSlug  string        `json:"base_model_slug,omitempty" jsonschema:"Base model of a fine-tune"`
	Configurations *modelConfArg `json:"configurations,omitempty" jsonschema:"Per-model settings"`
}

type updateModelsIn struct {
	Slug           string     `json:"slug" jsonschema:"Slug (or id) of the integration"`
	Models         []modelArg `json:"models" jsonschema:"Models to add or update"`
	AllowAllModels *bool      `json:"allow_all_models,omitempty" jsonschema:"Allow every model of the provider"`
}

type deleteModelIn struct {
	Slug      string `json:"slug" jsonschema:"Slug (or id) of the integration"`
	ModelSlug string `json:"model_slug" jsonschema:"Slug of the model to remove"`
}

type workspaceArg struct {
	ID             string   `json:"id" jsonschema:"Workspace ID"`
	Enabled        bool     `json:"enabled" jsonschema:"Whether the workspace may use the integration"`
	CreditLimit    *float64 `json:"credit_limit,omitempty" jsonschema:"Spending limit"`
	AlertThreshold *float64 `json:"alert_threshold,omitempty" jsonschema:"Alert at this percentage of the limit (0-100)"`
	RateLimitRPM   *int     `json:"rate_limit_rpm,omitempty" jsonschema:"Requests per minute"`
}

type updateWorkspacesIn struct {
	Slug                            string         `json:"slug" jsonschema:"Slug (or id) of the integration"`
	Workspaces                      []workspaceArg `json:"workspaces" jsonschema:"Workspace access settings"`
	GlobalWorkspaceAccessEnabled    *bool          `json:"global_workspace_access_enabled,omitempty" jsonschema:"Give every workspace access"`
	OverrideExistingWorkspaceAccess bool           `json:"override_existing_workspace_access,omitempty" jsonschema:"Replace all existing workspace settings"`
}

type noArgs struct{}

func ptr[T any](v T) *T { return &v }

var (
	readOnly    = &mcp.ToolAnnotations{ReadOnlyHint: true, OpenWorldHint: ptr(false)}
	writeAnno   = &mcp.ToolAnnotations{DestructiveHint: ptr(false), OpenWorldHint: ptr(false)}
	destructive = &mcp.ToolAnnotations{DestructiveHint: ptr(true), IdempotentHint: true, OpenWorldHint: ptr(false)}
)

func annotate(a *mcp.ToolAnnotations, title string) *mcp.ToolAnnotations {
	c := *a
	c.Title = title
	return &c
}

// schemaFor infers In's schema and applies the numeric limits of the reference.
func schemaFor[In any](tweak func(props map[string]*jsonschema.Schema)) *jsonschema.Schema {
	sc, err := jsonschema.For[In](nil)
	if err != nil {
		panic("backend: tool schema: " + err.Error())
	}
	if tweak != nil {
		tweak(sc.Properties)
	}
	markSecrets(sc)
	return sc
}

// markSecrets marks every secret field of a tool's input schema writeOnly, by the rule
// the backend seals by (redact.Field): secret names, the values of headers objects,
// and every key of a free-form configurations object but custom_host (what the catalog
// knows as not secret for every provider). The proxy reads these marks from tools/list
// and redacts the same fields from policy input and the audit trail.
func markSecrets(sc *jsonschema.Schema) {
	if sc == nil {
		return
	}
	for name, p := range sc.Properties {
		switch {
		case redact.IsSecretName(name):
			p.WriteOnly = true
		case redact.IsSecretContainer(name):
			p.AdditionalProperties = &jsonschema.Schema{Type: "string", WriteOnly: true}
		case name == "configurations" && len(p.Properties) == 0:
			p.Properties = map[string]*jsonschema.Schema{
				"custom_host":    {Type: "string", Description: "Custom base URL"},
				"custom_headers": {Type: "object", Description: "Extra request headers; values are secret", AdditionalProperties: &jsonschema.Schema{WriteOnly: true}},
			}
			p.AdditionalProperties = &jsonschema.Schema{WriteOnly: true, Description: "Any other provider field is stored encrypted and shown masked"}
		}
		markSecrets(p)
		markSecrets(p.Items)
	}
}

func pageLimits(props map[string]*jsonschema.Schema) {
	if p := props["current_page"]; p != nil {
		p.Minimum = ptr(1.0)
	}
	if p := props["page_size"]; p != nil {
		p.Minimum, p.Maximum = ptr(1.0), ptr(100.0)
	}
}

// addTool registers a tool whose arguments decode into In. Arguments are checked here
// (not by the SDK) so that every failure, including a missing or unknown argument,
// comes back in the {ok:false, error:{code, message, field}} envelope.
func addTool[In any](s *Server, name, desc string, anno *mcp.ToolAnnotations, tweak func(map[string]*jsonschema.Schema),
	fn func(ctx context.Context, c *Caller, in In) (any, error)) {
	in := schemaFor[In](tweak)
	resolved, err := in.Resolve(nil)
	if err != nil {
		panic("backend: tool " + name + ": " + err.Error())
	}
	tool := &mcp.Tool{Name: name, Description: desc, Annotations: anno, InputSchema: in, OutputSchema: envelopeSchema}
	s.mcp.AddTool(tool, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		c := callerFrom(ctx)
		if c == nil && req.Extra != nil {
			// Defensive: the HTTP middleware has already authenticated this request;
			// if the SDK did not pass its context through, authenticate the headers again.
			c, _ = s.authenticate(ctx, req.Extra.Header)
		}
		if c == nil {
			return toolResult(nil, &apiError{Status: http.StatusUnauthorized, Code: "unauthorized", Message: "authentication required"})
		}
		args, ae := decodeArgs[In](req.Params.Arguments, in, resolved)
		if ae != nil {
			return toolResult(nil, ae)
		}
		return toolResult(fn(ctx, c, args))
	})
}

var envelopeSchema = func() *jsonschema.Schema {
	sc, err := jsonschema.For[envelope](nil)
	if err != nil {
		panic(err)
	}
	return sc
}()

func toolResult(data any, err error) (*mcp.CallToolResult, error) {
	ae := asAPIError(err)
	env := envelope{OK: ae == nil, Data: data, Error: ae}
	b, err := json.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("backend: encoding tool result: %w", err)
	}
	return &mcp.CallToolResult{IsError: ae != nil, StructuredContent: json.RawMessage(b),
		Content: []mcp.Content{&mcp.TextContent{Text: string(b)}}}, nil
}

// decodeArgs checks required and unknown arguments and types with the argument
// named, then the schema's limits (ranges, enums).
func decodeArgs[In any](raw json.RawMessage, sc *jsonschema.Schema, resolved *jsonschema.Resolved) (In, error) {
	var in In
	if len(raw) == 0 || string(raw) == "null" {
		raw = json.RawMessage("{}")
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return in, errField(http.StatusBadRequest, "validation_error", "arguments", "must be a JSON object")
	}
	var p problems
	for _, r := range sc.Required {
		if _, ok := m[r]; !ok {
			p.add(r, "is required")
		}
	}
	if ae := p.err(); ae != nil {
		return in, ae
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		ae := jsonError(err)
		ae.Status = http.StatusBadRequest
		return in, ae
	}
	if err := resolved.Validate(m); err != nil {
		field, rule := schemaViolation(err, sc)
		return in, errField(http.StatusBadRequest, "validation_error", field, "violates the tool's input schema: "+rule)
	}
	return in, nil
}

// schemaViolation names the argument and the rule a validation error is about, from
// the validator's schema path and keyword. The validator's own message quotes the
// value ("enum: sk-... does not equal any of"), and a value may be a secret sent in the
// wrong field, so nothing of the message but the path and the keyword is used: the
// rule is described from the tool's schema.
func schemaViolation(err error, sc *jsonschema.Schema) (field, rule string) {
	var path, inner string
	for _, seg := range strings.Split(err.Error(), ": ") {
		if p, ok := strings.CutPrefix(seg, "validating "); ok {
			path, inner = p, ""
			continue
		}
		if inner == "" {
			inner = seg
		}
	}
	keyword, _, _ := strings.Cut(inner, " ")
	keyword = strings.TrimSuffix(keyword, ":")
	node, field := sc, ""
	toks := strings.Split(strings.Trim(path, "/"), "/")
	for i := 0; i < len(toks); i++ {
		switch {
		case toks[i] == "properties" && i+1 < len(toks) && node != nil:
			name := strings.ReplaceAll(strings.ReplaceAll(toks[i+1], "~1", "/"), "~0", "~")
			if field != "" {
				field += "."
			}
			field += name
			node = node.Properties[name]
			i++
		case toks[i] == "items" && node != nil:
			field += "[]"
			node = node.Items
		case toks[i] == "additionalProperties" && node != nil:
			field += ".*"
			node = node.AdditionalProperties
		}
	}
	if field == "" {
		field = "arguments"
	}
	return field, describeRule(keyword, node)
}

func describeRule(keyword string, n *jsonschema.Schema) string {
	if n == nil {
		n = &jsonschema.Schema{}
	}
	num := func(f *float64) string {
		if f == nil {
			return "the limit"
		}
		return strconv.FormatFloat(*f, 'f', -1, 64)
	}
	count := func(i *int) string {
		if i == nil {
			return "the limit"
		}
		return strconv.Itoa(*i)
	}
	switch keyword {
	case "enum":
		vals := make([]string, 0, len(n.Enum))
		for _, v := range n.Enum {
			vals = append(vals, fmt.Sprint(v))
		}
		return "must be one of: " + strings.Join(vals, ", ")
	case "const":
		return "must equal the schema's constant"
	case "type":
		t := n.Type
		if t == "" {
			t = strings.Join(n.Types, " or ")
		}
		return "must be of type " + t
	case "minLength":
		return "must be at least " + count(n.MinLength) + " characters"
	case "maxLength":
		return "must be at most " + count(n.MaxLength) + " characters"
	case "minimum":
		return "must be at least " + num(n.Minimum)
	case "maximum":
		return "must be at most " + num(n.Maximum)
	case "exclusiveMinimum":
		return "must be more than " + num(n.ExclusiveMinimum)
	case "exclusiveMaximum":
		return "must be less than " + num(n.ExclusiveMaximum)
	case "pattern":
		return "must match the pattern " + n.Pattern
	case "minItems":
		return "must have at least " + count(n.MinItems) + " items"
	case "maxItems":
		return "must have at most " + count(n.MaxItems) + " items"
	case "required":
		return "is missing a required property"
	case "":
		return "is not valid"
	default:
		return "breaks the schema's " + keyword + " rule"
	}
}

func pageStr(n int) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(n)
}

func (s *Server) newMCPServer() *mcp.Server {
	s.mcp = mcp.NewServer(&mcp.Implementation{Name: "portcullis-integrations", Title: "Portcullis integrations backend", Version: "1.0.0"},
		&mcp.ServerOptions{Logger: s.quietLogger(), Instructions: "Manage AI provider integrations: credentials are write-only and always shown masked."})

	addTool(s, "create_integration", "Create an organization-level integration to store an AI provider's API key, enabling downstream workspace providers. Supports OpenAI, Anthropic, Azure OpenAI, AWS Bedrock, and Vertex AI with provider-specific fields. The key is write-only afterwards (get_integration shows it masked). Returns the new integration id and slug.",
		annotate(writeAnno, "Create integration"), func(p map[string]*jsonschema.Schema) {
			p["name"].MinLength = ptr(1)
			p["name"].MaxLength = ptr(maxNameLen)
			keys := make([]any, 0)
			for _, k := range s.catalog.Keys() {
				keys = append(keys, k)
			}
			p["ai_provider_id"].Enum = keys
		},
		func(ctx context.Context, c *Caller, in createIntegrationIn) (any, error) {
			conf, ae := mergeConfigurations(in.providerArgs.fold(), in.Configurations)
			if ae != nil {
				return nil, ae
			}
			r := createReq{Name: in.Name, AIProviderID: in.AIProviderID, Slug: in.Slug, Description: in.Description,
				WorkspaceID: in.WorkspaceID, AuthType: in.AuthType, Configurations: conf}
			if in.Key != "" {
				r.Key = &in.Key
			}
			it, ae := s.createIntegration(ctx, c, r)
			if ae != nil {
				return nil, ae
			}
			return map[string]any{"id": it.ID, "slug": it.Slug}, nil
		})

	addTool(s, "list_integrations", "List the organisation's integrations (no key fields), paginated.",
		annotate(readOnly, "List integrations"), func(p map[string]*jsonschema.Schema) {
			pageLimits(p)
			p["type"].Enum = []any{"workspace", "organisation", "all"}
		},
		func(ctx context.Context, c *Caller, in listIntegrationsIn) (any, error) {
			its, total, ae := s.listIntegrations(ctx, c, listReq{CurrentPage: pageStr(in.CurrentPage),
				PageSize: pageStr(in.PageSize), WorkspaceID: in.WorkspaceID, Type: in.Type})
			if ae != nil {
				return nil, ae
			}
			return listResp{Object: "list", Total: total, Data: toItems(its)}, nil
		})

	addTool(s, "get_integration", "Get one integration by slug; secrets are shown masked (masked_key).",
		annotate(readOnly, "Get integration"), nil,
		func(ctx context.Context, c *Caller, in slugIn) (any, error) {
			it, ae := s.getIntegration(ctx, c, in.Slug)
			if ae != nil {
				return nil, ae
			}
			return s.toDetail(ctx, it), nil
		})

	addTool(s, "update_integration", "Update an integration's name, key, description or provider fields. Omitting key keeps the stored key.",
		annotate(destructive, "Update integration"), nil,
		func(ctx context.Context, c *Caller, in updateIntegrationIn) (any, error) {
			conf, ae := mergeConfigurations(in.providerArgs.fold(), in.Configurations)
			if ae != nil {
				return nil, ae
			}
			r := updateReq{Configurations: conf}
			if in.Name != "" {
				r.Name = &in.Name
			}
			if in.Key != "" {
				r.Key = &in.Key
			}
			if in.Description != "" {
				r.Description = &in.Description
			}
			it, ae := s.updateIntegration(ctx, c, in.Slug, r)
			if ae != nil {
				return nil, ae
			}
			return s.toDetail(ctx, it), nil
		})

	addTool(s, "delete_integration", "Delete an integration and its stored secrets, models and workspace settings.",
		annotate(destructive, "Delete integration"), nil,
		func(ctx context.Context, c *Caller, in slugIn) (any, error) {
			it, ae := s.deleteIntegration(ctx, c, in.Slug)
			if ae != nil {
				return nil, ae
			}
			return map[string]any{"id": it.ID, "slug": it.Slug, "deleted": true}, nil
		})

	addTool(s, "list_integration_models", "List the model settings of an integration.",
		annotate(readOnly, "List integration models"), pageLimits,
		func(ctx context.Context, c *Caller, in pagedSlugIn) (any, error) {
			return listSub(ctx, s, c, in.Slug, pageStr(in.CurrentPage), pageStr(in.PageSize), s.store.Models)
		})

	addTool(s, "update_integration_models", "Add or update models of an integration; custom header values are stored encrypted.",
		annotate(destructive, "Update integration models"), nil,
		func(ctx context.Context, c *Caller, in updateModelsIn) (any, error) {
			r := modelsReq{AllowAllModels: in.AllowAllModels, Models: []modelIn{}}
			for _, m := range in.Models {
				mi := modelIn{Slug: m.Slug, Enabled: ptr(m.Enabled), ModelName: m.ModelName, IsCustom: m.IsCustom,
					IsFinetune: m.IsFinetune, BaseModelSlug: m.BaseModelSlug}
				if m.Configurations != nil {
					mi.Configurations = map[string]any{}
					if m.Configurations.CustomHost != "" {
						mi.Configurations["custom_host"] = m.Configurations.CustomHost
					}
					if len(m.Configurations.CustomHeaders) > 0 {
						h := map[string]any{}
						for k, v := range m.Configurations.CustomHeaders {
							h[k] = v
						}
						mi.Configurations["custom_headers"] = h
					}
				}
				r.Models = append(r.Models, mi)
			}
			n, ae := s.putModels(ctx, c, in.Slug, r)
			if ae != nil {
				return nil, ae
			}
			return map[string]any{"updated": n}, nil
		})

	addTool(s, "delete_integration_model", "Remove one model from an integration.",
		annotate(destructive, "Delete integration model"), nil,
		func(ctx context.Context, c *Caller, in deleteModelIn) (any, error) {
			it, ae := s.changeable(ctx, c, in.Slug)
			if ae != nil {
				return nil, ae
			}
			n, err := s.store.DeleteModels(ctx, it.ID, []string{in.ModelSlug})
			if err != nil {
				return nil, s.storeErr(c, err, "integration")
			}
			if n == 0 {
				return nil, errNotFound("model")
			}
			return map[string]any{"deleted": n}, nil
		})

	addTool(s, "list_integration_workspaces", "List which workspaces may use an integration, with their limits.",
		annotate(readOnly, "List integration workspaces"), pageLimits,
		func(ctx context.Context, c *Caller, in pagedSlugIn) (any, error) {
			return listSub(ctx, s, c, in.Slug, pageStr(in.CurrentPage), pageStr(in.PageSize), s.store.Workspaces)
		})

	addTool(s, "update_integration_workspaces", "Grant or revoke workspace access to an integration, with credit and rate limits.",
		annotate(destructive, "Update integration workspaces"), func(p map[string]*jsonschema.Schema) {
			if w := p["workspaces"]; w != nil && w.Items != nil {
				if a := w.Items.Properties["alert_threshold"]; a != nil {
					a.Minimum, a.Maximum = ptr(0.0), ptr(100.0)
				}
				if a := w.Items.Properties["credit_limit"]; a != nil {
					a.Minimum = ptr(0.0)
				}
				if a := w.Items.Properties["rate_limit_rpm"]; a != nil {
					a.Minimum = ptr(0.0)
				}
			}
		},
		func(ctx context.Context, c *Caller, in updateWorkspacesIn) (any, error) {
			r := workspacesReq{OverrideExistingWorkspaceAccess: in.OverrideExistingWorkspaceAccess, Workspaces: []workspaceIn{}}
			if in.GlobalWorkspaceAccessEnabled != nil {
				r.GlobalWorkspaceAccess = map[string]any{"enabled": *in.GlobalWorkspaceAccessEnabled}
			}
			for _, w := range in.Workspaces {
				wi := workspaceIn{ID: w.ID, Enabled: ptr(w.Enabled)}
				if w.CreditLimit != nil || w.AlertThreshold != nil {
					u := map[string]any{"type": "cost"}
					if w.CreditLimit != nil {
						u["credit_limit"] = *w.CreditLimit
					}
					if w.AlertThreshold != nil {
						u["alert_threshold"] = *w.AlertThreshold
					}
					wi.UsageLimits = []any{u}
				}
				if w.RateLimitRPM != nil {
					wi.RateLimits = []any{map[string]any{"type": "requests", "unit": "rpm", "value": *w.RateLimitRPM}}
				}
				r.Workspaces = append(r.Workspaces, wi)
			}
			n, ae := s.putWorkspaces(ctx, c, in.Slug, r)
			if ae != nil {
				return nil, ae
			}
			return map[string]any{"updated": n}, nil
		})

	addTool(s, "list_providers", "List the provider catalog: keys, required, secret and URL fields, and where to find credentials.",
		annotate(readOnly, "List providers"), nil,
		func(ctx context.Context, c *Caller, _ noArgs) (any, error) {
			all := s.catalog.All()
			return listResp{Object: "list", Total: len(all), Data: all}, nil
		})

	addTool(s, "test_integration", "Check that the integration's provider endpoint answers (public addresses only) and that its stored secrets decrypt.",
		annotate(&mcp.ToolAnnotations{ReadOnlyHint: true, OpenWorldHint: ptr(true)}, "Test integration"), nil,
		func(ctx context.Context, c *Caller, in slugIn) (any, error) {
			return s.testIntegration(ctx, c, in.Slug)
		})
	return s.mcp
}

func (s *Server) mcpHandler() http.Handler {
	return mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s.mcp }, &mcp.StreamableHTTPOptions{
		// Stateless: every POST stands alone, so the proxy in front needs no session
		// affinity and the request context (with the caller) reaches the tool handler.
		Stateless:    true,
		JSONResponse: true,
		Logger:       s.quietLogger(),
		// Every request is authenticated before it gets here (service key or signed
		// assertion), which a DNS-rebinding page cannot produce; the proxy may forward
		// with its own Host header.
		DisableLocalhostProtection: true,
		MaxRequestBodyBytes:        maxBody,
	})
}

// quietLogger passes the SDK's warnings and errors on but not its per-request session
// chatter (stateless mode connects and disconnects a session on every POST).
func (s *Server) quietLogger() *slog.Logger {
	return slog.New(minLevel{s.logger.Handler(), slog.LevelWarn})
}

type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(a), h.min}
}
func (h minLevel) WithGroup(n string) slog.Handler { return minLevel{h.Handler.WithGroup(n), h.min} }
