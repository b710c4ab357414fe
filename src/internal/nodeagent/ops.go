package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/cf-redis/redis-for-cf/src/internal/agentbase"
	"github.com/cf-redis/redis-for-cf/src/internal/nodeapi"
	"github.com/cf-redis/redis-for-cf/src/internal/params"
	"github.com/cf-redis/redis-for-cf/src/internal/redisconf"
	"github.com/cf-redis/redis-for-cf/src/internal/replication"
	"github.com/cf-redis/redis-for-cf/src/internal/secret"
)

// Status describes the node from its state file and, when redis-server
// answers, from INFO. It does not wait for an operation in progress, so it
// can report a node that is resetting.
func (n *Node) Status(ctx context.Context) (nodeapi.Status, error) {
	return n.status(ctx, n.current()), nil
}

// Claim hands a free node to an instance: it checks that redis-server is
// empty, records the claim in the state file (before answering, so a crash
// cannot lose it) and applies the instance's parameters. A repeated claim by
// the same instance with the same parameters applies them again and reports
// false.
func (n *Node) Claim(ctx context.Context, req nodeapi.ClaimRequest) (nodeapi.Status, bool, error) {
	if err := checkID("instance_id", req.InstanceID); err != nil {
		return nodeapi.Status{}, false, err
	}
	if err := req.Parameters.Validate(); err != nil {
		return nodeapi.Status{}, false, fmt.Errorf("%w: %v", nodeapi.ErrInvalid, err)
	}
	unlock, err := n.ops.LockContext(ctx, opKey)
	if err != nil {
		return nodeapi.Status{}, false, fmt.Errorf("%w: %v", nodeapi.ErrUnavailable, err)
	}
	defer unlock()

	s := n.current()
	switch s.State {
	case nodeapi.StateClaimed:
		if s.InstanceID != req.InstanceID {
			return nodeapi.Status{}, false, fmt.Errorf("%w: node %s is held by another instance", nodeapi.ErrBusy, n.cfg.NodeID)
		}
		if s.Parameters != req.Parameters {
			return nodeapi.Status{}, false, fmt.Errorf("%w: node %s is held by instance %s with other parameters", nodeapi.ErrConflict, n.cfg.NodeID, req.InstanceID)
		}
		// Applied again: the first claim may have been stored but not
		// applied.
		if err := n.applyParameters(ctx, s); err != nil {
			return nodeapi.Status{}, false, err
		}
		return n.status(ctx, s), false, nil
	case nodeapi.StateResetFailed:
		return nodeapi.Status{}, false, fmt.Errorf("%w: node %s is quarantined: its last reset failed (%s); it needs a reset that passes", nodeapi.ErrDirty, n.cfg.NodeID, s.ResetError)
	case nodeapi.StateFree:
	default:
		return nodeapi.Status{}, false, fmt.Errorf("%w: node %s is being reset", nodeapi.ErrBusy, n.cfg.NodeID)
	}

	// The node passed its reset, but only the running server can show that it
	// is still empty: check again before a tenant gets it.
	if err := n.verify(ctx, s); err != nil {
		if !errors.Is(err, errUnclean) {
			return nodeapi.Status{}, false, fmt.Errorf("%w: cannot check that node %s is empty: %v", nodeapi.ErrUnavailable, n.cfg.NodeID, err)
		}
		n.logger.Error("a free node is not empty; quarantining it", "error", err)
		if qerr := n.state.Update(func(st *state) error {
			st.State, st.ResetError = nodeapi.StateResetFailed, "found not empty when claimed: "+err.Error()
			return nil
		}); qerr != nil {
			return nodeapi.Status{}, false, qerr
		}
		return nodeapi.Status{}, false, fmt.Errorf("%w: node %s was not empty: %v", nodeapi.ErrDirty, n.cfg.NodeID, err)
	}
	err = n.state.Update(func(st *state) error {
		st.State = nodeapi.StateClaimed
		st.InstanceID = req.InstanceID
		st.Parameters = req.Parameters
		st.ClaimedAt = time.Now().UTC()
		s = *st
		return nil
	})
	if err != nil {
		return nodeapi.Status{}, false, err
	}
	n.logger.Info("node claimed", "instance", req.InstanceID)
	if err := n.applyParameters(ctx, s); err != nil {
		return nodeapi.Status{}, false, err
	}
	return n.status(ctx, s), true, nil
}

