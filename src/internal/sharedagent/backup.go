package sharedagent

import (
	"context"
	"io"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
)

// Snapshot takes a consistent snapshot of an instance without stopping it
// (instance.Server.Snapshot).
func (m *Manager) Snapshot(ctx context.Context, id string, req agentapi.SnapshotRequest) (agentapi.Archive, error) {
	s, err := m.existing(id)
	if err != nil {
		return nil, err
	}
	return s.Snapshot(ctx, id, req)
}

// Restore replaces an instance's data with a backup's, verified before the
// old data goes (instance.Server.Restore).
func (m *Manager) Restore(ctx context.Context, id string, req agentapi.RestoreRequest, body io.Reader) (agentapi.RestoreResult, error) {
	s, err := m.existing(id)
	if err != nil {
		return agentapi.RestoreResult{}, err
	}
	return s.Restore(ctx, id, req, body)
}
