package instance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/archive"
	"github.com/cf-redis/redis-for-cf/src/internal/snapshot"
)

// acquire marks the server busy with op (a backup or a restore), or says
// what it is busy with: one at a time per server.
func (s *Server) acquire(id, op string) (func(), error) {
	if s.env.Started != nil && !s.env.Started() {
		return nil, fmt.Errorf("%w: the agent is starting", agentapi.ErrUnavailable)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.busy != "" {
		return nil, fmt.Errorf("%w: a %s of instance %s is running; try again when it ended", agentapi.ErrConflict, s.busy, id)
	}
	s.busy = op
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			s.busy = ""
			s.mu.Unlock()
		})
	}, nil
}

// Snapshot takes a consistent snapshot of instance id (package snapshot)
// without stopping it or holding up other operations; the archive streams
// from hard links in a staging folder beside its data, which Close of the
// result removes. Deleting the instance meanwhile (on a node: a reset) is
// not held up: the snapshot, or its stream, fails, so no one takes it for a
// whole backup, and no other tenant's data is ever streamed under its id.
func (s *Server) Snapshot(ctx context.Context, id string, req agentapi.SnapshotRequest) (agentapi.Archive, error) {
	if err := CheckID("instance id", id); err != nil {
		return nil, err
	}
	release, err := s.acquire(id, "backup")
	if err != nil {
		return nil, err
	}
	r, err := s.cfg.Store.Held(id)
	if err != nil {
		release()
		return nil, err
	}
	p := s.cfg.Paths
	o := snapshot.Options{
		InstanceID: id, Plan: s.env.Plan, DataDir: p.Data, StagingDir: snapshot.StagingDir(p.Data),
		Timeout: req.Timeout, LogFile: p.Log, Logger: s.logger,
	}
	alive := func() error {
		if !s.same(r) {
			return fmt.Errorf("%w: instance %s was deleted during its backup", agentapi.ErrNotFound, id)
		}
		return nil
	}
	if req.LateHead {
		st, err := snapshot.Begin(ctx, s.Admin(), o)
		if err == nil && !s.same(r) {
			st.Close()
			err = errDeleted
		}
		if err != nil {
			release()
			return nil, s.snapshotError(r, err)
		}
		return &HeldStream{Stream: st, Release: release, Alive: alive, Error: func(err error) error {
			if errors.Is(err, agentapi.ErrNotFound) {
				return err
			}
			return s.snapshotError(r, err)
		}}, nil
	}
	snap, err := snapshot.Take(ctx, s.Admin(), o)
	if err == nil && !s.same(r) {
		snap.Close()
		err = errDeleted
	}
	if err != nil {
		release()
		return nil, s.snapshotError(r, err)
	}
	s.logger.Info("snapshot taken", "instance", id, "keys", snap.Manifest().Keys)
	return &HeldArchive{Snapshot: snap, Release: release, Alive: alive}, nil
}

var errDeleted = errors.New("deleted")

// same reports whether instance r still holds the server and is the same
// instance (not deleted and created again under its id).
func (s *Server) same(r Record) bool {
	cur, err := s.cfg.Store.Held(r.ID)
	return err == nil && cur.CreatedAt.Equal(r.CreatedAt)
}

func (s *Server) snapshotError(r Record, err error) error {
	if errors.Is(err, errDeleted) || !s.same(r) {
		return fmt.Errorf("%w: instance %s was deleted during its backup", agentapi.ErrNotFound, r.ID)
	}
	switch {
	case errors.Is(err, syscall.ENOSPC):
		return fmt.Errorf("%w: snapshot of instance %s: no space left on the disk of its data", agentapi.ErrFull, r.ID)
	case errors.Is(err, snapshot.ErrTimeout), errors.Is(err, snapshot.ErrServerGone), errors.Is(err, snapshot.ErrFailed):
		return fmt.Errorf("%w: snapshot of instance %s: %v", agentapi.ErrUnavailable, r.ID, err)
	default:
		return fmt.Errorf("snapshot of instance %s: %w", r.ID, err)
	}
}

// HeldArchive is a snapshot that keeps its server busy until it is closed,
// and whose stream fails when the instance went away while it streamed: the
// last bytes never reach the client, so its upload is aborted.
type HeldArchive struct {
	*snapshot.Snapshot
	// Release ends the hold; Close calls it.
	Release func()
	// Alive returns an error once the instance is gone.
	Alive func() error
}

// WriteTo streams the archive, failing once Alive does.
func (a *HeldArchive) WriteTo(w io.Writer) (int64, error) {
	return a.Snapshot.WriteChecked(w, a.Alive)
}

// Close removes the snapshot and releases the server.
func (a *HeldArchive) Close() error {
	defer a.Release()
	return a.Snapshot.Close()
}

// HeldStream is HeldArchive for a snapshot that streams while its rewrite
// runs (snapshot.Begin): WriteLateHead streams it with a late head
// (archive.WriteLateHead), WriteTo waits for the rewrite first.
type HeldStream struct {
	*snapshot.Stream
	// Release ends the hold; Close calls it.
	Release func()
	// Alive returns an error once the instance is gone.
	Alive func() error
	// Error says what a failed snapshot means for the instance, as the
	// errors of Snapshot do.
	Error func(error) error
}

// WriteTo waits for the rewrite, then streams the archive, failing once
// Alive does.
func (a *HeldStream) WriteTo(w io.Writer) (int64, error) {
	n, err := a.Stream.WriteChecked(w, a.Alive)
	if err != nil {
		err = a.Error(err)
	}
	return n, err
}

