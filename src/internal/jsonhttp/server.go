package jsonhttp

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
)

// Credentials are the basic-auth username and password a server requires
// and its clients present.
type Credentials struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// RequireBasicAuth answers 401 to a request without creds, comparing in
// constant time; the challenge names the realm "redis-agent".
func RequireBasicAuth(creds Credentials, next http.Handler) http.Handler {
	return BasicAuth("redis-agent", creds, next)
}

// BasicAuth answers 401 with an ErrorBody and a Basic challenge for realm to
// a request without creds, comparing in constant time.
func BasicAuth(realm string, creds Credentials, next http.Handler) http.Handler {
	challenge := fmt.Sprintf("Basic realm=%q", realm)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		userOK := subtle.ConstantTimeCompare([]byte(u), []byte(creds.Username)) == 1
		passOK := subtle.ConstantTimeCompare([]byte(p), []byte(creds.Password)) == 1
		if !ok || !userOK || !passOK {
			w.Header().Set("WWW-Authenticate", challenge)
			WriteError(w, http.StatusUnauthorized, "unauthorized", "missing or wrong credentials")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// CreatedStatus is 201 for something new, 200 for what existed: the answer
// of every idempotent PUT.
func CreatedStatus(created bool) int {
	if created {
		return http.StatusCreated
	}
	return http.StatusOK
}

// DecodeJSON reads a request body of at most limit bytes into v strictly
// (unknown fields and trailing data rejected) and, when it cannot, answers
// the error itself (415, 413 or 400) and returns false.
func DecodeJSON(w http.ResponseWriter, r *http.Request, v any, limit int64) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			WriteError(w, http.StatusUnsupportedMediaType, "invalid", "request body must be application/json")
			return false
		}
	}
	d := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	d.DisallowUnknownFields()
	err := d.Decode(v)
	if err == nil {
		if _, terr := d.Token(); !errors.Is(terr, io.EOF) {
			err = errors.New("extra data after the JSON object")
		}
	}
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			WriteError(w, http.StatusRequestEntityTooLarge, "invalid", fmt.Sprintf("request body exceeds %d bytes", limit))
			return false
		}
		WriteError(w, http.StatusBadRequest, "invalid", "request body is not valid JSON: "+err.Error())
		return false
	}
	return true
}

// Reply answers v as JSON with status, or err as an ErrorBody whose code and
// status codes give; a 5xx is logged with the request.
func Reply(w http.ResponseWriter, r *http.Request, logger *slog.Logger, codes Codes, status int, v any, err error) {
	if err != nil {
		code, status := codes.Classify(err)
		if status >= 500 {
			logger.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "error", err)
		}
		WriteError(w, status, code, err.Error())
		return
	}
	if v == nil {
		w.WriteHeader(status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// WriteError answers an ErrorBody with status.
func WriteError(w http.ResponseWriter, status int, code, description string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(ErrorBody{Error: code, Description: description})
}
