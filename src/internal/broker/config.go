package broker

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/backup"
	"github.com/cf-redis/redis-for-cf/src/internal/ids"
	"github.com/cf-redis/redis-for-cf/src/internal/metrics"
	"github.com/cf-redis/redis-for-cf/src/internal/sentinel"
)

// Config is the broker's config file.
type Config struct {
	// Listen is the address of the OSB API, for example "0.0.0.0:8080".
	Listen string `json:"listen"`
	// Credentials are the basic-auth credentials Cloud Controller presents.
	Credentials agentapi.Credentials `json:"credentials"`
	// TLS, when set, serves the OSB API over HTTPS.
	TLS *TLS `json:"tls,omitempty"`
	// StateDir holds the broker's state file.
	StateDir string `json:"state_dir"`
	// Catalog names the service as the marketplace shows it.
	Catalog Catalog `json:"catalog"`
	// SharedVM configures the shared-vm plan; nil leaves the plan out of the
	// catalog.
	SharedVM *SharedVMPlan `json:"shared_vm,omitempty"`
	// DedicatedVM configures the dedicated-vm plan; nil leaves the plan out
	// of the catalog.
	DedicatedVM *DedicatedVMPlan `json:"dedicated_vm,omitempty"`
	// DedicatedHA configures the dedicated-ha plan: groups of three nodes
	// of the dedicated-vm plan's pool (a leader, two followers and a
	// Sentinel beside each); nil leaves the plan out of the catalog. It
	// needs dedicated_vm, with at least three nodes.
	DedicatedHA *DedicatedHAPlan `json:"dedicated_ha,omitempty"`
	// Backups is where the backup errand and the agents put backups; with
	// it, app developers can restore their instance's own backups with
	// `cf update-service -c '{"restore": "..."}'`. Nil means no restores.
	Backups *backup.Destination `json:"backups,omitempty"`
	// ExternalLeaders are the leaders outside this service that instances
	// may follow (replica_of with a host): each a CIDR ("10.20.0.0/16"), an
	// IP address or a DNS name; a name given as a leader must be listed
	// itself or resolve only to listed addresses. Empty means none: only
	// instances of this service may lead. The platform's own addresses
	// (loopback, link-local, the broker's, agents' and nodes') never lead,
	// whatever the list says.
	ExternalLeaders []string `json:"external_leaders,omitempty"`
	// Metrics, when its listen address is set, serves the broker's
	// Prometheus metrics over HTTPS to scrapers with a client certificate
	// of its CA (package metrics; RegisterMetrics says what they are). The
	// zero value serves none.
	Metrics metrics.Config `json:"metrics,omitzero"`
}

// TLS names a certificate and key in PEM files.
type TLS struct {
	CertFile string `json:"cert_file"`
	KeyFile  string `json:"key_file"`
}

// Catalog holds the service offering's marketplace data.
type Catalog struct {
	// ServiceID is the offering's stable unique id; never change it once
	// registered.
	ServiceID string `json:"service_id"`
	// ServiceName is the name in `cf marketplace`; empty means "p-redis".
	ServiceName string `json:"service_name,omitempty"`
	// Description; empty means a standard one.
	Description string `json:"description,omitempty"`
	// DisplayName, for the marketplace page; empty means "Redis".
	DisplayName string `json:"display_name,omitempty"`
	// Shareable lets instances be shared between spaces.
	Shareable bool `json:"shareable,omitempty"`
	// MaintenanceVersion is the semantic version of what instances run
	// (maintenance_info.version); empty means Version, the release's.
	MaintenanceVersion string `json:"maintenance_version,omitempty"`
}

// SharedVMPlan configures the plan of redis-servers on shared VMs.
type SharedVMPlan struct {
	// PlanID is the plan's stable unique id.
	PlanID string `json:"plan_id"`
	// Name is the plan name; empty means "shared-vm".
	Name string `json:"name,omitempty"`
	// Description; empty means a standard one.
	Description string `json:"description,omitempty"`
	// MaxInstances is the most instances of the plan across all shared VMs.
	MaxInstances int `json:"max_instances"`
	// MaxMemoryMB is every instance's memory limit.
	MaxMemoryMB int64 `json:"maxmemory_mb"`
	// TLSOnly says which instances listen on TLS alone (TLSOnlyOptional,
	// TLSOnlyAlways or TLSOnlyNever); empty means TLSOnlyOptional.
	TLSOnly string `json:"tls_only,omitempty"`
	// Agents are the shared VMs' agents, each with a stable id that instance
	// records refer to, so an agent may change its address.
	Agents []AgentConfig `json:"agents"`
}