// UpdateParameters sets new parameters: it rewrites redis.conf, so they hold
// across restarts, and applies them to the running server with CONFIG SET.
func (n *Node) UpdateParameters(ctx context.Context, req nodeapi.ParametersRequest) (nodeapi.Status, error) {
	if err := checkID("instance_id", req.InstanceID); err != nil {
		return nodeapi.Status{}, err
	}
	if err := req.Parameters.Validate(); err != nil {
		return nodeapi.Status{}, fmt.Errorf("%w: %v", nodeapi.ErrInvalid, err)
	}
	unlock, err := n.ops.LockContext(ctx, opKey)
	if err != nil {
		return nodeapi.Status{}, fmt.Errorf("%w: %v", nodeapi.ErrUnavailable, err)
	}
	defer unlock()
	var s state
	err = n.state.Update(func(st *state) error {
		if err := n.held(*st, req.InstanceID); err != nil {
			return err
		}
		st.Parameters = req.Parameters
		s = *st
		return nil
	})
	if err != nil {
		return nodeapi.Status{}, err
	}
	if err := n.applyParameters(ctx, s); err != nil {
		return nodeapi.Status{}, err
	}
	return n.status(ctx, s), nil
}

// applyParameters writes s's files and sets its parameters on the running
// server.
func (n *Node) applyParameters(ctx context.Context, s state) error {
	if err := n.writeFiles(s); err != nil {
		return err
	}
	args := []any{"CONFIG", "SET"}
	for _, d := range s.Parameters.Directives() {
		args = append(args, d.Name, d.Value)
	}
	if err := n.adminDo(ctx, s, args...); err != nil {
		return fmt.Errorf("%w: the parameters are saved and apply at the next restart, but the running server did not take them: %v", nodeapi.ErrUnavailable, err)
	}
	return nil
}

// Bind adds a binding user with the password's hash, in the ACL file (so it
// survives restarts) and on the running server.
func (n *Node) Bind(ctx context.Context, bindingID string, req nodeapi.BindingRequest) (nodeapi.Binding, bool, error) {
	if err := checkID("instance_id", req.InstanceID); err != nil {
		return nodeapi.Binding{}, false, err
	}
	if err := checkBindingID(bindingID); err != nil {
		return nodeapi.Binding{}, false, err
	}
	if len(req.Password) < minPasswordLength {
		return nodeapi.Binding{}, false, fmt.Errorf("%w: password must have at least %d characters", nodeapi.ErrInvalid, minPasswordLength)
	}
	if req.Role != nodeapi.BindingRoleTenant && req.Role != nodeapi.BindingRoleReplication {
		return nodeapi.Binding{}, false, fmt.Errorf("%w: role must be empty (a tenant) or %q", nodeapi.ErrInvalid, nodeapi.BindingRoleReplication)
	}
	unlock, err := n.ops.LockContext(ctx, opKey)
	if err != nil {
		return nodeapi.Binding{}, false, fmt.Errorf("%w: %v", nodeapi.ErrUnavailable, err)
	}
	defer unlock()
	rec := bindingRecord{PasswordHash: secret.Hash(req.Password), Role: req.Role}
	var s state
	created := false
	err = n.state.Update(func(st *state) error {
		if err := n.held(*st, req.InstanceID); err != nil {
			return err
		}
		switch old, ok := st.Bindings[bindingID]; {
		case ok && old != rec:
			return fmt.Errorf("%w: binding %s exists with another password or role", nodeapi.ErrConflict, bindingID)
		case !ok:
			if st.Bindings == nil {
				st.Bindings = map[string]bindingRecord{}
			}
			st.Bindings[bindingID] = rec
			created = true
		}
		s = *st
		return nil
	})
	if err != nil {
		return nodeapi.Binding{}, false, err
	}
	if err := n.writeFiles(s); err != nil {
		return nodeapi.Binding{}, false, err
	}
	user := redisconf.User{Name: bindingID, PasswordHash: rec.PasswordHash, Role: redisconf.Role(rec.Role)}
	if err := n.adminDo(ctx, s, aclSetUser(user)...); err != nil {
		return nodeapi.Binding{}, false, fmt.Errorf("%w: binding user saved but not yet active: %v", nodeapi.ErrUnavailable, err)
	}
	b := nodeapi.Binding{Username: bindingID, Host: n.cfg.Host, Port: n.cfg.Port, Role: req.Role}
	if t := n.cfg.RedisTLS; t != nil {
		b.TLSPort, b.TLSCA = n.cfg.TLSPort, t.CA()
	}
	return b, created, nil
}

