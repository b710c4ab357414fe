package broker

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"code.cloudfoundry.org/brokerapi/v13/domain"
	"code.cloudfoundry.org/brokerapi/v13/domain/apiresponses"

	"github.com/cf-redis/redis-for-cf/src/internal/ids"
	redisinstance "github.com/cf-redis/redis-for-cf/src/internal/instance"
	"github.com/cf-redis/redis-for-cf/src/internal/params"
	"github.com/cf-redis/redis-for-cf/src/internal/secret"
)

// Bind creates a Redis ACL user of its own for the binding, with a random
// password, and returns its credentials. The binding is recorded ("creating",
// with its password) before the agent is asked, so a retry after a crash
// hands out the same credentials rather than a second user.
func (b *Broker) Bind(ctx context.Context, id, bindingID string, d domain.BindDetails, asyncAllowed bool) (domain.Binding, error) {
	out, err := b.bind(ctx, id, bindingID, d)
	return out, b.respond(ctx, "bind", err)
}

func (b *Broker) bind(ctx context.Context, id, bindingID string, d domain.BindDetails) (domain.Binding, error) {
	if err := checkBindingID(bindingID); err != nil {
		return domain.Binding{}, err
	}
	if obj, err := params.Object(d.RawParameters); err != nil {
		return domain.Binding{}, err
	} else if len(obj) > 0 {
		return domain.Binding{}, badRequest("bindings take no parameters, got %s", firstKey(obj))
	}
	unlock, err := b.locks.LockContext(ctx, id)
	if err != nil {
		return domain.Binding{}, err
	}
	defer unlock()

	appGUID := d.AppGUID
	if appGUID == "" && d.BindResource != nil {
		appGUID = d.BindResource.AppGuid
	}
	var inst *instance
	var bnd *binding
	created := false
	err = b.state.Update(func(s *state) error {
		inst = s.Instances.Edit(id)
		if inst == nil || inst.State != stateReady {
			return notReady(id)
		}
		if old := inst.Bindings[bindingID]; old != nil {
			if old.AppGUID != appGUID || !sameJSON(old.Requested, d.RawParameters) {
				return &userError{status: http.StatusConflict, msg: fmt.Sprintf("binding %s already exists for another app or with other parameters", bindingID)}
			}
			bnd = old
			return nil
		}
		bnd = &binding{
			ID:        bindingID,
			AppGUID:   appGUID,
			Requested: d.RawParameters,
			Username:  bindingID,
			Password:  secret.New(),
			State:     stateCreating,
			CreatedAt: now(),
		}
		inst.Bindings[bindingID] = bnd
		created = true
		return nil
	})
	if err != nil {
		return domain.Binding{}, err
	}
	// A binding ready before this request is 200; one this request (or a
	// retry of an earlier one that did not finish) made ready is 201.
	alreadyExists := !created && bnd.State == stateReady
	ca := ""
	if bnd.State != stateReady {
		ep, err := b.bindAll(ctx, inst, bindingID, bnd.Password)
		if err != nil {
			return domain.Binding{}, err
		}
		err = b.state.Update(func(s *state) error {
			if r := s.Instances.Edit(id); r != nil && r.Bindings[bindingID] != nil {
				rb := r.Bindings[bindingID]
				rb.State = stateReady
				rb.Host, rb.Port, rb.TLSPort = ep.Host, ep.Port, ep.TLSPort
				cp := *rb
				bnd = &cp
				s.keepCA(r.VM, ep.TLSCA)
			}
			ca = s.RedisCAs[inst.VM]
			return nil
		})
		if err != nil {
			return domain.Binding{}, err
		}
	} else {
		ca = b.redisCA(inst.VM)
	}
	return domain.Binding{
		AlreadyExists: alreadyExists,
		Credentials:   credentials(inst, bnd, ca),
		Endpoints:     endpoints(inst, bnd),
	}, nil
}

