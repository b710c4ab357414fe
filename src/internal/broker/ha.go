package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"time"

	"code.cloudfoundry.org/brokerapi/v13/domain"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/replication"
	"github.com/cf-redis/redis-for-cf/src/internal/secret"
	"github.com/cf-redis/redis-for-cf/src/internal/sentinel"
	"github.com/cf-redis/redis-for-cf/src/internal/tlsca"
)

// haPlan is the dedicated-ha plan: three nodes of the dedicated-vm plan's
// pool (one pool, two plans: the pool's records, checks, resets and round
// are the dedicated plan's), a leader and two followers with a Sentinel
// beside each redis-server (package sentinel; the node agents run it).
//
// The claim is all or nothing and recorded before it is asked: the three
// nodes are marked claimed in the pool, and named in the instance's record,
// in one transaction before any node is asked. A provision cut short at any
// step is finished by Cloud Controller's retry (claims and joins are
// idempotent on the nodes) or undone by its delete, which resets all three.
type haPlan struct {
	b    *Broker
	cfg  *DedicatedHAPlan
	pool *dedicatedPlan
	// syncTimeout bounds waitInSync: syncTimeout unless a test says
	// otherwise.
	syncTimeout time.Duration
}

var _ plan = (*haPlan)(nil)

// haGroup is the broker's record of an instance's HA group.
type haGroup struct {
	// Nodes are the members' node ids, in member order (Group.Members).
	Nodes []string `json:"nodes"`
	// Group is what every member joins. Its name and passwords are chosen
	// with the claim; its Members once every node answered its claim.
	Group sentinel.Group `json:"group"`
}

func (p *haPlan) entry() domain.ServicePlan {
	return p.b.catalogPlan(p.cfg.PlanID, p.cfg.Name, p.cfg.Description, "Dedicated HA", []string{
		"Three dedicated VMs: a leader and two followers, each running one redis-server",
		"Redis Sentinel beside each member fails over to a follower automatically, in seconds",
		"Members on distinct availability zones where the pool has them (best effort when it is short of zones)",
		"Credentials list the Sentinels and master name for Sentinel-aware clients, and the current leader for the rest",
		"Per-binding credentials on every member, AOF and RDB persistence",
	})
}

func (p *haPlan) label() string { return "dedicated-ha" }

// capacity counts groups of three of the pool's nodes: the nodes that are
// not quarantined make the total, the free ones what is left. The pool is
// shared with the dedicated-vm plan, whose capacity counts the same nodes.
func (p *haPlan) capacity(s state) (total, left int) {
	t, l := p.pool.capacity(s)
	return t / sentinel.Members, l / sentinel.Members
}

// gather has nothing to ask: the pool is the broker's own record.
func (p *haPlan) gather(context.Context) {}

// open has nothing to prepare: the dedicated plan opens the pool.
func (p *haPlan) open() error { return nil }

// admit lets every instance in: the claim finds out whether three nodes
// are free.
func (p *haPlan) admit(*state) error { return nil }

// round has nothing of its own: the dedicated plan's round resets every
// pending node of the pool, whichever plan held it.
func (p *haPlan) round(context.Context) bool { return true }

func (p *haPlan) deprovision(ctx context.Context, inst *instance, async bool) (bool, error) {
	return p.pool.deprovision(ctx, inst, async)
}

// provision claims three free nodes (unless the record names them
// already: a provision cut short), asks each to take the instance, then
// each to join the group, and records the instance ready with the first
// leader's address. A node that refuses its claim as busy or dirty is
// quarantined, the others are reset, and the claim starts again with
// other nodes.
func (p *haPlan) provision(ctx context.Context, inst *instance) error {
	for {
		if inst.HA == nil {
			g, err := p.claim(ctx, inst)
			if err != nil {
				return err
			}
			inst.HA, inst.VM = g, g.Nodes[0]
		}
		err := p.form(ctx, inst)
		var refused *refusedClaim
		switch {
		case err == nil:
			return nil
		case errors.Is(err, errMemberNoTLS):
			// The node refused before it changed anything; the group goes.
			return errors.Join(p.rollback(ctx, inst, true), errNoTLS(p.cfg.Name))
		case errors.As(err, &refused):
			p.pool.quarantine(refused.node, "", refused.err)
			if err := p.rollback(ctx, inst, false); err != nil {
				return err
			}
			inst.HA, inst.VM = nil, ""
		default:
			return err
		}
	}
}

