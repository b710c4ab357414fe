package sharedagent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/agentbase"
	"github.com/cf-redis/redis-for-cf/src/internal/archive"
	"github.com/cf-redis/redis-for-cf/src/internal/backup"
	"github.com/cf-redis/redis-for-cf/src/internal/snapshot"
)

// Plan is the plan name a shared agent's backups record in their manifest.
const Plan = "shared-vm"

// backups is the Manager's state for snapshots and restores.
type backups struct {
	// started is set once Start has recovered every instance: before that,
	// a restore cut short by a crash may still be rolled back, so snapshots
	// and restores are refused.
	started atomic.Bool

	mu sync.Mutex
	// busy maps an instance to the snapshot or restore running on it: one
	// at a time per instance.
	busy map[string]string
}

// acquire marks instance id busy with op, or says what it is busy with.
func (b *backups) acquire(id, op string) (func(), error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if cur, ok := b.busy[id]; ok {
		return nil, fmt.Errorf("%w: a %s of instance %s is running; try again when it ended", agentapi.ErrConflict, cur, id)
	}
	if b.busy == nil {
		b.busy = map[string]string{}
	}
	b.busy[id] = op
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			delete(b.busy, id)
			b.mu.Unlock()
		})
	}, nil
}

// Snapshot takes a consistent snapshot of an instance (package snapshot)
// without stopping it; the archive streams from hard links in a staging
// folder beside its data, which Close of the result removes. Deleting the
// instance meanwhile is not held up: it removes the staging folder, and the
// snapshot fails.
func (m *Manager) Snapshot(ctx context.Context, id string, req agentapi.SnapshotRequest) (agentapi.Archive, error) {
	if err := checkID("instance id", id); err != nil {
		return nil, err
	}
	if !m.bk.started.Load() {
		return nil, fmt.Errorf("%w: the agent is starting", agentapi.ErrUnavailable)
	}
	release, err := m.bk.acquire(id, "backup")
	if err != nil {
		return nil, err
	}
	r, err := m.liveRecord(id)
	if err != nil {
		release()
		return nil, err
	}
	c := m.client(r, 10*time.Second)
	defer c.Close()
	p := m.paths(id)
	snap, err := snapshot.Take(ctx, c, snapshot.Options{
		InstanceID: id, Plan: Plan, DataDir: p.data, StagingDir: snapshot.StagingDir(p.data),
		Timeout: req.Timeout, LogFile: p.log, Logger: m.logger,
	})
	if err == nil && !m.same(r) {
		snap.Close()
		err = errDeleted
	}
	if err != nil {
		release()
		return nil, m.snapshotError(r, err)
	}
	m.logger.Info("snapshot taken", "instance", id, "keys", snap.Manifest().Keys)
	return &agentbase.HeldArchive{Snapshot: snap, Release: release, Alive: func() error {
		if !m.same(r) {
			return fmt.Errorf("%w: instance %s was deleted during its backup", agentapi.ErrNotFound, id)
		}
		return nil
	}}, nil
}

var errDeleted = errors.New("deleted")

// same reports whether instance r still exists and is the same instance
// (not deleted and created again under its id).
func (m *Manager) same(r record) bool {
	cur, err := m.liveRecord(r.ID)
	return err == nil && cur.CreatedAt.Equal(r.CreatedAt)
}

func (m *Manager) snapshotError(r record, err error) error {
	if errors.Is(err, errDeleted) || !m.same(r) {
		return fmt.Errorf("%w: instance %s was deleted during its backup", agentapi.ErrNotFound, r.ID)
	}
	switch {
	case errors.Is(err, snapshot.ErrTimeout), errors.Is(err, snapshot.ErrServerGone), errors.Is(err, snapshot.ErrFailed):
		return fmt.Errorf("%w: snapshot of instance %s: %v", agentapi.ErrUnavailable, r.ID, err)
	case errors.Is(err, syscall.ENOSPC):
		return fmt.Errorf("%w: snapshot of instance %s: no space left on the disk of its data", agentapi.ErrFull, r.ID)
	default:
		return fmt.Errorf("snapshot of instance %s: %w", r.ID, err)
	}
}

func (m *Manager) liveRecord(id string) (record, error) {
	r, err := m.record(id)
	if err == nil && r.Deleting {
		err = fmt.Errorf("%w: no instance %s", agentapi.ErrNotFound, id)
	}
	return r, err
}

