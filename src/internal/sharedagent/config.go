package sharedagent

import (
	"errors"
	"fmt"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/agentcmd"
	"github.com/cf-redis/redis-for-cf/src/internal/backup"
	"github.com/cf-redis/redis-for-cf/src/internal/cgroup"
	"github.com/cf-redis/redis-for-cf/src/internal/instance"
	"github.com/cf-redis/redis-for-cf/src/internal/logrotate"
	"github.com/cf-redis/redis-for-cf/src/internal/metrics"
	"github.com/cf-redis/redis-for-cf/src/internal/portalloc"
)

// Config is the shared agent's config file.
type Config struct {
	// Listen is the address of the agent's HTTP API, for example "10.0.0.5:9001".
	Listen string `json:"listen"`
	// Credentials are the basic-auth credentials the broker must present.
	Credentials agentapi.Credentials `json:"credentials"`
	// TLS, when set, serves the API over HTTPS with this certificate.
	TLS *TLS `json:"tls,omitempty"`
	// RedisTLS, when set, gives every instance a TLS port beside its
	// plaintext one, from the same port range, with this certificate.
	RedisTLS *instance.RedisTLS `json:"redis_tls,omitempty"`
	// Host is the address apps connect to; it goes into credentials.
	Host string `json:"host"`
	// Bind is the address redis-servers listen on; empty means Host.
	Bind string `json:"bind,omitempty"`
	// DataDir holds the agent's state file and every instance's files.
	DataDir string `json:"data_dir"`
	// LogDir receives one log file per redis-server, redis-INSTANCE-ID.log;
	// empty means DataDir/logs.
	LogDir string `json:"log_dir,omitempty"`
	// RedisLogs says when those files are rotated and how many old ones are
	// kept; the zero value means 10 MB and two.
	RedisLogs logrotate.Policy `json:"redis_logs,omitzero"`
	// RedisServer is the redis-server binary; empty means the one on PATH.
	RedisServer string `json:"redis_server,omitempty"`
	// Ports is the range instance ports come from; empty means 32768-61000.
	Ports portalloc.Range `json:"port_range"`
	// MemoryBudgetMB is the memory the agent may hand to instances in all;
	// zero means three quarters of the VM's memory.
	MemoryBudgetMB int64 `json:"memory_budget_mb,omitempty"`
	// MaxInstances caps the instances on this VM; zero means only memory and
	// ports limit them.
	MaxInstances int `json:"max_instances,omitempty"`
	// Backups, when set, backs up every instance on a schedule; nil means
	// only the backup errand does.
	Backups *backup.Schedule `json:"backups,omitempty"`
	// Cgroups says whether every redis-server runs in a cgroup of its own,
	// with a memory ceiling the kernel enforces (redisconf.MemoryCeiling of
	// its maxmemory) and an equal CPU weight: "auto" (the default, empty)
	// where the machine allows, "required" refuses to start without, "off"
	// never.
	Cgroups cgroup.Mode `json:"cgroups,omitempty"`
	// MaxScriptSeconds is how long an instance may answer BUSY (a Lua
	// script or function running) before the agent ends the script; zero
	// means instance.DefaultMaxScriptSeconds.
	MaxScriptSeconds int `json:"max_script_seconds,omitempty"`
	// Metrics, when its listen is set, serves the agent's Prometheus
	// metrics (package agentmetrics) over HTTPS to scrapers with a client
	// certificate.
	Metrics metrics.Config `json:"metrics,omitzero"`
}

// TLS names a certificate and key in PEM files.
type TLS = agentcmd.TLS

// Validate checks the config and fills in defaults, naming the field at fault.
func (c *Config) Validate() error {
	errs := agentcmd.CheckAPI(c.Listen, c.Credentials)
	if c.TLS != nil && (c.TLS.CertFile == "" || c.TLS.KeyFile == "") {
		errs = append(errs, errors.New("tls.cert_file and tls.key_file are both required when tls is set"))
	}
	if c.RedisTLS != nil {
		errs = append(errs, c.RedisTLS.Validate("redis_tls"))
	}
	errs = append(errs, agentcmd.CheckHost(c.Host, &c.Bind)...)
	errs = append(errs, agentcmd.CheckFiles(c.DataDir, &c.LogDir, &c.RedisServer)...)
	errs = append(errs, c.RedisLogs.Validate("redis_logs"))
	if c.Ports == (portalloc.Range{}) {
		c.Ports = portalloc.Default
	}
	if err := c.Ports.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("port_range: %w", err))
	}
	if c.MemoryBudgetMB < 0 {
		errs = append(errs, errors.New("memory_budget_mb must not be negative"))
	}
	if c.MaxInstances < 0 {
		errs = append(errs, errors.New("max_instances must not be negative"))
	}
	errs = append(errs, agentcmd.CheckBackups(c.Backups), c.Cgroups.Validate("cgroups"))
	errs = append(errs, instance.CheckMaxScriptSeconds(&c.MaxScriptSeconds), c.Metrics.Validate())
	return errors.Join(errs...)
}

// memoryBudget returns the configured budget in bytes, or three quarters of
// the machine's memory.
func (c *Config) memoryBudget() (int64, error) {
	return agentcmd.MemoryLimit(c.MemoryBudgetMB, "memory_budget_mb", func(total int64) int64 { return total / 4 * 3 })
}
