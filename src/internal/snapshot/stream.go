package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/archive"
)

// Stream is a snapshot whose rewrite still runs when Begin returns: its
// archive streams the rewrite's base file while Redis writes it, so the
// compression, the checksum and the upload overlap the snapshot instead
// of following it. The file is read from the rewrite's temporary file, held
// open through Redis's renames; once the rewrite ended it is staged as Take
// stages it, and the archive is complete only if the staged base file is
// the very file that was read (same inode, read to its end). Close it when
// done: a rewrite still running is stopped.
type Stream struct {
	t       *taker
	f       forked
	ctx     context.Context
	cancel  context.CancelFunc
	file    *os.File
	snap    *Snapshot // once staged
	ended   bool      // the rewrite ended, well or not
	checked time.Time // the last look at the rewrite
}

// Begin starts a snapshot of the server c is the admin connection of, as
// Take does, and returns once the rewrite forked; ctx must last until the
// stream was written (o.Timeout bounds the rewrite, not the upload).
func Begin(ctx context.Context, c *redis.Client, o Options) (*Stream, error) {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	t, err := newTaker(ctx, c, o)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	if err := os.Mkdir(o.StagingDir, 0o700); err != nil {
		cancel()
		return nil, fmt.Errorf("creating the staging folder: %w", err)
	}
	removeStaleTemp(o.DataDir, t.logger)
	for attempt := 1; ; attempt++ {
		err := t.waitIdle(ctx)
		var f forked
		if err == nil {
			f, err = t.fork(ctx)
		}
		if errors.Is(err, errBusy) && attempt < maxAttempts {
			t.logger.Info("another snapshot started first; waiting for it", "instance", o.InstanceID, "reason", err)
			continue
		}
		if err != nil {
			cancel()
			_ = os.RemoveAll(o.StagingDir)
			return nil, timedOut(ctx, o, err)
		}
		t.logger.Info("snapshot forked; streaming it as it is written", "instance", o.InstanceID, "keys", f.keys, "incr", f.incr.Name)
		return &Stream{t: t, f: f, ctx: ctx, cancel: cancel}, nil
	}
}

// Manifest describes the snapshot; Files is empty until it was written.
func (s *Stream) Manifest() archive.Manifest { return s.t.manifest(s.f) }

// WriteLateHead streams the archive (archive.WriteLateHead) as the rewrite
// writes its file, calls check (when not nil) before the manifest, and
// returns the bytes written and the head that replaces the first
// archive.HeadSize of them.
func (s *Stream) WriteLateHead(w io.Writer, check func() error) (int64, []byte, error) {
	cw := &countingWriter{w: w}
	_, head, err := archive.WriteLateHead(cw, s.Manifest(), &tail{s: s}, func() ([]archive.Entry, error) {
		return s.snap.entries[1:], nil
	}, check)
	return cw.n, head, err
}

// WriteChecked waits for the rewrite to end and then writes the archive as
// Snapshot.WriteChecked does, for a client that cannot take a late head.
func (s *Stream) WriteChecked(w io.Writer, check func() error) (int64, error) {
	r := &tail{s: s}
	for !s.ended {
		if err := r.step(); err != nil {
			return 0, err
		}
	}
	return s.snap.WriteChecked(w, check)
}

// Close stops a rewrite still running, and removes the staging folder.
func (s *Stream) Close() error {
	defer s.cancel()
	if !s.ended {
		s.stopChild()
	}
	if s.file != nil {
		s.file.Close()
	}
	return os.RemoveAll(s.t.o.StagingDir)
}

// stopChild stops the rewrite's child with SIGUSR1 (a cancellation to
// Redis), if it is still the one this snapshot started.
func (s *Stream) stopChild() {
	s.t.findChild()
	if s.t.child != 0 && isRewriteChild(s.t.child) {
		if err := syscall.Kill(s.t.child, syscall.SIGUSR1); err == nil {
			s.t.logger.Info("stopped the snapshot's child process", "instance", s.t.o.InstanceID, "pid", s.t.child)
		}
	}
}

