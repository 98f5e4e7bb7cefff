package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/portcullis/portcullis/policies"
	"github.com/portcullis/portcullis/proxy/apierror"
	"github.com/portcullis/portcullis/proxy/strictjson"
)

// JSON-RPC error codes.
const (
	rpcParseError     = -32700
	rpcInvalidRequest = -32600
	rpcInvalidParams  = -32602
	// rpcHeaderMismatch is the MCP code for headers that disagree with the body.
	rpcHeaderMismatch = -32020
	// rpcRefused answers a request other than tools/call that the gateway refused
	// (policy, rate limit, approval). It is in the implementation-defined range
	// -32000..-32019, clear of the codes SDKs already give meanings there (-32000..-32005:
	// connection closed, timeout, client or server closing, ...); error.data carries the
	// same {code, message, request_id, ...} object a refused tools/call carries in
	// structuredContent.error.
	rpcRefused = -32010
)

// lightMethods pass with the checks every request gets (authentication, well-formed JSON)
// and no policy decision: they read nothing and change nothing. server/discover is the
// 2026-07-28 protocol's handshake (SEP-2575), initialize's successor: its answer holds
// versions, capabilities and instructions, never a tool list.
var lightMethods = map[string]bool{
	"initialize": true, "server/discover": true, "ping": true, "tools/list": true, "resources/list": true,
	"resources/templates/list": true, "prompts/list": true, "logging/setLevel": true,
}

// rpcMessage is one parsed JSON-RPC message of a request body.
type rpcMessage struct {
	id       any
	hasID    bool
	method   string
	params   map[string]any
	tool     string         // for tools/call, and "mcp:<method>" for other decided methods
	args     map[string]any // tools/call arguments
	decide   bool
	progress any // params._meta.progressToken
}

func rpcErrorBody(id any, code int, msg string) []byte {
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "error": map[string]any{"code": code, "message": msg}})
	return b
}

func (s *Server) rpcError(c *fiber.Ctx, status int, id any, code int, msg string) error {
	s.auditRejected(c, "jsonrpc_"+strconv.Itoa(code), msg)
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Status(status).Send(rpcErrorBody(id, code, msg))
}

// parseMessage validates one JSON-RPC message. It returns a JSON-RPC error message on failure.
func parseMessage(v any) (*rpcMessage, int, string) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, rpcInvalidRequest, "each JSON-RPC message must be an object"
	}
	if m["jsonrpc"] != "2.0" {
		return nil, rpcInvalidRequest, `field "jsonrpc" must be "2.0"`
	}
	msg := &rpcMessage{}
	msg.id, msg.hasID = m["id"]
	if msg.hasID {
		switch msg.id.(type) {
		case string, json.Number:
		default:
			return nil, rpcInvalidRequest, `field "id" must be a string or a number`
		}
	}
	method, isReq := m["method"]
	if !isReq {
		// A response to a server request (sampling, elicitation): passes through.
		if _, r := m["result"]; !r {
			if _, e := m["error"]; !e {
				return nil, rpcInvalidRequest, `message has neither "method" nor "result"/"error"`
			}
		}
		return msg, 0, ""
	}
	if msg.method, ok = method.(string); !ok || msg.method == "" {
		return nil, rpcInvalidRequest, `field "method" must be a non-empty string`
	}
	if p, present := m["params"]; present {
		if msg.params, ok = p.(map[string]any); !ok {
			return nil, rpcInvalidParams, `field "params" must be an object`
		}
		if meta, ok := msg.params["_meta"].(map[string]any); ok {
			msg.progress = meta["progressToken"]
		}
	}
	switch {
	case msg.method == "tools/call":
		name, ok := msg.params["name"].(string)
		if !ok || name == "" {
			return nil, rpcInvalidParams, `field "params.name" must be a non-empty string`
		}
		msg.tool, msg.decide = name, true
		switch a := msg.params["arguments"].(type) {
		case nil:
			if _, present := msg.params["arguments"]; present {
				return nil, rpcInvalidParams, `field "params.arguments" must be an object`
			}
			msg.args = map[string]any{}
		case map[string]any:
			msg.args = a
		default:
			return nil, rpcInvalidParams, `field "params.arguments" must be an object`
		}
	case strings.HasPrefix(msg.method, "notifications/"), lightMethods[msg.method]:
	default:
		// resources/read, prompts/get, completion/complete ...: decided by policy like a tool.
		msg.tool, msg.decide = "mcp:"+msg.method, true
		msg.args = msg.params
		if msg.args == nil {
			msg.args = map[string]any{}
		}
	}
	return msg, 0, ""
}

