// Package nodeagent is the agent of a dedicated node: a VM whose one
// redis-server is handed whole to one service instance at a time. It
// supervises that redis-server, claims the node for an instance, manages its
// binding users and follower mode, and resets it (stop, wipe, new admin
// password, start, verify empty) before the node goes back to the pool. Its
// state lives in a file that survives a crash at any moment, and a reset cut
// short by a crash is finished when the agent starts again.
package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cf-redis/redis-for-cf/src/internal/agentbase"
	"github.com/cf-redis/redis-for-cf/src/internal/keylock"
	"github.com/cf-redis/redis-for-cf/src/internal/nodeapi"
	"github.com/cf-redis/redis-for-cf/src/internal/params"
	"github.com/cf-redis/redis-for-cf/src/internal/redisconf"
	"github.com/cf-redis/redis-for-cf/src/internal/secret"
	"github.com/cf-redis/redis-for-cf/src/internal/statefile"
	"github.com/cf-redis/redis-for-cf/src/internal/supervisor"
)

// AdminUser is the ACL user through which the agent manages redis-server.
// Its password never leaves the node and changes with every reset.
const AdminUser = "platform-admin"

// minPasswordLength is the shortest binding password the agent accepts.
const minPasswordLength = 32

// opKey is the one key of the operations lock: a node runs one operation at
// a time.
const opKey = "node"

// state is what the agent keeps in its state file.
type state struct {
	// State is one of nodeapi's State constants; empty before the agent's
	// first start finished its first reset.
	State string `json:"state"`
	// InstanceID is the instance holding the node, or the one it held while
	// resetting or quarantined.
	InstanceID string            `json:"instance_id,omitempty"`
	Parameters params.Parameters `json:"parameters"`
	// AdminPassword is the password of AdminUser that the running (or next)
	// redis-server accepts. It changes only while redis-server is stopped,
	// so the agent can always adopt or stop the server it finds.
	AdminPassword string `json:"admin_password"`
	// Bindings maps a binding username to its password hash and role.
	Bindings map[string]bindingRecord `json:"bindings,omitempty"`
	// Leader, when set, is the leader this node follows.
	Leader *nodeapi.Leader `json:"leader,omitempty"`
	// ResetError says why the last reset failed.
	ResetError string    `json:"reset_error,omitempty"`
	ClaimedAt  time.Time `json:"claimed_at,omitzero"`
}

type bindingRecord struct {
	PasswordHash string `json:"password_hash"`
	Role         string `json:"role,omitempty"`
}

// paths of the node's files.
type paths struct{ conf, acl, data, pid, log string }

// Node runs a dedicated node's redis-server for the broker. The zero value is
// not usable; call New, then Start.
type Node struct {
	cfg       Config
	logger    *slog.Logger
	maxmemory int64
	paths     paths
	state     *statefile.File[state]
	sup       *supervisor.Supervisor
	// ops serialises the operations that change the node; Status does not
	// wait for it.
	ops keylock.Map

	mu      sync.Mutex
	closing bool
	// retryCancel stops the background retry of a redis-server that did not
	// start; nil when none runs.
	retryCancel context.CancelFunc

	// bk tracks snapshots and restores (backup.go).
	bk backups
}

var _ nodeapi.Service = (*Node)(nil)

// New opens the node's state in cfg.DataDir; cfg must have passed Validate.
// It starts nothing.
func New(cfg Config, logger *slog.Logger) (*Node, error) {
	if err := cfg.RedisTLS.Check("redis_tls"); err != nil {
		return nil, err
	}
	maxmemory, err := cfg.maxMemory()
	if err != nil {
		return nil, err
	}
	if cfg.RedisServer, err = agentbase.RedisServerPath(cfg.RedisServer); err != nil {
		return nil, err
	}
	for _, dir := range []string{cfg.DataDir, cfg.LogDir} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
	}
	st, err := statefile.Open[state](filepath.Join(cfg.DataDir, "state.json"))
	if err != nil {
		return nil, err
	}
	n := &Node{
		cfg:       cfg,
		logger:    logger.With("node", cfg.NodeID),
		maxmemory: maxmemory,
		paths: paths{
			conf: filepath.Join(cfg.DataDir, "redis.conf"),
			acl:  filepath.Join(cfg.DataDir, "users.acl"),
			data: filepath.Join(cfg.DataDir, "data"),
			pid:  filepath.Join(cfg.DataDir, "redis.pid"),
			log:  filepath.Join(cfg.LogDir, "redis-server.log"),
		},
		state: st,
	}
	n.sup = supervisor.New(supervisor.Config{
		Path:    cfg.RedisServer,
		Args:    []string{n.paths.conf},
		Dir:     cfg.DataDir,
		PidFile: n.paths.pid,
		LogFile: n.paths.log,
		Ready: func(ctx context.Context, pid int) error {
			// A plain dial first: refused at once while redis-server loads,
			// it spares a Redis client per poll.
			conn, err := net.DialTimeout("tcp", n.addr(), time.Second)
			if err != nil {
				return err
			}
			conn.Close()
			// Bounded, so a foreign process holding the port cannot stall
			// the supervisor's check that the child is still alive. The
			// client's own read timeout is the bound that counts: go-redis
			// authenticates a new connection under it, not the context's.
			if !n.ownsWithin(ctx, pid, 500*time.Millisecond) {
				return errors.New("not answering as this node's server yet")
			}
			return nil
		},
		Owns: func(ctx context.Context, pid int) bool {
			return n.ownsWithin(ctx, pid, 2*time.Second)
		},
		Find: func(ctx context.Context) (int, bool) {
			return n.runningPid(ctx, 2*time.Second)
		},
		Logger: n.logger,
	})
	return n, nil
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
	defer n.bk.started.Store(true)
	n.recoverData(ctx)
	s := n.current()
	switch s.State {
	case "", nodeapi.StateResetting:
		n.logger.Info("finishing a reset", "first_start", s.State == "", "instance", s.InstanceID)
		if _, err := n.reset(ctx); err != nil {
			n.logger.Error("reset failed", "error", err)
		}
		return
	}
	if err := n.run(ctx); err != nil {
		n.logger.Error("redis-server did not start; retrying in the background", "error", err)
		n.retry()
	} else if n.sup.Status().Adopted {
		// The crashed agent may have written a file and died before telling
		// the running server, and this agent's config may turn TLS on or
		// off: make the server match the files.
		if err := n.converge(ctx, s); err != nil {
			n.logger.Error("the adopted redis-server did not take its config", "error", err)
		}
	}
	n.logger.Info("node agent started", "state", s.State, "instance", s.InstanceID)
}

