package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/params"
	"github.com/cf-redis/redis-for-cf/src/internal/replication"
)

// vm is one VM of the config and its agent's client, as the verbs that work
// on an existing instance (bind, unbind, update, replication, restore,
// status) see it: they need not know the plan.
type vm struct {
	id string
	// noun names the VM's agent in messages and GET instance: "agent" or
	// "node".
	noun string
	// kind names the VM for users: "shared VM" or "dedicated VM".
	kind string
	c    Agent
	// quick bounds the quick operations (bindings, parameters,
	// replication); zero leaves them to the client's own timeout.
	quick time.Duration
}

// nodeOpTimeout bounds the quick operations on a node (bindings,
// parameters, replication): a node that froze answers Cloud Controller with
// a clear error well within its own timeout. Claims and resets keep the
// client's longer limit.
const nodeOpTimeout = 15 * time.Second

// statusTimeout bounds the status query of GET instance and the check of a
// node before a claim, so an unreachable VM costs seconds, not minutes.
const statusTimeout = 5 * time.Second

// vmOf returns the VM holding inst.
func (b *Broker) vmOf(inst *instance) (vm, error) {
	v, ok := b.vms[inst.VM]
	if !ok {
		return vm{}, fmt.Errorf("instance %s is on VM %q, which is no longer in the broker's config", inst.ID, inst.VM)
	}
	return v, nil
}

// where names the VM's agent, for errors and logs.
func (v vm) where() string { return v.noun + " " + v.id }

func (v vm) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	if v.quick == 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, v.quick)
}

// endpoint is where a binding user connects, as its agent answered the
// bind: TLSPort and TLSCA are empty when it serves no TLS.
type endpoint struct {
	Host    string
	Port    int
	TLSPort int
	TLSCA   string
}

func (v vm) update(ctx context.Context, id string, p params.Parameters) error {
	ctx, cancel := v.bounded(ctx)
	defer cancel()
	_, err := v.c.Update(ctx, id, agentapi.UpdateRequest{Parameters: p})
	return err
}

func (v vm) bind(ctx context.Context, id, bindingID, password string) (endpoint, error) {
	ctx, cancel := v.bounded(ctx)
	defer cancel()
	b, err := v.c.Bind(ctx, id, bindingID, agentapi.BindingRequest{Password: password})
	return endpoint{Host: b.Host, Port: b.Port, TLSPort: b.TLSPort, TLSCA: b.TLSCA}, err
}

// unbind removes a binding user; one already gone is not an error.
func (v vm) unbind(ctx context.Context, id, bindingID string) error {
	ctx, cancel := v.bounded(ctx)
	defer cancel()
	if err := v.c.Unbind(ctx, id, bindingID); err != nil && !errors.Is(err, agentapi.ErrNotFound) {
		return err
	}
	return nil
}

// bindReplicator adds a user that may only replicate from the instance.
func (v vm) bindReplicator(ctx context.Context, id, username, password string) error {
	ctx, cancel := v.bounded(ctx)
	defer cancel()
	_, err := v.c.Bind(ctx, id, username, agentapi.BindingRequest{Password: password, Role: agentapi.RoleReplication})
	return err
}

// setReplication makes the instance follow leader, or lead when nil.
func (v vm) setReplication(ctx context.Context, id string, leader *replication.Leader) error {
	ctx, cancel := v.bounded(ctx)
	defer cancel()
	_, err := v.c.SetReplication(ctx, id, agentapi.ReplicationRequest{Leader: leader})
	return err
}

// tlsPort is the instance's TLS port as its agent reports it; zero when it
// serves no TLS.
func (v vm) tlsPort(ctx context.Context, id string) (int, error) {
	ctx, cancel := v.bounded(ctx)
	defer cancel()
	inst, err := v.c.Get(ctx, id)
	return inst.TLSPort, err
}

// live returns the instance as its agent and running server report it;
// ErrUnavailable when the server did not answer.
func (v vm) live(ctx context.Context, id string) (agentapi.Instance, error) {
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	inst, err := v.c.Get(ctx, id)
	if err == nil && inst.Live == nil {
		err = fmt.Errorf("%w: the instance's server did not answer", agentapi.ErrUnavailable)
	}
	return inst, err
}

// restore sends a backup archive to the instance. The agent refuses an
// archive whose manifest names another instance, should a foreign object
// sit under the instance's prefix.
func (v vm) restore(ctx context.Context, id string, archive io.Reader) (agentapi.RestoreResult, error) {
	return v.c.Restore(ctx, id, agentapi.RestoreRequest{FromInstance: id}, archive)
}
