package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"code.cloudfoundry.org/brokerapi/v13/domain"
	"code.cloudfoundry.org/brokerapi/v13/domain/apiresponses"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
)

// Deprovision deletes an instance whatever state it is in, including one
// whose provision was cut short, so Cloud Controller's orphan mitigation
// always cleans up. The record is marked "deleting" first and removed only
// after the agent removed the process, data and port; a second delete answers
// 410.
func (b *Broker) Deprovision(ctx context.Context, id string, d domain.DeprovisionDetails, asyncAllowed bool) (domain.DeprovisionServiceSpec, error) {
	async, err := b.deprovision(ctx, id, asyncAllowed)
	spec := domain.DeprovisionServiceSpec{IsAsync: async}
	if async {
		spec.OperationData = "delete"
	}
	return spec, b.respond(ctx, "deprovision", err)
}

func (b *Broker) deprovision(ctx context.Context, id string, asyncAllowed bool) (bool, error) {
	unlock, err := b.locks.LockContext(ctx, id)
	if err != nil {
		return false, err
	}
	defer unlock()
	if followers := b.followersOf(id); len(followers) > 0 {
		return false, unprocessable("", "instance %s is the leader of %s: make each follower a leader (replica_of: null) or delete it first",
			id, strings.Join(followers, ", "))
	}
	var inst *instance
	err = b.state.Update(func(s *state) error {
		inst = s.Instances[id]
		if inst == nil {
			return apiresponses.ErrInstanceDoesNotExist
		}
		inst.State = stateDeleting
		inst.LastOp = operation{Type: "delete", State: domain.InProgress, Description: "deleting the instance", At: now()}
		return nil
	})
	if err != nil {
		return false, err
	}
	if f := inst.ReplicaOf; f != nil && f.Instance != "" {
		b.dropReplicator(ctx, f)
	}
	if b.isDedicated(inst.PlanID) {
		// A reset of a large dataset can take a while: answer 202 when Cloud
		// Controller accepts it, and report progress in last_operation.
		return b.deprovisionDedicated(ctx, inst, asyncAllowed)
	}
	agent, err := b.agent(inst)
	if err != nil {
		return false, err
	}
	if err := agent.Delete(ctx, id); err != nil && !errors.Is(err, agentapi.ErrNotFound) {
		return false, fmt.Errorf("deleting instance %s on agent %s: %w", id, inst.Agent, err)
	}
	err = b.state.Update(func(s *state) error {
		delete(s.Instances, id)
		return nil
	})
	if err == nil {
		b.logger.Info("instance deleted", "instance", id, "agent", inst.Agent, "bindings", len(inst.Bindings))
	}
	return false, err
}