// AgentConfig is how the broker reaches one shared-VM agent.
type AgentConfig struct {
	ID string `json:"id"`
	agentapi.ClientConfig
}

// DedicatedVMPlan configures the plan that hands out whole VMs, each running
// one redis-server, from a pool.
type DedicatedVMPlan struct {
	// PlanID is the plan's stable unique id.
	PlanID string `json:"plan_id"`
	// Name is the plan name; empty means "dedicated-vm".
	Name string `json:"name,omitempty"`
	// Description; empty means a standard one.
	Description string `json:"description,omitempty"`
	// TLSOnly says which instances listen on TLS alone, as for shared_vm.
	TLSOnly string `json:"tls_only,omitempty"`
	// Nodes are the pool. Each has a stable id that the broker's records and
	// the node itself carry, so a node that changes address keeps its tenant
	// and an address reused by another node cannot hand it one.
	Nodes []NodeConfig `json:"nodes"`
}

// NodeConfig is how the broker reaches one dedicated node's agent: always
// over https, verifying the node's certificate with CACert.
type NodeConfig struct {
	ID string `json:"id"`
	// AZ is the node's availability zone; empty when unknown. The
	// dedicated-ha plan puts a group's members on distinct zones where
	// the free nodes allow it.
	AZ string `json:"az,omitempty"`
	agentapi.ClientConfig
}

// DedicatedHAPlan configures the plan of high-availability groups: three
// nodes of dedicated_vm.nodes, one leader and two followers, with a
// Sentinel beside each redis-server that fails the leader over.
type DedicatedHAPlan struct {
	// PlanID is the plan's stable unique id.
	PlanID string `json:"plan_id"`
	// Name is the plan name; empty means "dedicated-ha".
	Name string `json:"name,omitempty"`
	// Description; empty means a standard one.
	Description string `json:"description,omitempty"`
	// TLSOnly says which instances listen on TLS alone, as for shared_vm.
	TLSOnly string `json:"tls_only,omitempty"`
	// SentinelPort is where every node's Sentinel listens (the redis-node
	// job's ha.sentinel_port); zero means sentinel.DefaultPort.
	SentinelPort int `json:"sentinel_port,omitempty"`
}