// toolInfo is what the policy sees about a tool called over MCP: the same table the REST
// route map uses, since the tool names are shared.
func (s *Server) toolInfo(tool string) policies.ToolInfo {
	if info, ok := s.routes.byTool[tool]; ok {
		return info
	}
	return unknownToolInfo
}

var unknownToolInfo = toolInfoFor("other", "high")

// parseErrorCode is the JSON-RPC code for a body strictjson refused: -32700 (parse
// error) for what is not JSON at all, -32600 (invalid request) for JSON the gateway will
// not read ambiguously or evaluate: duplicate or case-folded keys, nesting past the
// limit, numbers out of range.
func parseErrorCode(err error) int {
	var je *strictjson.Error
	if errors.As(err, &je) && (je.Rule == "duplicate_key" || je.Rule == "ambiguous_key" || je.Rule == "max_depth" || je.Rule == "number_range") {
		return rpcInvalidRequest
	}
	return rpcParseError
}

func (s *Server) handleMCP(c *fiber.Ctx) error {
	if err := requireJSON(c, false); err != nil {
		return err
	}
	body := c.Request().Body()
	v, err := strictjson.Parse(body, strictjson.DefaultMaxDepth)
	if err != nil {
		return s.rpcError(c, fiber.StatusBadRequest, nil, parseErrorCode(err), "request body: "+err.Error())
	}
	var msgs []*rpcMessage
	batch := false
	switch t := v.(type) {
	case []any:
		if len(t) == 0 {
			return s.rpcError(c, fiber.StatusBadRequest, nil, rpcInvalidRequest, "empty batch")
		}
		if len(t) > s.cfg.MCP.MaxBatchCalls {
			// Refused before any message is read: one row for the request, nothing decided.
			return s.rpcError(c, fiber.StatusBadRequest, nil, rpcInvalidRequest,
				"batch of "+strconv.Itoa(len(t))+" messages exceeds the limit of "+strconv.Itoa(s.cfg.MCP.MaxBatchCalls)+
					" per batch (proxy.mcp.max_batch_calls); send fewer messages per request")
		}
		batch = true
		for _, e := range t {
			m, code, msg := parseMessage(e)
			if m == nil {
				return s.rpcError(c, fiber.StatusBadRequest, nil, code, msg)
			}
			msgs = append(msgs, m)
		}
	default:
		m, code, msg := parseMessage(v)
		if m == nil {
			var id any
			if obj, ok := v.(map[string]any); ok {
				id = obj["id"]
			}
			return s.rpcError(c, fiber.StatusBadRequest, id, code, msg)
		}
		msgs = []*rpcMessage{m}
	}
	if code, msg := checkMCPHeaders(c, msgs, batch); code != 0 {
		var id any
		if !batch {
			id = msgs[0].id
		}
		return s.rpcError(c, fiber.StatusBadRequest, id, code, msg)
	}
	if !batch {
		m := msgs[0]
		if !m.decide {
			return s.forwardMCP(c, msgs, nil)
		}
		cl := s.newCall(c, "mcp", m.tool, s.toolInfo(m.tool), m.args)
		r := s.decide(c.UserContext(), cl)
		if r != nil && r.code == "approval_required" {
			return s.holdMCP(c, cl, m)
		}
		if r = s.settle(c.UserContext(), cl, r); r != nil {
			return s.mcpRefusal(c, m, cl, r)
		}
		return s.forwardMCP(c, msgs, cl)
	}
	return s.handleMCPBatch(c, msgs)
}

