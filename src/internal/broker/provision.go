package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"code.cloudfoundry.org/brokerapi/v13/domain"
	"code.cloudfoundry.org/brokerapi/v13/domain/apiresponses"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/ids"
	"github.com/cf-redis/redis-for-cf/src/internal/params"
)

// Provision creates an instance synchronously, of whichever plan: the record
// is stored ("creating") before any VM is asked to change anything (a
// placer's VM is chosen first and stored with it), so a crash at any point
// leaves something a retry finishes or a delete cleans up, and the answer
// (201) comes only once redis-server answers PING.
func (b *Broker) Provision(ctx context.Context, id string, d domain.ProvisionDetails, asyncAllowed bool) (domain.ProvisionedServiceSpec, error) {
	spec, err := b.provision(ctx, id, d)
	return spec, b.respond(ctx, "provision", err)
}

func (b *Broker) provision(ctx context.Context, id string, d domain.ProvisionDetails) (domain.ProvisionedServiceSpec, error) {
	if !ids.Valid(id) {
		return domain.ProvisionedServiceSpec{}, badRequest("instance id %q must be %s", id, ids.Rule)
	}
	if !b.knownPlan(d.PlanID) {
		return domain.ProvisionedServiceSpec{}, badRequest("plan %q is not a plan of this service", d.PlanID)
	}
	if err := b.checkMaintenanceInfo(d.MaintenanceInfo); err != nil {
		return domain.ProvisionedServiceSpec{}, err
	}
	kube, err := tenancy(d)
	if err != nil {
		return domain.ProvisionedServiceSpec{}, err
	}
	p, err := params.Apply(params.Defaults(), d.RawParameters)
	if err != nil {
		return domain.ProvisionedServiceSpec{}, err
	}
	if err := b.applyTLSOnly(d.PlanID, d.RawParameters, &p, true); err != nil {
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
			equalPtr(existing.Kubernetes, kube) &&
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
	}
	// knownPlan checked it is configured (and an existing record has it).
	pl := b.plans[d.PlanID]
	if existing != nil {
		// A provision cut short (crash, timeout): finish it where it got to.
		return domain.ProvisionedServiceSpec{}, pl.provision(ctx, existing)
	}
	inst := &instance{
		ID:                 id,
		ServiceID:          d.ServiceID,
		PlanID:             d.PlanID,
		OrgGUID:            d.OrganizationGUID,
		SpaceGUID:          d.SpaceGUID,
		Kubernetes:         kube,
		Requested:          d.RawParameters,
		Parameters:         p,
		MaintenanceVersion: b.cfg.Catalog.MaintenanceVersion,
		State:              stateCreating,
		LastOp:             operation{Type: "create", State: domain.InProgress, Description: "creating the instance", At: now()},
		Bindings:           map[string]*binding{},
		CreatedAt:          now(),
	}
	pp, places := pl.(placer)
	var order []string
	if places {
		if order, err = pp.placeOrder(ctx); err != nil {
			return domain.ProvisionedServiceSpec{}, err
		}
		inst.VM = order[0]
	}
	if err := b.insert(inst, pl.admit); err != nil {
		return domain.ProvisionedServiceSpec{}, err
	}
	if places {
		return domain.ProvisionedServiceSpec{}, pp.create(ctx, inst, order)
	}
	return domain.ProvisionedServiceSpec{}, pl.provision(ctx, inst)
}

// kubeContext is where a Kubernetes platform provisions an instance, from the
// OSB profile's Kubernetes context object: the cluster and namespace stand in
// for Cloud Foundry's org and space.
type kubeContext struct {
	ClusterID string `json:"clusterid"`
	Namespace string `json:"namespace"`
}

// tenancy checks where a provision request says the instance lives and
// returns its Kubernetes context, nil for any other platform. The OSB spec
// requires organization_guid and space_guid as non-empty strings; a
// Kubernetes context (platform "kubernetes") carries the required clusterid
// and namespace instead, and then they may be left out.
func tenancy(d domain.ProvisionDetails) (*kubeContext, error) {
	var c struct {
		Platform  string `json:"platform"`
		ClusterID string `json:"clusterid"`
		Namespace string `json:"namespace"`
	}
	if len(d.RawContext) > 0 && string(d.RawContext) != "null" {
		if err := json.Unmarshal(d.RawContext, &c); err != nil {
			return nil, badRequest("context must be a JSON object whose platform, clusterid and namespace are strings")
		}
	}
	if c.Platform == "kubernetes" {
		switch {
		case c.ClusterID == "":
			return nil, badRequest("context.clusterid is required for the kubernetes platform: a non-empty string")
		case c.Namespace == "":
			return nil, badRequest("context.namespace is required for the kubernetes platform: a non-empty string")
		}
		return &kubeContext{ClusterID: c.ClusterID, Namespace: c.Namespace}, nil
	}
	switch {
	case d.OrganizationGUID == "":
		return nil, badRequest("organization_guid is required: the non-empty GUID of the organization the instance is for")
	case d.SpaceGUID == "":
		return nil, badRequest("space_guid is required: the non-empty GUID of the space the instance is for")
	}
	return nil, nil
}

