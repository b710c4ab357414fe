package sharedagent

import (
	"github.com/cf-redis/redis-for-cf/src/internal/agentmetrics"
)

// Metrics is the agent as its metrics see it: every instance not being
// deleted, and the VM's budget, allocation and ports as Capacity reports
// them.
func (m *Manager) Metrics() agentmetrics.Source {
	return agentmetrics.Source{
		Plan: Plan,
		Targets: func() []agentmetrics.Target {
			var ids []string
			m.state.Peek(func(s state) {
				for id, e := range s.Instances.All() {
					if !e.Deleting {
						ids = append(ids, id)
					}
				}
			})
			// Only the Servers that exist: one made here for an
			// instance deleted meanwhile would outlive it.
			m.mu.Lock()
			defer m.mu.Unlock()
			out := make([]agentmetrics.Target, 0, len(ids))
			for _, id := range ids {
				if s, ok := m.servers[id]; ok {
					out = append(out, agentmetrics.Target{ID: id, Server: s})
				}
			}
			return out
		},
		Agent: func() agentmetrics.Agent {
			a := agentmetrics.Agent{BudgetBytes: m.budget}
			m.state.Peek(func(s state) {
				free := m.cfg.Ports.Size() - portsInRange(s, m.cfg.Ports)
				a.Instances, a.AllocatedBytes, a.PortsFree = s.Instances.Len(), allocated(&s), &free
			})
			return a
		},
		Backups: m.cfg.Backups,
		Results: &m.backups,
	}
}
