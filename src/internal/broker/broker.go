// Package broker implements the Open Service Broker API of Redis for Cloud
// Foundry on top of code.cloudfoundry.org/brokerapi: one file per OSB verb,
// its dependencies as small interfaces, and one place (errors.go) where domain
// errors become OSB responses.
//
// The broker's records (instances, bindings, placement, operations) live in
// one state file written atomically (package statefile): the broker holds a
// few thousand small records at most, and a whole-file rewrite per change is
// a transaction over all of them that an operator can read with jq.
package broker

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"code.cloudfoundry.org/brokerapi/v13/domain"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/buildinfo"
	"github.com/cf-redis/redis-for-cf/src/internal/keylock"
	"github.com/cf-redis/redis-for-cf/src/internal/params"
	"github.com/cf-redis/redis-for-cf/src/internal/sentinel"
	"github.com/cf-redis/redis-for-cf/src/internal/statefile"
	"github.com/cf-redis/redis-for-cf/src/internal/store"
)

// Version is the version of what a new instance runs; it is the catalog's
// maintenance_info.version unless the config says otherwise: the release's
// version as a semantic version (buildinfo.SemVer), so that every new release
// offers Cloud Foundry's instance upgrade.
var Version = buildinfo.SemVer()

// Agent is what the broker needs of the agent of one VM, a shared VM (many
// instances) or a dedicated node (one instance, the VM handed out whole):
// both serve the one agent API, and *agentapi.Client is the real one. The
// tests use an in-memory agent.
type Agent interface {
	Capacity(ctx context.Context) (agentapi.Capacity, error)
	Node(ctx context.Context) (agentapi.Node, error)
	List(ctx context.Context) ([]agentapi.Instance, error)
	Get(ctx context.Context, id string) (agentapi.Instance, error)
	Create(ctx context.Context, id string, req agentapi.InstanceRequest) (agentapi.Instance, error)
	Update(ctx context.Context, id string, req agentapi.UpdateRequest) (agentapi.Instance, error)
	Resize(ctx context.Context, id string, req agentapi.ResizeRequest) (agentapi.Instance, error)
	Delete(ctx context.Context, id string) error
	Bind(ctx context.Context, id, bindingID string, req agentapi.BindingRequest) (agentapi.Binding, error)
	Unbind(ctx context.Context, id, bindingID string) error
	SetReplication(ctx context.Context, id string, req agentapi.ReplicationRequest) (agentapi.Instance, error)
	Restore(ctx context.Context, id string, req agentapi.RestoreRequest, archive io.Reader) (agentapi.RestoreResult, error)
	JoinHA(ctx context.Context, id string, req agentapi.HARequest) (agentapi.Instance, error)
}

var _ Agent = (*agentapi.Client)(nil)

// state is everything the broker remembers.
type state struct {
	// Instances are kept as Records: an update copies and writes the
	// records it changes, not all of them.
	Instances statefile.Records[instance] `json:"instances"`
	// Pool holds the dedicated nodes by id.
	Pool map[string]*poolNode `json:"pool,omitempty"`
	// RedisCAs holds, by VM id, the PEM CA that VM's redis-servers' TLS
	// certificates chain to, as its agent last answered a create or a
	// bind: kept once per VM, and given in every binding's credentials as
	// tls_ca.
	RedisCAs map[string]string `json:"redis_cas,omitempty"`
}

// keepCA records ca as VM vmID's Redis CA (RedisCAs); an empty ca or VM
// records nothing.
func (s *state) keepCA(vmID, ca string) {
	if ca == "" || vmID == "" {
		return
	}
	if s.RedisCAs == nil {
		s.RedisCAs = map[string]string{}
	}
	s.RedisCAs[vmID] = ca
}

