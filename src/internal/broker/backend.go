package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/params"
	"github.com/cf-redis/redis-for-cf/src/internal/redisconf"
	"github.com/cf-redis/redis-for-cf/src/internal/replication"
)

// backend is where an existing instance lives, as the verbs that work on one
// (bind, unbind, update) see it: a shared agent or a dedicated node.
type backend interface {
	update(ctx context.Context, id string, p params.Parameters) error
	bind(ctx context.Context, id, bindingID, password string) (endpoint, error)
	// unbind removes a binding user; one already gone is not an error.
	unbind(ctx context.Context, id, bindingID string) error
	// bindReplicator adds a user that may only replicate from the instance.
	bindReplicator(ctx context.Context, id, username, password string) error
	// setReplication makes the instance follow leader, or lead when nil.
	setReplication(ctx context.Context, id string, leader *replication.Leader) error
	// replication reports the instance's live replication state.
	replication(ctx context.Context, id string) (replication.Status, error)
	// where names the agent or node, for errors and logs.
	where() string
}

// endpoint is where a binding user connects, as its agent or node answered
// the bind: TLSPort and TLSCA are empty when it serves no TLS.
type endpoint struct {
	Host    string
	Port    int
	TLSPort int
	TLSCA   string
}

func (b *Broker) backend(inst *instance) (backend, error) {
	if inst.Node != "" {
		n, ok := b.nodes[inst.Node]
		if !ok {
			return nil, fmt.Errorf("instance %s is on node %q, which is no longer in the broker's config", inst.ID, inst.Node)
		}
		return nodeBackend{id: inst.Node, node: n}, nil
	}
	a, err := b.agent(inst)
	if err != nil {
		return nil, err
	}
	return sharedBackend{id: inst.Agent, agent: a}, nil
}

type sharedBackend struct {
	id    string
	agent Agent
}

func (s sharedBackend) where() string { return "agent " + s.id }

func (s sharedBackend) update(ctx context.Context, id string, p params.Parameters) error {
	_, err := s.agent.Update(ctx, id, agentapi.UpdateRequest{Parameters: p})
	return err
}

func (s sharedBackend) bind(ctx context.Context, id, bindingID, password string) (endpoint, error) {
	b, err := s.agent.Bind(ctx, id, bindingID, agentapi.BindingRequest{Password: password})
	return endpoint{Host: b.Host, Port: b.Port, TLSPort: b.TLSPort, TLSCA: b.TLSCA}, err
}

func (s sharedBackend) unbind(ctx context.Context, id, bindingID string) error {
	if err := s.agent.Unbind(ctx, id, bindingID); err != nil && !errors.Is(err, agentapi.ErrNotFound) {
		return err
	}
	return nil
}

func (s sharedBackend) bindReplicator(ctx context.Context, id, username, password string) error {
	_, err := s.agent.Bind(ctx, id, username, agentapi.BindingRequest{Password: password, Role: string(redisconf.RoleReplication)})
	return err
}

func (s sharedBackend) setReplication(ctx context.Context, id string, leader *replication.Leader) error {
	_, err := s.agent.SetReplication(ctx, id, agentapi.ReplicationRequest{Leader: leader})
	return err
}

func (s sharedBackend) replication(ctx context.Context, id string) (replication.Status, error) {
	inst, err := s.agent.Get(ctx, id)
	if err != nil {
		return replication.Status{}, err
	}
	if inst.Live == nil {
		return replication.Status{}, fmt.Errorf("%w: the instance's server did not answer", agentapi.ErrUnavailable)
	}
	return inst.Live.Replication, nil
}

type nodeBackend struct {
	id   string
	node Node
}

// nodeOpTimeout bounds the quick operations on a node (bindings,
// parameters, replication, status): a node that froze answers Cloud
// Controller with a clear error well within its own timeout. Resets and
// claims keep the client's longer limit.
const nodeOpTimeout = 15 * time.Second

func (n nodeBackend) where() string { return "node " + n.id }

func (n nodeBackend) update(ctx context.Context, id string, p params.Parameters) error {
	ctx, cancel := context.WithTimeout(ctx, nodeOpTimeout)
	defer cancel()
	_, err := n.node.Update(ctx, id, agentapi.UpdateRequest{Parameters: p})
	return err
}

func (n nodeBackend) bind(ctx context.Context, id, bindingID, password string) (endpoint, error) {
	ctx, cancel := context.WithTimeout(ctx, nodeOpTimeout)
	defer cancel()
	b, err := n.node.Bind(ctx, id, bindingID, agentapi.BindingRequest{Password: password})
	return endpoint{Host: b.Host, Port: b.Port, TLSPort: b.TLSPort, TLSCA: b.TLSCA}, err
}

func (n nodeBackend) unbind(ctx context.Context, id, bindingID string) error {
	ctx, cancel := context.WithTimeout(ctx, nodeOpTimeout)
	defer cancel()
	if err := n.node.Unbind(ctx, id, bindingID); err != nil && !errors.Is(err, agentapi.ErrNotFound) {
		return err
	}
	return nil
}

func (n nodeBackend) bindReplicator(ctx context.Context, id, username, password string) error {
	ctx, cancel := context.WithTimeout(ctx, nodeOpTimeout)
	defer cancel()
	_, err := n.node.Bind(ctx, id, username, agentapi.BindingRequest{Password: password, Role: string(redisconf.RoleReplication)})
	return err
}

func (n nodeBackend) setReplication(ctx context.Context, id string, leader *replication.Leader) error {
	ctx, cancel := context.WithTimeout(ctx, nodeOpTimeout)
	defer cancel()
	_, err := n.node.SetReplication(ctx, id, agentapi.ReplicationRequest{Leader: leader})
	return err
}

func (n nodeBackend) replication(ctx context.Context, id string) (replication.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, nodeOpTimeout)
	defer cancel()
	inst, err := n.node.Get(ctx, id)
	if err != nil {
		return replication.Status{}, err
	}
	if inst.Live == nil {
		return replication.Status{}, fmt.Errorf("%w: the node's server did not answer", agentapi.ErrUnavailable)
	}
	return inst.Live.Replication, nil
}