// converge makes a running server's users, parameters and replication those
// of s, as the files rendered from s say.
func (n *Node) converge(ctx context.Context, s state) error {
	if err := n.adminDo(ctx, s, "ACL", "LOAD"); err != nil {
		return fmt.Errorf("ACL LOAD: %w", err)
	}
	if err := n.applyParameters(ctx, s); err != nil {
		return err
	}
	if err := n.adminDo(ctx, s, redisconf.TLSConfigSet(n.tls())...); err != nil {
		return fmt.Errorf("TLS settings: %w", err)
	}
	return n.applyReplication(ctx, s)
}

// tls is the TLS port and certificate of redis.conf; nil when the node
// serves no TLS.
func (n *Node) tls() *redisconf.TLS {
	t := n.cfg.RedisTLS
	if t == nil {
		return nil
	}
	return &redisconf.TLS{Port: n.cfg.TLSPort, CertFile: t.CertFile, KeyFile: t.KeyFile, CAFile: t.CAFile}
}

// Shutdown waits (until ctx ends) for the operation in progress, then stops
// redis-server gracefully, so it flushes its AOF. A reset that Shutdown
// interrupts stays "resetting" and is finished by the next Start.
func (n *Node) Shutdown(ctx context.Context) {
	n.mu.Lock()
	n.closing = true
	if n.retryCancel != nil {
		n.retryCancel()
	}
	n.mu.Unlock()
	if unlock, err := n.ops.LockContext(ctx, opKey); err == nil {
		defer unlock()
	}
	if err := n.sup.Stop(ctx); err != nil {
		n.logger.Error("stopping redis-server failed", "error", err)
	}
}

func (n *Node) isClosing() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.closing
}

// current returns the state as last stored.
func (n *Node) current() state {
	var s state
	_ = n.state.View(func(v state) { s = v })
	return s
}

// run makes sure redis-server runs under the supervisor, adopting one left
// running by an earlier agent. The caller holds the operations lock.
func (n *Node) run(ctx context.Context) error {
	if n.sup.Status().Supervising {
		return nil
	}
	if err := n.writeFiles(n.current()); err != nil {
		return err
	}
	return n.sup.Start(ctx)
}

// retry keeps trying to start redis-server, with backoff, until it runs or the
// agent shuts down.
func (n *Node) retry() {
	ctx, cancel := context.WithCancel(context.Background())
	n.mu.Lock()
	if n.retryCancel != nil || n.closing {
		n.mu.Unlock()
		cancel()
		return
	}
	n.retryCancel = cancel
	n.mu.Unlock()
	go func() {
		defer func() {
			n.mu.Lock()
			n.retryCancel = nil
			n.mu.Unlock()
			cancel()
		}()
		delay := time.Second
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			unlock, err := n.ops.LockContext(ctx, opKey)
			if err != nil {
				return
			}
			if n.current().State != nodeapi.StateResetting {
				err = n.run(ctx)
			}
			unlock()
			if err == nil {
				return
			}
			n.logger.Error("redis-server still does not start", "error", err)
			delay = min(delay*2, time.Minute)
		}
	}()
}

// writeFiles renders redis.conf and the ACL file from s.
func (n *Node) writeFiles(s state) error {
	if err := os.MkdirAll(n.paths.data, 0o700); err != nil {
		return fmt.Errorf("creating the data directory: %w", err)
	}
	if err := redisconf.WriteACLFile(n.paths.acl, n.users(s)); err != nil {
		return err
	}
	c := redisconf.Config{
		InstanceID:     n.cfg.NodeID,
		Bind:           n.cfg.Bind,
		Port:           n.cfg.Port,
		Dir:            n.paths.data,
		ACLFile:        n.paths.acl,
		MaxMemoryBytes: n.maxmemory,
		Params:         s.Parameters,
		TLS:            n.tls(),
	}
	if l := s.Leader; l != nil {
		c.ReplicaOf = l.Conf()
	}
	return redisconf.WriteFile(n.paths.conf, c)
}

// users are the ACL users of s: the admin, then the bindings.
func (n *Node) users(s state) []redisconf.User {
	users := []redisconf.User{{Name: AdminUser, PasswordHash: secret.Hash(s.AdminPassword), Admin: true}}
	for _, name := range sortedKeys(s.Bindings) {
		b := s.Bindings[name]
		users = append(users, redisconf.User{Name: name, PasswordHash: b.PasswordHash, Role: redisconf.Role(b.Role)})
	}
	return users
}
