package broker

import (
	"context"
	"errors"
	"slices"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
)

// resizeShared gives every shared instance the plan's memory limit
// (shared_vm.maxmemory_mb) when it has another: the operator changed the
// plan and redeployed. Agents apply it live. One that cannot be applied yet
// (the VM's budget cannot hold it, or the instance holds more than a smaller
// limit, or the agent is away) keeps its limit and is tried again on the
// next round; nothing is evicted for it. It reports whether every agent
// answered: false means a round should come again soon.
func (b *Broker) resizeShared(ctx context.Context) bool {
	want := b.cfg.SharedVM.MaxMemoryMB << 20
	ids := make([]string, 0, len(b.agents))
	for id := range b.agents {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	answered := true
	for _, agentID := range ids {
		a := b.agents[agentID]
		instances, err := a.List(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return false
			}
			answered = false
			b.logger.Warn("cannot list an agent's instances to give them the plan's memory limit; trying again later", "agent", agentID, "error", err)
			continue
		}
		for _, inst := range instances {
			if inst.MaxMemoryBytes == want {
				continue
			}
			_, err := a.Resize(ctx, inst.ID, agentapi.ResizeRequest{MaxMemoryBytes: want})
			if err != nil {
				if ctx.Err() != nil {
					return false
				}
				if !errors.Is(err, agentapi.ErrFull) && !errors.Is(err, agentapi.ErrConflict) {
					answered = false
				}
				b.logger.Warn("an instance keeps its memory limit for now", "instance", inst.ID, "agent", agentID,
					"maxmemory_mb", inst.MaxMemoryBytes>>20, "plan_maxmemory_mb", want>>20, "error", err)
				continue
			}
			b.logger.Info("instance given the plan's memory limit", "instance", inst.ID, "agent", agentID,
				"from_mb", inst.MaxMemoryBytes>>20, "to_mb", want>>20)
		}
	}
	return answered
}