// bindAll makes the binding user on every VM of inst (each member of an
// HA group: a failover must find it on the new leader) and returns where
// it connects: its VM, or the member the group's Sentinels say leads now.
func (b *Broker) bindAll(ctx context.Context, inst *instance, bindingID, password string) (endpoint, error) {
	vms, err := b.vmsOf(inst)
	if err != nil {
		return endpoint{}, err
	}
	var eps []endpoint
	for _, v := range vms {
		ep, err := v.bind(ctx, inst.ID, bindingID, password)
		if err != nil {
			return endpoint{}, fmt.Errorf("creating binding user %s on %s: %w", bindingID, v.where(), err)
		}
		eps = append(eps, ep)
	}
	if inst.HA == nil {
		return eps[0], nil
	}
	i, err := b.leaderOf(ctx, inst, eps[0].TLSCA)
	if err != nil {
		return endpoint{}, err
	}
	ep := eps[i]
	// The CA is kept once, under the instance's VM (its first member).
	ep.TLSCA = eps[0].TLSCA
	return ep, nil
}

// redisCA is the CA of the Redis certificates of VM vmID; empty when none
// is known.
func (b *Broker) redisCA(vmID string) string {
	var ca string
	_ = b.state.View(func(s state) { ca = s.RedisCAs[vmID] })
	return ca
}

// checkBindingID refuses, before anything is recorded or any agent asked, a
// binding id that cannot name a tenant's Redis user: one the ids rule
// refuses, a user the agents keep for themselves (platformUser), or a name
// of the replication users the broker makes on leaders. The agents refuse
// the first two as well, but only after the broker recorded the binding, which
// then could neither be made nor removed.
func checkBindingID(id string) error {
	switch {
	case !ids.Valid(id):
		return badRequest("binding id %q must be %s", id, ids.Rule)
	case platformUser(id) || strings.HasPrefix(id, replicaUserPrefix):
		return badRequest("binding id %q is reserved: it names a Redis user the platform uses; bind with another id", id)
	}
	return nil
}

// platformUser reports whether username is a user every instance has
// that the agents never bind or unbind: the agent's admin and Redis's own
// default user.
func platformUser(username string) bool {
	return username == redisinstance.AdminUser || username == "default"
}

// Credentials are what an app finds in VCAP_SERVICES: the fields every Redis
// client library looks for (host, port, password, and username for ACLs) and
// a URI that go-redis ParseURL and redis-cli -u read.
//
// When the instance serves TLS, TLSPort is its TLS port, TLSURI the
// rediss:// URI of it, and TLSCA the PEM CA to verify the server with. A
// TLS-only instance has no plaintext port: Port is the TLS port and URI the
// rediss:// one too, so clients that read only uri, or host and port, use
// TLS; TLS says so for clients that look for a flag.
type Credentials struct {
	Host     string `json:"host"`
	Hostname string `json:"hostname"`
	Port     int    `json:"port"`
	Username string `json:"username"`
	Password string `json:"password"`
	URI      string `json:"uri"`
	TLSPort  int    `json:"tls_port,omitempty"`
	TLSURI   string `json:"tls_uri,omitempty"`
	TLSCA    string `json:"tls_ca,omitempty"`
	TLS      bool   `json:"tls,omitempty"`
	// MasterName and Sentinels are set for an instance of the dedicated-ha
	// plan: the name its group's Sentinels monitor it under and where they
	// listen (over TLS, verified with TLSCA, when the group serves TLS).
	// Host and Port are then the leader when the binding was made.
	MasterName string         `json:"master_name,omitempty"`
	Sentinels  []SentinelAddr `json:"sentinels,omitempty"`
}

// where returns the host and port a binding connects to: those its agent or
// node answered, or, for a record from before they were kept, the
// instance's.
func where(inst *instance, bnd *binding) (string, int) {
	if bnd.Host != "" && bnd.Port != 0 {
		return bnd.Host, bnd.Port
	}
	return inst.Host, inst.Port
}

func credentials(inst *instance, bnd *binding, ca string) Credentials {
	host, port := where(inst, bnd)
	if inst.Parameters.TLSOnly && bnd.TLSPort != 0 {
		port = bnd.TLSPort
	}
	u := url.URL{
		Scheme: "redis",
		User:   url.UserPassword(bnd.Username, bnd.Password),
		Host:   net.JoinHostPort(host, strconv.Itoa(port)),
	}
	c := Credentials{
		Host:     host,
		Hostname: host,
		Port:     port,
		Username: bnd.Username,
		Password: bnd.Password,
		URI:      u.String(),
	}
	if inst.HA != nil {
		c.MasterName, c.Sentinels = inst.HA.Group.MasterName, sentinels(inst)
	}
	if bnd.TLSPort != 0 {
		u.Scheme, u.Host = "rediss", net.JoinHostPort(host, strconv.Itoa(bnd.TLSPort))
		c.TLSPort, c.TLSURI, c.TLSCA = bnd.TLSPort, u.String(), ca
		if inst.Parameters.TLSOnly {
			c.URI, c.TLS = c.TLSURI, true
		}
	}
	return c
}

