package agentapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
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
//	POST /v1/instances/{id}/restore?from_instance=ID
//	    body application/gzip: an archive. 200 with a RestoreResult once the
//	    data loaded and verified; the instance keeps its data otherwise.

// TrailerStatus is the trailer of a snapshot response; its value is
// "complete" when the whole archive was sent.
const TrailerStatus = "X-Snapshot-Status"

// maxTimeout caps the timeouts a request may ask for.
const maxTimeout = 24 * time.Hour

// SnapshotRequest asks for a snapshot.
type SnapshotRequest struct {
	// Timeout bounds the snapshot (the wait for another one included); zero
	// means the agent's default, an hour.
	Timeout time.Duration
}

// Archive is a snapshot taken and staged, ready to stream.
type Archive interface {
	// WriteTo streams the archive as tar.gz.
	WriteTo(w io.Writer) (int64, error)
	// Close releases what the snapshot holds on disk.
	Close() error
}

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

// SnapshotQuery encodes req as the query of a snapshot request.
func SnapshotQuery(req SnapshotRequest) url.Values {
	q := url.Values{}
	if req.Timeout > 0 {
		q.Set("timeout_seconds", strconv.Itoa(int(max(req.Timeout, time.Second)/time.Second)))
	}
	return q
}

// ParseSnapshotQuery reads a snapshot request's query.
func ParseSnapshotQuery(q url.Values) (SnapshotRequest, error) {
	var req SnapshotRequest
	if v := q.Get("timeout_seconds"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || time.Duration(n)*time.Second > maxTimeout {
			return req, fmt.Errorf("%w: timeout_seconds must be 1-%d", ErrInvalid, int(maxTimeout/time.Second))
		}
		req.Timeout = time.Duration(n) * time.Second
	}
	return req, nil
}

// ServeArchive answers a snapshot request: take is called to take the
// snapshot (its error becomes a JSON error response through reply), then
// the archive streams with no write deadline, ending with TrailerStatus.
func ServeArchive(w http.ResponseWriter, r *http.Request, logger *slog.Logger, take func() (Archive, error), reply func(error)) {
	rc := http.NewResponseController(w)
	// A large dataset takes longer than the server's usual write timeout.
	_ = rc.SetWriteDeadline(time.Time{})
	a, err := take()
	if err != nil {
		reply(err)
		return
	}
	defer a.Close()
	w.Header().Set("Content-Type", "application/gzip")
	w.Header().Set("Trailer", TrailerStatus)
	w.WriteHeader(http.StatusOK)
	n, err := a.WriteTo(w)
	if err != nil {
		logger.ErrorContext(r.Context(), "streaming a snapshot failed; aborting the response", "path", r.URL.Path, "bytes", n, "error", err)
		// Closing the connection without the last chunk makes the client's
		// read fail: a cut archive never looks complete.
		panic(http.ErrAbortHandler)
	}
	w.Header().Set(TrailerStatus, "complete")
}

// StreamingBody prepares a request body for a restore: no read deadline, as
// a large archive takes longer than the server's usual read timeout.
func StreamingBody(w http.ResponseWriter) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
}

// CheckedArchive wraps a snapshot response's body: reading it returns an
// error instead of io.EOF unless the trailer says the archive is complete.
func CheckedArchive(resp *http.Response, host string) io.ReadCloser {
	return &checkedBody{resp: resp, host: host}
}

type checkedBody struct {
	resp *http.Response
	host string
}

func (b *checkedBody) Read(p []byte) (int, error) {
	n, err := b.resp.Body.Read(p)
	if errors.Is(err, io.EOF) && b.resp.Trailer.Get(TrailerStatus) != "complete" {
		return n, fmt.Errorf("%w: %s ended the snapshot stream before the archive was complete", ErrUnavailable, b.host)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return n, fmt.Errorf("%w: the snapshot stream from %s broke: %v", ErrUnavailable, b.host, err)
	}
	return n, err
}

func (b *checkedBody) Close() error { return b.resp.Body.Close() }

// Snapshot asks the agent for a consistent snapshot of an instance and
// returns the archive as it streams. Close it when done.
func (c *Client) Snapshot(ctx context.Context, id string, req SnapshotRequest) (io.ReadCloser, error) {
	path := "/v1/instances/" + url.PathEscape(id) + "/snapshot?" + SnapshotQuery(req).Encode()
	resp, err := c.c.Stream(ctx, http.MethodPost, path, nil)
	if err != nil {
		return nil, err
	}
	return CheckedArchive(resp, c.c.Host()), nil
}

// Restore sends an archive to replace an instance's data and returns once
// the agent restored and verified it (or refused, keeping the data).
func (c *Client) Restore(ctx context.Context, id string, req RestoreRequest, archive io.Reader) (RestoreResult, error) {
	q := url.Values{}
	if req.FromInstance != "" {
		q.Set("from_instance", req.FromInstance)
	}
	path := "/v1/instances/" + url.PathEscape(id) + "/restore?" + q.Encode()
	var out RestoreResult
	return out, c.c.StreamJSON(ctx, http.MethodPost, path, archive, &out, "restore result")
}

// ResponseError turns an error response into the sentinel of its code in
// codes, or unavailable for a code it does not know.
func ResponseError(resp *http.Response, who string, codes map[string]error, unavailable error) error {
	return jsonhttp.ResponseError(resp, who, codes, unavailable)
}

func (h *handler) snapshot(w http.ResponseWriter, r *http.Request) {
	req, err := ParseSnapshotQuery(r.URL.Query())
	if err != nil {
		h.reply(w, r, 0, nil, err)
		return
	}
	ServeArchive(w, r, h.logger,
		func() (Archive, error) { return h.svc.Snapshot(r.Context(), r.PathValue("id"), req) },
		func(err error) { h.reply(w, r, 0, nil, err) })
}

func (h *handler) restore(w http.ResponseWriter, r *http.Request) {
	StreamingBody(w)
	res, err := h.svc.Restore(r.Context(), r.PathValue("id"), RestoreRequest{FromInstance: r.URL.Query().Get("from_instance")}, r.Body)
	h.reply(w, r, http.StatusOK, res, err)
}