// WriteLateHead streams the archive as the rewrite writes it, failing once
// Alive does, and returns the head to write over its start.
func (a *HeldStream) WriteLateHead(w io.Writer) (int64, []byte, error) {
	n, head, err := a.Stream.WriteLateHead(w, a.Alive)
	if err != nil {
		err = a.Error(err)
	}
	return n, head, err
}

// Close stops a rewrite still running, removes the snapshot and releases
// the server.
func (a *HeldStream) Close() error {
	defer a.Release()
	return a.Stream.Close()
}

// Restore replaces instance id's data with a backup's (package snapshot):
// the archive is unpacked beside the data and every checksum verified while
// the instance keeps serving; then, under the lock, redis-server is
// stopped, the data swapped, and the server started on the backup. The old
// data is deleted only once the backup loaded and its key count matched the
// manifest; on any failure it is put back. The instance keeps its port, its
// admin and binding users (they live in users.acl, outside the data) and
// its parameters.
func (s *Server) Restore(ctx context.Context, id string, req agentapi.RestoreRequest, body io.Reader) (agentapi.RestoreResult, error) {
	if err := CheckID("instance id", id); err != nil {
		return agentapi.RestoreResult{}, err
	}
	release, err := s.acquire(id, "restore")
	if err != nil {
		return agentapi.RestoreResult{}, err
	}
	defer release()
	if err := s.restorable(id); err != nil {
		return agentapi.RestoreResult{}, err
	}
	p := s.cfg.Paths
	staged, err := snapshot.Stage(body, p.Dir)
	if err != nil {
		return agentapi.RestoreResult{}, stageError(id, err)
	}
	defer staged.Close()
	if from := req.FromInstance; from != "" && staged.Manifest.InstanceID != from {
		return agentapi.RestoreResult{}, fmt.Errorf("%w: the backup is of instance %s, not of %s", agentapi.ErrInvalid, staged.Manifest.InstanceID, from)
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return agentapi.RestoreResult{}, err
	}
	defer unlock()
	if err := s.restorable(id); err != nil {
		return agentapi.RestoreResult{}, err
	}
	s.logger.Info("restoring", "instance", id, "backup_of", staged.Manifest.InstanceID, "backup_time", staged.Manifest.CreatedAt, "keys", staged.Manifest.Keys)
	res, err := staged.Install(ctx, p.Data, restoreServer{s}, snapshot.InstallOptions{Logger: s.logger})
	if err != nil {
		if errors.Is(err, snapshot.ErrVerify) {
			return agentapi.RestoreResult{}, fmt.Errorf("%w: restore of instance %s: %v", agentapi.ErrInvalid, id, err)
		}
		return agentapi.RestoreResult{}, fmt.Errorf("%w: restore of instance %s: %v", agentapi.ErrUnavailable, id, err)
	}
	s.logger.Info("restored", "instance", id, "keys", res.Keys)
	return agentapi.RestoreResult{InstanceID: id, Backup: staged.Manifest, Keys: res.Keys}, nil
}

// restorable checks that instance id may be restored into.
func (s *Server) restorable(id string) error {
	r, err := s.cfg.Store.Held(id)
	if err != nil {
		return err
	}
	if r.Leader != nil {
		return fmt.Errorf("%w: instance %s follows a leader, which would overwrite the restored data: make it a leader first", agentapi.ErrConflict, id)
	}
	return nil
}

// stageError says why a backup could not be staged.
func stageError(id string, err error) error {
	switch {
	case errors.Is(err, archive.ErrCorrupt):
		return fmt.Errorf("%w: %v; instance %s keeps its data", agentapi.ErrInvalid, err, id)
	case errors.Is(err, syscall.ENOSPC):
		return fmt.Errorf("%w: no space left on the disk of instance %s for the backup; it keeps its data", agentapi.ErrFull, id)
	default:
		return fmt.Errorf("%w: staging the backup for instance %s: %v; it keeps its data", agentapi.ErrUnavailable, id, err)
	}
}

// restoreServer is the server as a restore stops and starts it; the caller
// holds the lock.
type restoreServer struct{ s *Server }

func (r restoreServer) Stop(ctx context.Context) error {
	r.s.stopRetry()
	r.s.restarting.Store(true)
	return r.s.sup.Stop(ctx)
}

func (r restoreServer) Start(ctx context.Context) error {
	defer r.s.restarting.Store(false)
	return r.s.Start(ctx)
}

// Admin is a new connection, which the restore closes: a restore restarts
// the server anyway.
func (r restoreServer) Admin() *redis.Client { return r.s.client(r.s.current(), adminTimeout) }

// RecoverData finishes, before the server starts, what a crash cut short: a
// restore that never verified is rolled back (with any redis-server it left
// running on the backup's data stopped first), and staging folders go.
func (s *Server) RecoverData(ctx context.Context) {
	p := s.cfg.Paths
	if snapshot.Pending(p.Data) {
		if _, err := os.Stat(p.Pid); err == nil {
			if err := s.sup.Start(ctx); err == nil {
				_ = s.sup.Stop(ctx)
			}
		}
	}
	rolledBack, err := snapshot.Recover(p.Data)
	if err != nil {
		s.logger.Error("tidying up after an interrupted backup or restore failed", "instance", s.cfg.Name, "error", err)
	}
	if rolledBack {
		s.logger.Warn("a restore was interrupted; the instance's previous data is back in place", "instance", s.cfg.Name)
	}
}
