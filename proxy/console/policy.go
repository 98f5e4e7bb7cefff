package console

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/policies"
	"github.com/portcullis/portcullis/policies/replay"
	"github.com/portcullis/portcullis/proxy/apierror"
)

// maxCandidateBytes bounds a pasted candidate policy.
const maxCandidateBytes = 256 << 10

// policyStatus is GET /console/api/policy: the live revision and load time, the last
// refused reload with the compiler's message, and the shadow policy's latest differences.
func (c *Console) policyStatus(ctx *fiber.Ctx) error {
	s, err := c.requireAuditor(ctx)
	if err != nil {
		return err
	}
	st := c.d.Policy.Status()
	diffs := []audit.Event{}
	if st.ShadowRevision != "" {
		page, err := c.d.Audit.Query(ctx.UserContext(), audit.Filter{Org: s.caller.Org, Kind: string(audit.KindShadow), Limit: 50})
		if err != nil {
			return err
		}
		diffs = page.Events
	}
	return ctx.JSON(fiber.Map{"data": fiber.Map{"status": st, "shadow_differences": diffs,
		"replay": c.d.Input != nil}})
}

// policyInput is GET /console/api/policy/input?request_id=X: the policy input of that
// request's decision row, rebuilt, for the playground.
func (c *Console) policyInput(ctx *fiber.Ctx) error {
	s, err := c.requireAuditor(ctx)
	if err != nil {
		return err
	}
	if c.d.Input == nil {
		return apierror.NotFound("loading inputs from the trail is not enabled")
	}
	rid := ctx.Query("request_id")
	if rid == "" {
		return apierror.BadRequest("invalid_request", "request_id", "request_id: required")
	}
	page, err := c.d.Audit.Query(ctx.UserContext(), audit.Filter{Org: s.caller.Org, RequestID: rid, Kind: string(audit.KindDecision), Limit: 50})
	if err != nil {
		return err
	}
	for i := range page.Events {
		if in, ok := c.d.Input(&page.Events[i]); ok {
			return ctx.JSON(fiber.Map{"data": fiber.Map{"input": in, "seq": page.Events[i].Seq, "recorded": page.Events[i].Decision}})
		}
	}
	return apierror.NotFound("request_id: no policy decision recorded for this request in your org")
}

// policyEval is POST /console/api/policy/eval {"input": {...}, "candidate": "rego"}: the
// live policy's decision and, with a candidate, the candidate's.
func (c *Console) policyEval(ctx *fiber.Ctx) error {
	if _, err := c.requireAuditor(ctx); err != nil {
		return err
	}
	var body struct {
		Input     json.RawMessage `json:"input"`
		Candidate string          `json:"candidate"`
	}
	if _, err := objectBody(ctx.Body(), "input", "candidate"); err != nil {
		return err
	}
	if err := json.Unmarshal(ctx.Body(), &body); err != nil {
		return apierror.BadRequest("invalid_request", "body", "body: %v", err)
	}
	if len(bytes.TrimSpace(body.Input)) == 0 || bytes.Equal(bytes.TrimSpace(body.Input), []byte("null")) {
		return apierror.BadRequest("invalid_request", "input", "input: required (a policy input object)")
	}
	var in policies.Input
	dec := json.NewDecoder(bytes.NewReader(body.Input))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return apierror.BadRequest("invalid_request", "input", "input: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	if in.Mode == "" {
		in.Mode = "call"
	}
	ectx, cancel := context.WithTimeout(ctx.UserContext(), 10*time.Second)
	defer cancel()
	out := fiber.Map{"live": c.d.Policy.Decide(ectx, &in)}
	if strings.TrimSpace(body.Candidate) != "" {
		cand, err := c.candidate(ectx, body.Candidate)
		if err != nil {
			return err
		}
		cd := cand.Decide(ectx, &in)
		out["candidate"] = cd
		out["differs"] = policies.ShadowDiffers(out["live"].(policies.Decision), cd)
	}
	return ctx.JSON(fiber.Map{"data": out})
}

func (c *Console) candidate(ctx context.Context, src string) (Decider, error) {
	if len(src) > maxCandidateBytes {
		return nil, apierror.BadRequest("invalid_request", "candidate", "candidate: longer than %d bytes", maxCandidateBytes)
	}
	d, err := c.d.Candidate(ctx, src)
	if err != nil {
		return nil, apierror.BadRequest("invalid_policy", "candidate", "candidate: %s", strings.TrimPrefix(err.Error(), "policies: "))
	}
	return d, nil
}

// policyReplay is POST /console/api/policy/replay {"candidate": "rego", "since": "24h"}:
// the candidate against the org's recorded trail (see package replay).
func (c *Console) policyReplay(ctx *fiber.Ctx) error {
	s, err := c.requireAuditor(ctx)
	if err != nil {
		return err
	}
	if c.d.Input == nil {
		return apierror.NotFound("replay is not enabled")
	}
	body, err := objectBody(ctx.Body(), "candidate", "since")
	if err != nil {
		return err
	}
	src, err := stringField(body, "candidate")
	if err != nil {
		return err
	}
	if strings.TrimSpace(src) == "" {
		return apierror.BadRequest("invalid_request", "candidate", "candidate: required (the policy to replay)")
	}
	sinceStr, err := stringField(body, "since")
	if err != nil {
		return err
	}
	if sinceStr == "" {
		sinceStr = "24h"
	}
	since, perr := time.ParseDuration(sinceStr)
	if perr != nil || since <= 0 || since > 90*24*time.Hour {
		return apierror.BadRequest("invalid_request", "since", "since: want a duration from 1s to 2160h, like 24h, got %s", quoteShort(sinceStr))
	}
	rctx, cancel := context.WithTimeout(ctx.UserContext(), 2*time.Minute)
	defer cancel()
	cand, err := c.candidate(rctx, src)
	if err != nil {
		return err
	}
	now := c.d.Now().UTC()
	rep, err := replay.Run(rctx, c.d.Audit, c.d.Input, c.d.Policy, cand, replay.Options{Since: now.Add(-since), Until: now.Add(time.Second), Org: s.caller.Org, MaxRows: 20000})
	if err != nil {
		return err
	}
	c.record(ctx, "replay", "allow", "console: policy replay over "+sinceStr)
	return ctx.JSON(fiber.Map{"data": fiber.Map{"report": rep, "candidate_revision": cand.Revision(), "live_revision": c.d.Policy.Status().Revision}})
}
