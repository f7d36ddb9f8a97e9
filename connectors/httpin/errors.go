package httpin

import (
	"encoding/json"
	"net/http"
)

// Error codes of the HTTP API (the "error" field of every error body).
const (
	CodeUnauthorized     = "unauthorized"
	CodeForbidden        = "forbidden"
	CodeBadSignature     = "bad_signature"
	CodeTooLarge         = "too_large"
	CodeUnsupportedMedia = "unsupported_media_type"
	CodeRateLimited      = "rate_limited"
	CodeUnavailable      = "kafka_unavailable"
	CodeBadRequest       = "bad_request"
	CodeValidation       = "validation_failed"
	CodeNotFound         = "not_found"
	CodeMethod           = "method_not_allowed"
)

// ErrorBody is the JSON body of every error answer.
type ErrorBody struct {
	Error     string       `json:"error"`
	Message   string       `json:"message"`
	RequestID string       `json:"request_id,omitempty"`
	Errors    []EventError `json:"errors,omitempty"`
	// RequiredScope is the scope a 403 forbidden answer says the key lacks.
	RequiredScope string `json:"required_scope,omitempty"`
}

// EventError is one invalid event of a request.
type EventError struct {
	Index   int    `json:"index"`
	ID      string `json:"id,omitempty"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg, reqID string) {
	writeJSON(w, status, ErrorBody{Error: code, Message: msg, RequestID: reqID})
}