// Restore replaces an instance's data with a backup's (package snapshot):
// the archive is unpacked beside the data and every checksum verified while
// the instance keeps serving; then redis-server is stopped, the data swapped,
// and the server started on the backup. The old data is deleted only once
// the backup loaded and its key count matched the manifest; on any failure
// it is put back. The instance keeps its port, its admin and binding users
// (they live in users.acl, outside the data) and its parameters.
func (m *Manager) Restore(ctx context.Context, id string, req agentapi.RestoreRequest, body io.Reader) (agentapi.RestoreResult, error) {
	if err := checkID("instance id", id); err != nil {
		return agentapi.RestoreResult{}, err
	}
	if !m.bk.started.Load() {
		return agentapi.RestoreResult{}, fmt.Errorf("%w: the agent is starting", agentapi.ErrUnavailable)
	}
	release, err := m.bk.acquire(id, "restore")
	if err != nil {
		return agentapi.RestoreResult{}, err
	}
	defer release()
	r, err := m.restorable(id)
	if err != nil {
		return agentapi.RestoreResult{}, err
	}
	p := m.paths(id)
	staged, err := snapshot.Stage(body, p.dir)
	if err != nil {
		return agentapi.RestoreResult{}, stageError(id, err)
	}
	defer staged.Close()
	if from := req.FromInstance; from != "" && staged.Manifest.InstanceID != from {
		return agentapi.RestoreResult{}, fmt.Errorf("%w: the backup is of instance %s, not of %s", agentapi.ErrInvalid, staged.Manifest.InstanceID, from)
	}
	unlock := m.locks.Lock(id)
	defer unlock()
	if r, err = m.restorable(id); err != nil {
		return agentapi.RestoreResult{}, err
	}
	m.logger.Info("restoring", "instance", id, "backup_of", staged.Manifest.InstanceID, "backup_time", staged.Manifest.CreatedAt, "keys", staged.Manifest.Keys)
	res, err := staged.Install(ctx, p.data, sharedServer{m: m, r: r}, snapshot.InstallOptions{Logger: m.logger})
	if err != nil {
		if errors.Is(err, snapshot.ErrVerify) {
			return agentapi.RestoreResult{}, fmt.Errorf("%w: restore of instance %s: %v", agentapi.ErrInvalid, id, err)
		}
		return agentapi.RestoreResult{}, fmt.Errorf("%w: restore of instance %s: %v", agentapi.ErrUnavailable, id, err)
	}
	m.logger.Info("restored", "instance", id, "keys", res.Keys)
	return agentapi.RestoreResult{InstanceID: id, Backup: staged.Manifest, Keys: res.Keys}, nil
}

// restorable returns the record of an instance that may be restored into.
func (m *Manager) restorable(id string) (record, error) {
	r, err := m.liveRecord(id)
	if err != nil {
		return r, err
	}
	if r.Leader != nil {
		return r, fmt.Errorf("%w: instance %s follows a leader, which would overwrite the restored data: make it a leader first", agentapi.ErrConflict, id)
	}
	return r, nil
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

// sharedServer is an instance's redis-server, as a restore stops and
// starts it.
type sharedServer struct {
	m *Manager
	r record
}

func (s sharedServer) Stop(ctx context.Context) error {
	s.m.mu.Lock()
	sup := s.m.sups[s.r.ID]
	if cancel, ok := s.m.retrying[s.r.ID]; ok {
		cancel()
	}
	s.m.mu.Unlock()
	if sup == nil {
		return nil
	}
	return sup.Stop(ctx)
}

func (s sharedServer) Start(ctx context.Context) error { return s.m.run(ctx, s.r) }

func (s sharedServer) Admin() *redis.Client { return s.m.adminClient(s.r) }

// recoverData finishes, before an instance starts, what a crash cut short:
// a restore that never verified is rolled back (with any redis-server it
// left running on the backup's data stopped first), and staging folders go.
func (m *Manager) recoverData(ctx context.Context, r record) {
	p := m.paths(r.ID)
	if snapshot.Pending(p.data) {
		if _, err := os.Stat(p.pid); err == nil {
			sup := m.newSupervisor(r)
			if err := sup.Start(ctx); err == nil {
				_ = sup.Stop(ctx)
			}
		}
	}
	rolledBack, err := snapshot.Recover(p.data)
	if err != nil {
		m.logger.Error("tidying up after an interrupted backup or restore failed", "instance", r.ID, "error", err)
	}
	if rolledBack {
		m.logger.Warn("a restore was interrupted; the instance's previous data is back in place", "instance", r.ID)
	}
}

// RunBackups backs up every instance on the schedule of the config's
// backups section, until ctx ends; it returns at once without one.
func (m *Manager) RunBackups(ctx context.Context) error {
	cfg := m.cfg.Backups
	if cfg == nil {
		return nil
	}
	return agentbase.RunBackups(ctx, cfg, m.logger, backup.Source{
		Name: "agent",
		Instances: func(ctx context.Context) ([]string, error) {
			list, err := m.List(ctx)
			var ids []string
			for _, inst := range list {
				if inst.State != "deleting" {
					ids = append(ids, inst.ID)
				}
			}
			return ids, err
		},
		Snapshot: func(ctx context.Context, id string) (io.ReadCloser, error) {
			a, err := m.Snapshot(ctx, id, agentapi.SnapshotRequest{Timeout: cfg.SnapshotTimeout()})
			if err != nil {
				return nil, err
			}
			return backup.Pipe(a), nil
		},
	})
}
