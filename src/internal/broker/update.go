package broker

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"code.cloudfoundry.org/brokerapi/v13/domain"
	"code.cloudfoundry.org/brokerapi/v13/domain/apiresponses"

	"github.com/cf-redis/redis-for-cf/src/internal/params"
)

// Update applies new parameters to the running instance (no restart; they
// also hold across restarts) and records a maintenance_info upgrade. Names
// the update leaves out keep their values.
func (b *Broker) Update(ctx context.Context, id string, d domain.UpdateDetails, asyncAllowed bool) (domain.UpdateServiceSpec, error) {
	if _, busy := b.restoring.Load(id); busy {
		return domain.UpdateServiceSpec{}, apiresponses.ErrConcurrentInstanceAccess
	}
	// restore (restore.go) is not a parameter: it replaces the data.
	if ref, ok, err := splitRestore(d.RawParameters); err != nil || ok {
		async := false
		if err == nil {
			async, err = b.restore(ctx, id, d, ref, asyncAllowed)
		}
		spec := domain.UpdateServiceSpec{IsAsync: async}
		if async {
			spec.OperationData = restoreOperation
		}
		return spec, b.respond(ctx, "update", err)
	}
	return domain.UpdateServiceSpec{}, b.respond(ctx, "update", b.update(ctx, id, d))
}