// tail reads the rewrite's base file as it grows, and ends once the
// rewrite ended well and the file is whole.
type tail struct{ s *Stream }

// tailPause is the wait for more bytes when the reader caught up with the
// rewrite; lookEvery is how often it then asks Redis whether the rewrite
// ended.
const (
	tailPause = 5 * time.Millisecond
	lookEvery = 50 * time.Millisecond
)

func (r *tail) Read(p []byte) (int, error) {
	s := r.s
	for {
		if s.file != nil {
			n, err := s.file.Read(p)
			if n > 0 {
				return n, nil
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return 0, fmt.Errorf("reading the snapshot: %w", err)
			}
			if s.ended {
				return 0, io.EOF
			}
		}
		if err := r.step(); err != nil {
			return 0, err
		}
	}
}

// step waits a little for the rewrite: it opens its file once there is
// one, and looks whether the rewrite ended, staging the base file then.
func (r *tail) step() error {
	s, t := r.s, r.s.t
	if s.file == nil {
		s.openTemp()
	}
	if time.Since(s.checked) < lookEvery {
		// Even once the snapshot's time is up: the next look says whether
		// the rewrite ended in time.
		time.Sleep(tailPause)
		return nil
	}
	s.checked = time.Now()
	// The rewrite may have ended long before the upload caught up: ask
	// even when the snapshot's time is up.
	lctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), 10*time.Second)
	p, err := t.persistence(lctx)
	cancel()
	if err != nil {
		s.ended = true
		if errors.Is(err, ErrServerGone) {
			t.stopOrphan()
		}
		return err
	}
	if p["aof_rewrite_in_progress"] != "0" {
		if s.ctx.Err() != nil {
			s.stopChild()
			s.ended = true
			return fmt.Errorf("%w: the snapshot did not finish within %s; redis-server's snapshot child was stopped", ErrTimeout, t.o.Timeout)
		}
		return nil
	}
	s.ended = true
	if st := p["aof_last_bgrewrite_status"]; st != "ok" {
		return fmt.Errorf("%w: the rewrite ended with status %q%s", ErrFailed, st, t.why())
	}
	snap, err := t.stage(s.f)
	if errors.Is(err, errBusy) {
		return fmt.Errorf("%w: another rewrite replaced the snapshot's base file before it was verified; try again", ErrFailed)
	}
	if err != nil {
		return err
	}
	s.snap = snap
	staged, err := os.Open(snap.entries[0].Path)
	if err != nil {
		return err
	}
	if s.file == nil {
		// The rewrite ended before its file was found: read the staged one.
		s.file = staged
		return nil
	}
	defer staged.Close()
	a, err1 := s.file.Stat()
	b, err2 := staged.Stat()
	if err := errors.Join(err1, err2); err != nil {
		return err
	}
	if !os.SameFile(a, b) {
		return fmt.Errorf("%w: the file streamed is not the rewrite's base file", ErrFailed)
	}
	return nil
}

// openTemp opens the file the rewrite's child writes (temp-rewriteaof-PID.aof
// in the data directory, renamed temp-rewriteaof-bg-PID.aof once written),
// if it exists yet.
func (s *Stream) openTemp() {
	t := s.t
	if t.findChild(); t.child == 0 {
		return
	}
	for _, name := range []string{"temp-rewriteaof-", "temp-rewriteaof-bg-"} {
		if f, err := os.Open(filepath.Join(t.o.DataDir, name+strconv.Itoa(t.child)+".aof")); err == nil {
			s.file = f
			return
		}
	}
}

// findChild notes the pid of the rewrite's child, once there is one.
func (t *taker) findChild() {
	if t.child != 0 {
		return
	}
	for _, pid := range children(t.pid) {
		if isRewriteChild(pid) {
			t.child = pid
		}
	}
}
