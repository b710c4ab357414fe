package broker

import (
	"context"
	"fmt"
	"strings"

	"code.cloudfoundry.org/brokerapi/v13/domain"
	"code.cloudfoundry.org/brokerapi/v13/domain/apiresponses"
)

// Deprovision deletes an instance whatever state it is in, including one
// whose provision was cut short, so Cloud Controller's orphan mitigation
// always cleans up. The record is marked "deleting" first and removed only
// after the VM's agent removed the process, data and port (or reset the
// dedicated VM); a second delete answers 410. A dedicated VM's reset runs in
// the background when Cloud Controller accepts an asynchronous answer.
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
		inst = s.Instances.Edit(id)
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
	pl := b.planOf(inst)
	if pl == nil {
		return false, fmt.Errorf("instance %s has plan %q, which is no longer in the broker's config", id, inst.PlanID)
	}
	return pl.deprovision(ctx, inst, asyncAllowed)
}