// instance is the broker's record of one service instance.
type instance struct {
	ID        string `json:"id"`
	ServiceID string `json:"service_id"`
	PlanID    string `json:"plan_id"`
	OrgGUID   string `json:"organization_guid"`
	SpaceGUID string `json:"space_guid"`
	// Kubernetes is the cluster and namespace of an instance a Kubernetes
	// platform provisioned (its org and space may be empty); nil otherwise.
	Kubernetes *kubeContext `json:"kubernetes,omitempty"`
	// Requested is the parameters of the provision request as sent, compared
	// to tell a repeated request (200) from a conflicting one (409).
	Requested  json.RawMessage   `json:"requested_parameters,omitempty"`
	Parameters params.Parameters `json:"parameters"`
	// VM is the id of the VM holding the instance (a shared agent's or a
	// dedicated node's, as the config names them); empty until the plan
	// placed or claimed one.
	VM string `json:"vm,omitempty"`
	// HA is the group of an instance of the dedicated-ha plan; nil for the
	// other plans. VM is then its first member, the group's first leader.
	HA   *haGroup `json:"ha,omitempty"`
	Host string   `json:"host,omitempty"`
	Port int      `json:"port,omitempty"`
	// MaintenanceVersion is the maintenance_info version the instance runs.
	MaintenanceVersion string `json:"maintenance_version"`
	// State is "creating" until the instance answers, then "ready";
	// "deleting" once a delete began.
	State string `json:"state"`
	// ReplicaOf, when set, is the leader the instance follows.
	ReplicaOf *follow             `json:"replica_of,omitempty"`
	LastOp    operation           `json:"last_operation"`
	Bindings  map[string]*binding `json:"bindings"`
	CreatedAt time.Time           `json:"created_at"`
}

const (
	stateCreating = "creating"
	stateReady    = "ready"
	stateDeleting = "deleting"
)

// operation is the last operation on an instance, as last_operation reports it.
type operation struct {
	Type        string                    `json:"type"`
	State       domain.LastOperationState `json:"state"`
	Description string                    `json:"description"`
	At          time.Time                 `json:"at"`
}

// binding is the broker's record of one binding. The password is kept so GET
// binding can return it; the state file is readable by the broker only.
type binding struct {
	ID        string          `json:"id"`
	AppGUID   string          `json:"app_guid,omitempty"`
	Requested json.RawMessage `json:"requested_parameters,omitempty"`
	Username  string          `json:"username"`
	Password  string          `json:"password"`
	State     string          `json:"state"`
	CreatedAt time.Time       `json:"created_at"`
	// Host and Port are where the user connects, and TLSPort its TLS port,
	// as the agent or node answered the bind. Records from before they were
	// kept have none: the instance's host and port stand in, and no TLS.
	Host    string `json:"host,omitempty"`
	Port    int    `json:"port,omitempty"`
	TLSPort int    `json:"tls_port,omitempty"`
	// OldTLSCA is the CA that records of earlier versions kept in every
	// binding; migrate moves it to state.RedisCAs.
	OldTLSCA string `json:"tls_ca,omitempty"`
}

// Broker serves the OSB API. The zero value is not usable; call New.
type Broker struct {
	cfg    Config
	logger *slog.Logger
	state  *statefile.File[state]
	// vms holds every configured VM, shared or dedicated, by id.
	vms map[string]vm
	// plans holds the configured plans by plan id, and order as the
	// catalog lists them.
	plans map[string]plan
	order []plan
	// tlsOnly is each plan's tls_only setting, by plan id.
	tlsOnly map[string]string
	locks   keylock.Map
	// resets tracks the background work: asynchronous deletes, restores
	// and the rounds of Run.
	resets sync.WaitGroup
	// backups is the store of cfg.Backups; nil without one.
	backups store.Store
	// restoring holds the ids of the instances being restored.
	restoring sync.Map
	// allowed is cfg.ExternalLeaders; resolver looks up leaders' and
	// platform hosts' names.
	allowed  allowList
	resolver resolver
	// platformSeen holds every address a platform host's name resolved to
	// (netip.Addr keys), for the leader check.
	platformSeen sync.Map
	// metrics are the counters and histograms of RegisterMetrics.
	metrics *brokerMetrics
	// regather asks Run's gathering to ask the agents again now (a create
	// or delete changed a shared VM's capacity); it holds one request.
	regather chan struct{}
	// askLeader asks an HA group's Sentinels which member leads
	// (sentinel.Leader; the unit tests, whose agents run no Sentinel,
	// answer for them).
	askLeader func(context.Context, sentinel.Group, *tls.Config) (sentinel.View, bool)
}

