package backend

import (
	"net/http"
	"strings"
)

func (s *Server) handleProviders(w http.ResponseWriter, r *http.Request) {
	all := s.catalog.All()
	writeJSON(w, http.StatusOK, listResp{Object: "list", Total: len(all), Data: all})
}

func (s *Server) handleProvider(w http.ResponseWriter, r *http.Request) {
	p, ok := s.catalog.Get(r.PathValue("key"))
	if !ok {
		s.writeErr(w, r, errNotFound("provider"))
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	its, total, ae := s.listIntegrations(r.Context(), callerFrom(r.Context()), listReq{
		CurrentPage: q.Get("current_page"), PageSize: q.Get("page_size"), WorkspaceID: q.Get("workspace_id"),
		Type: q.Get("type"), Provider: q.Get("ai_provider_id")})
	if ae != nil {
		s.writeErr(w, r, ae)
		return
	}
	writeJSON(w, http.StatusOK, listResp{Object: "list", Total: total, Data: toItems(its)})
}

func (s *Server) handleCreate(w http.ResponseWriter, r *http.Request) {
	var req createReq
	if ae := decodeStrict(r, &req); ae != nil {
		s.writeErr(w, r, ae)
		return
	}
	it, ae := s.createIntegration(r.Context(), callerFrom(r.Context()), req)
	if ae != nil {
		s.writeErr(w, r, ae)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": it.ID, "slug": it.Slug})
}

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request) {
	it, ae := s.getIntegration(r.Context(), callerFrom(r.Context()), r.PathValue("slug"))
	if ae != nil {
		s.writeErr(w, r, ae)
		return
	}
	writeJSON(w, http.StatusOK, s.toDetail(r.Context(), it))
}

func (s *Server) handleScope(w http.ResponseWriter, r *http.Request) {
	c := callerFrom(r.Context())
	it, ae := s.getIntegration(r.Context(), c, r.PathValue("slug"))
	if ae != nil {
		s.writeErr(w, r, ae)
		return
	}
	sc, err := s.toScope(r.Context(), it)
	if err != nil {
		s.writeErr(w, r, s.storeErr(c, err, "integration"))
		return
	}
	writeJSON(w, http.StatusOK, sc)
}

func (s *Server) handleUpdate(w http.ResponseWriter, r *http.Request) {
	var req updateReq
	if ae := decodeStrict(r, &req); ae != nil {
		s.writeErr(w, r, ae)
		return
	}
	it, ae := s.updateIntegration(r.Context(), callerFrom(r.Context()), r.PathValue("slug"), req)
	if ae != nil {
		s.writeErr(w, r, ae)
		return
	}
	writeJSON(w, http.StatusOK, s.toDetail(r.Context(), it))
}

func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request) {
	it, ae := s.deleteIntegration(r.Context(), callerFrom(r.Context()), r.PathValue("slug"))
	if ae != nil {
		s.writeErr(w, r, ae)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": it.ID, "slug": it.Slug, "object": "integration", "deleted": true})
}

func (s *Server) handleListModels(w http.ResponseWriter, r *http.Request) {
	handleListSub(s, w, r, s.store.Models)
}

func (s *Server) handleListWorkspaces(w http.ResponseWriter, r *http.Request) {
	handleListSub(s, w, r, s.store.Workspaces)
}

func handleListSub[T any](s *Server, w http.ResponseWriter, r *http.Request, fetch subLister[T]) {
	q := r.URL.Query()
	res, ae := listSub(r.Context(), s, callerFrom(r.Context()), r.PathValue("slug"), q.Get("current_page"), q.Get("page_size"), fetch)
	if ae != nil {
		s.writeErr(w, r, ae)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) handlePutModels(w http.ResponseWriter, r *http.Request) {
	var req modelsReq
	if ae := decodeStrict(r, &req); ae != nil {
		s.writeErr(w, r, ae)
		return
	}
	n, ae := s.putModels(r.Context(), callerFrom(r.Context()), r.PathValue("slug"), req)
	if ae != nil {
		s.writeErr(w, r, ae)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "integration_models", "updated": n})
}

func (s *Server) handleDeleteModels(w http.ResponseWriter, r *http.Request) {
	c := callerFrom(r.Context())
	var slugs []string
	for _, sl := range strings.Split(r.URL.Query().Get("slugs"), ",") {
		if sl = strings.TrimSpace(sl); sl != "" {
			slugs = append(slugs, sl)
		}
	}
	if len(slugs) == 0 || len(slugs) > 500 {
		s.writeErr(w, r, errField(http.StatusBadRequest, "validation_error", "slugs", "is required: a comma-separated list of 1-500 model slugs"))
		return
	}
	n, ae := s.deleteModels(r, c, slugs)
	if ae != nil {
		s.writeErr(w, r, ae)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "integration_models", "deleted": n})
}

func (s *Server) deleteModels(r *http.Request, c *Caller, slugs []string) (int, error) {
	it, ae := s.changeable(r.Context(), c, r.PathValue("slug"))
	if ae != nil {
		return 0, ae
	}
	n, err := s.store.DeleteModels(r.Context(), it.ID, slugs)
	if err != nil {
		return 0, s.storeErr(c, err, "integration")
	}
	return n, nil
}

func (s *Server) handlePutWorkspaces(w http.ResponseWriter, r *http.Request) {
	var req workspacesReq
	if ae := decodeStrict(r, &req); ae != nil {
		s.writeErr(w, r, ae)
		return
	}
	n, ae := s.putWorkspaces(r.Context(), callerFrom(r.Context()), r.PathValue("slug"), req)
	if ae != nil {
		s.writeErr(w, r, ae)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "integration_workspaces", "updated": n})
}

func (s *Server) handleTest(w http.ResponseWriter, r *http.Request) {
	res, ae := s.testIntegration(r.Context(), callerFrom(r.Context()), r.PathValue("slug"))
	if ae != nil {
		s.writeErr(w, r, ae)
		return
	}
	writeJSON(w, http.StatusOK, res)
}
