// Package sharedagent is the agent of a shared VM: it creates, supervises,
// updates and deletes many isolated redis-server processes, each with its own
// port, data directory, config and ACL users, and keeps their records in a
// state file that survives a crash at any moment.
package sharedagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/agentbase"
	"github.com/cf-redis/redis-for-cf/src/internal/keylock"
	"github.com/cf-redis/redis-for-cf/src/internal/params"
	"github.com/cf-redis/redis-for-cf/src/internal/portalloc"
	"github.com/cf-redis/redis-for-cf/src/internal/redisconf"
	"github.com/cf-redis/redis-for-cf/src/internal/replication"
	"github.com/cf-redis/redis-for-cf/src/internal/secret"
	"github.com/cf-redis/redis-for-cf/src/internal/statefile"
	"github.com/cf-redis/redis-for-cf/src/internal/supervisor"
)

// AdminUser is the ACL user through which the agent manages an instance. Its
// password is per instance and never leaves the agent.
const AdminUser = "platform-admin"

// minPasswordLength is the shortest binding password the agent accepts.
const minPasswordLength = 32

type state struct {
	// LastPort is the port most recently handed out; the next search starts
	// after it.
	LastPort  int                `json:"last_port"`
	Instances map[string]*record `json:"instances"`
}

type record struct {
	ID   string `json:"id"`
	Port int    `json:"port"`
	// TLSPort is the instance's TLS port, from the same range; zero while
	// the agent serves no TLS.
	TLSPort        int               `json:"tls_port,omitempty"`
	MaxMemoryBytes int64             `json:"maxmemory_bytes"`
	Parameters     params.Parameters `json:"parameters"`
	AdminPassword  string            `json:"admin_password"`
	// Bindings maps a binding username to the SHA-256 of its password.
	Bindings map[string]string `json:"bindings"`
	// Replicators are users that may only replicate from the instance (its
	// followers' accounts), by username, with their password hashes.
	Replicators map[string]string `json:"replicators,omitempty"`
	// Leader, when set, is the leader the instance follows.
	Leader    *replication.Leader `json:"leader,omitempty"`
	CreatedAt time.Time           `json:"created_at"`
	// Deleting is set before a delete starts removing anything, so a delete
	// cut short by a crash is finished on the next start.
	Deleting bool `json:"deleting,omitempty"`
}

// Manager runs the instances of one shared VM. The zero value is not usable;
// call New, then Start.
type Manager struct {
	cfg       Config
	logger    *slog.Logger
	budget    int64
	state     *statefile.File[state]
	locks     keylock.Map
	available func(port int) bool

	mu   sync.Mutex
	sups map[string]*supervisor.Supervisor
	// retrying holds cancel functions of instances whose start failed and is
	// being retried in the background.
	retrying map[string]context.CancelFunc

	// bk tracks snapshots and restores (backup.go).
	bk backups
}

var _ agentapi.Service = (*Manager)(nil)

// New opens the agent's state in cfg.DataDir; cfg must have passed Validate.
func New(cfg Config, logger *slog.Logger) (*Manager, error) {
	if err := cfg.RedisTLS.Check("redis_tls"); err != nil {
		return nil, err
	}
	budget, err := cfg.memoryBudget()
	if err != nil {
		return nil, err
	}
	if cfg.RedisServer, err = agentbase.RedisServerPath(cfg.RedisServer); err != nil {
		return nil, err
	}
	for _, dir := range []string{cfg.DataDir, filepath.Join(cfg.DataDir, "instances"), cfg.LogDir} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
	}
	st, err := statefile.Open[state](filepath.Join(cfg.DataDir, "state.json"))
	if err != nil {
		return nil, err
	}
	return &Manager{
		cfg:       cfg,
		logger:    logger,
		budget:    budget,
		state:     st,
		available: portalloc.Listenable(cfg.Bind),
		sups:      map[string]*supervisor.Supervisor{},
		retrying:  map[string]context.CancelFunc{},
	}, nil
}

