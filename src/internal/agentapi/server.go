package agentapi

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
)

// Service is what the shared-VM agent does; NewHandler serves it over HTTP.
type Service interface {
	Capacity(ctx context.Context) (Capacity, error)
	List(ctx context.Context) ([]Instance, error)
	Get(ctx context.Context, id string) (Instance, error)
	// Create makes the instance and reports whether it was new.
	Create(ctx context.Context, id string, req InstanceRequest) (Instance, bool, error)
	Update(ctx context.Context, id string, req UpdateRequest) (Instance, error)
	// Resize gives the instance a new memory limit, live.
	Resize(ctx context.Context, id string, req ResizeRequest) (Instance, error)
	Delete(ctx context.Context, id string) error
	// Bind adds a binding user and reports whether it was new.
	Bind(ctx context.Context, id, bindingID string, req BindingRequest) (Binding, bool, error)
	Unbind(ctx context.Context, id, bindingID string) error
	// SetReplication makes the instance follow a leader, or lead.
	SetReplication(ctx context.Context, id string, req ReplicationRequest) (Instance, error)
	// Snapshot takes a consistent snapshot of the instance for a backup.
	Snapshot(ctx context.Context, id string, req SnapshotRequest) (Archive, error)
	// Restore replaces the instance's data with a backup archive's.
	Restore(ctx context.Context, id string, req RestoreRequest, archive io.Reader) (RestoreResult, error)
}

// maxBody bounds request bodies; the largest real one is a few hundred bytes.
const maxBody = 64 << 10

// Credentials are the basic-auth username and password a handler requires.
type Credentials struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// NewHandler serves svc under /v1, requiring creds on every request.
func NewHandler(svc Service, creds Credentials, logger *slog.Logger) http.Handler {
	h := &handler{svc: svc, logger: logger}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/capacity", h.capacity)
	mux.HandleFunc("GET /v1/instances", h.list)
	mux.HandleFunc("GET /v1/instances/{id}", h.get)
	mux.HandleFunc("PUT /v1/instances/{id}", h.create)
	mux.HandleFunc("PATCH /v1/instances/{id}", h.update)
	mux.HandleFunc("DELETE /v1/instances/{id}", h.delete)
	mux.HandleFunc("PUT /v1/instances/{id}/maxmemory", h.resize)
	mux.HandleFunc("PUT /v1/instances/{id}/bindings/{binding}", h.bind)
	mux.HandleFunc("DELETE /v1/instances/{id}/bindings/{binding}", h.unbind)
	mux.HandleFunc("PUT /v1/instances/{id}/replication", h.replication)
	mux.HandleFunc("POST /v1/instances/{id}/snapshot", h.snapshot)
	mux.HandleFunc("POST /v1/instances/{id}/restore", h.restore)
	return RequireBasicAuth(creds, mux)
}

// RequireBasicAuth answers 401 to a request without creds, comparing in
// constant time.
func RequireBasicAuth(creds Credentials, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		userOK := subtle.ConstantTimeCompare([]byte(u), []byte(creds.Username)) == 1
		passOK := subtle.ConstantTimeCompare([]byte(p), []byte(creds.Password)) == 1
		if !ok || !userOK || !passOK {
			w.Header().Set("WWW-Authenticate", `Basic realm="redis-agent"`)
			WriteError(w, http.StatusUnauthorized, "unauthorized", "missing or wrong credentials")
			return
		}
		next.ServeHTTP(w, r)
	})
}

type handler struct {
	svc    Service
	logger *slog.Logger
}

func (h *handler) capacity(w http.ResponseWriter, r *http.Request) {
	c, err := h.svc.Capacity(r.Context())
	h.reply(w, r, http.StatusOK, c, err)
}

func (h *handler) list(w http.ResponseWriter, r *http.Request) {
	l, err := h.svc.List(r.Context())
	h.reply(w, r, http.StatusOK, l, err)
}

func (h *handler) get(w http.ResponseWriter, r *http.Request) {
	i, err := h.svc.Get(r.Context(), r.PathValue("id"))
	h.reply(w, r, http.StatusOK, i, err)
}

func (h *handler) create(w http.ResponseWriter, r *http.Request) {
	var req InstanceRequest
	if !h.decode(w, r, &req) {
		return
	}
	i, created, err := h.svc.Create(r.Context(), r.PathValue("id"), req)
	h.reply(w, r, statusFor(created), i, err)
}

func (h *handler) update(w http.ResponseWriter, r *http.Request) {
	var req UpdateRequest
	if !h.decode(w, r, &req) {
		return
	}
	i, err := h.svc.Update(r.Context(), r.PathValue("id"), req)
	h.reply(w, r, http.StatusOK, i, err)
}

func (h *handler) resize(w http.ResponseWriter, r *http.Request) {
	var req ResizeRequest
	if !h.decode(w, r, &req) {
		return
	}
	i, err := h.svc.Resize(r.Context(), r.PathValue("id"), req)
	h.reply(w, r, http.StatusOK, i, err)
}

func (h *handler) delete(w http.ResponseWriter, r *http.Request) {
	err := h.svc.Delete(r.Context(), r.PathValue("id"))
	h.reply(w, r, http.StatusNoContent, nil, err)
}

func (h *handler) bind(w http.ResponseWriter, r *http.Request) {
	var req BindingRequest
	if !h.decode(w, r, &req) {
		return
	}
	b, created, err := h.svc.Bind(r.Context(), r.PathValue("id"), r.PathValue("binding"), req)
	h.reply(w, r, statusFor(created), b, err)
}

func (h *handler) unbind(w http.ResponseWriter, r *http.Request) {
	err := h.svc.Unbind(r.Context(), r.PathValue("id"), r.PathValue("binding"))
	h.reply(w, r, http.StatusNoContent, nil, err)
}

func (h *handler) replication(w http.ResponseWriter, r *http.Request) {
	var req ReplicationRequest
	if !h.decode(w, r, &req) {
		return
	}
	i, err := h.svc.SetReplication(r.Context(), r.PathValue("id"), req)
	h.reply(w, r, http.StatusOK, i, err)
}

func statusFor(created bool) int { return CreatedStatus(created) }

// CreatedStatus is 201 for something new, 200 for what existed: the answer of
// every idempotent PUT of both agents' APIs.
func CreatedStatus(created bool) int {
	if created {
		return http.StatusCreated
	}
	return http.StatusOK
}

func (h *handler) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	return DecodeJSON(w, r, v, maxBody)
}

func (h *handler) reply(w http.ResponseWriter, r *http.Request, status int, v any, err error) {
	Reply(w, r, h.logger, classify, status, v, err)
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
// status classify gives; a 5xx is logged with the request.
func Reply(w http.ResponseWriter, r *http.Request, logger *slog.Logger, classify func(error) (string, int), status int, v any, err error) {
	if err != nil {
		code, status := classify(err)
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

func classify(err error) (string, int) { return errorCodes.Classify(err) }

// WriteError answers an ErrorBody with status.
func WriteError(w http.ResponseWriter, status int, code, description string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(ErrorBody{Error: code, Description: description})
}
