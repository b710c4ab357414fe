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
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"code.cloudfoundry.org/brokerapi/v13/domain"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/keylock"
	"github.com/cf-redis/redis-for-cf/src/internal/params"
	"github.com/cf-redis/redis-for-cf/src/internal/statefile"
	"github.com/cf-redis/redis-for-cf/src/internal/store"
)

// Version is the version of what a new instance runs; it is the catalog's
// maintenance_info.version unless the config says otherwise.
const Version = "1.0.0"

// Agent is what the broker needs of a shared-VM agent; *agentapi.Client is
// the real one.
type Agent interface {
	Capacity(ctx context.Context) (agentapi.Capacity, error)
	List(ctx context.Context) ([]agentapi.Instance, error)
	Get(ctx context.Context, id string) (agentapi.Instance, error)
	Resize(ctx context.Context, id string, req agentapi.ResizeRequest) (agentapi.Instance, error)
	SetReplication(ctx context.Context, id string, req agentapi.ReplicationRequest) (agentapi.Instance, error)
	Create(ctx context.Context, id string, req agentapi.InstanceRequest) (agentapi.Instance, error)
	Update(ctx context.Context, id string, req agentapi.UpdateRequest) (agentapi.Instance, error)
	Delete(ctx context.Context, id string) error
	Bind(ctx context.Context, id, bindingID string, req agentapi.BindingRequest) (agentapi.Binding, error)
	Unbind(ctx context.Context, id, bindingID string) error
	Restore(ctx context.Context, id string, req agentapi.RestoreRequest, archive io.Reader) (agentapi.RestoreResult, error)
}

var _ Agent = (*agentapi.Client)(nil)

// Node is what the broker needs of a dedicated node's agent;
// *agentapi.Client is the real one.
type Node interface {
	Node(ctx context.Context) (agentapi.Node, error)
	Get(ctx context.Context, id string) (agentapi.Instance, error)
	Create(ctx context.Context, id string, req agentapi.InstanceRequest) (agentapi.Instance, error)
	Update(ctx context.Context, id string, req agentapi.UpdateRequest) (agentapi.Instance, error)
	Bind(ctx context.Context, id, bindingID string, req agentapi.BindingRequest) (agentapi.Binding, error)
	Unbind(ctx context.Context, id, bindingID string) error
	Delete(ctx context.Context, id string) error
	SetReplication(ctx context.Context, id string, req agentapi.ReplicationRequest) (agentapi.Instance, error)
	Restore(ctx context.Context, id string, req agentapi.RestoreRequest, archive io.Reader) (agentapi.RestoreResult, error)
}

var _ Node = (*agentapi.Client)(nil)

// state is everything the broker remembers.
type state struct {
	Instances map[string]*instance `json:"instances"`
	// Pool holds the dedicated nodes by id.
	Pool map[string]*poolNode `json:"pool,omitempty"`
}

// instance is the broker's record of one service instance.
type instance struct {
	ID        string `json:"id"`
	ServiceID string `json:"service_id"`
	PlanID    string `json:"plan_id"`
	OrgGUID   string `json:"organization_guid"`
	SpaceGUID string `json:"space_guid"`
	// Requested is the parameters of the provision request as sent, compared
	// to tell a repeated request (200) from a conflicting one (409).
	Requested  json.RawMessage   `json:"requested_parameters,omitempty"`
	Parameters params.Parameters `json:"parameters"`
	// Agent is the id of the shared agent holding the instance.
	Agent string `json:"agent,omitempty"`
	// Node is the id of the dedicated node holding the instance.
	Node string `json:"node,omitempty"`
	Host string `json:"host,omitempty"`
	Port int    `json:"port,omitempty"`
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
	// Host and Port are where the user connects, and TLSPort and TLSCA (a
	// PEM CA) its TLS port, as the agent or node answered the bind. Records
	// from before they were kept have none: the instance's host and port
	// stand in, and no TLS.
	Host    string `json:"host,omitempty"`
	Port    int    `json:"port,omitempty"`
	TLSPort int    `json:"tls_port,omitempty"`
	TLSCA   string `json:"tls_ca,omitempty"`
}

// Broker serves the OSB API. The zero value is not usable; call New.
type Broker struct {
	cfg    Config
	logger *slog.Logger
	state  *statefile.File[state]
	agents map[string]Agent
	nodes  map[string]Node
	locks  keylock.Map
	// resets tracks the background resets of dedicated nodes, and
	// background restores.
	resets sync.WaitGroup
	// backups is the store of cfg.Backups; nil without one.
	backups store.Store
	// restoring holds the ids of the instances being restored.
	restoring sync.Map
}

var _ domain.ServiceBroker = (*Broker)(nil)

// New opens the broker's state in cfg.StateDir. agents maps every agent id of
// cfg.SharedVM.Agents to its client, nodes every node id of
// cfg.DedicatedVM.Nodes.
func New(cfg Config, agents map[string]Agent, nodes map[string]Node, logger *slog.Logger) (*Broker, error) {
	if cfg.SharedVM != nil {
		for _, a := range cfg.SharedVM.Agents {
			if agents[a.ID] == nil {
				return nil, fmt.Errorf("no client for agent %s", a.ID)
			}
		}
	}
	if cfg.DedicatedVM != nil {
		for _, n := range cfg.DedicatedVM.Nodes {
			if nodes[n.ID] == nil {
				return nil, fmt.Errorf("no client for node %s", n.ID)
			}
		}
	}
	st, err := statefile.Open[state](filepath.Join(cfg.StateDir, "broker-state.json"))
	if err != nil {
		return nil, err
	}
	b := &Broker{cfg: cfg, logger: logger, state: st, agents: agents, nodes: nodes}
	if err := b.openBackups(); err != nil {
		return nil, err
	}
	if err := b.syncPool(); err != nil {
		return nil, err
	}
	return b, nil
}

// find returns a copy of the instance record, or nil.
func (b *Broker) find(id string) (*instance, error) {
	var out *instance
	err := b.state.View(func(s state) {
		out = s.Instances[id]
	})
	return out, err
}

// agent returns the client of the shared agent holding inst.
func (b *Broker) agent(inst *instance) (Agent, error) {
	a, ok := b.agents[inst.Agent]
	if !ok {
		return nil, fmt.Errorf("instance %s is on agent %q, which is no longer in the broker's config", inst.ID, inst.Agent)
	}
	return a, nil
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
