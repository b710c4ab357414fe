package sharedagent

import (
	"context"
	"fmt"
	"strconv"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
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
	unlock := m.locks.Lock(id)
	defer unlock()
	cur, err := m.record(id)
	if err != nil {
		return agentapi.Instance{}, err
	}
	if cur.MaxMemoryBytes == req.MaxMemoryBytes {
		return m.describe(cur), nil
	}
	if req.MaxMemoryBytes < cur.MaxMemoryBytes {
		used, err := m.usedMemory(ctx, cur)
		if err != nil {
			return agentapi.Instance{}, fmt.Errorf("%w: instance %s: reading its memory use: %v", agentapi.ErrUnavailable, id, err)
		}
		if used > req.MaxMemoryBytes {
			return agentapi.Instance{}, fmt.Errorf("%w: instance %s holds %d MB, more than the new limit of %d MB: it keeps %d MB",
				agentapi.ErrConflict, id, used>>20, req.MaxMemoryBytes>>20, cur.MaxMemoryBytes>>20)
		}
	}
	var rec record
	err = m.state.Update(func(s *state) error {
		r, err := liveRecord(s, id)
		if err != nil {
			return err
		}
		if grow := req.MaxMemoryBytes - r.MaxMemoryBytes; grow > 0 {
			if allocated := allocated(s); allocated+grow > m.budget {
				return fmt.Errorf("%w: instance %s needs %d MB more, and %d MB of the VM's %d MB budget are free: it keeps %d MB",
					agentapi.ErrFull, id, grow>>20, (m.budget-allocated)>>20, m.budget>>20, r.MaxMemoryBytes>>20)
			}
		}
		r.MaxMemoryBytes = req.MaxMemoryBytes
		rec = *r
		return nil
	})
	if err != nil {
		return agentapi.Instance{}, err
	}
	if err := m.writeFiles(rec); err != nil {
		return agentapi.Instance{}, err
	}
	if err := m.adminDo(ctx, rec, "CONFIG", "SET", "maxmemory", strconv.FormatInt(rec.MaxMemoryBytes, 10)); err != nil {
		return agentapi.Instance{}, fmt.Errorf("%w: the new limit is saved and applies at the next restart, but the running server did not take it: %v", agentapi.ErrUnavailable, err)
	}
	m.logger.Info("instance resized", "instance", id, "from_mb", cur.MaxMemoryBytes>>20, "to_mb", rec.MaxMemoryBytes>>20)
	return m.describe(rec), nil
}

// usedMemory is the instance's INFO used_memory.
func (m *Manager) usedMemory(ctx context.Context, r record) (int64, error) {
	c := m.adminClient(r)
	defer c.Close()
	info, err := c.InfoMap(ctx, "memory").Result()
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(info["Memory"]["used_memory"], 10, 64)
}
