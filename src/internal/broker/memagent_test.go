package broker

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/archive"
	"github.com/cf-redis/redis-for-cf/src/internal/replication"
	"github.com/cf-redis/redis-for-cf/src/internal/sentinel"
)

// memAgent is an agent held in memory, for the broker's tests: a shared
// VM's (many instances, a memory budget) or, with node set, a dedicated
// node's (one instance at a time, a verified reset, quarantine), keeping
// records as the real agents do. Tests tell it to fail an operation before
// it acts, or to act and then lose the answer, as a broker that crashed or
// timed out would see it.
type memAgent struct {
	mu sync.Mutex
	// node makes the agent a dedicated node; answerAs is the id it reports
	// (its own unless a test says otherwise).
	node     bool
	answerAs string
	host     string
	// memory is the budget of a shared VM.
	memory   int64
	nextPort int
	// tlsCA, when set, makes the agent serve TLS: bindings carry a TLS port
	// and this CA.
	tlsCA     string
	instances map[string]*memInstance
	// Node state: agentapi.NodeFree, NodeClaimed or NodeResetFailed.
	nodeState string
	holder    string
	// dirty makes the next resets fail to verify.
	dirty bool
	// down makes every call fail as an unreachable agent.
	down bool
	// fail holds errors to return, once each, before an operation acts;
	// lose names operations that act and then fail, once.
	fail map[string][]error
	lose map[string]int
	// restored is what the last restore received.
	restored string
	// unsynced makes an HA group's leader on this node report no follower
	// in sync.
	unsynced bool
}

type memInstance struct {
	agentapi.Instance
	passwords map[string]string
	leader    *replication.Leader
	// group is the HA group the instance joined; nil outside one.
	group *sentinel.Group
}

var _ Agent = (*memAgent)(nil)

func newMemAgent(host string) *memAgent {
	return &memAgent{host: host, memory: 1 << 30, nextPort: 32768,
		instances: map[string]*memInstance{}, fail: map[string][]error{}, lose: map[string]int{}}
}

func newMemNode(id, host string) *memAgent {
	m := newMemAgent(host)
	m.node, m.answerAs, m.nodeState, m.nextPort = true, id, agentapi.NodeFree, 6379
	return m
}

// failNext makes the next calls of op fail with errs, one each.
func (m *memAgent) failNext(op string, errs ...error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fail[op] = append(m.fail[op], errs...)
}

// loseNext makes the next call of op act and then fail, as an answer lost
// to a crash or a timeout.
func (m *memAgent) loseNext(op string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lose[op]++
}

func (m *memAgent) set(fn func(m *memAgent)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	fn(m)
}

// begin is called with m.mu held at the start of every operation.
func (m *memAgent) begin(op string) error {
	if m.down {
		return fmt.Errorf("%s: %w: connection refused", m.host, agentapi.ErrUnavailable)
	}
	if errs := m.fail[op]; len(errs) > 0 {
		m.fail[op] = errs[1:]
		return errs[0]
	}
	return nil
}

// end turns the result of an operation into a lost answer when told to.
func (m *memAgent) end(op string, err error) error {
	if err == nil && m.lose[op] > 0 {
		m.lose[op]--
		return fmt.Errorf("%s: %w: the answer was lost", m.host, agentapi.ErrUnavailable)
	}
	return err
}

func (m *memAgent) ids() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Sorted(maps.Keys(m.instances))
}

func (m *memAgent) has(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.instances[id] != nil
}

func (m *memAgent) instance(id string) memInstance {
	m.mu.Lock()
	defer m.mu.Unlock()
	if in := m.instances[id]; in != nil {
		return *in
	}
	return memInstance{}
}

func (m *memAgent) state() (string, string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.nodeState, m.holder
}

func (m *memAgent) allocated() int64 {
	var n int64
	for _, in := range m.instances {
		n += in.MaxMemoryBytes
	}
	return n
}

func (m *memAgent) Capacity(ctx context.Context) (agentapi.Capacity, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.begin("capacity"); err != nil {
		return agentapi.Capacity{}, err
	}
	return agentapi.Capacity{MemoryBytes: m.memory, AllocatedBytes: m.allocated(),
		Instances: len(m.instances), FreePorts: 1000}, nil
}

func (m *memAgent) Node(ctx context.Context) (agentapi.Node, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.begin("node"); err != nil {
		return agentapi.Node{}, err
	}
	if !m.node {
		return agentapi.Node{}, fmt.Errorf("%w: not a node", agentapi.ErrNotFound)
	}
	return agentapi.Node{NodeID: m.answerAs, State: m.nodeState, InstanceID: m.holder}, nil
}

