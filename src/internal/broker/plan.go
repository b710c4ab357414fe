package broker

import (
	"context"
	"time"

	"code.cloudfoundry.org/brokerapi/v13/domain"
)

// plan is what differs between the plans: where an instance goes and how
// it is made and removed. Everything an instance does once it exists goes
// through the agent of its VM (vm.go) whatever its plan, so the verbs
// never ask which plan an instance has.
type plan interface {
	// entry is the plan's catalog entry.
	entry() domain.ServicePlan
	// label is the plan's kind as the metrics label it, shared-vm or
	// dedicated-vm whatever the catalog names the plan, as the agents label
	// their instances.
	label() string
	// capacity is how many instances the plan can hold now in total and
	// how many more fit, as the state s and the last gathering see it;
	// it must not wait on the network (a metrics scrape calls it).
	capacity(s state) (total, left int)
	// gather asks the plan's VMs what capacity needs of them; Run calls
	// it in the background.
	gather(ctx context.Context)
	// open prepares the plan's records when the broker starts.
	open() error
	// admit refuses, within the transaction that stores a new instance's
	// record, an instance the plan has no room for.
	admit(s *state) error
	// provision makes the instance of a stored "creating" record, going on
	// from what the record says was done: a VM placed or claimed (inst.VM)
	// or not yet. Every step is recorded before it is taken. When the plan
	// has no room after all, the record is removed.
	provision(ctx context.Context, inst *instance) error
	// deprovision removes the instance of a record marked "deleting", and
	// then the record. With async it may finish in the background and
	// report true; last_operation tells the outcome.
	deprovision(ctx context.Context, inst *instance, async bool) (bool, error)
	// round does what needs no request (resizes, resets); false means
	// something could not be reached and the round should come again soon.
	round(ctx context.Context) bool
}

// placer is a plan that chooses a new instance's VM without changing
// anything (the shared plan asks the agents' capacity), so the record is
// stored naming its VM from the start: one durable write fewer per
// provision than storing the record and then the VM. Asking before the
// record is stored is safe because the question changes nothing.
type placer interface {
	// placeOrder returns the VMs that can take a new instance, best first;
	// an error when none can.
	placeOrder(ctx context.Context) ([]string, error)
	// create makes the instance of a stored "creating" record whose VM is
	// order[0], trying the next VMs of order when one has no room.
	create(ctx context.Context, inst *instance, order []string) error
}

// planOf returns the plan of inst; nil for a plan the config no longer has.
func (b *Broker) planOf(inst *instance) plan { return b.plans[inst.PlanID] }

// roundPeriod is how often the background rounds run: quarantined nodes
// are reset again, and shared instances given the plan's memory limit.
const roundPeriod = 10 * time.Minute

// Run does, in the background, now and every ten minutes until ctx ends,
// what needs no request: each plan's round (plan.round), and every
// memberCheckPeriod a watcher plan's watch (the HA plan's member check). A round that could
// not reach everything (agents start beside the broker, or after it) comes
// again after a second, backing off up to the period. It also gathers, now
// and every gatherPeriod, what the capacity metrics need of the VMs.
func (b *Broker) Run(ctx context.Context) {
	for _, p := range b.order {
		b.repeat(ctx, roundPeriod, p.round)
		if w, ok := p.(watcher); ok {
			b.repeat(ctx, memberCheckPeriod, w.watch)
		}
	}
	b.resets.Go(func() { b.gather(ctx) })
}

// gather runs each plan's gather now, every gatherPeriod and when asked
// (b.regather), until ctx ends.
func (b *Broker) gather(ctx context.Context) {
	for {
		for _, p := range b.order {
			p.gather(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-b.regather:
		case <-time.After(gatherPeriod):
		}
	}
}

// askGather asks Run's gathering to run again now, without waiting.
func (b *Broker) askGather() {
	select {
	case b.regather <- struct{}{}:
	default:
	}
}

// watcher is a plan that also checks, every memberCheckPeriod, what it made
// (haPlan: that every member of a group still holds its instance).
type watcher interface {
	watch(ctx context.Context) bool
}

// repeat runs round now and every period until ctx ends; a round that
// reports false comes again after a second, backing off up to the period.
func (b *Broker) repeat(ctx context.Context, period time.Duration, round func(context.Context) bool) {
	b.resets.Go(func() {
		retry := time.Second
		for {
			wait := period
			if round(ctx) {
				retry = time.Second
			} else {
				wait, retry = retry, min(2*retry, period)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	})
}

// Wait waits for background work to end (Run's rounds end with its ctx;
// a delete or restore in flight finishes first).
func (b *Broker) Wait() { b.resets.Wait() }
