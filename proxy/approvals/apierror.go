package approvals

import (
	"errors"
	"net/http"
	"strings"

	"github.com/portcullis/portcullis/proxy/apierror"
)

// APIError is what a client is told of one of the service's refusals (ErrNotFound,
// ErrSelfApproval, ErrNotApprover, ErrNotPending, ErrExpired, ErrInvalidComment), for the
// admin API and the console alike; nil for any other error (an internal one).
func APIError(err error) *apierror.Error {
	switch {
	case errors.Is(err, ErrNotFound):
		return apierror.NotFound("no such approval")
	case errors.Is(err, ErrSelfApproval):
		return apierror.Forbidden("self_approval", "you requested this call, so you cannot decide it; another approver must")
	case errors.Is(err, ErrNotApprover):
		return apierror.Forbidden("not_approver", "you are not an approver for this request")
	case errors.Is(err, ErrNotPending):
		return apierror.New(http.StatusConflict, "not_pending", "this approval has already been decided")
	case errors.Is(err, ErrExpired):
		return apierror.New(http.StatusGone, "expired", "this approval has expired; the agent must call again to request a new one")
	case errors.Is(err, ErrInvalidComment):
		return apierror.BadRequest("invalid_request", "comment", "%s", strings.TrimPrefix(err.Error(), "approvals: "))
	}
	return nil
}
