package jsonhttp

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"
)

// TrailerStatus is the trailer of a streamed archive; its value is
// "complete" when the whole archive was sent.
const TrailerStatus = "X-Snapshot-Status"

// WriterTo is an archive ready to stream, as ServeArchive sends it.
type WriterTo interface {
	WriteTo(w io.Writer) (int64, error)
	Close() error
}

// ServeArchive answers a request for an archive: take makes it (its error
// becomes a JSON error response through reply), then it streams as
// application/gzip with no write deadline, ending with TrailerStatus. An
// error midway aborts the connection, so a client never takes a cut archive
// for a whole one.
func ServeArchive(w http.ResponseWriter, r *http.Request, logger *slog.Logger, take func() (WriterTo, error), reply func(error)) {
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
		logger.ErrorContext(r.Context(), "streaming an archive failed; aborting the response", "path", r.URL.Path, "bytes", n, "error", err)
		// Closing the connection without the last chunk makes the client's
		// read fail: a cut archive never looks complete.
		panic(http.ErrAbortHandler)
	}
	w.Header().Set(TrailerStatus, "complete")
}

// StreamingBody prepares a request whose body is a large upload: no read or
// write deadline, as a large archive takes longer than the server's usual
// timeouts.
func StreamingBody(w http.ResponseWriter) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
}

// CheckedArchive wraps a streamed archive's response body: reading it
// returns an error wrapping unavailable instead of io.EOF unless the trailer
// says the archive is complete.
func (c *Client) CheckedArchive(resp *http.Response) io.ReadCloser {
	return &checkedBody{resp: resp, who: c.who(), unavailable: c.cfg.Unavailable}
}

type checkedBody struct {
	resp        *http.Response
	who         string
	unavailable error
}

func (b *checkedBody) Read(p []byte) (int, error) {
	n, err := b.resp.Body.Read(p)
	if errors.Is(err, io.EOF) && b.resp.Trailer.Get(TrailerStatus) != "complete" {
		return n, fmt.Errorf("%w: %s ended the snapshot stream before the archive was complete", b.unavailable, b.who)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return n, fmt.Errorf("%w: the snapshot stream from %s broke: %v", b.unavailable, b.who, err)
	}
	return n, err
}

func (b *checkedBody) Close() error { return b.resp.Body.Close() }
