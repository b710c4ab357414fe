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

// dedicatedPlan is the dedicated-vm plan: a node of its own from a pool,
// which goes back to the pool only after a reset verified it empty.
type dedicatedPlan struct {
	b   *Broker
	cfg *DedicatedVMPlan
}

var _ plan = (*dedicatedPlan)(nil)

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

func (p *dedicatedPlan) entry() domain.ServicePlan {
	return p.b.catalogPlan(p.cfg.PlanID, p.cfg.Name, p.cfg.Description, "Dedicated VM", []string{
		"A VM of its own running one redis-server",
		"Per-binding credentials, AOF and RDB persistence",
		"Wiped and verified empty before the VM serves anyone else",
	})
}

// open gives every configured node a pool record. Records of nodes no
// longer configured stay: they may still hold a tenant's data.
func (p *dedicatedPlan) open() error {
	return p.b.state.Update(func(s *state) error {
		if s.Pool == nil {
			s.Pool = map[string]*poolNode{}
		}
		for _, n := range p.cfg.Nodes {
			if s.Pool[n.ID] == nil {
				s.Pool[n.ID] = &poolNode{ID: n.ID, State: poolFree, Since: now()}
			}
		}
		for id, n := range s.Pool {
			if _, ok := p.b.vms[id]; !ok && n.State != poolFree {
				p.b.logger.Error("a node no longer in the config still holds an instance", "node", id, "instance", n.Instance, "state", n.State)
			}
		}
		return nil
	})
}

func (p *dedicatedPlan) label() string { return "dedicated-vm" }

// capacity counts the pool's nodes: every one that is not quarantined can
// hold an instance (free ones now, claimed and resetting ones hold or are
// releasing one), and the free ones are what is left.
func (p *dedicatedPlan) capacity(s state) (total, left int) {
	for _, n := range p.cfg.Nodes {
		switch pn := s.Pool[n.ID]; {
		case pn == nil || pn.State == poolQuarantined:
		case pn.State == poolFree:
			total++
			left++
		default:
			total++
		}
	}
	return total, left
}

// gather has nothing to ask: the pool is the broker's own record.
func (p *dedicatedPlan) gather(context.Context) {}

// admit lets every instance in: the claim finds out whether a node is free.
func (p *dedicatedPlan) admit(*state) error { return nil }

// provision gives inst a free node: it checks each free node (reachable,
// reporting the id the broker expects, free by its own account), records the
// claim, then asks the node. Nodes that turn out not to be free are
// quarantined; unreachable ones are skipped. A record that has its node
// already (a provision cut short after the claim was recorded) finishes
// that claim.
func (p *dedicatedPlan) provision(ctx context.Context, inst *instance) error {
	if inst.VM != "" {
		return p.finishClaim(ctx, inst, inst.VM)
	}
	free, err := p.freeNodes()
	if err != nil {
		return err
	}
	var unreachable []error
	for _, n := range free {
		id := n.ID
		if err := p.checkFree(ctx, id); err != nil {
			p.b.logger.Error("node skipped for a new instance", "node", id, "error", err)
			unreachable = append(unreachable, err)
			continue
		}
		taken := errors.New("taken")
		err := p.b.state.Update(func(s *state) error {
			pn, r := s.Pool[id], s.Instances.Edit(inst.ID)
			if pn == nil || pn.State != poolFree {
				return taken
			}
			if r == nil {
				return fmt.Errorf("instance %s vanished while it was created", inst.ID)
			}
			pn.State, pn.Instance, pn.Problem, pn.Since = poolClaimed, inst.ID, "", now()
			r.VM = id
			return nil
		})
		if errors.Is(err, taken) {
			continue
		}
		if err != nil {
			return err
		}
		inst.VM = id
		err = p.finishClaim(ctx, inst, id)
		if noTLS(inst, err) {
			// The node refused before it changed anything: it goes back
			// to the pool as it was.
			return errors.Join(p.b.state.Update(func(s *state) error {
				if pn := s.Pool[id]; pn != nil && pn.Instance == inst.ID {
					pn.State, pn.Instance, pn.Since = poolFree, "", now()
				}
				s.Instances.Delete(inst.ID)
				return nil
			}), errNoTLS(p.cfg.Name))
		}
		if errors.Is(err, agentapi.ErrBusy) || errors.Is(err, agentapi.ErrDirty) {
			p.quarantine(id, "", err)
			if err := p.b.setVM(inst.ID, ""); err != nil {
				return err
			}
			inst.VM = ""
			continue
		}
		return err
	}
	if err := p.b.forget(inst.ID); err != nil {
		return err
	}
	if len(unreachable) > 0 && len(unreachable) == len(free) {
		return fmt.Errorf("%w: every free dedicated node is unreachable: %w", errNoAgent, errors.Join(unreachable...))
	}
	return p.full()
}

