package backend

import (
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/portcullis/portcullis/backend/store"
)

// Seed 003 (POST /ai/llm) and seed 004 (/integrations/credentials) are other shapes
// over the same integration resource; they are translated to createReq/updateReq so
// validation, sealing and scoping are the ones the Portkey surface uses.

func (s *Server) seedRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /ai/llm", s.authed(s.handleAILLM))
	mux.HandleFunc("POST /ai/llm/{id}/validate", s.authed(s.handleAILLMValidate))
	mux.HandleFunc("POST /integrations/credentials", s.authed(s.handleCredCreate))
	mux.HandleFunc("GET /integrations/credentials", s.authed(s.handleCredList))
	mux.HandleFunc("GET /integrations/credentials/{id}", s.authed(s.handleCredGet))
	mux.HandleFunc("PATCH /integrations/credentials/{id}", s.authed(s.handleCredPatch))
	mux.HandleFunc("DELETE /integrations/credentials/{id}", s.authed(s.handleCredDelete))
	mux.HandleFunc("POST /integrations/credentials/{id}/test-connection", s.authed(s.handleCredTest))
	mux.HandleFunc("POST /integrations/{provider}/test-connection", s.authed(s.handleProviderTest))
}

// --- seed 003 ---

type aiLLMReq struct {
	Name        string  `json:"name"`
	AIType      string  `json:"aiType"`
	Endpoint    string  `json:"endpoint"`
	Key         *string `json:"key,omitempty"`
	Secret      string  `json:"secret"`
	WorkspaceID string  `json:"workspaceId"`
}

var aiTypes = []string{"OPENAI", "GOOGLE", "ANTHROPIC", "AWS", "OTHER"}

var bedrockHostRe = regexp.MustCompile(`^(?:bedrock(?:-runtime)?(?:-fips)?)\.([a-z]{2}(?:-gov)?-[a-z]+-\d)\.amazonaws\.com$`)

func aiLLMErr(w http.ResponseWriter, err error) {
	ae := asAPIError(err)
	// Seed 003's error form is {success:false, message}; field is our addition.
	writeJSON(w, ae.Status, map[string]any{"success": false, "message": ae.Message, "field": ae.Field})
}

func (s *Server) handleAILLM(w http.ResponseWriter, r *http.Request) {
	c := callerFrom(r.Context())
	var req aiLLMReq
	if ae := decodeStrict(r, &req); ae != nil {
		aiLLMErr(w, ae)
		return
	}
	var p problems
	checkName(&p, "name", req.Name)
	if !slices.Contains(aiTypes, req.AIType) {
		p.add("aiType", "must be one of %s", strings.Join(aiTypes, ", "))
	}
	if !isHTTPURL(req.Endpoint) {
		p.add("endpoint", "must be an absolute http or https URL")
	}
	if req.Secret == "" {
		p.add("secret", "is required")
	}
	if req.WorkspaceID == "" {
		p.add("workspaceId", "is required")
	} else if !wsRe.MatchString(req.WorkspaceID) {
		p.add("workspaceId", "must be 1-128 letters, digits or _ . : -")
	}
	if ae := p.err(); ae != nil {
		aiLLMErr(w, ae)
		return
	}
	if c.Workspace != "" && c.Workspace != req.WorkspaceID {
		aiLLMErr(w, errField(http.StatusForbidden, "forbidden", "workspaceId", "caller has no permission in this workspace"))
		return
	}
	prov, _ := s.catalog.ByAlias(req.AIType)
	if prov == nil {
		aiLLMErr(w, errField(http.StatusBadRequest, "validation_error", "aiType", "no catalog provider has alias "+req.AIType))
		return
	}
	cr := createReq{Name: req.Name, AIProviderID: prov.Key, WorkspaceID: req.WorkspaceID,
		Configurations: map[string]any{"custom_host": req.Endpoint}}
	if req.AIType == "AWS" {
		// Bedrock needs a region; seed 003 carries it only inside the endpoint host.
		m := bedrockHostRe.FindStringSubmatch(hostOf(req.Endpoint))
		if m == nil {
			aiLLMErr(w, errField(http.StatusBadRequest, "validation_error", "endpoint",
				"for AWS must be a Bedrock endpoint naming its region, e.g. https://bedrock-runtime.us-east-1.amazonaws.com"))
			return
		}
		cr.Configurations["aws_region"] = m[1]
		cr.Configurations["aws_secret_access_key"] = req.Secret
		if req.Key != nil {
			cr.Configurations["aws_access_key_id"] = *req.Key
		}
	} else {
		sec := req.Secret
		cr.Key = &sec
		if req.Key != nil && *req.Key != "" {
			cr.Configurations["access_key"] = *req.Key
			cr.forceSecret = map[string]bool{"access_key": true}
		}
	}
	it, err := s.createIntegration(r.Context(), c, cr)
	if err != nil {
		ae := asAPIError(err)
		if ae.Status == http.StatusInternalServerError {
			ae.Message = "Failed to create configuration"
		}
		aiLLMErr(w, ae)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"success": true, "aiLlmId": it.ID,
		"message": "AI LLM configuration created successfully"})
}

