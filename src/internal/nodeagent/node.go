// Package nodeagent is the agent of a dedicated node: a VM whose one
// redis-server (package instance) is handed whole to one service instance
// at a time. It claims the node for an instance, serves that instance's
// verbs, and resets the node (stop, wipe, new admin password, start, verify
// empty) before it goes back to the pool, quarantining a node that does not
// verify. Its state lives in a file that survives a crash at any moment, and
// a reset cut short by a crash is finished when the agent starts again.
package nodeagent

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/agentmetrics"
	"github.com/cf-redis/redis-for-cf/src/internal/cgroup"
	"github.com/cf-redis/redis-for-cf/src/internal/instance"
	"github.com/cf-redis/redis-for-cf/src/internal/keylock"
	"github.com/cf-redis/redis-for-cf/src/internal/logrotate"
	"github.com/cf-redis/redis-for-cf/src/internal/statefile"
)

// Plan is the plan name a node's backups record in their manifest.
const Plan = "dedicated-vm"

// opKey is the one key of the operations lock: a node runs one operation at
// a time.
const opKey = "node"

// state is what the agent keeps in its state file.
type state struct {
	// State is one of agentapi's Node constants; empty before the agent's
	// first start finished its first reset.
	State string `json:"state"`
	// InstanceID is the instance holding the node, or the one it held while
	// resetting or quarantined.
	InstanceID string `json:"instance_id,omitempty"`
	// ResetError says why the last reset failed.
	ResetError string `json:"reset_error,omitempty"`
	// Record is the node's redis-server, whose ID is the instance holding
	// it. Its AdminPassword changes only while redis-server is stopped, so
	// the agent can always adopt or stop the server it finds.
	instance.Record
	// ClaimedAt is when the claim was made, in state files written before
	// the one record shape; openState moves it to CreatedAt.
	ClaimedAt time.Time `json:"claimed_at,omitzero"`
}

// Node runs a dedicated node's redis-server for the broker. The zero value is
// not usable; call New, then Start.
type Node struct {
	cfg       Config
	logger    *slog.Logger
	maxmemory int64
	state     *statefile.File[state]
	srv       *instance.Server
	cgroups   *cgroup.Tree
	guard     *instance.Guard
	// sentinel is the node's redis-sentinel; nil unless the config's HA
	// section lets the node join HA groups.
	sentinel *sentinelProc
	logs     *logrotate.Rotator
	// ops serialises the operations that change the node; Node and Get do
	// not wait for it.
	ops keylock.Map
	// started is set once Start has recovered from a crash: until then a
	// restore cut short may still be rolled back.
	started atomic.Bool
	// backups are the outcomes of the scheduled backups, for the metrics.
	backups agentmetrics.Backups
}

var _ agentapi.HAService = (*Node)(nil)

// New opens the node's state in cfg.DataDir, bringing a state file of an
// earlier version to today's shape; cfg must have passed Validate. It
// starts nothing.
func New(cfg Config, logger *slog.Logger) (*Node, error) {
	maxmemory, err := cfg.maxMemory()
	if err != nil {
		return nil, err
	}
	if cfg.RedisServer, err = instance.Setup(cfg.RedisTLS, cfg.RedisServer, cfg.DataDir, cfg.LogDir); err != nil {
		return nil, err
	}
	st, err := statefile.Open[state](filepath.Join(cfg.DataDir, "state.json"))
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, logger: logger.With("node", cfg.NodeID), maxmemory: maxmemory, state: st}
	if err := n.migrate(); err != nil {
		return nil, err
	}
	if n.cgroups, err = cgroup.Open(cfg.Cgroups, cgroup.Name(cfg.DataDir), n.logger); err != nil {
		return nil, err
	}
	env := &instance.Env{
		Host: cfg.Host, Bind: cfg.Bind, RedisServer: cfg.RedisServer, TLS: cfg.RedisTLS,
		Plan: Plan, Logger: n.logger, Started: n.started.Load, Cgroups: n.cgroups,
	}
	n.srv = instance.New(instance.Config{
		Env:   env,
		Name:  cfg.NodeID,
		Paths: instance.PathsIn(cfg.DataDir, filepath.Join(cfg.LogDir, "redis-server.log")),
		Store: nodeStore{n},
		Lock:  func(ctx context.Context) (func(), error) { return n.ops.LockContext(ctx, opKey) },
		Runnable: func() bool {
			return n.current().State != agentapi.NodeResetting
		},
	})
	if cfg.HA != nil {
		n.sentinel = newSentinel(n)
	}
	n.logs = logrotate.New(cfg.RedisLogs, n.logFiles, n.logger)
	n.guard = instance.NewGuard(instance.GuardConfig{
		Servers:          func() []*instance.Server { return []*instance.Server{n.srv} },
		MaxScriptSeconds: cfg.MaxScriptSeconds, Logger: n.logger,
	})
	return n, nil
}