// checkFree asks a node whether it is the node expected and free.
func (p *dedicatedPlan) checkFree(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	st, err := p.b.vms[id].c.Node(ctx)
	if err != nil {
		return err
	}
	if st.NodeID != id {
		return fmt.Errorf("the node's address answers as node %q, not %q: check the broker's node list", st.NodeID, id)
	}
	if st.State != agentapi.NodeFree {
		err := fmt.Errorf("the pool has node %s free but the node says it is %s (instance %q)", id, st.State, st.InstanceID)
		p.quarantine(id, st.InstanceID, err)
		return err
	}
	return nil
}

// finishClaim asks the node to take the instance and records where the
// instance answers.
func (p *dedicatedPlan) finishClaim(ctx context.Context, inst *instance, nodeID string) error {
	got, err := p.ask(ctx, inst, nodeID)
	if err != nil {
		return err
	}
	return p.b.created(inst.ID, got, "instance created on a dedicated VM")
}

// ask asks node nodeID, whose claim for inst is recorded, to take the
// instance; asking again is harmless (the node answers the instance it
// holds).
func (p *dedicatedPlan) ask(ctx context.Context, inst *instance, nodeID string) (agentapi.Instance, error) {
	v, ok := p.b.vms[nodeID]
	if !ok {
		return agentapi.Instance{}, fmt.Errorf("instance %s is on node %q, which is no longer in the broker's config", inst.ID, nodeID)
	}
	// A node's limit is its VM's: the request asks for none.
	got, err := v.c.Create(ctx, inst.ID, agentapi.InstanceRequest{Parameters: inst.Parameters})
	if err != nil {
		return got, fmt.Errorf("claiming node %s for instance %s: %w", nodeID, inst.ID, err)
	}
	if got.NodeID != nodeID {
		return got, fmt.Errorf("node %s answered as node %q", nodeID, got.NodeID)
	}
	return got, nil
}

// freeNodes lists the pool's free nodes in config order.
func (p *dedicatedPlan) freeNodes() ([]NodeConfig, error) {
	var free []NodeConfig
	err := p.b.state.View(func(s state) {
		for _, n := range p.cfg.Nodes {
			if pn := s.Pool[n.ID]; pn != nil && pn.State == poolFree {
				free = append(free, n)
			}
		}
	})
	return free, err
}

// quarantine takes a node out of the pool until a reset of it passes.
// instanceID, when set, is the instance whose data the node holds.
func (p *dedicatedPlan) quarantine(id, instanceID string, cause error) {
	p.b.logger.Error("dedicated node quarantined: it is handed out again only after a reset verifies it empty", "node", id, "instance", instanceID, "cause", cause)
	err := p.b.state.Update(func(s *state) error {
		if pn := s.Pool[id]; pn != nil {
			pn.State, pn.Problem, pn.Since = poolQuarantined, cause.Error(), now()
			if instanceID != "" {
				pn.Instance = instanceID
			}
		}
		return nil
	})
	if err != nil {
		p.b.logger.Error("recording a quarantine failed", "node", id, "error", err)
	}
}

func (p *dedicatedPlan) full() error {
	return &userError{
		status: http.StatusUnprocessableEntity,
		cause:  ErrPlanFull,
		msg: fmt.Sprintf("The %s plan is full: all %d dedicated VMs are in use. Delete an instance you no longer need, or ask your operator to add VMs to the pool.",
			p.cfg.Name, len(p.cfg.Nodes)),
	}
}

// release resets a node (the agent's delete) and returns it to the pool
// once the reset verified it empty. A reset that ran but did not verify
// quarantines the node and still completes the delete: the node agent has
// locked the old tenant out. A node that cannot be reached keeps the delete
// pending, so a retry finishes it. The instance's record goes with the
// delete only when it is still the record of an instance on this node.
func (p *dedicatedPlan) release(ctx context.Context, nodeID, instanceID string) error {
	v, ok := p.b.vms[nodeID]
	if !ok {
		return fmt.Errorf("node %s is no longer in the broker's config", nodeID)
	}
	err := v.c.Delete(ctx, instanceID)
	switch {
	case err == nil:
		err = p.b.state.Update(func(s *state) error {
			if pn := s.Pool[nodeID]; pn != nil {
				pn.State, pn.Instance, pn.Problem, pn.Since = poolFree, "", "", now()
			}
			forgetOn(s, instanceID, nodeID)
			return nil
		})
		if err == nil {
			p.b.logger.Info("dedicated node reset and back in the pool", "node", nodeID, "instance", instanceID)
		}
		return err
	case errors.Is(err, agentapi.ErrDirty), errors.Is(err, agentapi.ErrConflict), errors.Is(err, agentapi.ErrBusy):
		p.quarantine(nodeID, instanceID, err)
		return p.b.state.Update(func(s *state) error {
			forgetOn(s, instanceID, nodeID)
			return nil
		})
	default:
		return fmt.Errorf("resetting node %s: %w", nodeID, err)
	}
}

// forgetOn removes the record of instance id if it is on the VM vmID and,
// for an HA group, no other node of it is still claimed or resetting for
// it: the record goes with the last of its nodes.
func forgetOn(s *state, id, vmID string) {
	r := s.Instances.At(id)
	if r == nil || !slices.Contains(nodesOf(r), vmID) {
		return
	}
	for _, n := range nodesOf(r) {
		if pn := s.Pool[n]; n != vmID && pn != nil && pn.Instance == id && (pn.State == poolClaimed || pn.State == poolResetting) {
			return
		}
	}
	s.Instances.Delete(id)
}

