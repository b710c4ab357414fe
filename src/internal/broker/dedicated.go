package broker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"code.cloudfoundry.org/brokerapi/v13/domain"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
)

// poolNode is the broker's record of one dedicated node. The broker is the
// authority on which instance holds a node: a claim is stored here before
// the node is asked, and a node returns to the pool only after its reset
// verified it empty.
type poolNode struct {
	ID string `json:"id"`
	// Instance is the instance holding the node (or whose data it held
	// while resetting or quarantined); empty when free.
	Instance string `json:"instance,omitempty"`
	// State is poolFree, poolClaimed, poolResetting or poolQuarantined.
	State string `json:"state"`
	// Problem says why a node is quarantined.
	Problem string    `json:"problem,omitempty"`
	Since   time.Time `json:"since"`
}

const (
	poolFree        = "free"
	poolClaimed     = "claimed"
	poolResetting   = "resetting"
	poolQuarantined = "quarantined"
)

// nodeCheckTimeout bounds the status check of a node before a claim, so an
// unreachable node costs a provision seconds, not minutes.
const nodeCheckTimeout = 5 * time.Second

// syncPool gives every configured node a pool record. Records of nodes no
// longer configured stay: they may still hold a tenant's data.
func (b *Broker) syncPool() error {
	if b.cfg.DedicatedVM == nil {
		return nil
	}
	return b.state.Update(func(s *state) error {
		if s.Pool == nil {
			s.Pool = map[string]*poolNode{}
		}
		for _, n := range b.cfg.DedicatedVM.Nodes {
			if s.Pool[n.ID] == nil {
				s.Pool[n.ID] = &poolNode{ID: n.ID, State: poolFree, Since: now()}
			}
		}
		for id, n := range s.Pool {
			if b.nodes[id] == nil && n.State != poolFree {
				b.logger.Error("a node no longer in the config still holds an instance", "node", id, "instance", n.Instance, "state", n.State)
			}
		}
		return nil
	})
}

func (b *Broker) isDedicated(planID string) bool {
	return b.cfg.DedicatedVM != nil && planID == b.cfg.DedicatedVM.PlanID
}

// claimNode gives inst a free node: it checks each free node (reachable,
// reporting the id the broker expects, free by its own account), records the
// claim, then asks the node. Nodes that turn out not to be free are
// quarantined; unreachable ones are skipped.
func (b *Broker) claimNode(ctx context.Context, inst *instance) error {
	if inst.Node != "" {
		// A provision cut short after the claim was recorded: finish it.
		return b.finishClaim(ctx, inst, inst.Node)
	}
	var free []string
	err := b.state.View(func(s state) {
		for _, n := range b.cfg.DedicatedVM.Nodes {
			if p := s.Pool[n.ID]; p != nil && p.State == poolFree {
				free = append(free, n.ID)
			}
		}
	})
	if err != nil {
		return err
	}
	var unreachable []error
	for _, id := range free {
		if err := b.checkFree(ctx, id); err != nil {
			b.logger.Error("node skipped for a new instance", "node", id, "error", err)
			unreachable = append(unreachable, err)
			continue
		}
		taken := errors.New("taken")
		err := b.state.Update(func(s *state) error {
			p, r := s.Pool[id], s.Instances[inst.ID]
			if p == nil || p.State != poolFree {
				return taken
			}
			if r == nil {
				return fmt.Errorf("instance %s vanished while it was created", inst.ID)
			}
			p.State, p.Instance, p.Problem, p.Since = poolClaimed, inst.ID, "", now()
			r.Node = id
			return nil
		})
		if errors.Is(err, taken) {
			continue
		}
		if err != nil {
			return err
		}
		inst.Node = id
		err = b.finishClaim(ctx, inst, id)
		if errors.Is(err, agentapi.ErrBusy) || errors.Is(err, agentapi.ErrDirty) {
			b.quarantine(id, inst.ID, err)
			if uerr := b.state.Update(func(s *state) error {
				if r := s.Instances[inst.ID]; r != nil {
					r.Node = ""
				}
				return nil
			}); uerr != nil {
				return uerr
			}
			inst.Node = ""
			continue
		}
		return err
	}
	if err := b.state.Update(func(s *state) error {
		delete(s.Instances, inst.ID)
		return nil
	}); err != nil {
		return err
	}
	if len(unreachable) > 0 && len(unreachable) == len(free) {
		return fmt.Errorf("%w: every free dedicated node is unreachable: %w", errNoAgent, errors.Join(unreachable...))
	}
	return b.poolFull()
}

