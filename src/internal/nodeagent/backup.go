package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/agentbase"
	"github.com/cf-redis/redis-for-cf/src/internal/archive"
	"github.com/cf-redis/redis-for-cf/src/internal/backup"
	"github.com/cf-redis/redis-for-cf/src/internal/nodeapi"
	"github.com/cf-redis/redis-for-cf/src/internal/snapshot"
)

// Plan is the plan name a node's backups record in their manifest.
const Plan = "dedicated-vm"

// backups is the Node's state for snapshots and restores.
type backups struct {
	// started is set once Start has recovered from a crash: until then a
	// restore cut short may still be rolled back.
	started atomic.Bool

	mu   sync.Mutex
	busy string // the snapshot or restore running, if any
}

func (b *backups) acquire(op string) (func(), error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.busy != "" {
		return nil, fmt.Errorf("%w: a %s is running on this node; try again when it ended", nodeapi.ErrConflict, b.busy)
	}
	b.busy = op
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			b.busy = ""
			b.mu.Unlock()
		})
	}, nil
}

// Snapshot takes a consistent snapshot of the instance holding the node
// (package snapshot) without stopping it or holding up other operations;
// the archive streams from a staging folder that Close of the result
// removes.
func (n *Node) Snapshot(ctx context.Context, req nodeapi.SnapshotRequest) (nodeapi.Archive, error) {
	if err := checkID("instance_id", req.InstanceID); err != nil {
		return nil, err
	}
	if !n.bk.started.Load() {
		return nil, fmt.Errorf("%w: the node agent is starting", nodeapi.ErrUnavailable)
	}
	release, err := n.bk.acquire("backup")
	if err != nil {
		return nil, err
	}
	s := n.current()
	if err := n.held(s, req.InstanceID); err != nil {
		release()
		return nil, err
	}
	c := n.adminClient(s)
	defer c.Close()
	snap, err := snapshot.Take(ctx, c, snapshot.Options{
		InstanceID: req.InstanceID, Plan: Plan, DataDir: n.paths.data, StagingDir: snapshot.StagingDir(n.paths.data),
		Timeout: req.Timeout, LogFile: n.paths.log, Logger: n.logger,
	})
	// The claim must have lasted through the snapshot: after a reset and a
	// new claim the data would be another tenant's.
	stillHeld := func() bool {
		cur := n.current()
		return cur.State == nodeapi.StateClaimed && cur.InstanceID == req.InstanceID && cur.ClaimedAt.Equal(s.ClaimedAt)
	}
	if err == nil && !stillHeld() {
		snap.Close()
		err = errReleased
	}
	if err != nil {
		release()
		if errors.Is(err, errReleased) || !stillHeld() {
			return nil, fmt.Errorf("%w: instance %s was deleted during its backup", nodeapi.ErrNotFound, req.InstanceID)
		}
		if errors.Is(err, syscall.ENOSPC) {
			return nil, fmt.Errorf("%w: snapshot of instance %s: no space left on the node's data disk", nodeapi.ErrUnavailable, req.InstanceID)
		}
		return nil, fmt.Errorf("%w: snapshot of instance %s: %v", nodeapi.ErrUnavailable, req.InstanceID, err)
	}
	n.logger.Info("snapshot taken", "instance", req.InstanceID, "keys", snap.Manifest().Keys)
	return &agentbase.HeldArchive{Snapshot: snap, Release: release, Alive: func() error {
		if !stillHeld() {
			return fmt.Errorf("%w: instance %s was deleted during its backup", nodeapi.ErrNotFound, req.InstanceID)
		}
		return nil
	}}, nil
}

var errReleased = errors.New("released")

