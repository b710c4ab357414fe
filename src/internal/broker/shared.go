package broker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"code.cloudfoundry.org/brokerapi/v13/domain"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/placement"
)

// sharedPlan is the shared-vm plan: an isolated redis-server of its own on
// the shared VM with the most free memory, at most MaxInstances in all.
type sharedPlan struct {
	b   *Broker
	cfg *SharedVMPlan
	// seen holds each agent's capacity as it last answered, for the
	// metrics; an agent that did not answer the last query is absent.
	mu   sync.Mutex
	seen map[string]agentapi.Capacity
}

var (
	_ plan   = (*sharedPlan)(nil)
	_ placer = (*sharedPlan)(nil)
)

func (p *sharedPlan) entry() domain.ServicePlan {
	return p.b.catalogPlan(p.cfg.PlanID, p.cfg.Name, p.cfg.Description, "Shared VM", []string{
		"An isolated redis-server process on a shared VM",
		formatMB(p.cfg.MaxMemoryMB) + " memory limit",
		"Per-binding credentials, AOF and RDB persistence",
	})
}

func (p *sharedPlan) open() error { return nil }

func (p *sharedPlan) admit(s *state) error {
	n := 0
	for _, r := range s.Instances.All() {
		if r.PlanID == p.cfg.PlanID {
			n++
		}
	}
	if n >= p.cfg.MaxInstances {
		return p.full()
	}
	return nil
}

func (p *sharedPlan) maxmemory() int64 { return p.cfg.MaxMemoryMB << 20 }

// provision places the instance (unless the record has its VM already, as
// every record Broker.provision stores has) and creates it.
func (p *sharedPlan) provision(ctx context.Context, inst *instance) error {
	order := []string{inst.VM}
	if inst.VM == "" {
		var err error
		if order, err = p.placeOrder(ctx); err != nil {
			return errors.Join(err, p.b.forget(inst.ID))
		}
	}
	return p.create(ctx, inst, order)
}

// create asks the agents of order, in turn, to create inst until one does,
// recording each agent before it is asked. When every agent refuses for want
// of room, the record is removed and the plan is full.
func (p *sharedPlan) create(ctx context.Context, inst *instance, order []string) error {
	req := agentapi.InstanceRequest{MaxMemoryBytes: p.maxmemory(), Parameters: inst.Parameters}
	var lastErr error
	for _, id := range order {
		v, ok := p.b.vms[id]
		if !ok {
			return fmt.Errorf("instance %s is on agent %q, which is no longer in the broker's config", inst.ID, id)
		}
		if inst.VM != id {
			if err := p.b.setVM(inst.ID, id); err != nil {
				return err
			}
			inst.VM = id
		}
		created, err := v.c.Create(ctx, inst.ID, req)
		if errors.Is(err, agentapi.ErrFull) {
			lastErr = err
			continue
		}
		if noTLS(inst, err) {
			return errors.Join(p.b.forget(inst.ID), errNoTLS(p.cfg.Name))
		}
		if err != nil {
			// The record stays "creating": a retry finishes the provision, and
			// Cloud Controller's orphan-mitigation delete removes whatever the
			// agent did.
			return fmt.Errorf("creating instance %s on agent %s: %w", inst.ID, id, err)
		}
		p.b.askGather()
		return p.b.created(inst.ID, created, "instance created")
	}
	if err := p.b.forget(inst.ID); err != nil {
		return err
	}
	p.b.logger.Info("every shared VM refused the instance for want of room", "instance", inst.ID, "last_error", fmt.Sprint(lastErr))
	return p.full()
}

// capacityTimeout bounds the capacity query of placement.
const capacityTimeout = 5 * time.Second

// placeOrder asks every agent for its capacity and returns the ids of those
// that can take an instance, best first (placement.Order). Unreachable
// agents are skipped and logged.
func (p *sharedPlan) placeOrder(ctx context.Context) ([]string, error) {
	candidates, failed := p.askCapacity(ctx)
	for id, err := range failed {
		p.b.logger.Error("agent unreachable; placing instances elsewhere", "agent", id, "error", err)
	}
	if len(candidates) == 0 {
		return nil, fmt.Errorf("%w: %w", errNoAgent, errors.Join(slices.Collect(maps.Values(failed))...))
	}
	order := placement.Order(candidates, p.maxmemory())
	if len(order) == 0 {
		return nil, p.full()
	}
	return order, nil
}

