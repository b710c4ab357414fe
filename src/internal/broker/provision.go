package broker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"code.cloudfoundry.org/brokerapi/v13/domain"
	"code.cloudfoundry.org/brokerapi/v13/domain/apiresponses"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/params"
	"github.com/cf-redis/redis-for-cf/src/internal/placement"
)

// Provision creates a shared-vm instance synchronously: the record is stored
// ("creating") before any agent is asked, so a crash at any point leaves
// something a retry finishes or a delete cleans up, and the answer (201) comes
// only once redis-server answers PING.
func (b *Broker) Provision(ctx context.Context, id string, d domain.ProvisionDetails, asyncAllowed bool) (domain.ProvisionedServiceSpec, error) {
	spec, err := b.provision(ctx, id, d)
	return spec, b.respond(ctx, "provision", err)
}

func (b *Broker) provision(ctx context.Context, id string, d domain.ProvisionDetails) (domain.ProvisionedServiceSpec, error) {
	if !idPattern.MatchString(id) {
		return domain.ProvisionedServiceSpec{}, badRequest("instance id %q must be 1-128 letters, digits, '.', '_' or '-'", id)
	}
	if !b.knownPlan(d.PlanID) {
		return domain.ProvisionedServiceSpec{}, badRequest("plan %q is not a plan of this service", d.PlanID)
	}
	if err := b.checkMaintenanceInfo(d.MaintenanceInfo); err != nil {
		return domain.ProvisionedServiceSpec{}, err
	}
	p, err := params.Apply(params.Defaults(), d.RawParameters)
	if err != nil {
		return domain.ProvisionedServiceSpec{}, err
	}
	unlock, err := b.locks.LockContext(ctx, id)
	if err != nil {
		return domain.ProvisionedServiceSpec{}, err
	}
	defer unlock()

	existing, err := b.find(id)
	if err != nil {
		return domain.ProvisionedServiceSpec{}, err
	}
	if existing != nil {
		same := existing.ServiceID == d.ServiceID && existing.PlanID == d.PlanID &&
			existing.OrgGUID == d.OrganizationGUID && existing.SpaceGUID == d.SpaceGUID &&
			sameJSON(existing.Requested, d.RawParameters)
		switch {
		case !same:
			return domain.ProvisionedServiceSpec{}, &userError{status: http.StatusConflict,
				msg: fmt.Sprintf("instance %s already exists with another plan, space or parameters", id)}
		case existing.State == stateReady:
			return domain.ProvisionedServiceSpec{AlreadyExists: true}, nil
		case existing.State == stateDeleting:
			return domain.ProvisionedServiceSpec{}, unprocessable("ConcurrencyError", "instance %s is being deleted; retry the delete before creating it again", id)
		}
		// A provision cut short (crash, timeout): finish it where it began.
		if b.isDedicated(existing.PlanID) {
			return domain.ProvisionedServiceSpec{}, b.claimNode(ctx, existing)
		}
		return domain.ProvisionedServiceSpec{}, b.create(ctx, existing, []string{existing.Agent})
	}

	inst := &instance{
		ID:                 id,
		ServiceID:          d.ServiceID,
		PlanID:             d.PlanID,
		OrgGUID:            d.OrganizationGUID,
		SpaceGUID:          d.SpaceGUID,
		Requested:          d.RawParameters,
		Parameters:         p,
		MaintenanceVersion: b.cfg.Catalog.MaintenanceVersion,
		State:              stateCreating,
		LastOp:             operation{Type: "create", State: domain.InProgress, Description: "creating the instance", At: now()},
		Bindings:           map[string]*binding{},
		CreatedAt:          now(),
	}
	if b.isDedicated(d.PlanID) {
		if err := b.insert(inst, nil); err != nil {
			return domain.ProvisionedServiceSpec{}, err
		}
		return domain.ProvisionedServiceSpec{}, b.claimNode(ctx, inst)
	}

	order, err := b.placeOrder(ctx, b.cfg.SharedVM.MaxMemoryMB<<20)
	if err != nil {
		return domain.ProvisionedServiceSpec{}, err
	}
	inst.Agent = order[0]
	err = b.insert(inst, func(s *state) error {
		if n := b.countPlan(s, d.PlanID); n >= b.cfg.SharedVM.MaxInstances {
			return b.planFull()
		}
		return nil
	})
	if err != nil {
		return domain.ProvisionedServiceSpec{}, err
	}
	return domain.ProvisionedServiceSpec{}, b.create(ctx, inst, order)
}

// insert stores a new instance record, after check (when not nil) agreed
// within the same transaction.
func (b *Broker) insert(inst *instance, check func(*state) error) error {
	return b.state.Update(func(s *state) error {
		if s.Instances == nil {
			s.Instances = map[string]*instance{}
		}
		if check != nil {
			if err := check(s); err != nil {
				return err
			}
		}
		// A copy: the caller goes on changing inst, and what is stored must
		// change only through Update.
		stored := *inst
		s.Instances[inst.ID] = &stored
		return nil
	})
}