// space names where an instance lives for the rules that keep tenants apart
// (a leader must be in its follower's space): Cloud Foundry's org and space,
// or a Kubernetes cluster and namespace. It is empty for a record that has
// neither (one written before the broker required them), which shares a
// space with no instance.
func (i *instance) space() string {
	switch {
	case i.Kubernetes != nil:
		return "kubernetes/" + i.Kubernetes.ClusterID + "/" + i.Kubernetes.Namespace
	case i.OrgGUID == "" || i.SpaceGUID == "":
		return ""
	}
	return "cloudfoundry/" + i.OrgGUID + "/" + i.SpaceGUID
}

func equalPtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// insert stores a new instance record, after check (when not nil) agreed
// within the same transaction.
func (b *Broker) insert(inst *instance, check func(*state) error) error {
	return b.state.Update(func(s *state) error {
		if check != nil {
			if err := check(s); err != nil {
				return err
			}
		}
		// A copy: the caller goes on changing inst, and what is stored must
		// change only through Update.
		stored := *inst
		s.Instances.Put(inst.ID, &stored)
		return nil
	})
}

// setVM records the VM an instance is placed on, before it is asked.
func (b *Broker) setVM(id, vmID string) error {
	return b.state.Update(func(s *state) error {
		if r := s.Instances.Edit(id); r != nil {
			r.VM = vmID
		}
		return nil
	})
}

// created records that an instance answers, and where.
func (b *Broker) created(id string, got agentapi.Instance, description string) error {
	return b.state.Update(func(s *state) error {
		r := s.Instances.Edit(id)
		if r == nil {
			return fmt.Errorf("instance %s vanished while it was created", id)
		}
		r.Host, r.Port, r.State = got.Host, got.Port, stateReady
		// Known before any binding: an HA group's restore asks its
		// Sentinels over TLS who leads.
		s.keepCA(r.VM, got.TLSCA)
		r.LastOp = operation{Type: "create", State: domain.Succeeded, Description: description, At: now()}
		return nil
	})
}

// applyTLSOnly applies the plan's tls_only setting to p, the parameters
// raw asked for: a plan that is always TLS-only makes a new instance so
// (creating), and refuses tls_only false; one that never is refuses
// tls_only true. An instance made before its plan became always TLS-only
// keeps its plaintext port until an update asks for tls_only: closing it
// unasked would cut off its apps at an unrelated update.
func (b *Broker) applyTLSOnly(planID string, raw json.RawMessage, p *params.Parameters, creating bool) error {
	name := planID
	if pl := b.plans[planID]; pl != nil {
		name = pl.entry().Name
	}
	obj, _ := params.Object(raw)
	_, asked := obj[tlsOnlyParam]
	switch b.tlsOnly[planID] {
	case TLSOnlyAlways:
		if asked && !p.TLSOnly {
			return badRequest("parameter %q: every instance of plan %s is TLS-only; leave the parameter out", tlsOnlyParam, name)
		}
		if creating {
			p.TLSOnly = true
		}
	case TLSOnlyNever:
		if p.TLSOnly && (asked || creating) {
			return badRequest("parameter %q: plan %s offers no TLS-only instances", tlsOnlyParam, name)
		}
	}
	return nil
}

// noTLS reports whether err is a VM's refusal of a TLS-only instance for
// want of TLS: the only parameter an agent may refuse that the broker's own
// check let through.
func noTLS(inst *instance, err error) bool {
	return inst.Parameters.TLSOnly && errors.Is(err, agentapi.ErrInvalid)
}

// errNoTLS is the answer to a TLS-only instance on a plan whose VMs serve
// no TLS.
func errNoTLS(plan string) error {
	return badRequest("parameter %q: the VMs of plan %s serve no TLS, so its instances cannot be TLS-only; ask your operator to turn TLS on", tlsOnlyParam, plan)
}

// tlsOnlyParam is the tenant parameter that makes an instance TLS-only.
const tlsOnlyParam = "tls_only"

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