// Unbind deletes a binding user from the ACL file and from the running
// server, which closes every connection it has open. It is ErrNotFound when
// the user is not recorded, after still removing it from the server in case
// an earlier attempt recorded the removal but did not reach the server.
func (n *Node) Unbind(ctx context.Context, instanceID, bindingID string) error {
	if err := checkID("instance_id", instanceID); err != nil {
		return err
	}
	if err := checkBindingID(bindingID); err != nil {
		return err
	}
	unlock, err := n.ops.LockContext(ctx, opKey)
	if err != nil {
		return fmt.Errorf("%w: %v", nodeapi.ErrUnavailable, err)
	}
	defer unlock()
	var s state
	var missing error
	err = n.state.Update(func(st *state) error {
		if err := n.held(*st, instanceID); err != nil {
			return err
		}
		if _, ok := st.Bindings[bindingID]; !ok {
			missing = fmt.Errorf("%w: no binding %s on node %s", nodeapi.ErrNotFound, bindingID, n.cfg.NodeID)
		}
		delete(st.Bindings, bindingID)
		s = *st
		return nil
	})
	if err != nil {
		return err
	}
	if err := n.writeFiles(s); err != nil {
		return err
	}
	// ACL DELUSER also disconnects every client authenticated as the user.
	if err := n.adminDo(ctx, s, "ACL", "DELUSER", bindingID); err != nil {
		return fmt.Errorf("%w: binding removed from the ACL file but the running server was not reached: %v", nodeapi.ErrUnavailable, err)
	}
	return missing
}

// SetReplication makes the node a read-only follower of req.Leader, or a
// leader again (promotion) when req.Leader is nil. The leader is kept in the
// state file and redis.conf, so a restarted server follows it again.
func (n *Node) SetReplication(ctx context.Context, req nodeapi.ReplicationRequest) (nodeapi.Status, error) {
	if err := checkID("instance_id", req.InstanceID); err != nil {
		return nodeapi.Status{}, err
	}
	if l := req.Leader; l != nil {
		if err := n.checkLeader(*l); err != nil {
			return nodeapi.Status{}, err
		}
	}
	unlock, err := n.ops.LockContext(ctx, opKey)
	if err != nil {
		return nodeapi.Status{}, fmt.Errorf("%w: %v", nodeapi.ErrUnavailable, err)
	}
	defer unlock()
	var s state
	err = n.state.Update(func(st *state) error {
		if err := n.held(*st, req.InstanceID); err != nil {
			return err
		}
		st.Leader = req.Leader
		s = *st
		return nil
	})
	if err != nil {
		return nodeapi.Status{}, err
	}
	if err := n.writeFiles(s); err != nil {
		return nodeapi.Status{}, err
	}
	if err := n.applyReplication(ctx, s); err != nil {
		return nodeapi.Status{}, fmt.Errorf("%w: replication saved for the next restart, but the running server did not take it: %v", nodeapi.ErrUnavailable, err)
	}
	if l := s.Leader; l != nil {
		n.logger.Info("following a leader", "leader", net.JoinHostPort(l.Host, fmt.Sprint(l.Port)))
	} else {
		n.logger.Info("leading")
	}
	return n.status(ctx, s), nil
}

func (n *Node) applyReplication(ctx context.Context, s state) error {
	do := func(ctx context.Context, args ...any) error { return n.adminDo(ctx, s, args...) }
	return replication.Apply(ctx, do, s.Leader)
}

func (n *Node) checkLeader(l nodeapi.Leader) error {
	if err := l.Check(); err != nil {
		return fmt.Errorf("%w: %v", nodeapi.ErrInvalid, err)
	}
	if l.Port == n.cfg.Port && (l.Host == n.cfg.Host || l.Host == n.cfg.Bind) {
		return fmt.Errorf("%w: a node cannot follow itself", nodeapi.ErrInvalid)
	}
	return nil
}

// held checks that instanceID holds the node.
func (n *Node) held(s state, instanceID string) error {
	switch {
	case s.State == nodeapi.StateClaimed && s.InstanceID == instanceID:
		return nil
	case s.State == nodeapi.StateClaimed:
		return fmt.Errorf("%w: node %s is held by another instance", nodeapi.ErrConflict, n.cfg.NodeID)
	case s.State == nodeapi.StateFree:
		return fmt.Errorf("%w: node %s holds no instance", nodeapi.ErrNotFound, n.cfg.NodeID)
	default:
		return fmt.Errorf("%w: node %s holds no instance: it is %s", nodeapi.ErrNotFound, n.cfg.NodeID, s.State)
	}
}

func checkID(what, id string) error { return agentbase.CheckID(what, id, nodeapi.ErrInvalid) }

func checkBindingID(id string) error {
	if err := checkID("binding id", id); err != nil {
		return err
	}
	if id == AdminUser || id == "default" {
		return fmt.Errorf("%w: binding id %q is reserved", nodeapi.ErrInvalid, id)
	}
	return nil
}

func aclSetUser(u redisconf.User) []any {
	args := []any{"ACL", "SETUSER", u.Name, "reset"}
	for _, f := range strings.Fields(redisconf.ACLRule(u)) {
		args = append(args, f)
	}
	return args
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// defaultState is s without what an instance set on it: parameters,
// bindings, leader. InstanceID stays until a reset passes.
func defaultState(s state) state {
	s.Parameters = params.Defaults()
	s.Bindings = nil
	s.Leader = nil
	s.ClaimedAt = time.Time{}
	return s
}
