// Package sharedagent is the agent of a shared VM: it runs many isolated
// redis-server instances (package instance), each with its own port, data
// directory, config and ACL users. It owns what is about the VM: the ports
// of the range, the memory budget, the instance count, and creating,
// resizing and deleting instances; their records live in one state file
// that survives a crash at any moment.
package sharedagent

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/agentmetrics"
	"github.com/cf-redis/redis-for-cf/src/internal/cgroup"
	"github.com/cf-redis/redis-for-cf/src/internal/instance"
	"github.com/cf-redis/redis-for-cf/src/internal/keylock"
	"github.com/cf-redis/redis-for-cf/src/internal/logrotate"
	"github.com/cf-redis/redis-for-cf/src/internal/portalloc"
	"github.com/cf-redis/redis-for-cf/src/internal/redisconf"
	"github.com/cf-redis/redis-for-cf/src/internal/secret"
	"github.com/cf-redis/redis-for-cf/src/internal/statefile"
)

// Plan is the plan name a shared agent's backups record in their manifest.
const Plan = "shared-vm"

// Manager runs the instances of one shared VM. The zero value is not usable;
// call New, then Start.
type Manager struct {
	cfg       Config
	env       *instance.Env
	guard     *instance.Guard
	logs      *logrotate.Rotator
	logger    *slog.Logger
	budget    int64
	state     *statefile.File[state]
	locks     keylock.Map
	available func(port int) bool
	// started is set once Start has recovered every instance.
	started atomic.Bool
	// backups are the outcomes of the scheduled backups, for the metrics.
	backups agentmetrics.Backups

	mu      sync.Mutex
	servers map[string]*instance.Server
}

var _ agentapi.Service = (*Manager)(nil)

// New opens the agent's state in cfg.DataDir, bringing records of earlier
// versions to today's shape; cfg must have passed Validate.
func New(cfg Config, logger *slog.Logger) (*Manager, error) {
	budget, err := cfg.memoryBudget()
	if err != nil {
		return nil, err
	}
	if cfg.RedisServer, err = instance.Setup(cfg.RedisTLS, cfg.RedisServer, cfg.DataDir, filepath.Join(cfg.DataDir, "instances"), cfg.LogDir); err != nil {
		return nil, err
	}
	st, err := openState(filepath.Join(cfg.DataDir, "state.json"))
	if err != nil {
		return nil, err
	}
	cgroups, err := cgroup.Open(cfg.Cgroups, cgroup.Name(cfg.DataDir), logger)
	if err != nil {
		return nil, err
	}
	// A new instance's redis-server starts in a spare cgroup already
	// holding its process, instead of waiting for the move into one.
	cgroups.KeepSpares(spareCgroups, logger)
	m := &Manager{
		cfg:       cfg,
		logger:    logger,
		budget:    budget,
		state:     st,
		available: portalloc.Listenable(cfg.Bind),
		servers:   map[string]*instance.Server{},
	}
	m.logs = logrotate.New(cfg.RedisLogs, m.logFiles, logger)
	m.guard = instance.NewGuard(instance.GuardConfig{Servers: m.allServers, MaxScriptSeconds: cfg.MaxScriptSeconds, Logger: logger})
	m.env = &instance.Env{
		Host: cfg.Host, Bind: cfg.Bind, RedisServer: cfg.RedisServer, TLS: cfg.RedisTLS,
		Plan: Plan, Logger: logger, Started: m.started.Load, Cgroups: cgroups,
		// Many small servers, mostly idle: see redisconf.SharedHz.
		Hz: redisconf.SharedHz,
	}
	return m, nil
}

// server returns the Server of instance id, making it on first use.
func (m *Manager) server(id string) *instance.Server {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.servers[id]; ok {
		return s
	}
	s := instance.New(instance.Config{
		Env:   m.env,
		Name:  id,
		Paths: instance.PathsIn(filepath.Join(m.cfg.DataDir, "instances", id), m.logFile(id)),
		Store: instanceStore{m: m, id: id},
		Lock:  func(ctx context.Context) (func(), error) { return m.locks.LockContext(ctx, id) },
		Runnable: func() bool {
			_, err := m.entry(id, true)
			return err == nil
		},
	})
	m.servers[id] = s
	return s
}

// logFile is the log of instance id's redis-server.
func (m *Manager) logFile(id string) string {
	return filepath.Join(m.cfg.LogDir, "redis-"+id+".log")
}

// logFiles are the logs of every recorded instance, for the rotator.
func (m *Manager) logFiles() []string {
	var out []string
	m.state.Peek(func(s state) {
		for id := range s.Instances.All() {
			out = append(out, m.logFile(id))
		}
	})
	return out
}

// existing returns the Server of instance id when it exists and is not
// being deleted.
func (m *Manager) existing(id string) (*instance.Server, error) {
	if err := instance.CheckID("instance id", id); err != nil {
		return nil, err
	}
	if _, err := m.entry(id, true); err != nil {
		return nil, err
	}
	return m.server(id), nil
}