// askCapacity asks every agent for its capacity at once, each within
// capacityTimeout, and keeps the answers for the capacity metrics: what
// placement sees is what they report. It returns the agents that answered
// and the errors of those that did not, by agent id.
func (p *sharedPlan) askCapacity(ctx context.Context) ([]placement.Candidate, map[string]error) {
	type result struct {
		id  string
		c   agentapi.Capacity
		err error
	}
	// An agent that does not answer quickly is skipped rather than waited
	// for: placement has others to choose from.
	outer := ctx
	ctx, cancel := context.WithTimeout(ctx, capacityTimeout)
	defer cancel()
	results := make(chan result, len(p.cfg.Agents))
	for _, a := range p.cfg.Agents {
		go func() {
			c, err := p.b.vms[a.ID].c.Capacity(ctx)
			results <- result{a.ID, c, err}
		}()
	}
	var candidates []placement.Candidate
	failed := map[string]error{}
	for range p.cfg.Agents {
		r := <-results
		if r.err != nil {
			failed[r.id] = r.err
			continue
		}
		candidates = append(candidates, placement.Candidate{AgentID: r.id, Capacity: r.c})
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seen == nil {
		p.seen = map[string]agentapi.Capacity{}
	}
	for _, c := range candidates {
		p.seen[c.AgentID] = c.Capacity
	}
	// An agent the caller stopped waiting for (a request that ended, a
	// broker stopping) may well be there.
	if outer.Err() == nil {
		for id := range failed {
			delete(p.seen, id)
		}
	}
	return candidates, failed
}

// gather asks the agents for their capacity, for the metrics; unless ctx
// ended, an agent that does not answer counts as holding nothing until it
// does. It logs an agent once when it stops answering, not every period.
func (p *sharedPlan) gather(ctx context.Context) {
	p.mu.Lock()
	before := maps.Clone(p.seen)
	p.mu.Unlock()
	_, failed := p.askCapacity(ctx)
	for id, err := range failed {
		if _, was := before[id]; was && ctx.Err() == nil {
			p.b.logger.Warn("agent unreachable: its shared VM counts no capacity in the metrics until it answers", "agent", id, "error", err)
		}
	}
}

// capacity is, for the shared VMs the last capacity query reached, how many
// instances of the plan's memory limit they hold in all and how many more
// fit (their memory budget, ports and instance cap), within the plan's
// max_instances.
func (p *sharedPlan) capacity(s state) (total, left int) {
	used := 0
	for _, r := range s.Instances.All() {
		if r.PlanID == p.cfg.PlanID {
			used++
		}
	}
	p.mu.Lock()
	for _, a := range p.cfg.Agents {
		if c, ok := p.seen[a.ID]; ok {
			t, l := slots(c, p.maxmemory())
			total += t
			left += l
		}
	}
	p.mu.Unlock()
	return min(total, p.cfg.MaxInstances), max(0, min(left, p.cfg.MaxInstances-used))
}

// slots is how many instances of maxmemory bytes an agent of capacity c
// holds in all and how many more fit, as agentapi.Capacity.Fits counts.
func slots(c agentapi.Capacity, maxmemory int64) (total, left int) {
	if maxmemory <= 0 {
		return 0, 0
	}
	ports := max(1, c.PortsPerInstance)
	total = min(int(c.MemoryBytes/maxmemory), (c.FreePorts+c.Instances*ports)/ports)
	left = min(int(max(0, c.MemoryBytes-c.AllocatedBytes)/maxmemory), c.FreePorts/ports)
	if c.MaxInstances > 0 {
		total = min(total, c.MaxInstances)
		left = min(left, max(0, c.MaxInstances-c.Instances))
	}
	return total, left
}

func (p *sharedPlan) label() string { return "shared-vm" }

func (p *sharedPlan) full() error {
	return &userError{
		status: http.StatusUnprocessableEntity,
		cause:  ErrPlanFull,
		msg: fmt.Sprintf("The %s plan is full: it holds at most %d instances and needs %d MB free on a shared VM. Delete an instance you no longer need, or ask your operator to raise the plan's limit.",
			p.cfg.Name, p.cfg.MaxInstances, p.cfg.MaxMemoryMB),
	}
}

// deprovision removes the instance from its agent (one the agent no longer
// has is gone already), then the record.
func (p *sharedPlan) deprovision(ctx context.Context, inst *instance, _ bool) (bool, error) {
	if inst.VM != "" {
		v, err := p.b.vmOf(inst)
		if err != nil {
			return false, err
		}
		if err := v.c.Delete(ctx, inst.ID); err != nil && !errors.Is(err, agentapi.ErrNotFound) {
			return false, fmt.Errorf("deleting instance %s on agent %s: %w", inst.ID, inst.VM, err)
		}
	}
	p.b.askGather()
	if err := p.b.forget(inst.ID); err != nil {
		return false, err
	}
	p.b.logger.Info("instance deleted", "instance", inst.ID, "agent", inst.VM, "bindings", len(inst.Bindings))
	return false, nil
}

// round gives every shared instance the plan's memory limit
// (shared_vm.maxmemory_mb) when it has another: the operator changed the
// plan and redeployed. Agents apply it live. One that cannot be applied yet
// (the VM's budget cannot hold it, or the instance holds more than a smaller
// limit, or the agent is away) keeps its limit and is tried again on the
// next round; nothing is evicted for it. It reports whether every agent
// answered.
func (p *sharedPlan) round(ctx context.Context) bool {
	want := p.maxmemory()
	ids := make([]string, 0, len(p.cfg.Agents))
	for _, a := range p.cfg.Agents {
		ids = append(ids, a.ID)
	}
	slices.Sort(ids)
	answered := true
	for _, agentID := range ids {
		a := p.b.vms[agentID].c
		instances, err := a.List(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return false
			}
			answered = false
			p.b.logger.Warn("cannot list an agent's instances to give them the plan's memory limit; trying again later", "agent", agentID, "error", err)
			continue
		}
		for _, inst := range instances {
			if inst.MaxMemoryBytes == want {
				continue
			}
			_, err := a.Resize(ctx, inst.ID, agentapi.ResizeRequest{MaxMemoryBytes: want})
			if err != nil {
				if ctx.Err() != nil {
					return false
				}
				if !errors.Is(err, agentapi.ErrFull) && !errors.Is(err, agentapi.ErrConflict) {
					answered = false
				}
				p.b.logger.Warn("an instance keeps its memory limit for now", "instance", inst.ID, "agent", agentID,
					"maxmemory_mb", inst.MaxMemoryBytes>>20, "plan_maxmemory_mb", want>>20, "error", err)
				continue
			}
			p.b.logger.Info("instance given the plan's memory limit", "instance", inst.ID, "agent", agentID,
				"from_mb", inst.MaxMemoryBytes>>20, "to_mb", want>>20)
		}
	}
	return answered
}