func (m *memAgent) List(ctx context.Context) ([]agentapi.Instance, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.begin("list"); err != nil {
		return nil, err
	}
	var out []agentapi.Instance
	for _, id := range slices.Sorted(maps.Keys(m.instances)) {
		out = append(out, m.instances[id].Instance)
	}
	return out, nil
}

func (m *memAgent) Get(ctx context.Context, id string) (agentapi.Instance, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.begin("get"); err != nil {
		return agentapi.Instance{}, err
	}
	in := m.instances[id]
	if in == nil {
		return agentapi.Instance{}, agentapi.ErrNotFound
	}
	out := in.Instance
	repl := replication.Status{Role: replication.RoleLeader}
	if in.leader != nil {
		repl.Role = replication.RoleFollower
	}
	if g := in.group; g != nil {
		// The group's first leader leads both followers, in sync.
		repl = replication.Status{Role: replication.RoleLeader, Followers: 2, InSync: 2}
		if m.unsynced {
			repl.InSync = 0
		}
		if g.Members[g.Leader].Host != in.Host {
			repl = replication.Status{Role: replication.RoleFollower, Link: "up"}
		}
	}
	out.Live = &agentapi.Live{RedisVersion: "7.4.1", UsedMemoryBytes: 1 << 20, Keys: int64(len(in.passwords)),
		Replication: repl}
	return out, nil
}

func (m *memAgent) Create(ctx context.Context, id string, req agentapi.InstanceRequest) (agentapi.Instance, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.begin("create"); err != nil {
		return agentapi.Instance{}, err
	}
	if in := m.instances[id]; in != nil {
		if in.Parameters != req.Parameters || (!m.node && in.MaxMemoryBytes != req.MaxMemoryBytes) {
			return agentapi.Instance{}, fmt.Errorf("%w: instance %s exists with other settings", agentapi.ErrConflict, id)
		}
		return in.Instance, m.end("create", nil)
	}
	if m.node {
		switch m.nodeState {
		case agentapi.NodeResetFailed:
			return agentapi.Instance{}, fmt.Errorf("%w: the last reset did not verify", agentapi.ErrDirty)
		case agentapi.NodeFree:
		default:
			return agentapi.Instance{}, fmt.Errorf("%w: held by %s", agentapi.ErrBusy, m.holder)
		}
		m.nodeState, m.holder = agentapi.NodeClaimed, id
	} else if m.allocated()+req.MaxMemoryBytes > m.memory {
		return agentapi.Instance{}, fmt.Errorf("%w: no memory left", agentapi.ErrFull)
	}
	if req.Parameters.TLSOnly && m.tlsCA == "" {
		return agentapi.Instance{}, fmt.Errorf("%w: tls_only: this VM serves no TLS", agentapi.ErrInvalid)
	}
	in := &memInstance{Instance: agentapi.Instance{ID: id, Host: m.host, Port: m.nextPort, MaxMemoryBytes: req.MaxMemoryBytes,
		Parameters: req.Parameters, State: agentapi.StateRunning, NodeID: m.answerAs}, passwords: map[string]string{}}
	if m.tlsCA != "" {
		in.TLSPort = m.nextPort + 10000
	}
	if !m.node {
		m.nextPort++
	}
	m.instances[id] = in
	out := in.Instance
	// As the agents answer a create: with the CA, which other answers leave out.
	out.TLSCA = m.tlsCA
	return out, m.end("create", nil)
}

func (m *memAgent) Update(ctx context.Context, id string, req agentapi.UpdateRequest) (agentapi.Instance, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.begin("update"); err != nil {
		return agentapi.Instance{}, err
	}
	in := m.instances[id]
	if in == nil {
		return agentapi.Instance{}, agentapi.ErrNotFound
	}
	if req.Parameters.TLSOnly && m.tlsCA == "" {
		return agentapi.Instance{}, fmt.Errorf("%w: tls_only: this VM serves no TLS", agentapi.ErrInvalid)
	}
	in.Parameters = req.Parameters
	return in.Instance, m.end("update", nil)
}

func (m *memAgent) Resize(ctx context.Context, id string, req agentapi.ResizeRequest) (agentapi.Instance, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.begin("resize"); err != nil {
		return agentapi.Instance{}, err
	}
	in := m.instances[id]
	if in == nil {
		return agentapi.Instance{}, agentapi.ErrNotFound
	}
	if m.allocated()-in.MaxMemoryBytes+req.MaxMemoryBytes > m.memory {
		return agentapi.Instance{}, fmt.Errorf("%w: the budget cannot hold it", agentapi.ErrFull)
	}
	in.MaxMemoryBytes = req.MaxMemoryBytes
	return in.Instance, m.end("resize", nil)
}