// Validate checks the config and fills in defaults, naming the field at fault.
func (c *Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("listen: %q is not host:port", c.Listen))
	}
	if c.Credentials.Username == "" || c.Credentials.Password == "" {
		errs = append(errs, errors.New("credentials.username and credentials.password are required"))
	}
	if c.TLS != nil && (c.TLS.CertFile == "" || c.TLS.KeyFile == "") {
		errs = append(errs, errors.New("tls.cert_file and tls.key_file are both required when tls is set"))
	}
	if !filepath.IsAbs(c.StateDir) {
		errs = append(errs, errors.New("state_dir must be an absolute path"))
	}
	if c.Catalog.ServiceID == "" {
		errs = append(errs, errors.New("catalog.service_id is required"))
	}
	if c.Catalog.ServiceName == "" {
		c.Catalog.ServiceName = "p-redis"
	}
	if c.Catalog.Description == "" {
		c.Catalog.Description = "Redis key-value store: an instance of its own on a shared VM, with per-binding credentials"
	}
	if c.Catalog.DisplayName == "" {
		c.Catalog.DisplayName = "Redis"
	}
	if c.Catalog.MaintenanceVersion == "" {
		c.Catalog.MaintenanceVersion = Version
	}
	if c.DedicatedHA != nil {
		errs = append(errs, c.validateHA()...)
	}
	if c.SharedVM == nil && c.DedicatedVM == nil {
		errs = append(errs, errors.New("shared_vm or dedicated_vm must configure at least one plan"))
	}
	if c.SharedVM != nil {
		errs = append(errs, c.SharedVM.validate(c.Catalog.ServiceID)...)
	}
	if c.Backups != nil {
		errs = append(errs, c.Backups.Validate("backups"))
	}
	if err := c.Metrics.Validate(); err != nil {
		errs = append(errs, err)
	}
	_, leaderErrs := parseAllowList(c.ExternalLeaders)
	errs = append(errs, leaderErrs...)
	if c.DedicatedVM != nil {
		errs = append(errs, c.DedicatedVM.validate(c.Catalog.ServiceID)...)
		if c.SharedVM != nil && c.SharedVM.PlanID == c.DedicatedVM.PlanID {
			errs = append(errs, errors.New("dedicated_vm.plan_id must differ from shared_vm.plan_id"))
		}
		if c.SharedVM != nil {
			// Instance records name their VM by id alone.
			agents := map[string]bool{}
			for _, a := range c.SharedVM.Agents {
				agents[a.ID] = true
			}
			for i, n := range c.DedicatedVM.Nodes {
				if agents[n.ID] {
					errs = append(errs, fmt.Errorf("dedicated_vm.nodes[%d].id %q is also the id of an agent in shared_vm.agents", i, n.ID))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// validateHA checks the dedicated_ha section against the pool it draws
// from.
func (c *Config) validateHA() []error {
	p := c.DedicatedHA
	errs := checkPlan("dedicated_ha", p.PlanID, c.Catalog.ServiceID)
	if p.Name == "" {
		p.Name = "dedicated-ha"
	}
	if p.Description == "" {
		p.Description = "Three VMs, a leader and two followers, with Sentinel failing over to a follower in seconds"
	}
	errs = append(errs, checkTLSOnly("dedicated_ha", &p.TLSOnly)...)
	switch {
	case p.SentinelPort == 0:
		p.SentinelPort = sentinel.DefaultPort
	case p.SentinelPort < 1 || p.SentinelPort > 65535:
		errs = append(errs, fmt.Errorf("dedicated_ha.sentinel_port must be in 1-65535, not %d", p.SentinelPort))
	}
	if c.DedicatedVM == nil {
		return append(errs, errors.New("dedicated_ha needs dedicated_vm: its groups are made of the dedicated_vm.nodes pool"))
	}
	if n := len(c.DedicatedVM.Nodes); n < sentinel.Members {
		errs = append(errs, fmt.Errorf("dedicated_ha needs at least %d nodes in dedicated_vm.nodes; it has %d", sentinel.Members, n))
	}
	if p.PlanID == c.DedicatedVM.PlanID {
		errs = append(errs, errors.New("dedicated_ha.plan_id must differ from dedicated_vm.plan_id"))
	}
	if c.SharedVM != nil && p.PlanID == c.SharedVM.PlanID {
		errs = append(errs, errors.New("dedicated_ha.plan_id must differ from shared_vm.plan_id"))
	}
	return errs
}

func (p *SharedVMPlan) validate(serviceID string) []error {
	errs := checkPlan("shared_vm", p.PlanID, serviceID)
	if p.Name == "" {
		p.Name = "shared-vm"
	}
	if p.Description == "" {
		p.Description = fmt.Sprintf("An isolated redis-server on a shared VM, %d MB", p.MaxMemoryMB)
	}
	if p.MaxInstances <= 0 {
		errs = append(errs, errors.New("shared_vm.max_instances must be positive"))
	}
	if p.MaxMemoryMB <= 0 {
		errs = append(errs, errors.New("shared_vm.maxmemory_mb must be positive"))
	}
	if len(p.Agents) == 0 {
		errs = append(errs, errors.New("shared_vm.agents must name at least one agent"))
	}
	errs = append(errs, checkTLSOnly("shared_vm", &p.TLSOnly)...)
	seen := map[string]bool{}
	for i, a := range p.Agents {
		errs = append(errs, checkVM(fmt.Sprintf("shared_vm.agents[%d]", i), a.ID, a.ClientConfig, seen)...)
		if a.URL == "" {
			errs = append(errs, fmt.Errorf("shared_vm.agents[%d].url is required", i))
		}
	}
	return errs
}

func (p *DedicatedVMPlan) validate(serviceID string) []error {
	errs := checkPlan("dedicated_vm", p.PlanID, serviceID)
	if p.Name == "" {
		p.Name = "dedicated-vm"
	}
	if p.Description == "" {
		p.Description = "A VM of its own running one redis-server"
	}
	if len(p.Nodes) == 0 {
		errs = append(errs, errors.New("dedicated_vm.nodes must name at least one node"))
	}
	errs = append(errs, checkTLSOnly("dedicated_vm", &p.TLSOnly)...)
	seen := map[string]bool{}
	for i, n := range p.Nodes {
		errs = append(errs, checkVM(fmt.Sprintf("dedicated_vm.nodes[%d]", i), n.ID, n.ClientConfig, seen)...)
		if !strings.HasPrefix(n.URL, "https://") {
			errs = append(errs, fmt.Errorf("dedicated_vm.nodes[%d].url must be an https URL", i))
		}
		if n.CACert == "" {
			errs = append(errs, fmt.Errorf("dedicated_vm.nodes[%d].ca_cert is required: the broker verifies every node", i))
		}
	}
	return errs
}

// The plan settings of tls_only: whether tenants choose (optional, the
// default: the tls_only parameter, off unless set), every instance is
// TLS-only (always), or none is (never: the parameter is refused).
const (
	TLSOnlyOptional = "optional"
	TLSOnlyAlways   = "always"
	TLSOnlyNever    = "never"
)

// checkTLSOnly fills in the default of a plan's tls_only and refuses other
// values.
func checkTLSOnly(field string, v *string) []error {
	switch *v {
	case "":
		*v = TLSOnlyOptional
	case TLSOnlyOptional, TLSOnlyAlways, TLSOnlyNever:
	default:
		return []error{fmt.Errorf("%s.tls_only must be %q, %q or %q, not %q", field, TLSOnlyOptional, TLSOnlyAlways, TLSOnlyNever, *v)}
	}
	return nil
}

// checkPlan checks the plan id of the plan configured under field.
func checkPlan(field, planID, serviceID string) []error {
	switch {
	case planID == "":
		return []error{fmt.Errorf("%s.plan_id is required", field)}
	case planID == serviceID:
		return []error{fmt.Errorf("%s.plan_id must differ from catalog.service_id", field)}
	}
	return nil
}

// checkVM checks the id (valid, not in seen, which it joins) and the
// credentials of the VM configured under field.
func checkVM(field, id string, c agentapi.ClientConfig, seen map[string]bool) []error {
	var errs []error
	if !ids.Valid(id) {
		errs = append(errs, fmt.Errorf("%s.id must be 1-128 letters, digits, '.', '_' or '-'", field))
	}
	if seen[id] {
		errs = append(errs, fmt.Errorf("%s.id %q is used twice", field, id))
	}
	seen[id] = true
	if c.Username == "" || c.Password == "" {
		errs = append(errs, fmt.Errorf("%s.username and password are required", field))
	}
	return errs
}

// agentTimeout bounds each request to a shared VM's agent but the
// streaming ones; nodes keep the client's default (agentapi.DefaultTimeout),
// long enough for a claim or a reset.
const agentTimeout = 30 * time.Second

// NewClients makes the client of every VM of the config, keyed by VM id, for
// New.
func NewClients(c Config) (map[string]Agent, error) {
	out := map[string]Agent{}
	if c.SharedVM != nil {
		for _, a := range c.SharedVM.Agents {
			cc := a.ClientConfig
			cc.Noun, cc.Timeout = "agent", agentTimeout
			cl, err := agentapi.NewClient(cc)
			if err != nil {
				return nil, fmt.Errorf("shared_vm.agents %s: %w", a.ID, err)
			}
			out[a.ID] = cl
		}
	}
	if c.DedicatedVM != nil {
		for _, n := range c.DedicatedVM.Nodes {
			// https and a CA, always; the client's default timeout, long
			// enough for a claim or a reset.
			cl, err := agentapi.NewNodeClient(n.ClientConfig)
			if err != nil {
				return nil, fmt.Errorf("dedicated_vm.nodes %s: %w", n.ID, err)
			}
			out[n.ID] = cl
		}
	}
	return out, nil
}