func endpoints(inst *instance, bnd *binding) []domain.Endpoint {
	host, port := where(inst, bnd)
	ports := []string{strconv.Itoa(port)}
	switch {
	case bnd.TLSPort != 0 && inst.Parameters.TLSOnly:
		ports = []string{strconv.Itoa(bnd.TLSPort)}
	case bnd.TLSPort != 0:
		ports = append(ports, strconv.Itoa(bnd.TLSPort))
	}
	return []domain.Endpoint{{Host: host, Ports: ports, Protocol: "tcp"}}
}

func firstKey[V any](m map[string]V) string {
	for k := range m {
		return fmt.Sprintf("%q", k)
	}
	return ""
}

// Unbind deletes the binding's ACL user, which closes its open connections;
// other bindings keep working. A binding that is gone answers 410.
func (b *Broker) Unbind(ctx context.Context, id, bindingID string, d domain.UnbindDetails, asyncAllowed bool) (domain.UnbindSpec, error) {
	return domain.UnbindSpec{}, b.respond(ctx, "unbind", b.unbind(ctx, id, bindingID))
}

func (b *Broker) unbind(ctx context.Context, id, bindingID string) error {
	unlock, err := b.locks.LockContext(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	inst, err := b.find(id)
	if err != nil {
		return err
	}
	if inst == nil || inst.Bindings[bindingID] == nil {
		return apiresponses.ErrBindingDoesNotExist
	}
	// A binding named after a platform user can only be a record from before
	// bind refused them: its agent never made it, and refuses to remove it.
	if !platformUser(bindingID) {
		vms, err := b.vmsOf(inst)
		if err != nil {
			return err
		}
		for _, v := range vms {
			if err := v.unbind(ctx, id, bindingID); err != nil {
				return fmt.Errorf("deleting binding user %s on %s: %w", bindingID, v.where(), err)
			}
		}
	}
	return b.state.Update(func(s *state) error {
		if r := s.Instances.Edit(id); r != nil {
			delete(r.Bindings, bindingID)
		}
		return nil
	})
}

// GetBinding returns a binding's credentials; 404 while it is being created.
func (b *Broker) GetBinding(ctx context.Context, id, bindingID string, d domain.FetchBindingDetails) (domain.GetBindingSpec, error) {
	inst, err := b.find(id)
	if err != nil {
		return domain.GetBindingSpec{}, b.respond(ctx, "get-binding", err)
	}
	if inst == nil || inst.Bindings[bindingID] == nil || inst.Bindings[bindingID].State != stateReady {
		return domain.GetBindingSpec{}, apiresponses.ErrBindingNotFound
	}
	bnd := inst.Bindings[bindingID]
	p, _ := params.Object(bnd.Requested)
	return domain.GetBindingSpec{
		Credentials: credentials(inst, bnd, b.redisCA(inst.VM)),
		Endpoints:   endpoints(inst, bnd),
		Parameters:  p,
	}, nil
}

// LastBindingOperation answers for bindings, which are all created
// synchronously: succeeded once the binding exists, 410 when it does not.
func (b *Broker) LastBindingOperation(ctx context.Context, id, bindingID string, d domain.PollDetails) (domain.LastOperation, error) {
	inst, err := b.find(id)
	if err != nil {
		return domain.LastOperation{}, b.respond(ctx, "last-binding-operation", err)
	}
	if inst == nil || inst.Bindings[bindingID] == nil {
		return domain.LastOperation{}, apiresponses.ErrBindingDoesNotExist
	}
	if inst.Bindings[bindingID].State != stateReady {
		return domain.LastOperation{State: domain.InProgress, Description: "creating the binding user"}, nil
	}
	return domain.LastOperation{State: domain.Succeeded, Description: "binding ready"}, nil
}