// Delete removes an instance; on a node it resets the node and verifies it
// empty, quarantining it when that fails.
func (m *memAgent) Delete(ctx context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.begin("delete"); err != nil {
		return err
	}
	if !m.node {
		if m.instances[id] == nil {
			return agentapi.ErrNotFound
		}
		delete(m.instances, id)
		return m.end("delete", nil)
	}
	if m.holder != "" && m.holder != id {
		return fmt.Errorf("%w: node held by %s", agentapi.ErrConflict, m.holder)
	}
	delete(m.instances, id)
	if m.dirty {
		m.nodeState, m.holder = agentapi.NodeResetFailed, id
		return fmt.Errorf("%w: 3 keys left after the reset", agentapi.ErrDirty)
	}
	m.nodeState, m.holder = agentapi.NodeFree, ""
	return m.end("delete", nil)
}

func (m *memAgent) Bind(ctx context.Context, id, bindingID string, req agentapi.BindingRequest) (agentapi.Binding, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.begin("bind"); err != nil {
		return agentapi.Binding{}, err
	}
	in := m.instances[id]
	if in == nil {
		return agentapi.Binding{}, agentapi.ErrNotFound
	}
	if old, ok := in.passwords[bindingID]; ok && old != req.Password {
		return agentapi.Binding{}, fmt.Errorf("%w: user %s exists with another password", agentapi.ErrConflict, bindingID)
	}
	in.passwords[bindingID] = req.Password
	in.Bindings = slices.Sorted(maps.Keys(in.passwords))
	out := agentapi.Binding{Username: bindingID, Host: in.Host, Port: in.Port, Role: req.Role}
	if in.TLSPort != 0 {
		out.TLSPort, out.TLSCA = in.TLSPort, m.tlsCA
	}
	return out, m.end("bind", nil)
}

func (m *memAgent) Unbind(ctx context.Context, id, bindingID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.begin("unbind"); err != nil {
		return err
	}
	in := m.instances[id]
	if in == nil {
		return agentapi.ErrNotFound
	}
	if _, ok := in.passwords[bindingID]; !ok {
		return agentapi.ErrNotFound
	}
	delete(in.passwords, bindingID)
	in.Bindings = slices.Sorted(maps.Keys(in.passwords))
	return m.end("unbind", nil)
}

func (m *memAgent) SetReplication(ctx context.Context, id string, req agentapi.ReplicationRequest) (agentapi.Instance, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.begin("replication"); err != nil {
		return agentapi.Instance{}, err
	}
	in := m.instances[id]
	if in == nil {
		return agentapi.Instance{}, agentapi.ErrNotFound
	}
	in.leader = req.Leader
	return in.Instance, m.end("replication", nil)
}

func (m *memAgent) Restore(ctx context.Context, id string, req agentapi.RestoreRequest, r io.Reader) (agentapi.RestoreResult, error) {
	data, err := io.ReadAll(r)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		return agentapi.RestoreResult{}, err
	}
	if err := m.begin("restore"); err != nil {
		return agentapi.RestoreResult{}, err
	}
	if m.instances[id] == nil {
		return agentapi.RestoreResult{}, agentapi.ErrNotFound
	}
	if req.FromInstance != id {
		return agentapi.RestoreResult{}, fmt.Errorf("%w: a backup of another instance", agentapi.ErrInvalid)
	}
	m.restored = string(data)
	return agentapi.RestoreResult{InstanceID: id, Backup: archive.Manifest{InstanceID: id}, Keys: 7}, m.end("restore", nil)
}

// JoinHA makes a node's instance a member of an HA group, as the node agent
// does: the same group again changes nothing, another is a conflict.
func (m *memAgent) JoinHA(ctx context.Context, id string, g agentapi.HARequest) (agentapi.Instance, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.begin("join"); err != nil {
		return agentapi.Instance{}, err
	}
	in := m.instances[id]
	switch {
	case !m.node:
		return agentapi.Instance{}, fmt.Errorf("%w: a shared VM runs no Sentinel", agentapi.ErrInvalid)
	case in == nil:
		return agentapi.Instance{}, agentapi.ErrNotFound
	case g.Check() != nil:
		return agentapi.Instance{}, fmt.Errorf("%w: %v", agentapi.ErrInvalid, g.Check())
	case in.group != nil && !in.group.Equal(g):
		return agentapi.Instance{}, fmt.Errorf("%w: instance %s is a member of another group", agentapi.ErrConflict, id)
	}
	if _, ok := g.Self(in.Host, in.Port); !ok {
		if _, ok := g.Self(in.Host, in.TLSPort); !ok {
			return agentapi.Instance{}, fmt.Errorf("%w: this node is no member of the group", agentapi.ErrInvalid)
		}
	}
	in.group = &g
	return in.Instance, m.end("join", nil)
}