// Start brings every recorded instance back: it adopts a redis-server still
// running from before the agent restarted, starts the others, and finishes
// deletes a crash interrupted. An instance that fails to start is retried in
// the background; Start returns once every instance was tried.
func (m *Manager) Start(ctx context.Context) {
	if err := m.assignTLSPorts(); err != nil {
		m.logger.Error("assigning TLS ports failed", "error", err)
	}
	var recs []record
	_ = m.state.View(func(s state) {
		for _, r := range s.Instances {
			recs = append(recs, *r)
		}
	})
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for _, r := range recs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			unlock := m.locks.Lock(r.ID)
			defer unlock()
			if r.Deleting {
				if err := m.destroy(ctx, r); err != nil {
					m.logger.Error("finishing an interrupted delete failed", "instance", r.ID, "error", err)
				}
				return
			}
			m.recoverData(ctx, r)
			if err := m.run(ctx, r); err != nil {
				m.logger.Error("instance did not start; retrying in the background", "instance", r.ID, "error", err)
				m.retry(r.ID)
			} else if m.adopted(r.ID) {
				// A server from before the restart runs with the TLS
				// settings of then: give it those of now, live.
				if err := m.applyTLS(ctx, r); err != nil {
					m.logger.Error("the running redis-server did not take its TLS settings; they apply at its next restart", "instance", r.ID, "error", err)
				}
			}
		}()
	}
	wg.Wait()
	m.bk.started.Store(true)
	m.logger.Info("agent started", "instances", len(recs))
}

// Shutdown stops every redis-server gracefully (each flushes its AOF), in
// parallel, and stops background retries.
func (m *Manager) Shutdown(ctx context.Context) {
	m.mu.Lock()
	sups := maps.Clone(m.sups)
	for _, cancel := range m.retrying {
		cancel()
	}
	m.mu.Unlock()
	var wg sync.WaitGroup
	for id, s := range sups {
		wg.Go(func() {
			if err := s.Stop(ctx); err != nil {
				m.logger.Error("stopping redis-server failed", "instance", id, "error", err)
			}
		})
	}
	wg.Wait()
}

// Capacity reports the memory, ports and instance slots in use and in all.
func (m *Manager) Capacity(ctx context.Context) (agentapi.Capacity, error) {
	c := agentapi.Capacity{MemoryBytes: m.budget, MaxInstances: m.cfg.MaxInstances, PortsPerInstance: 1}
	if m.cfg.RedisTLS != nil {
		c.PortsPerInstance = 2
	}
	err := m.state.View(func(s state) {
		c.Instances, c.AllocatedBytes = len(s.Instances), allocated(&s)
		c.FreePorts = m.cfg.Ports.Size() - portsInRange(s, m.cfg.Ports)
	})
	return c, err
}

func portsInRange(s state, r portalloc.Range) int {
	n := 0
	for port := range usedPorts(&s) {
		if port >= r.Min && port <= r.Max {
			n++
		}
	}
	return n
}

// usedPorts are the ports every instance's record holds, plaintext and TLS.
func usedPorts(s *state) map[int]bool {
	used := map[int]bool{}
	for _, r := range s.Instances {
		used[r.Port] = true
		if r.TLSPort != 0 {
			used[r.TLSPort] = true
		}
	}
	return used
}

// allocatePorts gives r a plaintext port and, when the agent serves TLS, a
// TLS port, the next free ones after from, and records them as the last
// handed out. The caller stores r in the same transaction.
func (m *Manager) allocatePorts(s *state, r *record, from int) error {
	used := usedPorts(s)
	port, err := portalloc.Next(m.cfg.Ports, used, from, m.available)
	if err != nil {
		return fmt.Errorf("%w: %v", agentapi.ErrFull, err)
	}
	used[port] = true
	tlsPort := 0
	if m.cfg.RedisTLS != nil {
		if tlsPort, err = portalloc.Next(m.cfg.Ports, used, port, m.available); err != nil {
			return fmt.Errorf("%w: no TLS port: %v", agentapi.ErrFull, err)
		}
	}
	r.Port, r.TLSPort, s.LastPort = port, tlsPort, port
	if tlsPort != 0 {
		s.LastPort = tlsPort
	}
	return nil
}