// handleMCPBatch decides every call in a batch; the batch is forwarded only when all are
// allowed. Otherwise no message is forwarded and each call gets a result that says why,
// so a batch cannot smuggle a refused call alongside allowed ones.
func (s *Server) handleMCPBatch(c *fiber.Ctx, msgs []*rpcMessage) error {
	var calls []*call
	refused := map[*rpcMessage]*refusal{}
	for _, m := range msgs {
		if !m.decide {
			continue
		}
		cl := s.newCall(c, "mcp", m.tool, s.toolInfo(m.tool), m.args)
		r := s.decide(c.UserContext(), cl)
		if r != nil && r.code == "approval_required" {
			r = &refusal{status: fiber.StatusForbidden, code: "policy_denied",
				msg: "this call requires human approval, which is not available inside a JSON-RPC batch; send it on its own"}
		}
		if r = s.settle(c.UserContext(), cl, r); r != nil {
			if r.code == "audit_unavailable" {
				// The gateway cannot record calls: the whole batch fails as one request.
				for _, done := range calls {
					s.refundIfAsked(done)
				}
				return s.mcpRefusal(c, m, cl, r)
			}
			refused[m] = r
		}
		calls = append(calls, cl)
	}
	if len(refused) == 0 {
		if len(calls) == 0 {
			return s.forwardMCP(c, msgs, nil)
		}
		// The assertion names the first call's decision; every call gets its outcome row.
		err := s.forwardMCP(c, msgs, calls[0])
		// The others share its outcome, failure included (then also its refund, if asked).
		for _, cl := range calls[1:] {
			s.recordOutcome(cl, calls[0].outStatus, calls[0].outClass, time.Since(cl.start))
		}
		return err
	}
	for _, cl := range calls {
		s.refundIfAsked(cl)
		s.recordOutcome(cl, 0, classNotForwarded, time.Since(cl.start))
	}
	var out []json.RawMessage
	rid := requestID(c)
	for _, m := range msgs {
		if !m.hasID || m.method == "" {
			continue
		}
		r := refused[m]
		if r == nil {
			r = &refusal{code: "batch_refused", msg: "not executed: another call in this batch was refused"}
		}
		out = append(out, refusalMessage(m, r, rid))
	}
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	if len(out) == 0 {
		return c.SendStatus(fiber.StatusAccepted)
	}
	b, _ := json.Marshal(out)
	return c.Status(fiber.StatusOK).Send(b)
}

// checkMCPHeaders refuses Mcp-Method and Mcp-Name headers (protocol 2026-07-28) that
// say something other than the body: they are forwarded, and a server or intermediary
// may route on them, so they must name what policy decided. A batch carries neither
// (the protocol versions that define them have no batches).
func checkMCPHeaders(c *fiber.Ctx, msgs []*rpcMessage, batch bool) (int, string) {
	h := &c.Request().Header
	method, name := h.Peek("Mcp-Method"), h.Peek("Mcp-Name")
	if len(method) == 0 && len(name) == 0 {
		return 0, ""
	}
	if batch {
		return rpcHeaderMismatch, "header Mcp-Method or Mcp-Name: not allowed on a JSON-RPC batch"
	}
	m := msgs[0]
	if len(method) > 0 && string(method) != m.method {
		return rpcHeaderMismatch, `header Mcp-Method does not match field "method" of the body`
	}
	if len(name) > 0 {
		var want string
		switch m.method {
		case "tools/call":
			want = m.tool
		case "prompts/get":
			want, _ = m.params["name"].(string)
		case "resources/read":
			want, _ = m.params["uri"].(string)
		default:
			return rpcHeaderMismatch, "header Mcp-Name is not defined for method " + strconv.Quote(m.method)
		}
		if string(name) != want {
			return rpcHeaderMismatch, `header Mcp-Name does not match the name (params.name or params.uri) in the body`
		}
	}
	return 0, ""
}

// refusalData is the {code, message, request_id, ...} object that says why a call was
// refused, in both renderings.
func refusalData(r *refusal, rid string) map[string]any {
	errObj := map[string]any{"code": r.code, "message": r.msg, "request_id": rid}
	if r.retryAfter > 0 {
		errObj["retry_after_seconds"] = retrySeconds(r.retryAfter)
	}
	if r.approval != nil {
		errObj["approval_id"] = r.approval.ID
	}
	return errObj
}