// Start brings every recorded instance back: it adopts a redis-server still
// running from before the agent restarted, starts the others, and finishes
// deletes a crash interrupted. An instance that fails to start is retried in
// the background; Start returns once every instance was tried.
func (m *Manager) Start(ctx context.Context) {
	if err := m.assignTLSPorts(); err != nil {
		m.logger.Error("assigning TLS ports failed", "error", err)
	}
	var recs []entry
	// Read in place: the goroutines below read only ID and Deleting.
	m.state.Peek(func(s state) {
		for _, e := range s.Instances.All() {
			recs = append(recs, *e)
		}
	})
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for _, e := range recs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			unlock := m.locks.Lock(e.ID)
			defer unlock()
			if e.Deleting {
				if err := m.destroy(ctx, e.ID); err != nil {
					m.logger.Error("finishing an interrupted delete failed", "instance", e.ID, "error", err)
				}
				return
			}
			m.server(e.ID).Recover(ctx)
		}()
	}
	wg.Wait()
	m.started.Store(true)
	m.guard.Start()
	m.logs.Start()
	m.logger.Info("agent started", "instances", len(recs))
}

// allServers are the Servers of the agent's instances, for the guard.
func (m *Manager) allServers() []*instance.Server {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Collect(maps.Values(m.servers))
}

// Shutdown stops every redis-server gracefully (each flushes its AOF), in
// parallel, and stops background retries.
func (m *Manager) Shutdown(ctx context.Context) {
	m.guard.Stop()
	m.logs.Stop()
	servers := m.allServers()
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Go(func() { s.Shutdown(ctx) })
	}
	wg.Wait()
	if err := m.env.Cgroups.Remove(); err != nil {
		m.logger.Warn("removing the instances' cgroups failed", "error", err)
	}
}

// RunBackups backs up every instance on the schedule of the config's
// backups section, until ctx ends; it returns at once without one.
func (m *Manager) RunBackups(ctx context.Context) error {
	if m.cfg.Backups == nil {
		return nil
	}
	return m.cfg.Backups.Run(ctx, m.logger, "agent", m, m.backups.Record)
}

// List describes every instance, oldest first.
func (m *Manager) List(ctx context.Context) ([]agentapi.Instance, error) {
	var recs []entry
	// Read in place: describe only reads the entries.
	m.state.Peek(func(s state) {
		for _, e := range s.Instances.All() {
			recs = append(recs, *e)
		}
	})
	slices.SortFunc(recs, func(a, b entry) int { return a.CreatedAt.Compare(b.CreatedAt) })
	out := make([]agentapi.Instance, 0, len(recs))
	for _, e := range recs {
		out = append(out, m.describe(e))
	}
	return out, nil
}

// Get describes one instance, with what its server reports when it
// answers.
func (m *Manager) Get(ctx context.Context, id string) (agentapi.Instance, error) {
	if err := instance.CheckID("instance id", id); err != nil {
		return agentapi.Instance{}, err
	}
	e, err := m.entry(id, false)
	if err != nil {
		return agentapi.Instance{}, err
	}
	if e.Deleting {
		return m.describe(e), nil
	}
	return m.server(id).Get(ctx, id)
}

func (m *Manager) describe(e entry) agentapi.Instance {
	inst := m.server(e.ID).Describe(e.Record)
	if e.Deleting {
		inst.State = agentapi.StateDeleting
	}
	return inst
}

// Create reserves a port and memory for a new instance in its record, then
// starts its redis-server and waits until it answers. Creating an instance that
// exists with the same request returns it (and starts it if it is not
// running); with another request it is ErrConflict.
func (m *Manager) Create(ctx context.Context, id string, req agentapi.InstanceRequest) (agentapi.Instance, bool, error) {
	if err := instance.CheckID("instance id", id); err != nil {
		return agentapi.Instance{}, false, err
	}
	if req.MaxMemoryBytes <= 0 {
		return agentapi.Instance{}, false, fmt.Errorf("%w: maxmemory_bytes must be positive", agentapi.ErrInvalid)
	}
	if err := instance.CheckParameters(req.Parameters, m.env.TLS); err != nil {
		return agentapi.Instance{}, false, err
	}
	unlock := m.locks.Lock(id)
	defer unlock()

	var rec instance.Record
	created := false
	err := m.state.Update(func(s *state) error {
		if e := s.Instances.At(id); e != nil {
			if e.Deleting {
				return fmt.Errorf("%w: instance %s is being deleted", agentapi.ErrConflict, id)
			}
			if e.MaxMemoryBytes != req.MaxMemoryBytes || e.Parameters != req.Parameters {
				return fmt.Errorf("%w: instance %s exists with other settings", agentapi.ErrConflict, id)
			}
			rec = e.Record
			return nil
		}
		if err := m.fits(s, req.MaxMemoryBytes); err != nil {
			return err
		}
		e := &entry{Record: instance.Record{
			ID:             id,
			MaxMemoryBytes: req.MaxMemoryBytes,
			Parameters:     req.Parameters,
			AdminPassword:  secret.New(),
			CreatedAt:      time.Now().UTC(),
		}}
		if err := m.allocatePorts(s, e, s.LastPort); err != nil {
			return err
		}
		s.Instances.Put(id, e)
		rec, created = e.Record, true
		return nil
	})
	if err != nil {
		return agentapi.Instance{}, false, err
	}
	srv := m.server(id)
	err = srv.Start(ctx)
	for attempt := 1; err != nil && created && portTaken(err) && attempt < portAttempts; attempt++ {
		// Something outside the agent's records took the port between the
		// check and redis-server's bind: with the product's port range inside
		// Linux's default ephemeral range, usually an outgoing connection.
		// A new instance can still move; its port is not published yet.
		m.logger.Info("port taken by another process; moving the new instance", "instance", id, "port", rec.Port, "tls_port", rec.TLSPort)
		if rec, err = m.movePort(id); err == nil {
			err = srv.Start(ctx)
		}
	}
	if err != nil {
		if created {
			// Nothing of a new instance may outlive a failed create: the broker
			// reports the failure and the tenant never learns the instance.
			if derr := m.destroy(context.WithoutCancel(ctx), id); derr != nil {
				m.logger.Error("cleaning up a failed create failed", "instance", id, "error", derr)
			}
		}
		return agentapi.Instance{}, false, fmt.Errorf("%w: redis-server of instance %s did not start: %v", agentapi.ErrUnavailable, id, err)
	}
	m.logger.Info("instance ready", "instance", id, "port", rec.Port, "tls_port", rec.TLSPort, "created", created)
	inst := srv.Describe(rec)
	inst.TLSCA = srv.TLSCA(rec)
	return inst, created, nil
}