// checkFree asks a node whether it is the node expected and free.
func (b *Broker) checkFree(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, nodeCheckTimeout)
	defer cancel()
	st, err := b.nodes[id].Node(ctx)
	if err != nil {
		return err
	}
	if st.NodeID != id {
		return fmt.Errorf("the node's address answers as node %q, not %q: check the broker's node list", st.NodeID, id)
	}
	if st.State != agentapi.NodeFree {
		err := fmt.Errorf("the pool has node %s free but the node says it is %s (instance %q)", id, st.State, st.InstanceID)
		b.quarantine(id, st.InstanceID, err)
		return err
	}
	return nil
}

// finishClaim asks the node to take the instance and records where the
// instance answers.
func (b *Broker) finishClaim(ctx context.Context, inst *instance, nodeID string) error {
	node, ok := b.nodes[nodeID]
	if !ok {
		return fmt.Errorf("node %s is no longer in the broker's config", nodeID)
	}
	st, err := node.Create(ctx, inst.ID, agentapi.InstanceRequest{Parameters: inst.Parameters})
	if err != nil {
		return fmt.Errorf("claiming node %s for instance %s: %w", nodeID, inst.ID, err)
	}
	if st.NodeID != nodeID {
		return fmt.Errorf("node %s answered as node %q", nodeID, st.NodeID)
	}
	return b.state.Update(func(s *state) error {
		r := s.Instances[inst.ID]
		if r == nil {
			return fmt.Errorf("instance %s vanished while it was created", inst.ID)
		}
		r.Host, r.Port, r.State = st.Host, st.Port, stateReady
		r.LastOp = operation{Type: "create", State: domain.Succeeded, Description: "instance created on a dedicated VM", At: now()}
		return nil
	})
}

// quarantine takes a node out of the pool until a reset of it passes.
func (b *Broker) quarantine(id, instanceID string, cause error) {
	b.logger.Error("dedicated node quarantined: it is handed out again only after a reset verifies it empty", "node", id, "instance", instanceID, "cause", cause)
	err := b.state.Update(func(s *state) error {
		if p := s.Pool[id]; p != nil {
			p.State, p.Problem, p.Since = poolQuarantined, cause.Error(), now()
			if instanceID != "" {
				p.Instance = instanceID
			}
		}
		return nil
	})
	if err != nil {
		b.logger.Error("recording a quarantine failed", "node", id, "error", err)
	}
}

func (b *Broker) poolFull() error {
	p := b.cfg.DedicatedVM
	return &userError{
		status: http.StatusUnprocessableEntity,
		cause:  ErrPlanFull,
		msg: fmt.Sprintf("The %s plan is full: all %d dedicated VMs are in use. Delete an instance you no longer need, or ask your operator to add VMs to the pool.",
			p.Name, len(p.Nodes)),
	}
}

// releaseNode resets the node of a deleted instance and returns it to the
// pool once the reset verified it empty. A reset that ran but did not verify
// quarantines the node and still completes the delete: the node agent has
// locked the old tenant out. A node that cannot be reached keeps the delete
// pending, so a retry finishes it.
func (b *Broker) releaseNode(ctx context.Context, nodeID, instanceID string) error {
	node, ok := b.nodes[nodeID]
	if !ok {
		return fmt.Errorf("node %s is no longer in the broker's config", nodeID)
	}
	err := node.Delete(ctx, instanceID)
	switch {
	case err == nil:
		err = b.state.Update(func(s *state) error {
			if p := s.Pool[nodeID]; p != nil {
				p.State, p.Instance, p.Problem, p.Since = poolFree, "", "", now()
			}
			delete(s.Instances, instanceID)
			return nil
		})
		if err == nil {
			b.logger.Info("dedicated node reset and back in the pool", "node", nodeID, "instance", instanceID)
		}
		return err
	case errors.Is(err, agentapi.ErrDirty), errors.Is(err, agentapi.ErrConflict), errors.Is(err, agentapi.ErrBusy):
		b.quarantine(nodeID, instanceID, err)
		return b.state.Update(func(s *state) error {
			delete(s.Instances, instanceID)
			return nil
		})
	default:
		return fmt.Errorf("resetting node %s: %w", nodeID, err)
	}
}