// refusalMessage answers a refused message in the shape its method expects: a tools/call
// gets a tool result (the agent reads the reason), any other request a JSON-RPC error.
func refusalMessage(m *rpcMessage, r *refusal, rid string) json.RawMessage {
	if m.method == "tools/call" {
		return toolErrorResult(m.id, r, rid)
	}
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": m.id, "error": map[string]any{
		"code": rpcRefused, "message": r.msg, "data": refusalData(r, rid),
	}})
	return b
}

// toolErrorResult is a tools/call result with isError set: the agent reads the reason.
// The structured content follows the {ok, data, error} envelope of the integration tools.
func toolErrorResult(id any, r *refusal, rid string) json.RawMessage {
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "result": map[string]any{
		"content":           []any{map[string]any{"type": "text", "text": r.msg}},
		"isError":           true,
		"structuredContent": map[string]any{"ok": false, "error": refusalData(r, rid)},
	}})
	return b
}

func (s *Server) mcpRefusal(c *fiber.Ctx, m *rpcMessage, cl *call, r *refusal) error {
	if r.code == "audit_unavailable" || r.code == "rate_limiter_unavailable" || r.code == "approvals_unavailable" {
		// The gateway itself cannot serve: an HTTP error, not a tool result.
		return r.serviceError()
	}
	if r.rl != nil {
		setRateLimitHeaders(c, r.rl)
	}
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Status(fiber.StatusOK).Send(refusalMessage(m, r, cl.rid))
}

// forwardMCP forwards the request body as received. tools/list results (alone or in a
// batch) are filtered so a caller never sees a tool policy denies it outright.
func (s *Server) forwardMCP(c *fiber.Ctx, msgs []*rpcMessage, cl *call) error {
	if cl == nil {
		var err error
		if cl, err = s.passCall(c, msgs[0].method); err != nil {
			return err
		}
	}
	if err := s.forward(c, cl, s.mcpUp, s.mcpUp.base, s.mcpUp.cfg.Timeout); err != nil {
		return err
	}
	for _, m := range msgs {
		if m.method == "tools/list" && c.Response().StatusCode() == fiber.StatusOK {
			s.filterToolsList(c, cl)
			break
		}
	}
	return nil
}

// passCall is the bookkeeping for a request that passes without a policy decision
// (initialize, ping, notifications, listings, GET and DELETE of the session): its
// "pass" row is durable before it is forwarded, as a decision row is, so every forwarded
// request has a row before it acts and its outcome row after. If that row cannot be
// stored, nothing is forwarded (503).
func (s *Server) passCall(c *fiber.Ctx, method string) (*call, error) {
	cl := s.newCall(c, "mcp", "mcp:"+method, toolInfoFor("read", "low"), nil)
	cl.dec.Revision = s.d.Policy.Revision()
	if err := s.auditDecision(c.UserContext(), cl, "pass", method+" passes without a policy decision"); err != nil {
		return nil, auditUnavailable.serviceError()
	}
	return cl, nil
}

func (s *Server) handleMCPPassthrough(c *fiber.Ctx) error {
	if len(c.Request().Body()) > 0 {
		// Nothing examines a GET or DELETE body, so none is forwarded.
		return apierror.BadRequest("unexpected_body", "body", "%s %s takes no body", methodOf(c), s.cfg.MCP.Path)
	}
	cl, err := s.passCall(c, methodOf(c))
	if err != nil {
		return err
	}
	timeout := s.mcpUp.cfg.Timeout
	if c.Method() == fiber.MethodGet {
		timeout = s.mcpUp.cfg.StreamTimeout
	}
	return s.forward(c, cl, s.mcpUp, s.mcpUp.base, timeout)
}

