package sharedagent

import (
	"context"
	"fmt"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/instance"
)

// Resize gives an instance a new memory limit, as when the operator changes
// the plan's: it is recorded and written into redis.conf, so it holds across
// restarts, and applied to the running server with CONFIG SET. A larger
// limit must fit the VM's memory budget (ErrFull). A smaller one must hold
// what the instance holds now (ErrConflict): no tenant's keys are evicted,
// nor writes refused, because a plan shrank; the broker tries again later.
func (m *Manager) Resize(ctx context.Context, id string, req agentapi.ResizeRequest) (agentapi.Instance, error) {
	if req.MaxMemoryBytes <= 0 {
		return agentapi.Instance{}, fmt.Errorf("%w: maxmemory_bytes must be positive", agentapi.ErrInvalid)
	}
	srv, err := m.existing(id)
	if err != nil {
		return agentapi.Instance{}, err
	}
	unlock := m.locks.Lock(id)
	defer unlock()
	cur, err := m.entry(id, true)
	if err != nil {
		return agentapi.Instance{}, err
	}
	if cur.MaxMemoryBytes == req.MaxMemoryBytes {
		return srv.Describe(cur.Record), nil
	}
	if req.MaxMemoryBytes < cur.MaxMemoryBytes {
		used, err := srv.UsedMemory(ctx)
		if err != nil {
			return agentapi.Instance{}, fmt.Errorf("%w: instance %s: reading its memory use: %v", agentapi.ErrUnavailable, id, err)
		}
		if used > req.MaxMemoryBytes {
			return agentapi.Instance{}, fmt.Errorf("%w: instance %s holds %d MB, more than the new limit of %d MB: it keeps %d MB",
				agentapi.ErrConflict, id, used>>20, req.MaxMemoryBytes>>20, cur.MaxMemoryBytes>>20)
		}
	}
	var rec instance.Record
	err = m.state.Update(func(s *state) error {
		e, err := liveEntry(s, id)
		if err != nil {
			return err
		}
		if grow := req.MaxMemoryBytes - e.MaxMemoryBytes; grow > 0 {
			if allocated := allocated(s); allocated+grow > m.budget {
				return fmt.Errorf("%w: instance %s needs %d MB more, and %d MB of the VM's %d MB budget are free: it keeps %d MB",
					agentapi.ErrFull, id, grow>>20, (m.budget-allocated)>>20, m.budget>>20, e.MaxMemoryBytes>>20)
			}
		}
		e.MaxMemoryBytes = req.MaxMemoryBytes
		rec = e.Record
		return nil
	})
	if err != nil {
		return agentapi.Instance{}, err
	}
	if err := srv.SetMaxMemory(ctx, rec); err != nil {
		return agentapi.Instance{}, err
	}
	m.logger.Info("instance resized", "instance", id, "from_mb", cur.MaxMemoryBytes>>20, "to_mb", rec.MaxMemoryBytes>>20)
	return srv.Describe(rec), nil
}
