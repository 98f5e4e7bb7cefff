// Package apierror is the error a handler returns for the client to see. The proxy's
// error handler renders it as the one envelope every Portcullis API answers with:
//
//	{"error": {"code": "...", "message": "...", "field": "...", "request_id": "..."}}
//
// It is a leaf package so handlers outside package proxy (the console) return the same
// type and reach the same error path, without importing the proxy.
package apierror

import (
	"fmt"
	"net/http"
)

// Error is an error with a status and a message fit for the client. Message must not
// quote a secret; Field names the request field at fault, when one is.
type Error struct {
	Status  int
	Code    string
	Message string
	Field   string
	// Header holds response headers to set with the error (WWW-Authenticate, Retry-After).
	Header [][2]string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// New is an error with a status, a code and a message.
func New(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// BadRequest is a 400 naming the field at fault.
func BadRequest(code, field, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: code, Field: field, Message: fmt.Sprintf(format, args...)}
}

// Forbidden is a 403.
func Forbidden(code, format string, args ...any) *Error {
	return New(http.StatusForbidden, code, format, args...)
}

// NotFound is a 404.
func NotFound(format string, args ...any) *Error {
	return New(http.StatusNotFound, "not_found", format, args...)
}