// filterToolsList filters the tools/list results in the upstream's answer for cl's caller.
// The answer is then this caller's alone, so neither HTTP nor MCP (cacheScope) may tell a
// cache to serve it to anyone else.
func (s *Server) filterToolsList(c *fiber.Ctx, cl *call) {
	body := c.Response().Body()
	ct := string(c.Response().Header.ContentType())
	var out []byte
	if strings.HasPrefix(ct, "text/event-stream") {
		out = filterSSE(body, func(b []byte) []byte { return s.filterToolsJSON(b, cl) })
	} else {
		out = s.filterToolsJSON(body, cl)
	}
	c.Response().SetBodyRaw(out)
	c.Set(fiber.HeaderCacheControl, "private, no-store")
}

// filterSSE applies f to the data of every event in an event stream.
func filterSSE(body []byte, f func([]byte) []byte) []byte {
	var out bytes.Buffer
	for _, line := range bytes.SplitAfter(body, []byte("\n")) {
		trimmed := bytes.TrimRight(line, "\r\n")
		if data, ok := bytes.CutPrefix(trimmed, []byte("data:")); ok {
			out.WriteString("data: ")
			out.Write(f(bytes.TrimSpace(data)))
			out.Write(line[len(trimmed):])
			continue
		}
		out.Write(line)
	}
	return out.Bytes()
}

// filterToolsJSON filters the tools of every tools/list result in b (one JSON-RPC
// response or a batch of them).
func (s *Server) filterToolsJSON(b []byte, cl *call) []byte {
	var v any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if dec.Decode(&v) != nil {
		return b
	}
	msgs, batch := v.([]any)
	if !batch {
		msgs = []any{v}
	}
	changed := false
	for _, m := range msgs {
		if msg, ok := m.(map[string]any); ok && s.filterToolsResult(msg, cl) {
			changed = true
		}
	}
	if !changed {
		return b
	}
	out, err := json.Marshal(v)
	if err != nil {
		return b
	}
	return out
}

// filterToolsResult removes from a tools/list result the tools policy denies the caller
// outright, and marks the result private (MCP 2026-07-28 cacheScope: only this caller's
// client may cache it; absent means "public"). It reports whether msg held a tools list.
func (s *Server) filterToolsResult(msg map[string]any, cl *call) bool {
	res, ok := msg["result"].(map[string]any)
	if !ok {
		return false
	}
	tools, ok := res["tools"].([]any)
	if !ok {
		return false
	}
	s.secrets.learn(tools) // before filtering: a tool hidden from this caller is still called by others
	kept := tools[:0]
	for _, t := range tools {
		tm, _ := t.(map[string]any)
		name, _ := tm["name"].(string)
		if name == "" {
			continue
		}
		info := s.toolInfo(name)
		if ann, ok := tm["annotations"].(map[string]any); ok {
			info.Annotations = ann
		}
		d := s.d.Policy.Decide(context.Background(), &policies.Input{
			Surface: "mcp", Tool: name, Arguments: map[string]any{}, HTTP: policies.HTTPInfo{Method: "POST", Path: s.cfg.MCP.Path},
			Caller: cl.id.Caller, ToolInfo: info, Upstream: s.mcpUp.cfg.Name, Mode: "list",
		})
		if d.PolicyError {
			s.log.Error("policy error: hiding tool from tools/list", "request_id", cl.rid, "tool", name, "revision", d.Revision, "err", d.Error)
		}
		if d.Action != policies.ActionDeny {
			kept = append(kept, t)
		}
	}
	res["tools"] = kept
	res["cacheScope"] = "private"
	return true
}