// errMemberNoTLS is a member's refusal of a TLS-only instance for want of
// TLS.
var errMemberNoTLS = errors.New("a member serves no TLS")

// refusedClaim is a node that refused its claim as busy or dirty.
type refusedClaim struct {
	node string
	err  error
}

func (r *refusedClaim) Error() string { return r.err.Error() }
func (r *refusedClaim) Unwrap() error { return r.err }

// claim picks three free nodes that answer as free, on distinct zones
// where it can, and records them claimed for inst, with the group's name
// and passwords, in one transaction. Too few free nodes is a 422 that
// says how many there are; nothing stays recorded.
func (p *haPlan) claim(ctx context.Context, inst *instance) (*haGroup, error) {
	for {
		free, err := p.pool.freeNodes()
		if err != nil {
			return nil, err
		}
		var ok []NodeConfig
		var unreachable []error
		for _, n := range free {
			if err := p.pool.checkFree(ctx, n.ID); err != nil {
				p.b.logger.Error("node skipped for a new HA group", "node", n.ID, "error", err)
				unreachable = append(unreachable, err)
				continue
			}
			ok = append(ok, n)
		}
		if len(ok) < sentinel.Members {
			if err := p.b.forget(inst.ID); err != nil {
				return nil, err
			}
			if len(free) >= sentinel.Members {
				return nil, fmt.Errorf("%w: %d of the %d free dedicated nodes could not be used for an HA group: %w",
					errNoAgent, len(unreachable), len(free), errors.Join(unreachable...))
			}
			return nil, p.full(len(free))
		}
		g := &haGroup{Nodes: spread(ok), Group: sentinel.Group{
			MasterName:          masterName(inst.ID),
			ReplicationPassword: secret.New(),
			SentinelPassword:    secret.New(),
		}}
		taken := errors.New("taken")
		err = p.b.state.Update(func(s *state) error {
			r := s.Instances.Edit(inst.ID)
			if r == nil {
				return fmt.Errorf("instance %s vanished while it was created", inst.ID)
			}
			for _, id := range g.Nodes {
				if pn := s.Pool[id]; pn == nil || pn.State != poolFree {
					return taken
				}
			}
			for _, id := range g.Nodes {
				pn := s.Pool[id]
				pn.State, pn.Instance, pn.Problem, pn.Since = poolClaimed, inst.ID, "", now()
			}
			r.HA, r.VM = g, g.Nodes[0]
			return nil
		})
		if errors.Is(err, taken) {
			// Another provision claimed one of them meanwhile.
			continue
		}
		if err != nil {
			return nil, err
		}
		p.b.logger.Info("nodes claimed for an HA group", "instance", inst.ID, "nodes", g.Nodes)
		return g, nil
	}
}

// spread picks sentinel.Members of the nodes, in their order, first one of
// each availability zone not picked yet, then any: the members land on
// distinct zones when the nodes have that many, and on as many as they
// have otherwise. A node of no known zone counts as a zone of its own only
// after the known ones.
func spread(nodes []NodeConfig) []string {
	var out []string
	picked := map[string]bool{}
	zones := map[string]bool{}
	take := func(n NodeConfig) {
		out = append(out, n.ID)
		picked[n.ID], zones[n.AZ] = true, true
	}
	for _, n := range nodes {
		if len(out) < sentinel.Members && n.AZ != "" && !zones[n.AZ] {
			take(n)
		}
	}
	for _, n := range nodes {
		if len(out) < sentinel.Members && !picked[n.ID] {
			take(n)
		}
	}
	return out
}