// migrate makes the record what the config says of the server (its ports
// and memory limit, which a new config may change) and moves what state
// files of earlier versions kept elsewhere into it: the claim's time and
// instance id. Their top-level admin password, parameters, bindings and
// leader are the record's own fields already.
func (n *Node) migrate() error {
	return n.state.Update(func(st *state) error {
		st.Port, st.TLSPort, st.MaxMemoryBytes = n.cfg.Port, n.cfg.TLSPort, n.maxmemory
		if !st.ClaimedAt.IsZero() {
			st.CreatedAt, st.ClaimedAt = st.ClaimedAt, time.Time{}
		}
		if st.State == agentapi.NodeClaimed {
			st.ID = st.InstanceID
		}
		return nil
	})
}

// Start brings the node back to where its state file says it was: it adopts
// a redis-server still running from before the agent restarted or starts
// one, and finishes a reset a crash interrupted. On its very first start the
// node is reset, so it enters the pool verified empty. A redis-server that
// does not start is retried in the background.
func (n *Node) Start(ctx context.Context) {
	unlock, err := n.ops.LockContext(ctx, opKey)
	if err != nil {
		return
	}
	defer unlock()
	defer n.started.Store(true)
	defer n.guard.Start()
	defer n.logs.Start()
	s := n.current()
	switch s.State {
	case "", agentapi.NodeResetting:
		n.srv.RecoverData(ctx)
		n.logger.Info("finishing a reset", "first_start", s.State == "", "instance", s.InstanceID)
		if _, err := n.reset(ctx); err != nil {
			n.logger.Error("reset failed", "error", err)
		}
		return
	}
	if s.HA != nil && n.sentinel != nil {
		// Sentinel first: the server asks it whom to follow before it
		// starts.
		if err := n.sentinel.start(ctx, s.Record); err != nil {
			n.logger.Error("Sentinel did not start; the server follows the leader it last knew", "error", err)
		}
	}
	n.srv.Recover(ctx)
	n.logger.Info("node agent started", "state", s.State, "instance", s.InstanceID)
}

// Shutdown waits (until ctx ends) for the operation in progress, then stops
// redis-server gracefully, so it flushes its AOF. A reset that Shutdown
// interrupts stays "resetting" and is finished by the next Start.
func (n *Node) Shutdown(ctx context.Context) {
	n.guard.Stop()
	n.logs.Stop()
	n.srv.Close()
	if unlock, err := n.ops.LockContext(ctx, opKey); err == nil {
		defer unlock()
	}
	n.srv.Shutdown(ctx)
	if n.sentinel != nil {
		if err := n.sentinel.stop(ctx, false); err != nil {
			n.logger.Error("stopping Sentinel failed", "error", err)
		}
	}
	if err := n.cgroups.Remove(); err != nil {
		n.logger.Warn("removing the server's cgroup subtree failed", "error", err)
	}
}

// RunBackups backs up the instance holding the node on the schedule of the
// config's backups section, until ctx ends; it returns at once without one.
func (n *Node) RunBackups(ctx context.Context) error {
	if n.cfg.Backups == nil {
		return nil
	}
	return n.cfg.Backups.Run(ctx, n.logger, "node "+n.cfg.NodeID, n, n.backups.Record)
}

// current returns the state as last stored.
func (n *Node) current() state {
	var s state
	_ = n.state.View(func(v state) { s = v })
	return s
}

// held checks that instanceID holds the node.
func (n *Node) held(s state, instanceID string) error {
	switch {
	case s.State == agentapi.NodeClaimed && s.InstanceID == instanceID:
		return nil
	case s.State == agentapi.NodeClaimed:
		return fmt.Errorf("%w: node %s is held by another instance", agentapi.ErrConflict, n.cfg.NodeID)
	case s.State == agentapi.NodeFree:
		return fmt.Errorf("%w: node %s holds no instance", agentapi.ErrNotFound, n.cfg.NodeID)
	default:
		return fmt.Errorf("%w: node %s holds no instance: it is %s", agentapi.ErrNotFound, n.cfg.NodeID, s.State)
	}
}

// nodeStore is the state file as the node's Server sees it: the record is
// the instance's only while the instance holds the node.
type nodeStore struct{ n *Node }

var _ instance.Store = nodeStore{}

func (st nodeStore) Current() (instance.Record, error) { return st.n.current().Record, nil }

func (st nodeStore) Held(id string) (instance.Record, error) {
	s := st.n.current()
	return s.Record, st.n.held(s, id)
}

func (st nodeStore) Update(id string, change func(*instance.Record) error) (instance.Record, error) {
	return instance.UpdateIn(st.n.state, func(s *state) (*instance.Record, error) {
		return &s.Record, st.n.held(*s, id)
	}, change)
}

// logFiles are the logs of the node's redis-server and, in an HA group, its
// Sentinel: rotated as they grow and removed by every reset.
func (n *Node) logFiles() []string {
	files := []string{n.srv.Paths().Log}
	if n.sentinel != nil {
		files = append(files, n.sentinel.logFile())
	}
	return files
}