// assignTLSPorts makes the records match the config, in one transaction: an
// instance from before TLS was turned on gets a TLS port, and one from
// before it was turned off loses it. Start then writes redis.conf from the
// records and applies them to servers it adopts.
func (m *Manager) assignTLSPorts() error {
	return m.state.Update(func(s *state) error {
		ids := slices.Sorted(maps.Keys(s.Instances))
		for _, id := range ids {
			r := s.Instances[id]
			switch {
			case r.Deleting:
			case m.cfg.RedisTLS == nil && r.TLSPort != 0:
				m.logger.Info("TLS is off: the instance's TLS port goes", "instance", id, "tls_port", r.TLSPort)
				r.TLSPort = 0
			case m.cfg.RedisTLS != nil && r.TLSPort == 0:
				used := usedPorts(s)
				port, err := portalloc.Next(m.cfg.Ports, used, s.LastPort, m.available)
				if err != nil {
					// The others' ports are still stored; this one serves
					// plaintext only until a start finds a port free.
					m.logger.Error("no TLS port for the instance; it serves plaintext only", "instance", id, "error", err)
					continue
				}
				r.TLSPort, s.LastPort = port, port
				m.logger.Info("TLS is on: the instance gets a TLS port", "instance", id, "tls_port", port)
			}
		}
		return nil
	})
}

// List describes every instance.
func (m *Manager) List(ctx context.Context) ([]agentapi.Instance, error) {
	var recs []record
	if err := m.state.View(func(s state) {
		for _, r := range s.Instances {
			recs = append(recs, *r)
		}
	}); err != nil {
		return nil, err
	}
	slices.SortFunc(recs, func(a, b record) int { return a.CreatedAt.Compare(b.CreatedAt) })
	out := make([]agentapi.Instance, 0, len(recs))
	for _, r := range recs {
		out = append(out, m.describe(r))
	}
	return out, nil
}

// Get describes one instance, with its replication state when its server
// answers.
func (m *Manager) Get(ctx context.Context, id string) (agentapi.Instance, error) {
	r, err := m.record(id)
	if err != nil {
		return agentapi.Instance{}, err
	}
	inst := m.describe(r)
	c := m.adminClient(r)
	defer c.Close()
	if info, err := c.InfoMap(ctx, "replication").Result(); err == nil {
		st := replication.Read(ctx, info["Replication"], r.Leader)
		inst.Replication = &st
	}
	return inst, nil
}

// SetReplication makes the instance a read-only follower of req.Leader, or a
// leader again (promotion) when req.Leader is nil: kept in redis.conf for
// restarts, applied live with REPLICAOF.
func (m *Manager) SetReplication(ctx context.Context, id string, req agentapi.ReplicationRequest) (agentapi.Instance, error) {
	unlock := m.locks.Lock(id)
	defer unlock()
	var rec record
	err := m.state.Update(func(s *state) error {
		r, err := liveRecord(s, id)
		if err != nil {
			return err
		}
		if l := req.Leader; l != nil {
			if err := l.Check(); err != nil {
				return fmt.Errorf("%w: %v", agentapi.ErrInvalid, err)
			}
			if l.Port == r.Port && (l.Host == m.cfg.Host || l.Host == m.cfg.Bind) {
				return fmt.Errorf("%w: an instance cannot follow itself", agentapi.ErrInvalid)
			}
		}
		r.Leader = req.Leader
		rec = *r
		return nil
	})
	if err != nil {
		return agentapi.Instance{}, err
	}
	if err := m.writeFiles(rec); err != nil {
		return agentapi.Instance{}, err
	}
	do := func(ctx context.Context, args ...any) error { return m.adminDo(ctx, rec, args...) }
	if err := replication.Apply(ctx, do, rec.Leader); err != nil {
		return agentapi.Instance{}, fmt.Errorf("%w: replication saved for the next restart, but the running server did not take it: %v", agentapi.ErrUnavailable, err)
	}
	m.logger.Info("replication changed", "instance", id, "follows", rec.Leader != nil)
	return m.Get(ctx, id)
}