// masterName is the name Sentinel monitors instance id's group under.
// Every group has Sentinels of its own, so the name need not be unique
// beyond the group; it is cut to Sentinel's 128 characters.
func masterName(id string) string {
	name := "redis-" + id
	return name[:min(len(name), 128)]
}

// form asks each member to take the instance, records the group's members
// (their answers' addresses), asks each to join the group, and records the
// instance ready, answering at the first leader.
func (p *haPlan) form(ctx context.Context, inst *instance) error {
	g := inst.HA
	var got []agentapi.Instance
	for _, id := range g.Nodes {
		in, err := p.pool.ask(ctx, inst, id)
		if errors.Is(err, agentapi.ErrBusy) || errors.Is(err, agentapi.ErrDirty) {
			return &refusedClaim{node: id, err: err}
		}
		if noTLS(inst, err) {
			return fmt.Errorf("%w: %w", errMemberNoTLS, err)
		}
		if err != nil {
			return err
		}
		got = append(got, in)
	}
	// The group replicates over TLS when every member serves it.
	g.Group.TLS = true
	for _, in := range got {
		g.Group.TLS = g.Group.TLS && in.TLSPort != 0
	}
	g.Group.Members = nil
	for _, in := range got {
		port := in.Port
		if g.Group.TLS {
			port = in.TLSPort
		}
		g.Group.Members = append(g.Group.Members, sentinel.Member{Host: in.Host, Port: port, SentinelPort: p.cfg.SentinelPort})
	}
	err := p.b.state.Update(func(s *state) error {
		r := s.Instances.Edit(inst.ID)
		if r == nil {
			return fmt.Errorf("instance %s vanished while it was created", inst.ID)
		}
		cp := *g
		r.HA = &cp
		return nil
	})
	if err != nil {
		return err
	}
	for i, id := range g.Nodes {
		if _, err := p.b.vms[id].c.JoinHA(ctx, inst.ID, g.Group); err != nil {
			return fmt.Errorf("node %s (member %d) joining the HA group of instance %s: %w", id, i, inst.ID, err)
		}
	}
	if err := p.waitInSync(ctx, inst); err != nil {
		return err
	}
	return p.b.created(inst.ID, got[0], "HA group of three dedicated VMs created")
}

// syncTimeout bounds how long a new group may take until a follower is in
// sync with its leader; forming one takes about a second.
const syncTimeout = time.Minute