// Restore replaces the data of the instance holding the node with a
// backup's, as the shared agent does (see sharedagent.Manager.Restore): the
// archive is staged and verified while the instance serves, then swapped in
// under the operations lock; the old data goes only once the backup loaded
// and verified, and comes back on any failure. Users, parameters and the
// admin password live outside the data and stay.
func (n *Node) Restore(ctx context.Context, req nodeapi.RestoreRequest, body io.Reader) (nodeapi.RestoreResult, error) {
	if err := checkID("instance_id", req.InstanceID); err != nil {
		return nodeapi.RestoreResult{}, err
	}
	if !n.bk.started.Load() {
		return nodeapi.RestoreResult{}, fmt.Errorf("%w: the node agent is starting", nodeapi.ErrUnavailable)
	}
	release, err := n.bk.acquire("restore")
	if err != nil {
		return nodeapi.RestoreResult{}, err
	}
	defer release()
	if err := n.restorable(req.InstanceID); err != nil {
		return nodeapi.RestoreResult{}, err
	}
	staged, err := snapshot.Stage(body, n.cfg.DataDir)
	if err != nil {
		switch {
		case errors.Is(err, archive.ErrCorrupt):
			return nodeapi.RestoreResult{}, fmt.Errorf("%w: %v; instance %s keeps its data", nodeapi.ErrInvalid, err, req.InstanceID)
		case errors.Is(err, syscall.ENOSPC):
			return nodeapi.RestoreResult{}, fmt.Errorf("%w: no space left on the node's data disk for the backup; instance %s keeps its data", nodeapi.ErrUnavailable, req.InstanceID)
		default:
			return nodeapi.RestoreResult{}, fmt.Errorf("%w: staging the backup: %v; instance %s keeps its data", nodeapi.ErrUnavailable, err, req.InstanceID)
		}
	}
	defer staged.Close()
	if from := req.FromInstance; from != "" && staged.Manifest.InstanceID != from {
		return nodeapi.RestoreResult{}, fmt.Errorf("%w: the backup is of instance %s, not of %s", nodeapi.ErrInvalid, staged.Manifest.InstanceID, from)
	}
	unlock, err := n.ops.LockContext(ctx, opKey)
	if err != nil {
		return nodeapi.RestoreResult{}, fmt.Errorf("%w: %v", nodeapi.ErrUnavailable, err)
	}
	defer unlock()
	if err := n.restorable(req.InstanceID); err != nil {
		return nodeapi.RestoreResult{}, err
	}
	n.logger.Info("restoring", "instance", req.InstanceID, "backup_of", staged.Manifest.InstanceID, "backup_time", staged.Manifest.CreatedAt, "keys", staged.Manifest.Keys)
	res, err := staged.Install(ctx, n.paths.data, nodeServer{n}, snapshot.InstallOptions{Logger: n.logger})
	if err != nil {
		if errors.Is(err, snapshot.ErrVerify) {
			return nodeapi.RestoreResult{}, fmt.Errorf("%w: restore of instance %s: %v", nodeapi.ErrInvalid, req.InstanceID, err)
		}
		return nodeapi.RestoreResult{}, fmt.Errorf("%w: restore of instance %s: %v", nodeapi.ErrUnavailable, req.InstanceID, err)
	}
	n.logger.Info("restored", "instance", req.InstanceID, "keys", res.Keys)
	return nodeapi.RestoreResult{InstanceID: req.InstanceID, Backup: staged.Manifest, Keys: res.Keys}, nil
}

func (n *Node) restorable(instanceID string) error {
	s := n.current()
	if err := n.held(s, instanceID); err != nil {
		return err
	}
	if s.Leader != nil {
		return fmt.Errorf("%w: instance %s follows a leader, which would overwrite the restored data: make it a leader first", nodeapi.ErrConflict, instanceID)
	}
	return nil
}

// nodeServer is the node's redis-server as a restore stops and starts it;
// the caller holds the operations lock.
type nodeServer struct{ n *Node }

func (s nodeServer) Stop(ctx context.Context) error  { return s.n.sup.Stop(ctx) }
func (s nodeServer) Start(ctx context.Context) error { return s.n.run(ctx) }
func (s nodeServer) Admin() *redis.Client            { return s.n.adminClient(s.n.current()) }

// recoverData rolls back a restore a crash cut short (stopping a
// redis-server left running on the backup's data first) and removes staging
// folders; the caller holds the operations lock.
func (n *Node) recoverData(ctx context.Context) {
	if snapshot.Pending(n.paths.data) {
		if _, err := os.Stat(n.paths.pid); err == nil {
			if err := n.sup.Start(ctx); err == nil {
				_ = n.sup.Stop(ctx)
			}
		}
	}
	rolledBack, err := snapshot.Recover(n.paths.data)
	if err != nil {
		n.logger.Error("tidying up after an interrupted backup or restore failed", "error", err)
	}
	if rolledBack {
		n.logger.Warn("a restore was interrupted; the instance's previous data is back in place")
	}
}

// RunBackups backs up the instance holding the node on the schedule of the
// config's backups section, until ctx ends; it returns at once without one.
func (n *Node) RunBackups(ctx context.Context) error {
	cfg := n.cfg.Backups
	if cfg == nil {
		return nil
	}
	return agentbase.RunBackups(ctx, cfg, n.logger, backup.Source{
		Name: "node " + n.cfg.NodeID,
		Instances: func(ctx context.Context) ([]string, error) {
			if s := n.current(); s.State == nodeapi.StateClaimed {
				return []string{s.InstanceID}, nil
			}
			return nil, nil
		},
		Snapshot: func(ctx context.Context, id string) (io.ReadCloser, error) {
			a, err := n.Snapshot(ctx, nodeapi.SnapshotRequest{InstanceID: id, Timeout: cfg.SnapshotTimeout()})
			if err != nil {
				return nil, err
			}
			return backup.Pipe(a), nil
		},
	})
}