// deprovisionDedicated releases the node of inst, in the background when the
// caller accepts an asynchronous answer.
func (b *Broker) deprovisionDedicated(ctx context.Context, inst *instance, async bool) (bool, error) {
	if inst.Node == "" {
		return false, b.state.Update(func(s *state) error {
			delete(s.Instances, inst.ID)
			return nil
		})
	}
	err := b.state.Update(func(s *state) error {
		if p := s.Pool[inst.Node]; p != nil {
			p.State, p.Instance, p.Since = poolResetting, inst.ID, now()
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	if !async {
		return false, b.releaseNode(ctx, inst.Node, inst.ID)
	}
	b.resets.Go(func() {
		ctx := context.WithoutCancel(ctx)
		// The caller holds the instance's lock until it answered; a repeated
		// delete may have finished the reset by then.
		unlock := b.locks.Lock(inst.ID)
		defer unlock()
		if !b.pending(inst.Node, inst.ID) {
			return
		}
		if err := b.releaseNode(ctx, inst.Node, inst.ID); err != nil {
			b.logger.Error("asynchronous delete failed", "instance", inst.ID, "node", inst.Node, "error", err)
			b.failDelete(inst.ID)
		}
	})
	return true, nil
}

// failDelete reports, through last_operation, that an instance's delete
// could not finish yet: Cloud Controller then lets the user retry it.
func (b *Broker) failDelete(id string) {
	_ = b.state.Update(func(s *state) error {
		if r := s.Instances[id]; r != nil && r.State == stateDeleting {
			r.LastOp = operation{Type: "delete", State: domain.Failed,
				Description: "The dedicated VM could not be reset yet. Delete the instance again to retry.", At: now()}
		}
		return nil
	})
}

// quarantineRetry is how often quarantined nodes are reset again.
const quarantineRetry = 10 * time.Minute

// Run does, in the background, now and every ten minutes until ctx ends,
// what needs no request: it finishes what a broker stopped in the middle of
// (resets of nodes whose instance was being deleted), retries quarantined
// nodes, and gives shared instances the plan's memory limit when the
// operator changed it (resize.go).
func (b *Broker) Run(ctx context.Context) {
	if b.cfg.DedicatedVM != nil {
		b.repeat(ctx, func(ctx context.Context) bool { b.resume(ctx); return true })
	}
	if b.cfg.SharedVM != nil {
		b.repeat(ctx, b.resizeShared)
	}
}

// repeat runs round in the background now and every ten minutes until ctx
// ends. A round that reports it could not reach everything (agents start
// beside the broker, or after it) comes again after a second, backing off
// up to the period.
func (b *Broker) repeat(ctx context.Context, round func(context.Context) bool) {
	b.resets.Go(func() {
		retry := time.Second
		for {
			wait := quarantineRetry
			if round(ctx) {
				retry = time.Second
			} else {
				wait, retry = retry, min(2*retry, quarantineRetry)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	})
}

func (b *Broker) resume(ctx context.Context) {
	if b.cfg.DedicatedVM == nil {
		return
	}
	var pending []poolNode
	_ = b.state.View(func(s state) {
		for _, p := range s.Pool {
			if p.State == poolResetting || p.State == poolQuarantined {
				pending = append(pending, *p)
			}
		}
	})
	slices.SortFunc(pending, func(a, b poolNode) int { return a.Since.Compare(b.Since) })
	for _, p := range pending {
		unlock, err := b.locks.LockContext(ctx, p.Instance)
		if err != nil {
			return
		}
		// Another request may have finished this reset meanwhile, and the
		// node may hold a new tenant: reset only what is still pending.
		if b.pending(p.ID, p.Instance) {
			if err := b.releaseNode(ctx, p.ID, p.Instance); err != nil {
				b.logger.Error("a node still cannot be reset; it stays out of the pool", "node", p.ID, "error", err)
				b.failDelete(p.Instance)
			}
		}
		unlock()
	}
}

func (b *Broker) pending(nodeID, instanceID string) bool {
	var ok bool
	_ = b.state.View(func(s state) {
		p := s.Pool[nodeID]
		ok = p != nil && p.Instance == instanceID && (p.State == poolResetting || p.State == poolQuarantined)
	})
	return ok
}

// Wait waits for background resets and Run to end (Run ends with its ctx).
func (b *Broker) Wait() { b.resets.Wait() }

// nodeStatus asks a node how it is, within nodeCheckTimeout.
func (b *Broker) nodeStatus(ctx context.Context, id, instanceID string) (agentapi.Instance, error) {
	n, ok := b.nodes[id]
	if !ok {
		return agentapi.Instance{}, fmt.Errorf("node %s is not in the broker's config", id)
	}
	ctx, cancel := context.WithTimeout(ctx, nodeCheckTimeout)
	defer cancel()
	return n.Get(ctx, instanceID)
}
