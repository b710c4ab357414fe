package nodeapi

import (
	"context"
	"io"
	"log/slog"
	"net/http"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
)

// Service is what a node agent does; NewHandler serves it over HTTP.
type Service interface {
	Status(ctx context.Context) (Status, error)
	// Claim hands the node to an instance and reports whether it was new.
	Claim(ctx context.Context, req ClaimRequest) (Status, bool, error)
	UpdateParameters(ctx context.Context, req ParametersRequest) (Status, error)
	// Bind adds a binding user and reports whether it was new.
	Bind(ctx context.Context, bindingID string, req BindingRequest) (Binding, bool, error)
	Unbind(ctx context.Context, instanceID, bindingID string) error
	Reset(ctx context.Context, req ResetRequest) (Status, error)
	SetReplication(ctx context.Context, req ReplicationRequest) (Status, error)
	// Snapshot takes a consistent snapshot of the instance for a backup.
	Snapshot(ctx context.Context, req SnapshotRequest) (Archive, error)
	// Restore replaces the instance's data with a backup archive's.
	Restore(ctx context.Context, req RestoreRequest, archive io.Reader) (RestoreResult, error)
}

// maxBody bounds request bodies; the largest real one is a few hundred bytes.
const maxBody = 64 << 10

// NewHandler serves svc under /v1, requiring creds on every request.
func NewHandler(svc Service, creds Credentials, logger *slog.Logger) http.Handler {
	h := &handler{svc: svc, logger: logger}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", h.status)
	mux.HandleFunc("PUT /v1/claim", h.claim)
	mux.HandleFunc("PATCH /v1/parameters", h.parameters)
	mux.HandleFunc("PUT /v1/bindings/{binding}", h.bind)
	mux.HandleFunc("DELETE /v1/bindings/{binding}", h.unbind)
	mux.HandleFunc("POST /v1/reset", h.reset)
	mux.HandleFunc("PUT /v1/replication", h.replication)
	mux.HandleFunc("POST /v1/snapshot", h.snapshot)
	mux.HandleFunc("POST /v1/restore", h.restore)
	return agentapi.RequireBasicAuth(creds, mux)
}

type handler struct {
	svc    Service
	logger *slog.Logger
}

func (h *handler) status(w http.ResponseWriter, r *http.Request) {
	s, err := h.svc.Status(r.Context())
	h.reply(w, r, http.StatusOK, s, err)
}

func (h *handler) claim(w http.ResponseWriter, r *http.Request) {
	var req ClaimRequest
	if !h.decode(w, r, &req) {
		return
	}
	s, created, err := h.svc.Claim(r.Context(), req)
	h.reply(w, r, statusFor(created), s, err)
}

func (h *handler) parameters(w http.ResponseWriter, r *http.Request) {
	var req ParametersRequest
	if !h.decode(w, r, &req) {
		return
	}
	s, err := h.svc.UpdateParameters(r.Context(), req)
	h.reply(w, r, http.StatusOK, s, err)
}

func (h *handler) bind(w http.ResponseWriter, r *http.Request) {
	var req BindingRequest
	if !h.decode(w, r, &req) {
		return
	}
	b, created, err := h.svc.Bind(r.Context(), r.PathValue("binding"), req)
	h.reply(w, r, statusFor(created), b, err)
}

func (h *handler) unbind(w http.ResponseWriter, r *http.Request) {
	err := h.svc.Unbind(r.Context(), r.URL.Query().Get("instance_id"), r.PathValue("binding"))
	h.reply(w, r, http.StatusNoContent, nil, err)
}

func (h *handler) reset(w http.ResponseWriter, r *http.Request) {
	var req ResetRequest
	if !h.decode(w, r, &req) {
		return
	}
	s, err := h.svc.Reset(r.Context(), req)
	h.reply(w, r, http.StatusOK, s, err)
}

func (h *handler) replication(w http.ResponseWriter, r *http.Request) {
	var req ReplicationRequest
	if !h.decode(w, r, &req) {
		return
	}
	s, err := h.svc.SetReplication(r.Context(), req)
	h.reply(w, r, http.StatusOK, s, err)
}

func statusFor(created bool) int { return agentapi.CreatedStatus(created) }

func (h *handler) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	return agentapi.DecodeJSON(w, r, v, maxBody)
}

func (h *handler) reply(w http.ResponseWriter, r *http.Request, status int, v any, err error) {
	agentapi.Reply(w, r, h.logger, classify, status, v, err)
}

func classify(err error) (string, int) { return errorCodes.Classify(err) }
