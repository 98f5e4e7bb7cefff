package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPolicyReplayReportsWhatAStricterPolicyWouldChange(t *testing.T) {
	url, dir, _ := startServe(t)
	agent := mintToken(t, dir, "--sub", "agent-1", "--org", "acme", "--roles", "agent")
	restGet(t, url+"/v1/integrations", agent)
	restGet(t, url+"/v1/integrations", agent)
	restGet(t, url+"/v1/providers", agent)
	stricter := filepath.Join(t.TempDir(), "stricter.rego")
	if err := os.WriteFile(stricter, []byte(`package portcullis
import rego.v1
default decision := {"action": "allow", "reason": "reads"}
decision := {"action": "deny", "reason": "no listing integrations"} if input.tool == "list_integrations"
`), 0o600); err != nil {
		t.Fatal(err)
	}
	var report struct {
		Report struct {
			Replayed, Changed int
			ByTool            []struct {
				Key            string
				Changed, Total int
			} `json:"by_tool"`
			Examples []struct {
				Tool, Live, Candidate string
			}
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		var out, errb bytes.Buffer
		if code := runPolicy(context.Background(), []string{"replay", "--data-dir", dir, "--policy", stricter, "--since", "1h", "--json"}, &out, &errb); code != 0 {
			t.Fatalf("replay: exit %d: %s", code, errb.String())
		}
		if err := json.Unmarshal(out.Bytes(), &report); err != nil {
			t.Fatalf("replay --json: %v\n%s", err, out.String())
		}
		if report.Report.Replayed >= 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond) // rows reach the database shortly after the calls
	}
	r := report.Report
	if r.Replayed != 3 || r.Changed != 2 {
		t.Fatalf("replayed %d changed %d, want 3 and 2", r.Replayed, r.Changed)
	}
	if len(r.ByTool) != 1 || r.ByTool[0].Key != "list_integrations" || r.ByTool[0].Changed != 2 || r.ByTool[0].Total != 2 {
		t.Errorf("by tool %+v", r.ByTool)
	}
	if len(r.Examples) == 0 || r.Examples[0].Live != "allow" || r.Examples[0].Candidate != "deny" {
		t.Errorf("examples %+v", r.Examples)
	}
	var out, errb bytes.Buffer
	runPolicy(context.Background(), []string{"replay", "--data-dir", dir, "--policy", stricter}, &out, &errb)
	if !strings.Contains(out.String(), "2 would be decided differently") || !strings.Contains(out.String(), "allow -> deny") {
		t.Errorf("text report:\n%s%s", out.String(), errb.String())
	}
}

func TestPolicyReplayNeedsACandidate(t *testing.T) {
	var out, errb bytes.Buffer
	if code := runPolicy(context.Background(), []string{"replay", "--since", "1h"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "--policy: required") {
		t.Errorf("exit %d: %s", code, errb.String())
	}
}