// spareCgroups is how many spares the agent's cgroup tree keeps ready
// (cgroup.Tree.KeepSpares): one serves one provision at a time; a burst
// takes them all and the rest of it moves its servers as before.
const spareCgroups = 2

// portAttempts bounds how often a new instance moves to another port because
// its port was taken by a process the agent does not know.
const portAttempts = 5

func portTaken(err error) bool {
	return strings.Contains(err.Error(), "Address already in use")
}

// Delete stops the instance's redis-server and removes its data, config, log
// and port reservation. It is ErrNotFound when there is no such instance.
func (m *Manager) Delete(ctx context.Context, id string) error {
	if err := instance.CheckID("instance id", id); err != nil {
		return err
	}
	unlock := m.locks.Lock(id)
	defer unlock()
	err := m.state.Update(func(s *state) error {
		e := s.Instances.Edit(id)
		if e == nil {
			return fmt.Errorf("%w: no instance %s", agentapi.ErrNotFound, id)
		}
		e.Deleting = true
		return nil
	})
	if err != nil {
		return err
	}
	return m.destroy(ctx, id)
}

// destroy stops the instance's process and removes everything of it, the
// record last. The record must already be marked Deleting (or never have been
// reported to the broker); the caller holds the instance's lock.
func (m *Manager) destroy(ctx context.Context, id string) error {
	srv := m.server(id)
	if err := srv.Stop(ctx, true); err != nil {
		return fmt.Errorf("stopping redis-server of instance %s: %w", id, err)
	}
	p := srv.Paths()
	if err := os.RemoveAll(p.Dir); err != nil {
		return fmt.Errorf("removing data of instance %s: %w", id, err)
	}
	if err := m.logs.Remove(p.Log); err != nil {
		return fmt.Errorf("removing the logs of instance %s: %w", id, err)
	}
	err := m.state.Update(func(s *state) error {
		s.Instances.Delete(id)
		return nil
	})
	if err != nil {
		return err
	}
	m.mu.Lock()
	delete(m.servers, id)
	m.mu.Unlock()
	m.logger.Info("instance deleted", "instance", id)
	return nil
}

// Update sets new parameters, kept across restarts and applied live.
func (m *Manager) Update(ctx context.Context, id string, req agentapi.UpdateRequest) (agentapi.Instance, error) {
	s, err := m.existing(id)
	if err != nil {
		return agentapi.Instance{}, err
	}
	return s.Update(ctx, id, req)
}

// SetReplication makes the instance a read-only follower of req.Leader, or
// a leader again when req.Leader is nil.
func (m *Manager) SetReplication(ctx context.Context, id string, req agentapi.ReplicationRequest) (agentapi.Instance, error) {
	s, err := m.existing(id)
	if err != nil {
		return agentapi.Instance{}, err
	}
	return s.SetReplication(ctx, id, req)
}

// Bind adds a binding user to the instance.
func (m *Manager) Bind(ctx context.Context, id, bindingID string, req agentapi.BindingRequest) (agentapi.Binding, bool, error) {
	s, err := m.existing(id)
	if err != nil {
		return agentapi.Binding{}, false, err
	}
	return s.Bind(ctx, id, bindingID, req)
}

// Unbind deletes a binding user of the instance and closes its connections.
func (m *Manager) Unbind(ctx context.Context, id, bindingID string) error {
	s, err := m.existing(id)
	if err != nil {
		return err
	}
	return s.Unbind(ctx, id, bindingID)
}