// create asks the agents of order, in turn, to create inst until one does,
// and records the result. When every agent refuses for want of room, the
// record is removed and the plan is full.
func (b *Broker) create(ctx context.Context, inst *instance, order []string) error {
	req := agentapi.InstanceRequest{MaxMemoryBytes: b.cfg.SharedVM.MaxMemoryMB << 20, Parameters: inst.Parameters}
	var lastErr error
	for i, agentID := range order {
		if i > 0 {
			if err := b.setAgent(inst.ID, agentID); err != nil {
				return err
			}
		}
		agent := b.agents[agentID]
		created, err := agent.Create(ctx, inst.ID, req)
		if errors.Is(err, agentapi.ErrFull) {
			lastErr = err
			continue
		}
		if err != nil {
			// The record stays "creating": a retry finishes the provision, and
			// Cloud Controller's orphan-mitigation delete removes whatever the
			// agent did.
			return fmt.Errorf("creating instance %s on agent %s: %w", inst.ID, agentID, err)
		}
		return b.state.Update(func(s *state) error {
			r := s.Instances[inst.ID]
			if r == nil {
				return fmt.Errorf("instance %s vanished while it was created", inst.ID)
			}
			r.Host, r.Port, r.State = created.Host, created.Port, stateReady
			r.LastOp = operation{Type: "create", State: domain.Succeeded, Description: "instance created", At: now()}
			return nil
		})
	}
	err := b.state.Update(func(s *state) error {
		delete(s.Instances, inst.ID)
		return nil
	})
	if err != nil {
		return err
	}
	b.logger.Info("every shared VM refused the instance for want of room", "instance", inst.ID, "last_error", fmt.Sprint(lastErr))
	return b.planFull()
}

func (b *Broker) setAgent(id, agentID string) error {
	return b.state.Update(func(s *state) error {
		if r := s.Instances[id]; r != nil {
			r.Agent = agentID
		}
		return nil
	})
}

// capacityTimeout bounds the capacity query of placement.
const capacityTimeout = 5 * time.Second

// placeOrder asks every agent for its capacity and returns the ids of those
// that can take an instance, best first (placement.Order). Unreachable
// agents are skipped and logged.
func (b *Broker) placeOrder(ctx context.Context, maxmemory int64) ([]string, error) {
	type result struct {
		id  string
		c   agentapi.Capacity
		err error
	}
	// An agent that does not answer quickly is skipped rather than waited
	// for: placement has others to choose from.
	ctx, cancel := context.WithTimeout(ctx, capacityTimeout)
	defer cancel()
	results := make(chan result, len(b.cfg.SharedVM.Agents))
	for _, a := range b.cfg.SharedVM.Agents {
		go func() {
			c, err := b.agents[a.ID].Capacity(ctx)
			results <- result{a.ID, c, err}
		}()
	}
	var candidates []placement.Candidate
	var failed []error
	for range b.cfg.SharedVM.Agents {
		r := <-results
		if r.err != nil {
			b.logger.Error("agent unreachable; placing instances elsewhere", "agent", r.id, "error", r.err)
			failed = append(failed, r.err)
			continue
		}
		candidates = append(candidates, placement.Candidate{AgentID: r.id, Capacity: r.c})
	}
	if len(candidates) == 0 {
		return nil, fmt.Errorf("%w: %w", errNoAgent, errors.Join(failed...))
	}
	order := placement.Order(candidates, maxmemory)
	if len(order) == 0 {
		return nil, b.planFull()
	}
	return order, nil
}

func (b *Broker) countPlan(s *state, planID string) int {
	n := 0
	for _, r := range s.Instances {
		if r.PlanID == planID {
			n++
		}
	}
	return n
}

func (b *Broker) planFull() error {
	p := b.cfg.SharedVM
	return &userError{
		status: http.StatusUnprocessableEntity,
		cause:  ErrPlanFull,
		msg: fmt.Sprintf("The %s plan is full: it holds at most %d instances and needs %d MB free on a shared VM. Delete an instance you no longer need, or ask your operator to raise the plan's limit.",
			p.Name, p.MaxInstances, p.MaxMemoryMB),
	}
}

// checkMaintenanceInfo refuses a maintenance_info that is not the catalog's.
func (b *Broker) checkMaintenanceInfo(mi *domain.MaintenanceInfo) error {
	if mi == nil {
		return nil
	}
	if mi.Version != b.cfg.Catalog.MaintenanceVersion {
		return apiresponses.ErrMaintenanceInfoConflict
	}
	return nil
}
