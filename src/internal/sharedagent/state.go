package sharedagent

import (
	"context"
	"fmt"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/instance"
	"github.com/cf-redis/redis-for-cf/src/internal/portalloc"
	"github.com/cf-redis/redis-for-cf/src/internal/statefile"
)

// state is the agent's state file.
type state struct {
	// LastPort is the port most recently handed out; the next search starts
	// after it.
	LastPort int `json:"last_port"`
	// Instances are kept as Records: an update copies and writes the
	// records it changes, not all of them.
	Instances statefile.Records[entry] `json:"instances"`
}

// entry is an instance's record and where it is in its life.
type entry struct {
	instance.Record
	// Deleting is set before a delete starts removing anything, so a delete
	// cut short by a crash is finished on the next start.
	Deleting bool `json:"deleting,omitempty"`
	// Replicators are the replication users of records written before the
	// one record shape (username: password hash); openState moves them
	// into Users.
	Replicators map[string]string `json:"replicators,omitempty"`
}

// openState opens the state file and brings records of earlier versions to
// today's shape, in one transaction: a tenant user kept as a bare hash
// (instance.User reads it) and the replication users kept apart become
// Users with their roles.
func openState(path string) (*statefile.File[state], error) {
	st, err := statefile.Open[state](path)
	if err != nil {
		return nil, err
	}
	var legacy []string
	st.Peek(func(s state) {
		for id, e := range s.Instances.All() {
			if e.Replicators != nil {
				legacy = append(legacy, id)
			}
		}
	})
	if legacy == nil {
		return st, nil
	}
	return st, st.Update(func(s *state) error {
		for _, id := range legacy {
			e := s.Instances.Edit(id)
			for name, hash := range e.Replicators {
				if e.Users == nil {
					e.Users = map[string]instance.User{}
				}
				e.Users[name] = instance.User{PasswordHash: hash, Role: agentapi.RoleReplication}
			}
			e.Replicators = nil
		}
		return nil
	})
}

// entry returns instance id's entry; with live, ErrNotFound also when it is
// being deleted.
//
// It copies that one entry, not the whole state: readiness probes read
// their instance's record every few milliseconds while it starts, and a
// copy of every record per probe made starts slower and the agent larger
// the more instances it held.
func (m *Manager) entry(id string, live bool) (entry, error) {
	var e *entry
	m.state.Peek(func(s state) { e = s.Instances.Get(id) })
	if e == nil || live && e.Deleting {
		return entry{}, fmt.Errorf("%w: no instance %s", agentapi.ErrNotFound, id)
	}
	return *e, nil
}

// liveEntry returns instance id's entry for changing in an Update (see
// statefile.Records.Edit); ErrNotFound also when it is being deleted.
func liveEntry(s *state, id string) (*entry, error) {
	if e := s.Instances.At(id); e == nil || e.Deleting {
		return nil, fmt.Errorf("%w: no instance %s", agentapi.ErrNotFound, id)
	}
	return s.Instances.Edit(id), nil
}

// instanceStore is the state file as one instance's Server sees it.
type instanceStore struct {
	m  *Manager
	id string
}

var _ instance.Store = instanceStore{}

func (st instanceStore) Current() (instance.Record, error) {
	e, err := st.m.entry(st.id, false)
	return e.Record, err
}

func (st instanceStore) Held(id string) (instance.Record, error) {
	e, err := st.m.entry(id, true)
	return e.Record, err
}

func (st instanceStore) Update(id string, change func(*instance.Record) error) (instance.Record, error) {
	return instance.UpdateIn(st.m.state, func(s *state) (*instance.Record, error) {
		e, err := liveEntry(s, id)
		if err != nil {
			return nil, err
		}
		return &e.Record, nil
	}, change)
}