// waitInSync waits until the leader has a follower in sync (online, done
// with its initial sync): it takes writes only then (min-replicas-to-write
// 1), so the instance is ready when it is writable. The follower's own
// link comes up before that, up to a second before its first
// acknowledgement puts it online on the leader.
func (p *haPlan) waitInSync(ctx context.Context, inst *instance) error {
	ctx, cancel := context.WithTimeout(ctx, p.syncTimeout)
	defer cancel()
	var last error
	for {
		for _, id := range inst.HA.Nodes {
			st, err := p.b.vms[id].live(ctx, inst.ID)
			if err != nil {
				last = err
				continue
			}
			if r := st.Live.Replication; r.Role == replication.RoleLeader && r.InSync > 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: no member of the HA group of instance %s led a follower in sync within %v (last error: %v)",
				agentapi.ErrUnavailable, inst.ID, p.syncTimeout, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// rollback gives the group's nodes back: each is reset (a node that was
// never asked resets at once) and returns to the pool once its reset
// verified, as at a delete. The record loses its group, or goes with
// forget. A node that cannot be reached stays resetting, for the pool's
// round to finish.
func (p *haPlan) rollback(ctx context.Context, inst *instance, forget bool) error {
	nodes := inst.HA.Nodes
	err := p.b.state.Update(func(s *state) error {
		for _, id := range nodes {
			if pn := s.Pool[id]; pn != nil && pn.Instance == inst.ID && pn.State == poolClaimed {
				pn.State, pn.Since = poolResetting, now()
			}
		}
		if r := s.Instances.Edit(inst.ID); r != nil {
			// Before the resets: the pool's release then leaves the record.
			r.HA, r.VM = nil, ""
			if forget {
				s.Instances.Delete(inst.ID)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, id := range nodes {
		// A node quarantined for refusing its claim holds someone else's
		// data, not this instance's: the pool's round deals with it.
		if p.resetting(id, inst.ID) {
			if err := p.pool.release(ctx, id, inst.ID); err != nil {
				p.b.logger.Error("a node of a group given up could not be reset yet; the pool's round retries it", "node", id, "instance", inst.ID, "error", err)
			}
		}
	}
	return nil
}

// resetting reports whether the pool has node nodeID resetting for
// instance instanceID.
func (p *haPlan) resetting(nodeID, instanceID string) bool {
	var ok bool
	_ = p.b.state.View(func(s state) {
		pn := s.Pool[nodeID]
		ok = pn != nil && pn.Instance == instanceID && pn.State == poolResetting
	})
	return ok
}

func (p *haPlan) full(free int) error {
	return &userError{
		status: http.StatusUnprocessableEntity,
		cause:  ErrPlanFull,
		msg: fmt.Sprintf("The %s plan is full: an instance needs %d free dedicated VMs and the pool has %d free (of %d). "+
			"Delete an instance you no longer need, or ask your operator to add VMs to the pool.",
			p.cfg.Name, sentinel.Members, free, len(p.pool.cfg.Nodes)),
	}
}

// vmsOf returns the VMs holding inst: every member of an HA group, in
// member order, or its one VM.
func (b *Broker) vmsOf(inst *instance) ([]vm, error) {
	if inst.HA == nil {
		v, err := b.vmOf(inst)
		return []vm{v}, err
	}
	var out []vm
	for _, id := range inst.HA.Nodes {
		v, ok := b.vms[id]
		if !ok {
			return nil, fmt.Errorf("instance %s has node %q, which is no longer in the broker's config", inst.ID, id)
		}
		out = append(out, v)
	}
	return out, nil
}

// leaderVM returns the members of inst's HA group and the index of the
// one that leads now, by its Sentinels (leaderOf). It returns no members
// when the config lacks one; members and an error when the Sentinels did
// not answer.
func (b *Broker) leaderVM(ctx context.Context, inst *instance) ([]vm, int, error) {
	vms, err := b.vmsOf(inst)
	if err != nil {
		return nil, 0, err
	}
	i, err := b.leaderOf(ctx, inst, b.redisCA(inst.VM))
	return vms, i, err
}

// leaderOf asks the Sentinels of inst's group which member leads now and
// returns its index; ca is the PEM CA of the members' certificates, for a
// group over TLS.
func (b *Broker) leaderOf(ctx context.Context, inst *instance, ca string) (int, error) {
	g := inst.HA.Group
	var tlsConf *tls.Config
	if g.TLS {
		pool, err := tlsca.Pool(ca)
		if err != nil {
			return 0, fmt.Errorf("%w: no CA of the group's TLS certificates is known yet", agentapi.ErrUnavailable)
		}
		tlsConf = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	v, ok := b.askLeader(ctx, g, tlsConf)
	if !ok {
		return 0, fmt.Errorf("%w: no Sentinel of the HA group of instance %s answered", agentapi.ErrUnavailable, inst.ID)
	}
	i, ok := g.Self(v.Host, v.Port)
	if !ok {
		return 0, fmt.Errorf("the Sentinels of instance %s name %s:%d the leader, which is no member of its group", inst.ID, v.Host, v.Port)
	}
	return i, nil
}

// SentinelAddr is one Sentinel of an HA group in a binding's credentials.
type SentinelAddr struct {
	Host string `json:"host"`
	Port int    `json:"port"`
}

// sentinels lists the Sentinels of inst's group, in member order; nil for
// an instance of another plan.
func sentinels(inst *instance) []SentinelAddr {
	if inst.HA == nil {
		return nil
	}
	var out []SentinelAddr
	for _, m := range inst.HA.Group.Members {
		out = append(out, SentinelAddr{Host: m.Host, Port: m.SentinelPort})
	}
	return out
}

// memberCheckPeriod is how often the broker checks that every member of
// every ready HA group still holds its instance (watch).
const memberCheckPeriod = 30 * time.Second

// watch takes back into its group every member that lost the instance: a
// node whose VM was created again on a new, empty disk (a lost disk, or a VM
// replaced in its slot) answers that it holds nothing while the pool names
// it a member. The broker claims the node again for the instance, joins it
// to the unchanged group (the slot keeps its address, so the group's
// members, Sentinels and passwords are those it had), and gives it every
// binding's user; its redis-server then follows the leader the Sentinels
// name and takes the data from it. A member that does not answer is left to
// Sentinel: it fails over, and the VM comes back on its disk or empty. False
// when a member that lost the instance could not be taken back, so the
// check comes again soon.
func (p *haPlan) watch(ctx context.Context) bool {
	var ids []string
	_ = p.b.state.View(func(s state) {
		for id, r := range s.Instances.All() {
			if r.PlanID == p.cfg.PlanID && r.State == stateReady && r.HA != nil {
				ids = append(ids, id)
			}
		}
	})
	slices.Sort(ids)
	ok := true
	for _, id := range ids {
		if err := p.watchOne(ctx, id); err != nil {
			if ctx.Err() != nil {
				return false
			}
			p.b.logger.Error("a member of an HA group that lost its instance could not be taken back; trying again", "instance", id, "error", err)
			ok = false
		}
	}
	return ok
}

func (p *haPlan) watchOne(ctx context.Context, id string) error {
	unlock, err := p.b.locks.LockContext(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	var inst *instance
	p.b.state.Peek(func(s state) {
		if r := s.Instances.Get(id); r != nil && r.State == stateReady && r.HA != nil {
			inst = r
		}
	})
	if inst == nil {
		return nil // deleted or changed meanwhile
	}
	vms, err := p.b.vmsOf(inst)
	if err != nil {
		return err
	}
	var errs []error
	for i, v := range vms {
		qctx, cancel := v.bounded(ctx)
		_, err := v.c.Get(qctx, id)
		cancel()
		if !errors.Is(err, agentapi.ErrNotFound) {
			continue // holds it, or does not answer: Sentinel's to handle
		}
		p.b.logger.Warn("a member of an HA group no longer holds its instance; taking it back into the group", "instance", id, "node", v.id, "member", i)
		if err := p.readmit(ctx, inst, v); err != nil {
			errs = append(errs, fmt.Errorf("node %s (member %d): %w", v.id, i, err))
			continue
		}
		p.b.logger.Info("a member of an HA group is back in its group, following its leader", "instance", id, "node", v.id, "member", i)
	}
	return errors.Join(errs...)
}

// readmit claims node v for inst again, joins it to inst's group and makes
// every binding's user on it.
func (p *haPlan) readmit(ctx context.Context, inst *instance, v vm) error {
	if _, err := p.pool.ask(ctx, inst, v.id); err != nil {
		return err
	}
	if _, err := v.c.JoinHA(ctx, inst.ID, inst.HA.Group); err != nil {
		return fmt.Errorf("joining the HA group again: %w", err)
	}
	for _, bid := range slices.Sorted(maps.Keys(inst.Bindings)) {
		if bnd := inst.Bindings[bid]; bnd.State == stateReady {
			if _, err := v.bind(ctx, inst.ID, bid, bnd.Password); err != nil {
				return fmt.Errorf("making binding user %s again: %w", bid, err)
			}
		}
	}
	return nil
}
