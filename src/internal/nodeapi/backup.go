package nodeapi

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
)

// The backup endpoints work as the shared agents' do (see agentapi), for the
// instance holding the node:
//
//	POST /v1/snapshot?instance_id=ID&timeout_seconds=N
//	POST /v1/restore?instance_id=ID&from_instance=ID

// SnapshotRequest asks for a snapshot of the instance holding the node.
type SnapshotRequest struct {
	InstanceID string
	// Timeout bounds the snapshot; zero means the agent's default, an hour.
	Timeout time.Duration
}

// RestoreRequest replaces the data of the instance holding the node.
type RestoreRequest struct {
	InstanceID string
	// FromInstance, when set, is the instance the backup must be of.
	FromInstance string
}

// Archive is a snapshot ready to stream.
type Archive = agentapi.Archive

// RestoreResult describes a restore that succeeded.
type RestoreResult = agentapi.RestoreResult

func (h *handler) snapshot(w http.ResponseWriter, r *http.Request) {
	req, err := agentapi.ParseSnapshotQuery(r.URL.Query())
	if err != nil {
		agentapi.WriteError(w, http.StatusBadRequest, "invalid", err.Error())
		return
	}
	agentapi.ServeArchive(w, r, h.logger,
		func() (Archive, error) {
			return h.svc.Snapshot(r.Context(), SnapshotRequest{InstanceID: r.URL.Query().Get("instance_id"), Timeout: req.Timeout})
		},
		func(err error) { h.reply(w, r, 0, nil, err) })
}

func (h *handler) restore(w http.ResponseWriter, r *http.Request) {
	agentapi.StreamingBody(w)
	q := r.URL.Query()
	res, err := h.svc.Restore(r.Context(), RestoreRequest{InstanceID: q.Get("instance_id"), FromInstance: q.Get("from_instance")}, r.Body)
	h.reply(w, r, http.StatusOK, res, err)
}

// Snapshot asks the node for a consistent snapshot of the instance holding
// it and returns the archive as it streams. Close it when done.
func (c *Client) Snapshot(ctx context.Context, req SnapshotRequest) (io.ReadCloser, error) {
	q := agentapi.SnapshotQuery(agentapi.SnapshotRequest{Timeout: req.Timeout})
	q.Set("instance_id", req.InstanceID)
	resp, err := c.c.Stream(ctx, http.MethodPost, "/v1/snapshot?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	return agentapi.CheckedArchive(resp, c.c.Host()), nil
}

// Restore sends an archive to replace the data of the instance holding the
// node and returns once the node restored and verified it (or refused,
// keeping the data).
func (c *Client) Restore(ctx context.Context, req RestoreRequest, archive io.Reader) (RestoreResult, error) {
	q := url.Values{"instance_id": {req.InstanceID}}
	if req.FromInstance != "" {
		q.Set("from_instance", req.FromInstance)
	}
	var out RestoreResult
	return out, c.c.StreamJSON(ctx, http.MethodPost, "/v1/restore?"+q.Encode(), archive, &out, "restore result")
}