var _ domain.ServiceBroker = (*Broker)(nil)

// New opens the broker's state in cfg.StateDir, moving records written by
// earlier versions to the current form. clients maps every VM id of the
// config (shared_vm.agents and dedicated_vm.nodes) to its agent's client;
// NewClients makes them.
func New(cfg Config, clients map[string]Agent, logger *slog.Logger) (*Broker, error) {
	b := &Broker{cfg: cfg, logger: logger, vms: map[string]vm{}, plans: map[string]plan{}, tlsOnly: map[string]string{}, resolver: net.DefaultResolver,
		metrics: newBrokerMetrics(), regather: make(chan struct{}, 1), askLeader: sentinel.Leader}
	allowed, errs := parseAllowList(cfg.ExternalLeaders)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	b.allowed = allowed
	if p := cfg.SharedVM; p != nil {
		for _, a := range p.Agents {
			if clients[a.ID] == nil {
				return nil, fmt.Errorf("no client for agent %s", a.ID)
			}
			b.vms[a.ID] = vm{id: a.ID, noun: "agent", kind: "shared VM", c: clients[a.ID]}
		}
		b.addPlan(p.PlanID, &sharedPlan{b: b, cfg: p})
		b.tlsOnly[p.PlanID] = p.TLSOnly
	}
	if p := cfg.DedicatedVM; p != nil {
		for _, n := range p.Nodes {
			if clients[n.ID] == nil {
				return nil, fmt.Errorf("no client for node %s", n.ID)
			}
			b.vms[n.ID] = vm{id: n.ID, noun: "node", kind: "dedicated VM", c: clients[n.ID], quick: nodeOpTimeout}
		}
		pool := &dedicatedPlan{b: b, cfg: p}
		b.addPlan(p.PlanID, pool)
		b.tlsOnly[p.PlanID] = p.TLSOnly
		if h := cfg.DedicatedHA; h != nil {
			b.addPlan(h.PlanID, &haPlan{b: b, cfg: h, pool: pool, syncTimeout: syncTimeout})
			b.tlsOnly[h.PlanID] = h.TLSOnly
		}
	}
	st, err := statefile.Open[state](filepath.Join(cfg.StateDir, "broker-state.json"))
	if err != nil {
		return nil, err
	}
	b.state = st
	if err := b.migrate(); err != nil {
		return nil, err
	}
	if err := b.openBackups(); err != nil {
		return nil, err
	}
	for _, p := range b.order {
		if err := p.open(); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func (b *Broker) addPlan(id string, p plan) {
	b.plans[id] = p
	b.order = append(b.order, p)
}

// find returns a copy of the instance record, or nil.
func (b *Broker) find(id string) (*instance, error) {
	var out *instance
	b.state.Peek(func(s state) { out = s.Instances.Get(id) })
	return out, nil
}

// forget removes an instance's record.
func (b *Broker) forget(id string) error {
	return b.state.Update(func(s *state) error {
		s.Instances.Delete(id)
		return nil
	})
}

// lockReady locks instance id for the caller, who calls unlock when done,
// and returns its record; an instance that does not exist or is not ready is
// a 404 (and nothing stays locked).
func (b *Broker) lockReady(ctx context.Context, id string) (*instance, func(), error) {
	unlock, err := b.locks.LockContext(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	inst, err := b.find(id)
	if err == nil && (inst == nil || inst.State != stateReady) {
		err = notReady(id)
	}
	if err != nil {
		unlock()
		return nil, nil, err
	}
	return inst, unlock, nil
}

func notReady(id string) error {
	return &userError{status: http.StatusNotFound, msg: fmt.Sprintf("instance %s does not exist or is not ready", id)}
}

// sameJSON reports whether two parameter documents are equal as JSON values
// (so key order and spacing do not matter).
func sameJSON(a, b json.RawMessage) bool {
	norm := func(r json.RawMessage) string {
		obj, err := params.Object(r)
		if err != nil {
			return string(r)
		}
		out, _ := json.Marshal(obj)
		return string(out)
	}
	return norm(a) == norm(b)
}

func now() time.Time { return time.Now().UTC() }