// holdMCP handles a call that needs approval. A client that accepts server-sent events is
// held on an event stream with progress notifications; others are held on the open request.
// Either way, past the wait budget the agent gets the approval id and how to retry.
func (s *Server) holdMCP(c *fiber.Ctx, cl *call, m *rpcMessage) error {
	outcome, r := s.requestApproval(c.UserContext(), cl)
	switch outcome {
	case approvalGranted:
		if r = s.settle(c.UserContext(), cl, nil); r != nil {
			return s.mcpRefusal(c, m, cl, r)
		}
		return s.forwardMCP(c, []*rpcMessage{m}, cl)
	case approvalRefused:
		if r = s.settle(c.UserContext(), cl, r); r != nil {
			return s.mcpRefusal(c, m, cl, r)
		}
	}
	if !strings.Contains(string(c.Request().Header.Peek(fiber.HeaderAccept)), "text/event-stream") {
		ctx, cancel := s.holdContext(c.UserContext())
		outcome, r = s.awaitApproval(ctx, cl)
		cancel()
		switch outcome {
		case approvalStillPending:
			return s.mcpRefusal(c, m, cl, s.settle(context.Background(), cl, s.pendingRefusal(cl)))
		case approvalRefused:
			return s.mcpRefusal(c, m, cl, s.settle(context.Background(), cl, r))
		}
		if r = s.settle(c.UserContext(), cl, nil); r != nil {
			return s.mcpRefusal(c, m, cl, r)
		}
		return s.forwardMCP(c, []*rpcMessage{m}, cl)
	}
	o := s.outboundFrom(c, s.mcpUp.base, s.mcpUp.cfg.Timeout, true)
	c.Set(fiber.HeaderContentType, "text/event-stream")
	c.Set(fiber.HeaderCacheControl, "no-cache")
	c.Status(fiber.StatusOK)
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		s.streamHeldCall(w, cl, m, o)
	})
	return nil
}

// streamHeldCall runs after the handler returned, writing the event stream of a held call.
func (s *Server) streamHeldCall(w *bufio.Writer, cl *call, m *rpcMessage, o *outbound) {
	writeEvent := func(data []byte) bool {
		w.WriteString("event: message\ndata: ")
		w.Write(data)
		w.WriteString("\n\n")
		return w.Flush() == nil
	}
	deadline := time.Now().Add(s.d.Approvals.WaitBudget())
	step := 0
	for {
		wait := min(s.cfg.ApprovalKeepAlive, time.Until(deadline))
		ctx, cancel := context.WithTimeout(s.draining, max(wait, time.Millisecond))
		outcome, r := s.awaitApproval(ctx, cl)
		cancel()
		switch outcome {
		case approvalRefused:
			writeEvent(refusalMessage(m, s.settle(context.Background(), cl, r), cl.rid))
			return
		case approvalGranted:
			if r := s.settle(context.Background(), cl, nil); r != nil {
				writeEvent(refusalMessage(m, r, cl.rid))
				return
			}
			s.relayHeld(w, cl, m, o)
			return
		}
		if time.Now().After(deadline) || s.draining.Err() != nil {
			writeEvent(refusalMessage(m, s.settle(context.Background(), cl, s.pendingRefusal(cl)), cl.rid))
			return
		}
		step++
		if m.progress != nil {
			note, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "notifications/progress", "params": map[string]any{
				"progressToken": m.progress, "progress": step,
				"message": "waiting for human approval " + cl.approval.ID,
			}})
			if !writeEvent(note) {
				return
			}
		} else {
			w.WriteString(": waiting for approval " + cl.approval.ID + "\n\n")
			if w.Flush() != nil {
				return
			}
		}
	}
}

// relayHeld forwards an approved held call and relays the upstream's answer into the
// caller's event stream.
func (s *Server) relayHeld(w *bufio.Writer, cl *call, m *rpcMessage, o *outbound) {
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	status, class := s.roundTrip(context.Background(), cl, s.mcpUp, o, resp)
	s.recordOutcome(cl, status, class, time.Since(cl.start))
	if class != "" || status != fiber.StatusOK {
		r := &refusal{code: "upstream_error", msg: "the upstream call failed after approval (status " + strconv.Itoa(status) + ")"}
		if class == classTimeout {
			r.code, r.msg = "upstream_timeout", "the upstream did not answer in time after approval"
		}
		w.WriteString("event: message\ndata: ")
		w.Write(refusalMessage(m, r, cl.rid))
		w.WriteString("\n\n")
		w.Flush()
		return
	}
	if strings.HasPrefix(string(resp.Header.ContentType()), "text/event-stream") {
		if bs := resp.BodyStream(); bs != nil {
			_ = copyStream(w, bs)
		}
		return
	}
	w.WriteString("event: message\ndata: ")
	w.Write(bytes.TrimSpace(resp.Body()))
	w.WriteString("\n\n")
	w.Flush()
}