func (b *Broker) update(ctx context.Context, id string, d domain.UpdateDetails) error {
	if err := b.checkMaintenanceInfo(d.MaintenanceInfo); err != nil {
		return err
	}
	inst, unlock, err := b.lockReady(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	if d.PlanID != "" && d.PlanID != inst.PlanID {
		if !b.knownPlan(d.PlanID) {
			return badRequest("plan %q is not a plan of this service", d.PlanID)
		}
		if _, toHA := b.plans[d.PlanID].(*haPlan); toHA || inst.HA != nil {
			return unprocessable("PlanChangeNotSupported", "An instance cannot change between plans %s and %s: a single dedicated VM and an HA group of three are built differently. "+
				"Create an instance of plan %s and move the data (replica_of, or a backup and restore), then delete this one.",
				b.plans[inst.PlanID].entry().Name, b.plans[d.PlanID].entry().Name, b.plans[d.PlanID].entry().Name)
		}
		return apiresponses.ErrPlanChangeNotSupported
	}
	rest, change, err := splitReplicaOf(d.RawParameters)
	if err != nil {
		return err
	}
	if change.set && inst.HA != nil {
		return badRequest("parameter %q: instance %s is an HA group, whose leader Sentinel chooses among its own members: it cannot follow another leader", ReplicaOfParam, id)
	}
	if l := change.leader; l != nil && l.Instance == "" {
		// Checked before anything of the update is applied.
		addr, err := b.checkExternalLeader(ctx, l.Leader)
		if err != nil {
			return err
		}
		if addr.String() != l.Host {
			l.Name = l.Host
		}
		l.Host = addr.String()
	}
	p, err := params.Apply(inst.Parameters, rest)
	if err != nil {
		return err
	}
	if err := b.applyTLSOnly(inst.PlanID, rest, &p, false); err != nil {
		return err
	}
	if p.TLSOnly && !inst.Parameters.TLSOnly {
		if err := b.plainFollowers(id); err != nil {
			return err
		}
	}
	if p != inst.Parameters {
		vms, err := b.vmsOf(inst)
		if err != nil {
			return err
		}
		for _, v := range vms {
			if err := v.update(ctx, id, p); err != nil {
				return fmt.Errorf("updating instance %s on %s: %w", id, v.where(), err)
			}
		}
	}
	if change.set {
		if err := b.changeReplication(ctx, inst, change); err != nil {
			return err
		}
	}
	return b.state.Update(func(s *state) error {
		r := s.Instances.Edit(id)
		if r == nil {
			return apiresponses.ErrInstanceDoesNotExist
		}
		r.Parameters = p
		if d.MaintenanceInfo != nil {
			r.MaintenanceVersion = d.MaintenanceInfo.Version
		}
		r.LastOp = operation{Type: "update", State: domain.Succeeded, Description: "instance updated", At: now()}
		return nil
	})
}

// GetInstance returns an instance's plan and current parameters (never a
// password), the VM holding it and what its server reports (replication,
// memory, keys, version); 404 while it is being created or deleted.
func (b *Broker) GetInstance(ctx context.Context, id string, d domain.FetchInstanceDetails) (domain.GetInstanceDetailsSpec, error) {
	inst, err := b.find(id)
	if err != nil {
		return domain.GetInstanceDetailsSpec{}, b.respond(ctx, "get-instance", err)
	}
	if inst == nil || inst.State != stateReady {
		return domain.GetInstanceDetailsSpec{}, apiresponses.ErrInstanceNotFound
	}
	attrs := map[string]any{
		"host":                inst.Host,
		"port":                inst.Port,
		"maintenance_version": inst.MaintenanceVersion,
	}
	if f := inst.ReplicaOf; f != nil {
		attrs["replica_of"] = f.Instance
		if f.Instance == "" {
			host := f.Host
			if f.Name != "" {
				host = f.Name
			}
			attrs["replica_of"] = net.JoinHostPort(host, strconv.Itoa(f.Port))
		}
	}
	if inst.HA != nil {
		attrs["nodes"] = inst.HA.Nodes
		attrs["master_name"] = inst.HA.Group.MasterName
	}
	if v, err := b.statusVM(ctx, inst); err == nil {
		// "agent" or "node": which VM holds the instance.
		attrs[v.noun] = v.id
		if st, err := v.live(ctx, id); err == nil {
			attrs["replication"] = st.Live.Replication
			attrs["used_memory_bytes"] = st.Live.UsedMemoryBytes
			attrs["maxmemory_bytes"] = st.MaxMemoryBytes
			attrs["keys"] = st.Live.Keys
			attrs["redis_version"] = st.Live.RedisVersion
		} else {
			attrs["status_error"] = "the " + v.kind + " did not answer"
			b.logger.Error("instance status failed", "instance", id, v.noun, v.id, "request_id", requestID(ctx), "error", err)
		}
	}
	return domain.GetInstanceDetailsSpec{
		ServiceID:  inst.ServiceID,
		PlanID:     inst.PlanID,
		Parameters: inst.Parameters,
		Metadata:   domain.InstanceMetadata{Attributes: attrs},
	}, nil
}

// LastOperation reports the last operation on an instance: an asynchronous
// delete or restore while it runs, otherwise the outcome of the last one.
// An instance that does not exist (deleted) answers 410.
func (b *Broker) LastOperation(ctx context.Context, id string, d domain.PollDetails) (domain.LastOperation, error) {
	// Whether a restore runs is read before the record: a restore that
	// ends in between has stored its outcome by then (see restore).
	_, restoring := b.restoring.Load(id)
	inst, err := b.find(id)
	if err != nil {
		return domain.LastOperation{}, b.respond(ctx, "last-operation", err)
	}
	if inst == nil {
		return domain.LastOperation{}, apiresponses.ErrInstanceDoesNotExist
	}
	if op, ok := b.interruptedRestore(inst, restoring); ok {
		return op, nil
	}
	return domain.LastOperation{State: inst.LastOp.State, Description: inst.LastOp.Description}, nil
}

// statusVM is the VM GET instance asks: the instance's, or the member of
// its HA group that leads now (its first member when the Sentinels do not
// answer).
func (b *Broker) statusVM(ctx context.Context, inst *instance) (vm, error) {
	if inst.HA == nil {
		return b.vmOf(inst)
	}
	vms, i, err := b.leaderVM(ctx, inst)
	if vms == nil {
		return vm{}, err
	}
	if err != nil {
		b.logger.Error("the leader of an HA group could not be found", "instance", inst.ID, "request_id", requestID(ctx), "error", err)
		return vms[0], nil
	}
	return vms[i], nil
}
