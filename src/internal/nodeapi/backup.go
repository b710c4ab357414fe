package nodeapi

import (
	"context"
	"encoding/json"
	"fmt"
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
	resp, err := c.stream(ctx, "/v1/snapshot?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	return agentapi.CheckedArchive(resp, c.base.Host), nil
}

// Restore sends an archive to replace the data of the instance holding the
// node and returns once the node restored and verified it (or refused,
// keeping the data).
func (c *Client) Restore(ctx context.Context, req RestoreRequest, archive io.Reader) (RestoreResult, error) {
	q := url.Values{"instance_id": {req.InstanceID}}
	if req.FromInstance != "" {
		q.Set("from_instance", req.FromInstance)
	}
	resp, err := c.stream(ctx, "/v1/restore?"+q.Encode(), archive)
	if err != nil {
		return RestoreResult{}, err
	}
	defer resp.Body.Close()
	var out RestoreResult
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&out); err != nil {
		return out, fmt.Errorf("node %s sent an unreadable restore result: %w", c.base.Host, err)
	}
	return out, nil
}

// stream sends a POST without the client's overall timeout (ctx bounds it)
// and returns a 200 response, or the node's error.
func (c *Client) stream(ctx context.Context, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base.String()+path, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/gzip")
	}
	req.SetBasicAuth(c.creds.Username, c.creds.Password)
	resp, err := (&http.Client{Transport: c.http.Transport}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: node %s: %v", ErrUnavailable, c.base.Host, unwrapURLError(err))
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, agentapi.ResponseError(resp, "node "+c.base.Host, codes, ErrUnavailable)
	}
	return resp, nil
}