// Create reserves a port and memory for a new instance in its record, then
// starts its redis-server and waits until it answers. Creating an instance that
// exists with the same request returns it (and starts it if it is not
// running); with another request it is ErrConflict.
func (m *Manager) Create(ctx context.Context, id string, req agentapi.InstanceRequest) (agentapi.Instance, bool, error) {
	if err := checkID("instance id", id); err != nil {
		return agentapi.Instance{}, false, err
	}
	if req.MaxMemoryBytes <= 0 {
		return agentapi.Instance{}, false, fmt.Errorf("%w: maxmemory_bytes must be positive", agentapi.ErrInvalid)
	}
	if err := req.Parameters.Validate(); err != nil {
		return agentapi.Instance{}, false, fmt.Errorf("%w: %v", agentapi.ErrInvalid, err)
	}
	unlock := m.locks.Lock(id)
	defer unlock()

	var rec record
	created := false
	err := m.state.Update(func(s *state) error {
		if s.Instances == nil {
			s.Instances = map[string]*record{}
		}
		if r, ok := s.Instances[id]; ok {
			if r.Deleting {
				return fmt.Errorf("%w: instance %s is being deleted", agentapi.ErrConflict, id)
			}
			if r.MaxMemoryBytes != req.MaxMemoryBytes || r.Parameters != req.Parameters {
				return fmt.Errorf("%w: instance %s exists with other settings", agentapi.ErrConflict, id)
			}
			rec = *r
			return nil
		}
		if err := m.fits(s, req.MaxMemoryBytes); err != nil {
			return err
		}
		rec = record{
			ID:             id,
			MaxMemoryBytes: req.MaxMemoryBytes,
			Parameters:     req.Parameters,
			AdminPassword:  secret.New(),
			Bindings:       map[string]string{},
			CreatedAt:      time.Now().UTC(),
		}
		if err := m.allocatePorts(s, &rec, s.LastPort); err != nil {
			return err
		}
		s.Instances[id] = &rec
		created = true
		return nil
	})
	if err != nil {
		return agentapi.Instance{}, false, err
	}
	err = m.run(ctx, rec)
	for attempt := 1; err != nil && created && portTaken(err) && attempt < portAttempts; attempt++ {
		// Something outside the agent's records took the port between the
		// check and redis-server's bind: with the product's port range inside
		// Linux's default ephemeral range, usually an outgoing connection.
		// A new instance can still move; its port is not published yet.
		m.logger.Info("port taken by another process; moving the new instance", "instance", id, "port", rec.Port, "tls_port", rec.TLSPort)
		if rec, err = m.movePort(id); err == nil {
			err = m.run(ctx, rec)
		}
	}
	if err != nil {
		if created {
			// Nothing of a new instance may outlive a failed create: the broker
			// reports the failure and the tenant never learns the instance.
			if derr := m.destroy(context.WithoutCancel(ctx), rec); derr != nil {
				m.logger.Error("cleaning up a failed create failed", "instance", id, "error", derr)
			}
		}
		return agentapi.Instance{}, false, fmt.Errorf("%w: redis-server of instance %s did not start: %v", agentapi.ErrUnavailable, id, err)
	}
	m.logger.Info("instance ready", "instance", id, "port", rec.Port, "tls_port", rec.TLSPort, "created", created)
	return m.describe(rec), created, nil
}

// portAttempts bounds how often a new instance moves to another port because
// its port was taken by a process the agent does not know.
const portAttempts = 5

func portTaken(err error) bool {
	return strings.Contains(err.Error(), "Address already in use")
}

// movePort gives a new instance the next free ports, plaintext and TLS:
// either may be the one taken.
func (m *Manager) movePort(id string) (record, error) {
	var rec record
	err := m.state.Update(func(s *state) error {
		r, err := liveRecord(s, id)
		if err != nil {
			return err
		}
		// The ports it had stay in use while the next ones are chosen, so
		// it moves past them.
		if err := m.allocatePorts(s, r, max(r.Port, r.TLSPort)); err != nil {
			return err
		}
		rec = *r
		return nil
	})
	return rec, err
}

// allocated is the sum of the instances' memory limits.
func allocated(s *state) int64 {
	var sum int64
	for _, r := range s.Instances {
		sum += r.MaxMemoryBytes
	}
	return sum
}

func (m *Manager) fits(s *state, maxmemory int64) error {
	allocated := allocated(s)
	if m.cfg.MaxInstances > 0 && len(s.Instances) >= m.cfg.MaxInstances {
		return fmt.Errorf("%w: the VM holds its maximum of %d instances", agentapi.ErrFull, m.cfg.MaxInstances)
	}
	if allocated+maxmemory > m.budget {
		return fmt.Errorf("%w: %d MB of the VM's %d MB budget are free, the instance needs %d MB",
			agentapi.ErrFull, (m.budget-allocated)>>20, m.budget>>20, maxmemory>>20)
	}
	return nil
}