// nodesOf lists the VMs holding inst: the members of an HA group, or its
// one VM; none before any was placed or claimed.
func nodesOf(inst *instance) []string {
	switch {
	case inst.HA != nil:
		return inst.HA.Nodes
	case inst.VM != "":
		return []string{inst.VM}
	}
	return nil
}

// deprovision releases the nodes of inst (its one node, or the three of
// an HA group), in the background when the caller accepts an asynchronous
// answer: a reset of a large dataset can take a while. The record goes
// once every node's reset ran; a node whose reset did not verify is
// quarantined and the others return to the pool.
func (p *dedicatedPlan) deprovision(ctx context.Context, inst *instance, async bool) (bool, error) {
	nodes := nodesOf(inst)
	if len(nodes) == 0 {
		return false, p.b.forget(inst.ID)
	}
	err := p.b.state.Update(func(s *state) error {
		for _, id := range nodes {
			// A node the pool no longer holds for inst (rolled back, or
			// quarantined under another instance) is not inst's to reset.
			if pn := s.Pool[id]; pn != nil && pn.Instance == inst.ID && pn.State != poolQuarantined {
				pn.State, pn.Since = poolResetting, now()
			}
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	releaseAll := func(ctx context.Context) error {
		var errs []error
		for _, id := range nodes {
			if p.pending(id, inst.ID) {
				errs = append(errs, p.release(ctx, id, inst.ID))
			}
		}
		// The record goes with the last node released; one that no node
		// holds any more (every claim rolled back) goes now.
		return errors.Join(append(errs, p.b.state.Update(func(s *state) error {
			if r := s.Instances.At(inst.ID); r != nil && r.State == stateDeleting && !held(s, inst.ID) {
				s.Instances.Delete(inst.ID)
			}
			return nil
		}))...)
	}
	if !async {
		return false, releaseAll(ctx)
	}
	p.b.resets.Go(func() {
		ctx := context.WithoutCancel(ctx)
		// The caller holds the instance's lock until it answered; a repeated
		// delete may have finished the reset by then.
		unlock := p.b.locks.Lock(inst.ID)
		defer unlock()
		if err := releaseAll(ctx); err != nil {
			p.b.logger.Error("asynchronous delete failed", "instance", inst.ID, "nodes", nodes, "error", err)
			p.failDelete(inst.ID)
		}
	})
	return true, nil
}

// held reports whether a node of the pool is claimed or resetting for
// instance id.
func held(s *state, id string) bool {
	for _, pn := range s.Pool {
		if pn.Instance == id && (pn.State == poolClaimed || pn.State == poolResetting) {
			return true
		}
	}
	return false
}

// failDelete reports, through last_operation, that an instance's delete
// could not finish yet: Cloud Controller then lets the user retry it.
func (p *dedicatedPlan) failDelete(id string) {
	_ = p.b.state.Update(func(s *state) error {
		if r := s.Instances.Edit(id); r != nil && r.State == stateDeleting {
			r.LastOp = operation{Type: "delete", State: domain.Failed,
				Description: "The dedicated VM could not be reset yet. Delete the instance again to retry.", At: now()}
		}
		return nil
	})
}

// round finishes what a broker stopped in the middle of (resets of nodes
// whose instance was being deleted) and retries quarantined nodes, oldest
// first. It reports whether every pending reset ran: a node that could not
// be reached (a broker that started before its node agents) makes Run come
// again soon, as the shared plan's round does for an agent it could not
// reach, rather than after the period.
func (p *dedicatedPlan) round(ctx context.Context) bool {
	var pending []poolNode
	_ = p.b.state.View(func(s state) {
		for _, pn := range s.Pool {
			if pn.State == poolResetting || pn.State == poolQuarantined {
				pending = append(pending, *pn)
			}
		}
	})
	slices.SortFunc(pending, func(a, b poolNode) int { return a.Since.Compare(b.Since) })
	done := true
	for _, pn := range pending {
		unlock, err := p.b.locks.LockContext(ctx, pn.Instance)
		if err != nil {
			return false
		}
		// Another request may have finished this reset meanwhile, and the
		// node may hold a new tenant: reset only what is still pending.
		if p.pending(pn.ID, pn.Instance) {
			if err := p.release(ctx, pn.ID, pn.Instance); err != nil {
				p.b.logger.Error("a node still cannot be reset; it stays out of the pool", "node", pn.ID, "error", err)
				p.failDelete(pn.Instance)
				done = false
			}
		}
		unlock()
	}
	return done
}

func (p *dedicatedPlan) pending(nodeID, instanceID string) bool {
	var ok bool
	_ = p.b.state.View(func(s state) {
		pn := s.Pool[nodeID]
		ok = pn != nil && pn.Instance == instanceID && (pn.State == poolResetting || pn.State == poolQuarantined)
	})
	return ok
}
