package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/instance"
)

// Node reports the node's place in the pool. It does not wait for an
// operation in progress, so it can report a node that is resetting.
func (n *Node) Node(ctx context.Context) (agentapi.Node, error) {
	s := n.current()
	st := s.State
	if st == "" {
		st = agentapi.NodeResetting // the first start's reset is under way
	}
	return agentapi.Node{NodeID: n.cfg.NodeID, State: st, InstanceID: s.InstanceID, ResetError: s.ResetError}, nil
}

// Capacity reports the node as room for one instance of the VM's memory
// limit: free, or held.
func (n *Node) Capacity(ctx context.Context) (agentapi.Capacity, error) {
	c := agentapi.Capacity{MemoryBytes: n.maxmemory, MaxInstances: 1, PortsPerInstance: 1}
	if s := n.current(); s.State == agentapi.NodeFree {
		c.FreePorts = 1
	} else {
		c.Instances, c.AllocatedBytes = 1, n.maxmemory
	}
	return c, nil
}

// List returns the instance holding the node, if one does.
func (n *Node) List(ctx context.Context) ([]agentapi.Instance, error) {
	s := n.current()
	if s.State != agentapi.NodeClaimed {
		return []agentapi.Instance{}, nil
	}
	inst, err := n.Get(ctx, s.InstanceID)
	if errors.Is(err, agentapi.ErrNotFound) || errors.Is(err, agentapi.ErrConflict) {
		return []agentapi.Instance{}, nil // reset or claimed again meanwhile
	}
	if err == nil && s.HA != nil {
		inst.BackupSkip = n.backupSkip(ctx, s.Record)
	}
	return []agentapi.Instance{inst}, err
}

// Get describes the instance holding the node with what its server
// reports: ErrNotFound when the node holds none, ErrConflict when it holds
// another.
func (n *Node) Get(ctx context.Context, id string) (agentapi.Instance, error) {
	inst, err := n.srv.Get(ctx, id)
	inst.NodeID = n.cfg.NodeID
	return inst, err
}

// Create claims a free node for instance id: it checks that redis-server is
// empty, records the claim in the state file (before answering, so a crash
// cannot lose it) and applies the instance's parameters. A repeated claim by
// the same instance with the same parameters applies them again and reports
// false. The memory limit is the node's: a request names none, or the
// node's own.
func (n *Node) Create(ctx context.Context, id string, req agentapi.InstanceRequest) (agentapi.Instance, bool, error) {
	if err := instance.CheckID("instance id", id); err != nil {
		return agentapi.Instance{}, false, err
	}
	if req.MaxMemoryBytes != 0 && req.MaxMemoryBytes != n.maxmemory {
		return agentapi.Instance{}, false, fmt.Errorf("%w: a dedicated node's memory limit is the VM's, %d MB", agentapi.ErrInvalid, n.maxmemory>>20)
	}
	if err := instance.CheckParameters(req.Parameters, n.cfg.RedisTLS); err != nil {
		return agentapi.Instance{}, false, err
	}
	unlock, err := n.ops.LockContext(ctx, opKey)
	if err != nil {
		return agentapi.Instance{}, false, fmt.Errorf("%w: %v", agentapi.ErrUnavailable, err)
	}
	defer unlock()

	s := n.current()
	switch s.State {
	case agentapi.NodeClaimed:
		if s.InstanceID != id {
			return agentapi.Instance{}, false, fmt.Errorf("%w: node %s is held by another instance", agentapi.ErrBusy, n.cfg.NodeID)
		}
		if s.Parameters != req.Parameters {
			return agentapi.Instance{}, false, fmt.Errorf("%w: node %s is held by instance %s with other parameters", agentapi.ErrConflict, n.cfg.NodeID, id)
		}
		// Applied again: the first claim may have been stored but not
		// applied.
		if err := n.srv.ApplyParameters(ctx); err != nil {
			return agentapi.Instance{}, false, err
		}
		inst, err := n.claimed(ctx, id)
		return inst, false, err
	case agentapi.NodeResetFailed:
		return agentapi.Instance{}, false, fmt.Errorf("%w: node %s is quarantined: its last reset failed (%s); it needs a reset that passes", agentapi.ErrDirty, n.cfg.NodeID, s.ResetError)
	case agentapi.NodeFree:
	default:
		return agentapi.Instance{}, false, fmt.Errorf("%w: node %s is being reset", agentapi.ErrBusy, n.cfg.NodeID)
	}

	// The node passed its reset, but only the running server can show that it
	// is still empty: check again before a tenant gets it.
	if err := n.verify(ctx); err != nil {
		if !errors.Is(err, errUnclean) {
			return agentapi.Instance{}, false, fmt.Errorf("%w: cannot check that node %s is empty: %v", agentapi.ErrUnavailable, n.cfg.NodeID, err)
		}
		n.logger.Error("a free node is not empty; quarantining it", "error", err)
		if qerr := n.state.Update(func(st *state) error {
			st.State, st.ResetError = agentapi.NodeResetFailed, "found not empty when claimed: "+err.Error()
			return nil
		}); qerr != nil {
			return agentapi.Instance{}, false, qerr
		}
		return agentapi.Instance{}, false, fmt.Errorf("%w: node %s was not empty: %v", agentapi.ErrDirty, n.cfg.NodeID, err)
	}
	err = n.state.Update(func(st *state) error {
		st.State, st.InstanceID = agentapi.NodeClaimed, id
		st.ID, st.Parameters, st.CreatedAt = id, req.Parameters, time.Now().UTC()
		return nil
	})
	if err != nil {
		return agentapi.Instance{}, false, err
	}
	n.logger.Info("node claimed", "instance", id)
	if err := n.srv.ApplyParameters(ctx); err != nil {
		return agentapi.Instance{}, false, err
	}
	inst, err := n.claimed(ctx, id)
	return inst, true, err
}

