package policies

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

func TestStatusReportsLoadTimeAndTheLastRefusedReloadWithTheCompilerMessage(t *testing.T) {
	dir := t.TempDir()
	live := filepath.Join(dir, "live.rego")
	cand := filepath.Join(dir, "candidate.rego")
	writeFile(t, live, allowPolicy)
	writeFile(t, cand, denyPolicy)
	e, err := New(context.Background(), Options{Path: live, ShadowPath: cand})
	if err != nil {
		t.Fatal(err)
	}
	st := e.Status()
	if st.Revision != e.Revision() || st.LoadedAt.IsZero() || st.ShadowRevision != e.ShadowRevision() || st.LastRefused != nil {
		t.Fatalf("fresh status %+v", st)
	}
	first := st.LoadedAt
	writeFile(t, live, brokenRego)
	if e.Reload(context.Background()) == nil {
		t.Fatal("a broken policy reloaded")
	}
	st = e.Status()
	if st.LastRefused == nil || !strings.Contains(st.LastRefused.Error, "live.rego:") || st.ReloadFailures != 1 {
		t.Fatalf("after a refused reload: %+v", st.LastRefused)
	}
	if st.LoadedAt != first || st.Revision != e.Revision() {
		t.Errorf("a refused reload changed the live revision's load time or revision")
	}
	writeFile(t, live, denyPolicy)
	if err := e.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	prevRev := st.Revision
	st = e.Status()
	if st.Revision == prevRev || st.LoadedAt.Before(first) || st.LastRefused == nil {
		t.Errorf("after a good reload: revision %s (was %s), loaded %v (first %v), last refusal kept: %v", st.Revision, prevRev, st.LoadedAt, first, st.LastRefused)
	}
	if st.LastShadowRefused != nil {
		t.Errorf("shadow refusal reported without one: %+v", st.LastShadowRefused)
	}
}
