package nodeagent

import (
	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/agentmetrics"
)

// Metrics is the node as its metrics see it: its redis-server, labelled
// with the instance holding it, while it is claimed, and the node's state.
func (n *Node) Metrics() agentmetrics.Source {
	return agentmetrics.Source{
		Plan: Plan,
		Targets: func() []agentmetrics.Target {
			s := n.current()
			if s.State != agentapi.NodeClaimed {
				return nil
			}
			return []agentmetrics.Target{{ID: s.InstanceID, Server: n.srv}}
		},
		Agent: func() agentmetrics.Agent {
			s := n.current()
			a := agentmetrics.Agent{BudgetBytes: n.maxmemory, NodeState: s.State}
			if s.State == agentapi.NodeClaimed {
				a.Instances, a.AllocatedBytes = 1, n.maxmemory
			}
			return a
		},
		Backups: n.cfg.Backups,
		Results: &n.backups,
	}
}
