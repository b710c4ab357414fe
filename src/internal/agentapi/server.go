package agentapi

import (
	"context"
	"io"
	"log/slog"
	"net/http"

	"github.com/cf-redis/redis-for-cf/src/internal/jsonhttp"
)

// Service is what every agent does for its instances; NewHandler serves it
// over HTTP. *sharedagent.Manager and *nodeagent.Node implement it.
type Service interface {
	Capacity(ctx context.Context) (Capacity, error)
	List(ctx context.Context) ([]Instance, error)
	// Get describes one instance with what its running server reports.
	Get(ctx context.Context, id string) (Instance, error)
	// Create makes the instance (on a node: claims the node for it) and
	// reports whether it was new.
	Create(ctx context.Context, id string, req InstanceRequest) (Instance, bool, error)
	Update(ctx context.Context, id string, req UpdateRequest) (Instance, error)
	// Resize gives the instance a new memory limit, live.
	Resize(ctx context.Context, id string, req ResizeRequest) (Instance, error)
	// Delete removes the instance and its data (on a node: resets the node
	// and verifies it empty; ErrDirty when it does not verify).
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

// NodeService is a dedicated node's agent: a Service that also reports its
// place in the pool.
type NodeService interface {
	Service
	Node(ctx context.Context) (Node, error)
}

// maxBody bounds request bodies; the largest real one is a few hundred bytes.
const maxBody = 64 << 10

// NewHandler serves svc under /v1, requiring creds on every request; a
// NodeService also gets GET /v1/node.
func NewHandler(svc Service, creds Credentials, logger *slog.Logger) http.Handler {
	return jsonhttp.RequireBasicAuth(creds, Routes(svc, logger))
}

// Routes are NewHandler's routes, without the credentials check: their
// patterns name the requests in an agent's metrics (metrics.Route).
func Routes(svc Service, logger *slog.Logger) *http.ServeMux {
	h := &handler{svc: svc, logger: logger}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/capacity", h.capacity)
	mux.HandleFunc("GET /v1/instances", h.list)
	mux.HandleFunc("GET /v1/instances/{id}", h.get)
	mux.HandleFunc("PUT /v1/instances/{id}", decoded(h, func(r *http.Request, req InstanceRequest) (Instance, int, error) {
		i, created, err := svc.Create(r.Context(), r.PathValue("id"), req)
		return i, jsonhttp.CreatedStatus(created), err
	}))
	mux.HandleFunc("PATCH /v1/instances/{id}", decoded(h, func(r *http.Request, req UpdateRequest) (Instance, int, error) {
		i, err := svc.Update(r.Context(), r.PathValue("id"), req)
		return i, http.StatusOK, err
	}))
	mux.HandleFunc("DELETE /v1/instances/{id}", h.delete)
	mux.HandleFunc("PUT /v1/instances/{id}/maxmemory", decoded(h, func(r *http.Request, req ResizeRequest) (Instance, int, error) {
		i, err := svc.Resize(r.Context(), r.PathValue("id"), req)
		return i, http.StatusOK, err
	}))
	mux.HandleFunc("PUT /v1/instances/{id}/bindings/{binding}", decoded(h, func(r *http.Request, req BindingRequest) (Binding, int, error) {
		b, created, err := svc.Bind(r.Context(), r.PathValue("id"), r.PathValue("binding"), req)
		return b, jsonhttp.CreatedStatus(created), err
	}))
	mux.HandleFunc("DELETE /v1/instances/{id}/bindings/{binding}", h.unbind)
	mux.HandleFunc("PUT /v1/instances/{id}/replication", decoded(h, func(r *http.Request, req ReplicationRequest) (Instance, int, error) {
		i, err := svc.SetReplication(r.Context(), r.PathValue("id"), req)
		return i, http.StatusOK, err
	}))
	mux.HandleFunc("POST /v1/instances/{id}/snapshot", h.snapshot)
	mux.HandleFunc("POST /v1/instances/{id}/restore", h.restore)
	if node, ok := svc.(NodeService); ok {
		mux.HandleFunc("GET /v1/node", func(w http.ResponseWriter, r *http.Request) {
			n, err := node.Node(r.Context())
			h.reply(w, r, http.StatusOK, n, err)
		})
	}
	return mux
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

func (h *handler) delete(w http.ResponseWriter, r *http.Request) {
	err := h.svc.Delete(r.Context(), r.PathValue("id"))
	h.reply(w, r, http.StatusNoContent, nil, err)
}

func (h *handler) unbind(w http.ResponseWriter, r *http.Request) {
	err := h.svc.Unbind(r.Context(), r.PathValue("id"), r.PathValue("binding"))
	h.reply(w, r, http.StatusNoContent, nil, err)
}

// decoded is the handler of a route whose request body is a Req: it
// decodes the body strictly and answers what fn returns, with its status.
func decoded[Req, Resp any](h *handler, fn func(r *http.Request, req Req) (Resp, int, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req Req
		if !jsonhttp.DecodeJSON(w, r, &req, maxBody) {
			return
		}
		v, status, err := fn(r, req)
		h.reply(w, r, status, v, err)
	}
}

func (h *handler) reply(w http.ResponseWriter, r *http.Request, status int, v any, err error) {
	jsonhttp.Reply(w, r, h.logger, errorCodes, status, v, err)
}
