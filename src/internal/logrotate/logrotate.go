// Package logrotate keeps the log files of an agent's redis-servers within a
// size. redis-server opens its logfile anew for every line it writes
// (serverLogRaw: fopen(logfile, "a") per message), so rotating is a rename:
// a file past the size becomes NAME.1 (NAME.1 becomes NAME.2, and so on),
// the oldest beyond Policy.Keep is removed, and the server creates NAME
// again at its next line. Nothing is copied or truncated, no line is lost
// and the server is not signalled.
package logrotate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults of a Policy's zero fields.
const (
	DefaultMaxSizeMB = 10
	DefaultKeep      = 2
)

// Interval is how often a Rotator checks its files.
const Interval = time.Minute

// Policy says when a log file is rotated and how many old files are kept:
// the config member "redis_logs" of both agents.
type Policy struct {
	// MaxSizeMB is the size in MB past which a file is rotated; zero means
	// DefaultMaxSizeMB.
	MaxSizeMB int64 `json:"max_size_mb,omitempty"`
	// Keep is how many rotated files (NAME.1 ... NAME.Keep) are kept;
	// zero means DefaultKeep.
	Keep int `json:"keep,omitempty"`
}

// Validate checks p and fills in its defaults; field names p in errors.
func (p *Policy) Validate(field string) error {
	var errs []error
	if p.MaxSizeMB < 0 || p.MaxSizeMB > 1<<20 {
		errs = append(errs, fmt.Errorf("%s.max_size_mb must be in 1-%d (0 means %d)", field, 1<<20, DefaultMaxSizeMB))
	}
	if p.Keep < 0 || p.Keep > 100 {
		errs = append(errs, fmt.Errorf("%s.keep must be in 1-100 (0 means %d)", field, DefaultKeep))
	}
	if p.MaxSizeMB == 0 {
		p.MaxSizeMB = DefaultMaxSizeMB
	}
	if p.Keep == 0 {
		p.Keep = DefaultKeep
	}
	return errors.Join(errs...)
}

func (p Policy) maxBytes() int64 {
	if p.MaxSizeMB == 0 {
		return DefaultMaxSizeMB << 20
	}
	return p.MaxSizeMB << 20
}

func (p Policy) keep() int {
	if p.Keep == 0 {
		return DefaultKeep
	}
	return p.Keep
}

// Rotator is an agent's one loop that rotates its servers' log files every
// Interval. The zero value is not usable; call New.
type Rotator struct {
	policy Policy
	files  func() []string
	logger *slog.Logger

	// files serialises rotations with Remove, so a removed log cannot come
	// back as a rotated file.
	fileMu sync.Mutex

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// New returns the Rotator of the files that files returns at each check
// (a file that does not exist is skipped). A nil logger discards its logs.
func New(p Policy, files func() []string, logger *slog.Logger) *Rotator {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Rotator{policy: p, files: files, logger: logger}
}

// Start starts the loop; a second Start does nothing.
func (r *Rotator) Start() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan struct{})
	go r.run(ctx, r.done)
}

// Stop stops the loop and waits until it ended.
func (r *Rotator) Stop() {
	r.mu.Lock()
	cancel, done := r.cancel, r.done
	r.cancel, r.done = nil, nil
	r.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

func (r *Rotator) run(ctx context.Context, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.Check()
		}
	}
}

// Check rotates, now, every file past the policy's size; a failure is
// logged and the other files are still checked.
func (r *Rotator) Check() {
	for _, path := range r.files() {
		if err := r.rotate(path); err != nil {
			r.logger.Error("rotating a redis-server log failed", "file", path, "error", err)
		}
	}
}

// rotate rotates path when it is past the size, and removes rotated files
// beyond Keep (an earlier policy may have kept more).
func (r *Rotator) rotate(path string) error {
	r.fileMu.Lock()
	defer r.fileMu.Unlock()
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Size() <= r.policy.maxBytes() {
		return nil
	}
	keep := r.policy.keep()
	// NAME.keep-1 replaces NAME.keep, ..., NAME replaces NAME.1.
	for i := keep; i >= 1; i-- {
		from := numbered(path, i-1)
		if err := os.Rename(from, numbered(path, i)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	old, err := Rotated(path)
	if err != nil {
		return err
	}
	for n, p := range old {
		if n > keep {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	}
	return nil
}

// Remove removes path and its rotated files: what is left of a log whose
// server is gone.
func (r *Rotator) Remove(path string) error {
	r.fileMu.Lock()
	defer r.fileMu.Unlock()
	old, err := Rotated(path)
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range append([]string{path}, slices.Collect(maps.Values(old))...) {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Rotated returns the rotated files of path that exist (NAME.1, NAME.2, ...)
// by their number.
func Rotated(path string) (map[int]string, error) {
	dir, base := filepath.Split(path)
	entries, err := os.ReadDir(filepath.Clean(dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[int]string{}
	for _, e := range entries {
		suffix, ok := strings.CutPrefix(e.Name(), base+".")
		if !ok {
			continue
		}
		if n, err := strconv.Atoi(suffix); err == nil && n > 0 && strconv.Itoa(n) == suffix {
			out[n] = filepath.Join(dir, e.Name())
		}
	}
	return out, nil
}

func numbered(path string, n int) string {
	if n == 0 {
		return path
	}
	return path + "." + strconv.Itoa(n)
}