// Update sets new parameters: it rewrites redis.conf, so they hold across
// restarts, and applies them to the running server with CONFIG SET.
func (m *Manager) Update(ctx context.Context, id string, req agentapi.UpdateRequest) (agentapi.Instance, error) {
	if err := req.Parameters.Validate(); err != nil {
		return agentapi.Instance{}, fmt.Errorf("%w: %v", agentapi.ErrInvalid, err)
	}
	unlock := m.locks.Lock(id)
	defer unlock()
	var rec record
	err := m.state.Update(func(s *state) error {
		r, err := liveRecord(s, id)
		if err != nil {
			return err
		}
		r.Parameters = req.Parameters
		rec = *r
		return nil
	})
	if err != nil {
		return agentapi.Instance{}, err
	}
	if err := m.writeFiles(rec); err != nil {
		return agentapi.Instance{}, err
	}
	args := []any{"CONFIG", "SET"}
	for _, d := range rec.Parameters.Directives() {
		args = append(args, d.Name, d.Value)
	}
	if err := m.adminDo(ctx, rec, args...); err != nil {
		return agentapi.Instance{}, fmt.Errorf("%w: the new parameters are saved and apply at the next restart, but the running server did not take them: %v", agentapi.ErrUnavailable, err)
	}
	return m.describe(rec), nil
}

// Delete stops the instance's redis-server and removes its data, config, log
// and port reservation. It is ErrNotFound when there is no such instance.
func (m *Manager) Delete(ctx context.Context, id string) error {
	if err := checkID("instance id", id); err != nil {
		return err
	}
	unlock := m.locks.Lock(id)
	defer unlock()
	var rec record
	err := m.state.Update(func(s *state) error {
		r, ok := s.Instances[id]
		if !ok {
			return fmt.Errorf("%w: no instance %s", agentapi.ErrNotFound, id)
		}
		r.Deleting = true
		rec = *r
		return nil
	})
	if err != nil {
		return err
	}
	return m.destroy(ctx, rec)
}

// Bind adds a binding user with the password's hash, in the ACL file (so it
// survives restarts) and on the running server.
func (m *Manager) Bind(ctx context.Context, id, bindingID string, req agentapi.BindingRequest) (agentapi.Binding, bool, error) {
	if err := checkID("binding id", bindingID); err != nil {
		return agentapi.Binding{}, false, err
	}
	if bindingID == AdminUser {
		return agentapi.Binding{}, false, fmt.Errorf("%w: binding id %q is reserved", agentapi.ErrInvalid, bindingID)
	}
	if len(req.Password) < minPasswordLength {
		return agentapi.Binding{}, false, fmt.Errorf("%w: password must have at least %d characters", agentapi.ErrInvalid, minPasswordLength)
	}
	role := redisconf.Role(req.Role)
	if role != redisconf.RoleTenant && role != redisconf.RoleReplication {
		return agentapi.Binding{}, false, fmt.Errorf("%w: role must be empty or %q", agentapi.ErrInvalid, redisconf.RoleReplication)
	}
	unlock := m.locks.Lock(id)
	defer unlock()
	hash := secret.Hash(req.Password)
	var rec record
	created := false
	err := m.state.Update(func(s *state) error {
		r, err := liveRecord(s, id)
		if err != nil {
			return err
		}
		users, other := &r.Bindings, r.Replicators
		if role == redisconf.RoleReplication {
			users, other = &r.Replicators, r.Bindings
		}
		if _, ok := other[bindingID]; ok {
			return fmt.Errorf("%w: user %s exists with another role", agentapi.ErrConflict, bindingID)
		}
		switch old, ok := (*users)[bindingID]; {
		case ok && old != hash:
			return fmt.Errorf("%w: binding %s exists with another password", agentapi.ErrConflict, bindingID)
		case !ok:
			if *users == nil {
				*users = map[string]string{}
			}
			(*users)[bindingID] = hash
			created = true
		}
		rec = *r
		return nil
	})
	if err != nil {
		return agentapi.Binding{}, false, err
	}
	if err := m.writeFiles(rec); err != nil {
		return agentapi.Binding{}, false, err
	}
	user := redisconf.User{Name: bindingID, PasswordHash: hash, Role: role}
	if err := m.adminDo(ctx, rec, aclSetUser(user)...); err != nil {
		return agentapi.Binding{}, false, fmt.Errorf("%w: binding user saved but not yet active: %v", agentapi.ErrUnavailable, err)
	}
	b := agentapi.Binding{Username: bindingID, Host: m.cfg.Host, Port: rec.Port}
	if rec.TLSPort != 0 && m.cfg.RedisTLS != nil {
		b.TLSPort, b.TLSCA = rec.TLSPort, m.cfg.RedisTLS.CA()
	}
	return b, created, nil
}

