package approvals

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// SignatureHeader carries "sha256=" + hex(HMAC-SHA256(WebhookSecret, body)).
const SignatureHeader = "X-Portcullis-Signature"

const webhookAttempts = 3

// webhookBody is what approvers' tooling receives for each new pending approval. It
// carries no arguments: the approver opens url (authenticated) to see them.
type webhookBody struct {
	Event     string    `json:"event"` // "approval.pending"
	ID        string    `json:"id"`
	Tool      string    `json:"tool"`
	Caller    hookUser  `json:"caller"`
	Reason    string    `json:"reason"`
	Approvers []string  `json:"approvers"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	URL       string    `json:"url"`
}

type hookUser struct {
	Sub       string `json:"sub"`
	Org       string `json:"org"`
	Workspace string `json:"workspace,omitempty"`
}

// Sign returns the X-Portcullis-Signature value for body under secret.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// announce delivers the webhook for a in the background. When 16 deliveries are
// already in flight the notification is dropped (and logged) rather than queued
// without bound: the approval itself is stored and listed either way.
func (s *Service) announce(a *Approval) {
	if s.cfg.WebhookURL == "" {
		return
	}
	body, err := json.Marshal(webhookBody{
		Event: "approval.pending", ID: a.ID, Tool: a.Tool, Reason: a.Reason, Approvers: a.Approvers,
		Caller:    hookUser{Sub: a.Caller.Sub, Org: a.Caller.Org, Workspace: a.Caller.Workspace},
		CreatedAt: a.CreatedAt, ExpiresAt: a.ExpiresAt, URL: s.URL(a.ID),
	})
	if err != nil {
		s.log.Error("approvals: encoding webhook body", "approval_id", a.ID, "err", err)
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	select {
	case s.hookSem <- struct{}{}:
	default:
		s.mu.Unlock()
		s.log.Warn("approvals: webhook deliveries saturated; notification dropped", "approval_id", a.ID)
		return
	}
	s.hookWG.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.hookWG.Done()
		defer func() { <-s.hookSem }()
		s.deliver(a.ID, body)
	}()
}

func (s *Service) deliver(id string, body []byte) {
	sig := Sign(s.cfg.WebhookSecret, body)
	backoff := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		status, err := s.post(body, sig)
		if err == nil && status >= 200 && status < 300 {
			s.log.Info("approvals: webhook delivered", "approval_id", id, "attempt", attempt, "status", status)
			return
		}
		if err == nil {
			err = fmt.Errorf("status %d", status)
		}
		if attempt == webhookAttempts || s.ctx.Err() != nil {
			s.log.Error("approvals: webhook delivery failed", "approval_id", id, "attempts", attempt, "err", err)
			return
		}
		select {
		case <-s.ctx.Done():
		case <-time.After(backoff):
		}
		backoff *= 2
	}
}

func (s *Service) post(body []byte, sig string) (int, error) {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.WebhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.WebhookURL, bytes.NewReader(body))
	if err != nil {
		return 0, errors.New("building request")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "portcullis-approvals")
	req.Header.Set(SignatureHeader, sig)
	resp, err := s.client.Do(req)
	if err != nil {
		// url.Error repeats the URL, which may hold a token: keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	return resp.StatusCode, nil
}
