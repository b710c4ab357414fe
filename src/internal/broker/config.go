package broker

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"regexp"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
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
	// SharedVM configures the shared-vm plan.
	SharedVM SharedVMPlan `json:"shared_vm"`
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
	// (maintenance_info.version); empty means the broker's built-in version.
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
	// Agents are the shared VMs' agents, each with a stable id that instance
	// records refer to, so an agent may change its address.
	Agents []AgentConfig `json:"agents"`
}

// AgentConfig is how the broker reaches one shared-VM agent.
type AgentConfig struct {
	ID string `json:"id"`
	agentapi.ClientConfig
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

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
	p := &c.SharedVM
	if p.PlanID == "" {
		errs = append(errs, errors.New("shared_vm.plan_id is required"))
	}
	if p.PlanID != "" && p.PlanID == c.Catalog.ServiceID {
		errs = append(errs, errors.New("shared_vm.plan_id must differ from catalog.service_id"))
	}
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
	seen := map[string]bool{}
	for i, a := range p.Agents {
		if !idPattern.MatchString(a.ID) {
			errs = append(errs, fmt.Errorf("shared_vm.agents[%d].id must be 1-128 letters, digits, '.', '_' or '-'", i))
		}
		if seen[a.ID] {
			errs = append(errs, fmt.Errorf("shared_vm.agents[%d].id %q is used twice", i, a.ID))
		}
		seen[a.ID] = true
		if a.URL == "" {
			errs = append(errs, fmt.Errorf("shared_vm.agents[%d].url is required", i))
		}
		if a.Username == "" || a.Password == "" {
			errs = append(errs, fmt.Errorf("shared_vm.agents[%d].username and password are required", i))
		}
	}
	return errors.Join(errs...)
}
