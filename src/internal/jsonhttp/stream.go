package jsonhttp

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// TrailerStatus is the trailer of a streamed archive; its value is
// "complete" when the whole archive was sent.
const TrailerStatus = "X-Snapshot-Status"

// Trailers of an archive with a late head (LateHeadWriterTo): the head, in
// standard base64, once the archive is complete; the error, when the
// archive failed midway (TrailerStatus "failed").
const (
	TrailerHead  = "X-Snapshot-Head"
	TrailerError = "X-Snapshot-Error"
)

// WriterTo is an archive ready to stream, as ServeArchive sends it.
type WriterTo interface {
	WriteTo(w io.Writer) (int64, error)
	Close() error
}

// LateHeadWriterTo is an archive that streams before its first bytes are
// known: WriteLateHead returns the bytes to write over them once it is
// complete (archive.WriteLateHead).
type LateHeadWriterTo interface {
	WriterTo
	WriteLateHead(w io.Writer) (int64, []byte, error)
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
	if late, ok := a.(LateHeadWriterTo); ok {
		serveLateHead(w, r, logger, late)
		return
	}
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

// serveLateHead streams an archive with a late head: the head goes in a
// trailer, and so does an error midway, which the response then ends with
// instead of aborting, so the client can say what failed (the snapshot
// failing while it is written is an outcome, not a broken connection).
func serveLateHead(w http.ResponseWriter, r *http.Request, logger *slog.Logger, a LateHeadWriterTo) {
	w.Header().Set("Trailer", TrailerStatus+", "+TrailerHead+", "+TrailerError)
	w.WriteHeader(http.StatusOK)
	n, head, err := a.WriteLateHead(w)
	if err != nil {
		logger.ErrorContext(r.Context(), "streaming an archive failed; ending it as failed", "path", r.URL.Path, "bytes", n, "error", err)
		w.Header().Set(TrailerStatus, "failed")
		w.Header().Set(TrailerError, oneLine(err.Error()))
		return
	}
	w.Header().Set(TrailerHead, base64.StdEncoding.EncodeToString(head))
	w.Header().Set(TrailerStatus, "complete")
}

// oneLine makes s a valid header value: printable ASCII, no line breaks.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r > '~' {
			return ' '
		}
		return r
	}, s)
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
	if errors.Is(err, io.EOF) {
		switch b.resp.Trailer.Get(TrailerStatus) {
		case "complete":
			if b.late() && b.Head() == nil {
				return n, fmt.Errorf("%w: %s sent an archive without the head it announced", b.unavailable, b.who)
			}
		case "failed":
			return n, fmt.Errorf("%w: %s", b.unavailable, b.resp.Trailer.Get(TrailerError))
		default:
			return n, fmt.Errorf("%w: %s ended the snapshot stream before the archive was complete", b.unavailable, b.who)
		}
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return n, fmt.Errorf("%w: the snapshot stream from %s broke: %v", b.unavailable, b.who, err)
	}
	return n, err
}

// late reports whether the archive has a late head: the server announced
// the trailer.
func (b *checkedBody) late() bool {
	_, ok := b.resp.Trailer[TrailerHead]
	return ok
}

// Head returns the bytes to write over the start of an archive with a
// late head once it was read to its end; nil for any other archive (an
// agent that streams only complete snapshots answers a request for a late
// head with one), or before the end.
func (b *checkedBody) Head() []byte {
	if !b.late() || b.resp.Trailer.Get(TrailerStatus) != "complete" {
		return nil
	}
	head, err := base64.StdEncoding.DecodeString(b.resp.Trailer.Get(TrailerHead))
	if err != nil || len(head) == 0 {
		return nil
	}
	return head
}

func (b *checkedBody) Close() error { return b.resp.Body.Close() }