// Capacity reports the memory, ports and instance slots in use and in all.
func (m *Manager) Capacity(ctx context.Context) (agentapi.Capacity, error) {
	c := agentapi.Capacity{MemoryBytes: m.budget, MaxInstances: m.cfg.MaxInstances, PortsPerInstance: 1}
	if m.cfg.RedisTLS != nil {
		c.PortsPerInstance = 2
	}
	// Asked before every placement: read in place, not copied.
	m.state.Peek(func(s state) {
		c.Instances, c.AllocatedBytes = s.Instances.Len(), allocated(&s)
		c.FreePorts = m.cfg.Ports.Size() - portsInRange(s, m.cfg.Ports)
	})
	return c, nil
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
	used := make(map[int]bool, 2*s.Instances.Len())
	for _, e := range s.Instances.All() {
		used[e.Port] = true
		if e.TLSPort != 0 {
			used[e.TLSPort] = true
		}
	}
	return used
}

// allocatePorts gives e a plaintext port and, when the agent serves TLS, a
// TLS port, the next free ones after from, and records them as the last
// handed out. The caller stores e in the same transaction.
func (m *Manager) allocatePorts(s *state, e *entry, from int) error {
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
	e.Port, e.TLSPort, s.LastPort = port, tlsPort, port
	if tlsPort != 0 {
		s.LastPort = tlsPort
	}
	return nil
}

// movePort gives a new instance the next free ports, plaintext and TLS:
// either may be the one taken.
func (m *Manager) movePort(id string) (instance.Record, error) {
	var rec instance.Record
	err := m.state.Update(func(s *state) error {
		e, err := liveEntry(s, id)
		if err != nil {
			return err
		}
		// The ports it had stay in use while the next ones are chosen, so
		// it moves past them.
		if err := m.allocatePorts(s, e, max(e.Port, e.TLSPort)); err != nil {
			return err
		}
		rec = e.Record
		return nil
	})
	return rec, err
}

// assignTLSPorts makes the records match the config, in one transaction: an
// instance from before TLS was turned on gets a TLS port, and one from
// before it was turned off loses it. Start then writes redis.conf from the
// records and applies them to servers it adopts.
func (m *Manager) assignTLSPorts() error {
	return m.state.Update(func(s *state) error {
		for _, id := range s.Instances.Keys() {
			e := s.Instances.At(id)
			switch {
			case e.Deleting:
			case m.cfg.RedisTLS == nil && e.TLSPort != 0:
				m.logger.Info("TLS is off: the instance's TLS port goes", "instance", id, "tls_port", e.TLSPort)
				s.Instances.Edit(id).TLSPort = 0
			case m.cfg.RedisTLS != nil && e.TLSPort == 0:
				port, err := portalloc.Next(m.cfg.Ports, usedPorts(s), s.LastPort, m.available)
				if err != nil {
					// The others' ports are still stored; this one serves
					// plaintext only until a start finds a port free.
					m.logger.Error("no TLS port for the instance; it serves plaintext only", "instance", id, "error", err)
					continue
				}
				s.Instances.Edit(id).TLSPort, s.LastPort = port, port
				m.logger.Info("TLS is on: the instance gets a TLS port", "instance", id, "tls_port", port)
			}
		}
		return nil
	})
}

// allocated is the sum of the instances' memory limits.
func allocated(s *state) int64 {
	var sum int64
	for _, e := range s.Instances.All() {
		sum += e.MaxMemoryBytes
	}
	return sum
}

func (m *Manager) fits(s *state, maxmemory int64) error {
	allocated := allocated(s)
	if m.cfg.MaxInstances > 0 && s.Instances.Len() >= m.cfg.MaxInstances {
		return fmt.Errorf("%w: the VM holds its maximum of %d instances", agentapi.ErrFull, m.cfg.MaxInstances)
	}
	if allocated+maxmemory > m.budget {
		return fmt.Errorf("%w: %d MB of the VM's %d MB budget are free, the instance needs %d MB",
			agentapi.ErrFull, (m.budget-allocated)>>20, m.budget>>20, maxmemory>>20)
	}
	return nil
}