func hostOf(raw string) string {
	if i := strings.Index(raw, "://"); i >= 0 {
		raw = raw[i+3:]
	}
	if i := strings.IndexAny(raw, "/?#"); i >= 0 {
		raw = raw[:i]
	}
	if i := strings.LastIndexByte(raw, ':'); i >= 0 {
		raw = raw[:i]
	}
	return strings.ToLower(raw)
}

func (s *Server) handleAILLMValidate(w http.ResponseWriter, r *http.Request) {
	res, ae := s.testIntegration(r.Context(), callerFrom(r.Context()), r.PathValue("id"))
	if ae != nil {
		aiLLMErr(w, ae)
		return
	}
	res["success"] = res["ok"]
	res["message"] = "endpoint reachable"
	writeJSON(w, http.StatusOK, res)
}

// --- seed 004 ---

type credCreateReq struct {
	Name        string         `json:"name"`
	Provider    string         `json:"provider"`
	AuthType    string         `json:"auth_type"`
	Description string         `json:"description,omitempty"`
	WorkspaceID string         `json:"workspace_id,omitempty"`
	Config      map[string]any `json:"config,omitempty"`
	Credentials map[string]any `json:"credentials"`
}

type credPatchReq struct {
	Name        *string        `json:"name,omitempty"`
	Description *string        `json:"description,omitempty"`
	Config      map[string]any `json:"config,omitempty"`
	Credentials map[string]any `json:"credentials,omitempty"`
}

// credProviderAlias maps path spellings of seed 004 (postgres) to catalog keys.
var credProviderAlias = map[string]string{"postgres": "postgresql"}

// mergeCreds folds credentials into configurations, marking each credential secret.
// "api_key" becomes the integration key.
func mergeCreds(p *problems, config, creds map[string]any) (map[string]any, map[string]bool, *string) {
	conf := map[string]any{}
	for k, v := range config {
		conf[k] = v
	}
	force := map[string]bool{}
	var key *string
	for k, v := range creds {
		if k == "api_key" {
			if sv, ok := v.(string); ok {
				key = &sv
				continue
			}
			p.add("credentials.api_key", "must be a string")
			continue
		}
		if _, dup := conf[k]; dup {
			p.add("credentials."+k, "is also given in config; a field is either a credential or config")
		}
		conf[k] = v
		force[k] = true
	}
	return conf, force, key
}

type credView struct {
	ID               string         `json:"id"`
	Name             string         `json:"name"`
	Provider         string         `json:"provider"`
	AuthType         string         `json:"auth_type"`
	Description      string         `json:"description"`
	OrganizationID   string         `json:"organization_id"`
	WorkspaceID      string         `json:"workspace_id,omitempty"`
	Config           map[string]any `json:"config"`
	CredentialFields []string       `json:"credential_fields"`
	Status           string         `json:"status"`
	CreatedBy        string         `json:"created_by,omitempty"`
	CreatedAt        string         `json:"created_at"`
	UpdatedAt        string         `json:"updated_at"`
}

// toCredView never includes secret material, not even masked: seed 004 credentials
// are not retrievable after creation. It names which credential fields are set.
func toCredView(it *store.Integration) credView {
	cfg := map[string]any{}
	var fields []string
	for k, v := range it.Configurations {
		if strings.HasPrefix(k, maskedPrefix) {
			fields = append(fields, strings.TrimPrefix(k, maskedPrefix))
			continue
		}
		cfg[k] = v
	}
	if it.MaskedKey != "" {
		fields = append(fields, "api_key")
	}
	sort.Strings(fields)
	if fields == nil {
		fields = []string{}
	}
	return credView{ID: it.ID, Name: it.Name, Provider: it.Provider, AuthType: it.AuthType, Description: it.Description,
		OrganizationID: it.Org, WorkspaceID: it.WorkspaceID, Config: cfg, CredentialFields: fields, Status: it.Status,
		CreatedBy: it.CreatedBy, CreatedAt: rfc3339(it.CreatedAt), UpdatedAt: rfc3339(it.UpdatedAt)}
}

