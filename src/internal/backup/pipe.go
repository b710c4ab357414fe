package backup

import (
	"bytes"
	"io"
	"log/slog"
	"strings"
	"sync"
)

// Archive is a snapshot that can stream itself, as an agent's Snapshot
// returns it.
type Archive interface {
	WriteTo(w io.Writer) (int64, error)
	Close() error
}

// lateArchive is an Archive that streams before its head is known
// (jsonhttp.LateHeadWriterTo).
type lateArchive interface {
	WriteLateHead(w io.Writer) (int64, []byte, error)
}

// Pipe streams a, written in the background, as a reader; a failure while
// writing comes out of Read, and Close stops the writing early. Either way
// a is closed. An archive with a late head is written as such, and the
// reader is then a store.LateHead that returns it once read to its end.
func Pipe(a Archive) io.ReadCloser {
	pr, pw := io.Pipe()
	p := &pipe{PipeReader: pr}
	go func() {
		var err error
		if late, ok := a.(lateArchive); ok {
			// Set before the pipe closes, which the reader's EOF follows.
			_, p.head, err = late.WriteLateHead(pw)
		} else {
			_, err = a.WriteTo(pw)
		}
		a.Close()
		pw.CloseWithError(err)
	}()
	return p
}

type pipe struct {
	*io.PipeReader
	head []byte
}

// Head is the archive's late head once it was read to its end, or nil.
func (p *pipe) Head() []byte { return p.head }

// LogWriter turns a Runner's lines into log records at level info, so an
// agent's scheduled backups report the way the errand does.
func LogWriter(logger *slog.Logger) io.Writer {
	return &logWriter{logger: logger}
}

type logWriter struct {
	mu     sync.Mutex
	logger *slog.Logger
	buf    bytes.Buffer
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			w.buf.WriteString(line)
			return len(p), nil
		}
		line = strings.TrimSpace(line)
		if strings.Contains(line, "FAILED") {
			w.logger.Error(line, "source", "backup")
		} else {
			w.logger.Info(line, "source", "backup")
		}
	}
}
