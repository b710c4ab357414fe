package jsonhttp_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cf-redis/redis-for-cf/src/internal/jsonhttp"
	"github.com/cf-redis/redis-for-cf/src/internal/store"
)

// lateArchive streams body with its first len(head) bytes zeroed and
// returns head at the end, or fails after the body with err.
type lateArchive struct {
	body, head []byte
	err        error
	closed     bool
}

func (a *lateArchive) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(a.body)
	return int64(n), err
}

func (a *lateArchive) WriteLateHead(w io.Writer) (int64, []byte, error) {
	out := bytes.Clone(a.body)
	copy(out, make([]byte, len(a.head)))
	n, err := w.Write(out)
	if err == nil {
		err = a.err
	}
	if err != nil {
		return int64(n), nil, err
	}
	return int64(n), a.head, nil
}

func (a *lateArchive) Close() error { a.closed = true; return nil }

func lateServer(t *testing.T, a jsonhttp.WriterTo, trailerHead string) *jsonhttp.Client {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if trailerHead != "" {
			// A server that announces a head and sends a broken one.
			w.Header().Set("Trailer", jsonhttp.TrailerStatus+", "+jsonhttp.TrailerHead)
			w.Write([]byte("data"))
			w.Header().Set(jsonhttp.TrailerHead, trailerHead)
			w.Header().Set(jsonhttp.TrailerStatus, "complete")
			return
		}
		jsonhttp.ServeArchive(w, r, slog.New(slog.DiscardHandler), func() (jsonhttp.WriterTo, error) { return a, nil }, func(error) {})
	}))
	t.Cleanup(srv.Close)
	ca := certPEM(srv)
	return client(t, srv, ca, "s3cret")
}

func readArchive(t *testing.T, c *jsonhttp.Client) ([]byte, []byte, error) {
	t.Helper()
	resp, err := c.Stream(context.Background(), http.MethodPost, "/v1/snapshot", nil)
	if err != nil {
		t.Fatal(err)
	}
	body := c.CheckedArchive(resp)
	defer body.Close()
	data, err := io.ReadAll(body)
	return data, body.(store.LateHead).Head(), err
}

func TestALateHeadComesInTheTrailer(t *testing.T) {
	a := &lateArchive{body: []byte("HEADER and the rest of the archive"), head: []byte("HEADER")}
	data, head, err := readArchive(t, lateServer(t, a, ""))
	if err != nil {
		t.Fatal(err)
	}
	if string(head) != "HEADER" || !bytes.HasPrefix(data, make([]byte, 6)) || string(data[6:]) != " and the rest of the archive" {
		t.Fatalf("data %q, head %q", data, head)
	}
	if !a.closed {
		t.Fatal("the archive was not closed")
	}
}

func TestAnArchiveThatFailsMidwaySaysWhy(t *testing.T) {
	a := &lateArchive{body: []byte("HEADER and a part"), head: []byte("HEADER"), err: errors.New("snapshot timed out: the snapshot did not finish within 2s\nsecond line")}
	_, head, err := readArchive(t, lateServer(t, a, ""))
	if !errors.Is(err, errUnavailable) || !strings.Contains(err.Error(), "did not finish within 2s second line") {
		t.Fatalf("%v", err)
	}
	if head != nil {
		t.Fatalf("a failed archive gave a head: %q", head)
	}
}

func TestAnArchiveWithoutALateHeadHasNone(t *testing.T) {
	plain := &plainArchive{body: []byte("a whole archive")}
	data, head, err := readArchive(t, lateServer(t, plain, ""))
	if err != nil || string(data) != "a whole archive" || head != nil {
		t.Fatalf("%q, head %q, %v", data, head, err)
	}
}

func TestAnAnnouncedHeadThatDoesNotComeFailsTheArchive(t *testing.T) {
	_, _, err := readArchive(t, lateServer(t, nil, "not base64!"))
	if !errors.Is(err, errUnavailable) || !strings.Contains(err.Error(), "without the head") {
		t.Fatalf("%v", err)
	}
}

type plainArchive struct{ body []byte }

func (a *plainArchive) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(a.body)
	return int64(n), err
}

func (a *plainArchive) Close() error { return nil }