// Unbind deletes a binding user from the ACL file and from the running server,
// which closes every connection it has open. It is ErrNotFound when the user is
// not recorded, after still removing it from the server in case an earlier
// attempt recorded the removal but did not reach the server.
func (m *Manager) Unbind(ctx context.Context, id, bindingID string) error {
	if err := checkID("binding id", bindingID); err != nil {
		return err
	}
	if bindingID == AdminUser {
		return fmt.Errorf("%w: binding id %q is reserved", agentapi.ErrInvalid, bindingID)
	}
	unlock := m.locks.Lock(id)
	defer unlock()
	var rec record
	var missing error
	err := m.state.Update(func(s *state) error {
		r, err := liveRecord(s, id)
		if err != nil {
			return err
		}
		_, tenant := r.Bindings[bindingID]
		_, replicator := r.Replicators[bindingID]
		if !tenant && !replicator {
			missing = fmt.Errorf("%w: no binding %s on instance %s", agentapi.ErrNotFound, bindingID, id)
		}
		delete(r.Bindings, bindingID)
		delete(r.Replicators, bindingID)
		rec = *r
		return nil
	})
	if err != nil {
		return err
	}
	if err := m.writeFiles(rec); err != nil {
		return err
	}
	// ACL DELUSER also disconnects every client authenticated as the user.
	if err := m.adminDo(ctx, rec, "ACL", "DELUSER", bindingID); err != nil {
		return fmt.Errorf("%w: binding removed from the ACL file but the running server was not reached: %v", agentapi.ErrUnavailable, err)
	}
	return missing
}

func liveRecord(s *state, id string) (*record, error) {
	r, ok := s.Instances[id]
	if !ok || r.Deleting {
		return nil, fmt.Errorf("%w: no instance %s", agentapi.ErrNotFound, id)
	}
	return r, nil
}

func (m *Manager) record(id string) (record, error) {
	var rec record
	var found bool
	err := m.state.View(func(s state) {
		if r, ok := s.Instances[id]; ok {
			rec, found = *r, true
		}
	})
	if err != nil {
		return rec, err
	}
	if !found {
		return rec, fmt.Errorf("%w: no instance %s", agentapi.ErrNotFound, id)
	}
	return rec, nil
}

func (m *Manager) describe(r record) agentapi.Instance {
	inst := agentapi.Instance{
		ID:             r.ID,
		Host:           m.cfg.Host,
		Port:           r.Port,
		TLSPort:        r.TLSPort,
		MaxMemoryBytes: r.MaxMemoryBytes,
		Parameters:     r.Parameters,
		State:          "starting",
		Bindings:       slices.Sorted(maps.Keys(r.Bindings)),
	}
	m.mu.Lock()
	sup := m.sups[r.ID]
	_, retrying := m.retrying[r.ID]
	m.mu.Unlock()
	switch {
	case r.Deleting:
		inst.State = "deleting"
	case sup != nil:
		st := sup.Status()
		inst.Restarts = st.Restarts
		inst.LastError = st.LastExit
		switch {
		case st.Running:
			inst.State = "running"
		case st.Restarts > 0:
			inst.State = "restarting"
		}
	case retrying:
		inst.State = "failed"
	}
	return inst
}

// paths of one instance's files.
type paths struct{ dir, conf, acl, data, pid, log string }

func (m *Manager) paths(id string) paths {
	dir := filepath.Join(m.cfg.DataDir, "instances", id)
	return paths{
		dir:  dir,
		conf: filepath.Join(dir, "redis.conf"),
		acl:  filepath.Join(dir, "users.acl"),
		data: filepath.Join(dir, "data"),
		pid:  filepath.Join(dir, "redis.pid"),
		log:  filepath.Join(m.cfg.LogDir, id+".log"),
	}
}