// claimed answers a claim: the instance, with the CA of its TLS
// certificate (agentapi.Instance.TLSCA).
func (n *Node) claimed(ctx context.Context, id string) (agentapi.Instance, error) {
	inst, err := n.Get(ctx, id)
	if err == nil {
		inst.TLSCA = n.srv.TLSCA(n.current().Record)
	}
	return inst, err
}

// Resize is refused: a node's memory limit is the VM's.
func (n *Node) Resize(ctx context.Context, id string, req agentapi.ResizeRequest) (agentapi.Instance, error) {
	return agentapi.Instance{}, fmt.Errorf("%w: a dedicated node's memory limit is the VM's, %d MB; it cannot be resized", agentapi.ErrInvalid, n.maxmemory>>20)
}

// Update sets new parameters of the instance holding the node.
func (n *Node) Update(ctx context.Context, id string, req agentapi.UpdateRequest) (agentapi.Instance, error) {
	inst, err := n.srv.Update(ctx, id, req)
	inst.NodeID = n.cfg.NodeID
	return inst, err
}

// SetReplication makes the node a follower of req.Leader, or a leader again.
func (n *Node) SetReplication(ctx context.Context, id string, req agentapi.ReplicationRequest) (agentapi.Instance, error) {
	inst, err := n.srv.SetReplication(ctx, id, req)
	inst.NodeID = n.cfg.NodeID
	return inst, err
}

// Bind adds a binding user of the instance holding the node.
// In an HA group the user is also given to the node's Sentinel, so the
// app can ask it who leads.
func (n *Node) Bind(ctx context.Context, id, bindingID string, req agentapi.BindingRequest) (agentapi.Binding, bool, error) {
	b, created, err := n.srv.Bind(ctx, id, bindingID, req)
	if err != nil {
		return b, created, err
	}
	return b, created, n.syncSentinel(ctx, id)
}

// syncSentinel gives the node's Sentinel the users of instance id's
// record, when the instance is in an HA group.
func (n *Node) syncSentinel(ctx context.Context, id string) error {
	if n.sentinel == nil {
		return nil
	}
	unlock, err := n.ops.LockContext(ctx, opKey)
	if err != nil {
		return fmt.Errorf("%w: %v", agentapi.ErrUnavailable, err)
	}
	defer unlock()
	s := n.current()
	if err := n.held(s, id); err != nil || s.HA == nil {
		return err
	}
	return n.sentinel.syncUsers(ctx, s.Record)
}

// Unbind removes a binding user of the instance holding the node.
func (n *Node) Unbind(ctx context.Context, id, bindingID string) error {
	err := n.srv.Unbind(ctx, id, bindingID)
	if err != nil && !errors.Is(err, agentapi.ErrNotFound) {
		return err
	}
	return errors.Join(err, n.syncSentinel(ctx, id))
}

// Snapshot takes a consistent snapshot of the instance holding the node; it
// fails if the node is reset meanwhile.
func (n *Node) Snapshot(ctx context.Context, id string, req agentapi.SnapshotRequest) (agentapi.Archive, error) {
	return n.srv.Snapshot(ctx, id, req)
}

// Restore replaces the data of the instance holding the node with a
// backup's.
func (n *Node) Restore(ctx context.Context, id string, req agentapi.RestoreRequest, body io.Reader) (agentapi.RestoreResult, error) {
	return n.srv.Restore(ctx, id, req, body)
}