func (s *Server) handleCredCreate(w http.ResponseWriter, r *http.Request) {
	var req credCreateReq
	if ae := decodeStrict(r, &req); ae != nil {
		s.writeErr(w, r, ae)
		return
	}
	var p problems
	if req.AuthType == "" {
		p.add("auth_type", "is required (api_key, oauth2, user_password, key_file...)")
	}
	if req.Credentials == nil {
		p.add("credentials", "is required (an object of secret fields)")
	}
	conf, force, key := mergeCreds(&p, req.Config, req.Credentials)
	if ae := p.err(); ae != nil {
		s.writeErr(w, r, ae)
		return
	}
	prov := req.Provider
	if a, ok := credProviderAlias[prov]; ok {
		prov = a
	}
	it, err := s.createIntegration(r.Context(), callerFrom(r.Context()), createReq{Name: req.Name, AIProviderID: prov,
		AuthType: req.AuthType, Description: req.Description, WorkspaceID: req.WorkspaceID, Configurations: conf,
		Key: key, forceSecret: force})
	if err != nil {
		ae := asAPIError(err)
		if ae.Field == "ai_provider_id" {
			ae.Field, ae.Message = "provider", strings.Replace(ae.Message, "ai_provider_id", "provider", 1)
		}
		s.writeErr(w, r, ae)
		return
	}
	writeJSON(w, http.StatusCreated, toCredView(it))
}

func (s *Server) handleCredList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	its, total, ae := s.listIntegrations(r.Context(), callerFrom(r.Context()), listReq{CurrentPage: q.Get("current_page"),
		PageSize: q.Get("page_size"), Provider: q.Get("provider"), ProviderField: "provider"})
	if ae != nil {
		s.writeErr(w, r, ae)
		return
	}
	out := make([]credView, len(its))
	for i := range its {
		out[i] = toCredView(&its[i])
	}
	writeJSON(w, http.StatusOK, listResp{Object: "list", Total: total, Data: out})
}

func (s *Server) handleCredGet(w http.ResponseWriter, r *http.Request) {
	it, ae := s.getIntegration(r.Context(), callerFrom(r.Context()), r.PathValue("id"))
	if ae != nil {
		s.writeErr(w, r, ae)
		return
	}
	writeJSON(w, http.StatusOK, toCredView(it))
}

func (s *Server) handleCredPatch(w http.ResponseWriter, r *http.Request) {
	var req credPatchReq
	if ae := decodeStrict(r, &req); ae != nil {
		s.writeErr(w, r, ae)
		return
	}
	var p problems
	conf, force, key := mergeCreds(&p, req.Config, req.Credentials)
	if ae := p.err(); ae != nil {
		s.writeErr(w, r, ae)
		return
	}
	if len(conf) == 0 {
		conf = nil
	}
	it, ae := s.updateIntegration(r.Context(), callerFrom(r.Context()), r.PathValue("id"), updateReq{Name: req.Name,
		Description: req.Description, Configurations: conf, Key: key, forceSecret: force})
	if ae != nil {
		s.writeErr(w, r, ae)
		return
	}
	writeJSON(w, http.StatusOK, toCredView(it))
}

func (s *Server) handleCredDelete(w http.ResponseWriter, r *http.Request) {
	it, ae := s.deleteIntegration(r.Context(), callerFrom(r.Context()), r.PathValue("id"))
	if ae != nil {
		s.writeErr(w, r, ae)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": it.ID, "deleted": true})
}

func (s *Server) handleCredTest(w http.ResponseWriter, r *http.Request) {
	res, ae := s.testIntegration(r.Context(), callerFrom(r.Context()), r.PathValue("id"))
	if ae != nil {
		s.writeErr(w, r, ae)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

type providerTestReq struct {
	AuthType    string         `json:"auth_type,omitempty"`
	Config      map[string]any `json:"config"`
	Credentials map[string]any `json:"credentials,omitempty"`
}

// handleProviderTest checks connectivity before credentials are saved. Credentials
// are accepted for shape compatibility and dropped: nothing is stored.
func (s *Server) handleProviderTest(w http.ResponseWriter, r *http.Request) {
	var req providerTestReq
	if ae := decodeStrict(r, &req); ae != nil {
		s.writeErr(w, r, ae)
		return
	}
	key := r.PathValue("provider")
	if a, ok := credProviderAlias[key]; ok {
		key = a
	}
	var p problems
	prov := s.provider(&p, "provider", key)
	if prov != nil {
		checkConfigurations(&p, prov, req.Config)
	}
	if ae := p.err(); ae != nil {
		s.writeErr(w, r, ae)
		return
	}
	res, err := s.probe(r.Context(), prov, req.Config)
	if err != nil {
		ae := asAPIError(err)
		ae.Field = strings.Replace(ae.Field, "configurations.", "config.", 1)
		ae.Message = strings.Replace(ae.Message, "configurations.", "config.", 1)
		s.writeErr(w, r, ae)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": res.Reachable, "provider": prov.Key, "target": res.Target,
		"status_code": res.StatusCode, "latency_ms": res.LatencyMS})
}