// writeFiles renders the instance's redis.conf and ACL file from its record.
func (m *Manager) writeFiles(r record) error {
	p := m.paths(r.ID)
	if err := os.MkdirAll(p.data, 0o700); err != nil {
		return fmt.Errorf("creating instance directory: %w", err)
	}
	users := []redisconf.User{{Name: AdminUser, PasswordHash: secret.Hash(r.AdminPassword), Admin: true}}
	for _, name := range slices.Sorted(maps.Keys(r.Bindings)) {
		users = append(users, redisconf.User{Name: name, PasswordHash: r.Bindings[name]})
	}
	for _, name := range slices.Sorted(maps.Keys(r.Replicators)) {
		users = append(users, redisconf.User{Name: name, PasswordHash: r.Replicators[name], Role: redisconf.RoleReplication})
	}
	if err := redisconf.WriteACLFile(p.acl, users); err != nil {
		return err
	}
	return redisconf.WriteFile(p.conf, redisconf.Config{
		InstanceID:     r.ID,
		Bind:           m.cfg.Bind,
		Port:           r.Port,
		Dir:            p.data,
		ACLFile:        p.acl,
		MaxMemoryBytes: r.MaxMemoryBytes,
		Params:         r.Parameters,
		ReplicaOf:      r.Leader.Conf(),
		TLS:            m.tls(r),
	})
}

// tls is the TLS port and certificate of r's redis.conf; nil when the agent
// serves no TLS.
func (m *Manager) tls(r record) *redisconf.TLS {
	t := m.cfg.RedisTLS
	if t == nil || r.TLSPort == 0 {
		return nil
	}
	return &redisconf.TLS{Port: r.TLSPort, CertFile: t.CertFile, KeyFile: t.KeyFile, CAFile: t.CAFile}
}

// applyTLS gives r's running server the TLS settings its redis.conf has,
// with CONFIG SET, without a restart: the certificate and the TLS port, or
// no TLS port at all.
func (m *Manager) applyTLS(ctx context.Context, r record) error {
	return m.adminDo(ctx, r, redisconf.TLSConfigSet(m.tls(r))...)
}

// adopted reports whether the instance's running server was found running
// rather than started by this agent.
func (m *Manager) adopted(id string) bool {
	m.mu.Lock()
	sup := m.sups[id]
	m.mu.Unlock()
	return sup != nil && sup.Status().Adopted
}

// run renders the instance's files and makes sure its redis-server runs under
// a supervisor, adopting one left running by an earlier agent.
func (m *Manager) run(ctx context.Context, r record) error {
	m.mu.Lock()
	sup := m.sups[r.ID]
	m.mu.Unlock()
	if sup != nil && sup.Status().Running {
		return nil
	}
	if err := m.writeFiles(r); err != nil {
		return err
	}
	if sup == nil {
		sup = m.newSupervisor(r)
		m.mu.Lock()
		m.sups[r.ID] = sup
		m.mu.Unlock()
	}
	if err := sup.Start(ctx); err != nil {
		m.mu.Lock()
		delete(m.sups, r.ID)
		m.mu.Unlock()
		return err
	}
	return nil
}

// retry keeps trying to start an instance whose start failed, with backoff,
// until it runs, is deleted, or the agent shuts down.
func (m *Manager) retry(id string) {
	ctx, cancel := context.WithCancel(context.Background())
	m.mu.Lock()
	if _, ok := m.retrying[id]; ok {
		m.mu.Unlock()
		cancel()
		return
	}
	m.retrying[id] = cancel
	m.mu.Unlock()
	go func() {
		defer func() {
			m.mu.Lock()
			delete(m.retrying, id)
			m.mu.Unlock()
			cancel()
		}()
		delay := time.Second
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			unlock := m.locks.Lock(id)
			r, err := m.record(id)
			if err == nil && !r.Deleting {
				err = m.run(ctx, r)
			} else {
				err = nil // deleted meanwhile: nothing left to start
			}
			unlock()
			if err == nil {
				return
			}
			m.logger.Error("instance still does not start", "instance", id, "error", err)
			delay = min(delay*2, time.Minute)
		}
	}()
}

