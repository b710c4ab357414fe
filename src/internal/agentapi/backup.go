package agentapi

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/cf-redis/redis-for-cf/src/internal/archive"
	"github.com/cf-redis/redis-for-cf/src/internal/jsonhttp"
)

// The backup endpoints stream archives (package archive) in both directions:
//
//	POST /v1/instances/{id}/snapshot?timeout_seconds=N
//	    200 application/gzip: the archive, then the trailer
//	    X-Snapshot-Status: complete. Errors before the first byte are JSON
//	    error bodies; an error midway aborts the connection, so a client
//	    never takes a cut archive for a whole one.
//	POST /v1/instances/{id}/snapshot?timeout_seconds=N&late_head=true
//	    200 application/gzip at once: the archive streams while the snapshot
//	    is written, its first bytes zeros until the trailer X-Snapshot-Head
//	    (base64) gives them, with X-Snapshot-Status: complete. A snapshot
//	    that fails midway ends with X-Snapshot-Status: failed and the error
//	    in X-Snapshot-Error.
//	POST /v1/instances/{id}/restore?from_instance=ID
//	    body application/gzip: an archive. 200 with a RestoreResult once the
//	    data loaded and verified; the instance keeps its data otherwise.

// maxTimeout caps the timeouts a request may ask for.
const maxTimeout = 24 * time.Hour

// SnapshotRequest asks for a snapshot.
type SnapshotRequest struct {
	// Timeout bounds the snapshot (the wait for another one included); zero
	// means the agent's default, an hour.
	Timeout time.Duration
	// LateHead asks for the archive to stream while the snapshot is being
	// written: its first archive.HeadSize bytes are zeros, and the trailer
	// TrailerHead (base64) carries the bytes that replace them. The client
	// must write them over the start of what it stored (store.LateHead).
	// Without it, the archive streams once the snapshot is complete.
	LateHead bool
}

// Archive is a snapshot taken and staged, ready to stream: WriteTo streams
// it as tar.gz, Close releases what it holds on disk.
type Archive = jsonhttp.WriterTo

// RestoreRequest says what a restore may take.
type RestoreRequest struct {
	// FromInstance, when set, is the instance the backup must be of: an
	// archive whose manifest names another is refused before anything
	// changes. Empty accepts a backup of any instance (an operator moving
	// data).
	FromInstance string
}

// RestoreResult describes a restore that succeeded.
type RestoreResult struct {
	InstanceID string `json:"instance_id"`
	// Backup is the manifest of the backup now in place.
	Backup archive.Manifest `json:"backup"`
	// Keys counts the keys the instance holds after the restore.
	Keys int64 `json:"keys"`
}

func snapshotQuery(req SnapshotRequest) url.Values {
	q := url.Values{}
	if req.Timeout > 0 {
		q.Set("timeout_seconds", strconv.Itoa(int(max(req.Timeout, time.Second)/time.Second)))
	}
	if req.LateHead {
		q.Set("late_head", "true")
	}
	return q
}

func parseSnapshotQuery(q url.Values) (SnapshotRequest, error) {
	var req SnapshotRequest
	if v := q.Get("timeout_seconds"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || time.Duration(n)*time.Second > maxTimeout {
			return req, fmt.Errorf("%w: timeout_seconds must be 1-%d", ErrInvalid, int(maxTimeout/time.Second))
		}
		req.Timeout = time.Duration(n) * time.Second
	}
	switch q.Get("late_head") {
	case "", "false":
	case "true":
		req.LateHead = true
	default:
		return req, fmt.Errorf("%w: late_head must be true or false", ErrInvalid)
	}
	return req, nil
}

// Snapshot asks the agent for a consistent snapshot of an instance and
// returns the archive as it streams; reading it fails unless the whole
// archive arrived. Close it when done.
func (c *Client) Snapshot(ctx context.Context, id string, req SnapshotRequest) (io.ReadCloser, error) {
	resp, err := c.c.Stream(ctx, http.MethodPost, instancePath(id)+"/snapshot?"+snapshotQuery(req).Encode(), nil)
	if err != nil {
		return nil, err
	}
	return c.c.CheckedArchive(resp), nil
}

// Restore sends an archive to replace an instance's data and returns once
// the agent restored and verified it (or refused, keeping the data).
func (c *Client) Restore(ctx context.Context, id string, req RestoreRequest, archive io.Reader) (RestoreResult, error) {
	q := url.Values{}
	if req.FromInstance != "" {
		q.Set("from_instance", req.FromInstance)
	}
	var out RestoreResult
	return out, c.c.StreamJSON(ctx, http.MethodPost, instancePath(id)+"/restore?"+q.Encode(), archive, &out, "restore result")
}

func (h *handler) snapshot(w http.ResponseWriter, r *http.Request) {
	req, err := parseSnapshotQuery(r.URL.Query())
	if err != nil {
		h.reply(w, r, 0, nil, err)
		return
	}
	jsonhttp.ServeArchive(w, r, h.logger,
		func() (jsonhttp.WriterTo, error) { return h.svc.Snapshot(r.Context(), r.PathValue("id"), req) },
		func(err error) { h.reply(w, r, 0, nil, err) })
}

func (h *handler) restore(w http.ResponseWriter, r *http.Request) {
	jsonhttp.StreamingBody(w)
	res, err := h.svc.Restore(r.Context(), r.PathValue("id"), RestoreRequest{FromInstance: r.URL.Query().Get("from_instance")}, r.Body)
	h.reply(w, r, http.StatusOK, res, err)
}