// destroy stops the instance's process and removes everything of it, the
// record last. The record must already be marked Deleting (or never have been
// reported to the broker).
func (m *Manager) destroy(ctx context.Context, r record) error {
	m.mu.Lock()
	sup := m.sups[r.ID]
	delete(m.sups, r.ID)
	if cancel, ok := m.retrying[r.ID]; ok {
		cancel()
	}
	m.mu.Unlock()
	if sup == nil {
		// After an agent restart the process may still run unsupervised: a
		// supervisor adopts it (or starts one, which Stop ends at once), so the
		// port is free before the record goes.
		sup = m.newSupervisor(r)
		if err := sup.Start(ctx); err != nil {
			m.logger.Info("no running redis-server to stop", "instance", r.ID, "detail", err)
		}
	}
	if err := sup.Stop(ctx); err != nil {
		return fmt.Errorf("stopping redis-server of instance %s: %w", r.ID, err)
	}
	p := m.paths(r.ID)
	if err := os.RemoveAll(p.dir); err != nil {
		return fmt.Errorf("removing data of instance %s: %w", r.ID, err)
	}
	if err := os.Remove(p.log); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing log of instance %s: %w", r.ID, err)
	}
	err := m.state.Update(func(s *state) error {
		delete(s.Instances, r.ID)
		return nil
	})
	if err != nil {
		return err
	}
	m.logger.Info("instance deleted", "instance", r.ID, "port", r.Port)
	return nil
}

func (m *Manager) newSupervisor(r record) *supervisor.Supervisor {
	p := m.paths(r.ID)
	return supervisor.New(supervisor.Config{
		Name:    r.ID,
		Path:    m.cfg.RedisServer,
		Args:    []string{p.conf},
		Dir:     p.dir,
		PidFile: p.pid,
		LogFile: p.log,
		Ready: func(ctx context.Context, pid int) error {
			// A plain dial first: refused at once while redis-server loads,
			// it spares a Redis client per poll.
			conn, err := net.DialTimeout("tcp", m.addr(r), time.Second)
			if err != nil {
				return err
			}
			conn.Close()
			// Bounded, so a foreign process holding the port cannot stall
			// the supervisor's check that the child is still alive.
			if !m.ownsWithin(ctx, r, pid, readyProbeTimeout) {
				return errors.New("not answering as this instance's server yet")
			}
			return nil
		},
		Owns: func(ctx context.Context, pid int) bool {
			return m.ownsWithin(ctx, r, pid, adoptProbeTimeout)
		},
		Find: func(ctx context.Context) (int, bool) {
			c := m.client(r, adoptProbeTimeout)
			defer c.Close()
			info, err := c.InfoMap(ctx, "server").Result()
			if err != nil {
				return 0, false
			}
			pid, err := strconv.Atoi(info["Server"]["process_id"])
			return pid, err == nil
		},
		Logger: m.logger,
	})
}

// Timeouts of the checks that a process is the instance's server: short
// while a new process starts (polled every few milliseconds), longer for a
// server found running, which may be busy.
const (
	readyProbeTimeout = 500 * time.Millisecond
	adoptProbeTimeout = 2 * time.Second
)

// ownsWithin reports whether the redis-server answering on the instance's
// port with its admin password is process pid reading the instance's config.
// The timeout bounds every read: go-redis authenticates a new connection
// under its own read timeout, not the context's deadline.
func (m *Manager) ownsWithin(ctx context.Context, r record, pid int, timeout time.Duration) bool {
	c := m.client(r, timeout)
	defer c.Close()
	info, err := c.InfoMap(ctx, "server").Result()
	if err != nil {
		return false
	}
	srv := info["Server"]
	return srv["process_id"] == strconv.Itoa(pid) && srv["config_file"] == m.paths(r.ID).conf
}

func (m *Manager) addr(r record) string {
	return net.JoinHostPort(m.cfg.Bind, strconv.Itoa(r.Port))
}

func (m *Manager) adminClient(r record) *redis.Client {
	return m.client(r, 10*time.Second)
}

func (m *Manager) client(r record, timeout time.Duration) *redis.Client {
	return agentbase.RedisClient(m.addr(r), AdminUser, r.AdminPassword, timeout)
}

// adminDo runs one command as the admin user on a fresh connection: with
// hundreds of instances per agent, idle pools would cost more than dialling
// loopback for the rare admin command.
func (m *Manager) adminDo(ctx context.Context, r record, args ...any) error {
	c := m.adminClient(r)
	defer c.Close()
	return c.Do(ctx, args...).Err()
}

func aclSetUser(u redisconf.User) []any {
	args := []any{"ACL", "SETUSER", u.Name, "reset"}
	for _, f := range strings.Fields(redisconf.ACLRule(u)) {
		args = append(args, f)
	}
	return args
}

func checkID(what, id string) error { return agentbase.CheckID(what, id, agentapi.ErrInvalid) }
