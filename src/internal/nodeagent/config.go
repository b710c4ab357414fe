package nodeagent

import (
	"errors"
	"fmt"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/agentcmd"
	"github.com/cf-redis/redis-for-cf/src/internal/backup"
	"github.com/cf-redis/redis-for-cf/src/internal/cgroup"
	"github.com/cf-redis/redis-for-cf/src/internal/ids"
	"github.com/cf-redis/redis-for-cf/src/internal/instance"
	"github.com/cf-redis/redis-for-cf/src/internal/logrotate"
	"github.com/cf-redis/redis-for-cf/src/internal/metrics"
	"github.com/cf-redis/redis-for-cf/src/internal/sentinel"
)

// DefaultPort is the port of a node's redis-server unless Config.Port says
// otherwise: the whole VM is the tenant's, so it gets Redis's own port.
const DefaultPort = 6379

// DefaultMaxMemoryPercent is the share of the VM's memory redis-server may
// use unless the config says otherwise; the rest is for the OS, the agent and
// the copy-on-write pages of a snapshot.
const DefaultMaxMemoryPercent = 75

// DefaultTLSPort is the TLS port of a node's redis-server when TLS is on
// and Config.TLSPort says nothing.
const DefaultTLSPort = 16379

// TLS names a certificate and key in PEM files.
type TLS = agentcmd.TLS

// Config is the node agent's config file.
type Config struct {
	// Listen is the address of the agent's HTTPS API, for example "10.0.0.7:9002".
	Listen string `json:"listen"`
	// Credentials are the basic-auth credentials the broker must present.
	Credentials agentapi.Credentials `json:"credentials"`
	// TLS is the API's certificate; required, the API is HTTPS only.
	TLS TLS `json:"tls"`
	// NodeID is the node's stable id, reported in its status so the broker
	// can tell that an address still leads to the node it claimed.
	NodeID string `json:"node_id"`
	// Host is the address apps connect to; it goes into credentials.
	Host string `json:"host"`
	// Bind is the address redis-server listens on; empty means Host.
	Bind string `json:"bind,omitempty"`
	// Port is redis-server's port; zero means DefaultPort.
	Port int `json:"port,omitempty"`
	// RedisTLS, when set, makes redis-server serve TLSPort beside Port, with
	// this certificate.
	RedisTLS *instance.RedisTLS `json:"redis_tls,omitempty"`
	// TLSPort is redis-server's TLS port when RedisTLS is set; zero means
	// DefaultTLSPort. Ignored (and zeroed) without RedisTLS.
	TLSPort int `json:"tls_port,omitempty"`
	// Backups, when set, backs up the node's instance on a schedule; nil
	// means only the backup errand does.
	Backups *backup.Schedule `json:"backups,omitempty"`
	// DataDir holds the agent's state file, redis.conf, the ACL file and
	// redis-server's data (DataDir/data, wiped by every reset).
	DataDir string `json:"data_dir"`
	// LogDir receives redis-server's log, redis-server.log; empty means
	// DataDir/logs.
	LogDir string `json:"log_dir,omitempty"`
	// RedisLogs says when that file is rotated and how many old ones are
	// kept; the zero value means 10 MB and two.
	RedisLogs logrotate.Policy `json:"redis_logs,omitzero"`
	// RedisServer is the redis-server binary; empty means the one on PATH.
	RedisServer string `json:"redis_server,omitempty"`
	// MaxMemoryPercent is redis-server's memory limit as a share of the VM's
	// memory (MemTotal of /proc/meminfo); zero means DefaultMaxMemoryPercent.
	MaxMemoryPercent int `json:"maxmemory_percent,omitempty"`
	// MaxMemoryMB, when positive, is the memory limit in MB and overrides
	// MaxMemoryPercent.
	MaxMemoryMB int64 `json:"maxmemory_mb,omitempty"`
	// Cgroups says whether redis-server runs in a cgroup of its own,
	// with a memory ceiling the kernel enforces (redisconf.MemoryCeiling of
	// its maxmemory) and an equal CPU weight: "auto" (the default, empty)
	// where the machine allows, "required" refuses to start without, "off"
	// never.
	Cgroups cgroup.Mode `json:"cgroups,omitempty"`
	// MaxScriptSeconds is how long redis-server may answer BUSY (a Lua
	// script or function running) before the agent ends the script; zero
	// means instance.DefaultMaxScriptSeconds.
	MaxScriptSeconds int `json:"max_script_seconds,omitempty"`
	// Metrics, when its listen is set, serves the node's Prometheus
	// metrics (package agentmetrics) over HTTPS to scrapers with a client
	// certificate.
	Metrics metrics.Config `json:"metrics,omitzero"`
	// HA, when set, lets the node join a high-availability group (the
	// dedicated-ha plan): it then runs redis-sentinel beside redis-server.
	// Nil means the node is for dedicated-vm instances only.
	HA *HAConfig `json:"ha,omitempty"`
}

// HAConfig is how a node serves in a high-availability group.
type HAConfig struct {
	// SentinelPort is Sentinel's port, on Host (over TLS when RedisTLS is
	// set); zero means sentinel.DefaultPort.
	SentinelPort int `json:"sentinel_port,omitempty"`
}

// Validate checks the config and fills in defaults, naming the fields at
// fault.
func (c *Config) Validate() error {
	errs := agentcmd.CheckAPI(c.Listen, c.Credentials)
	if c.TLS.CertFile == "" || c.TLS.KeyFile == "" {
		errs = append(errs, errors.New("tls.cert_file and tls.key_file are required: the node API is served over HTTPS only"))
	}
	if !ids.Valid(c.NodeID) {
		errs = append(errs, errors.New("node_id is required: 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"))
	}
	errs = append(errs, agentcmd.CheckHost(c.Host, &c.Bind)...)
	if c.Port == 0 {
		c.Port = DefaultPort
	}
	if c.Port < 1 || c.Port > 65535 {
		errs = append(errs, fmt.Errorf("port: %d is outside 1-65535", c.Port))
	}
	if c.RedisTLS != nil {
		errs = append(errs, c.RedisTLS.Validate("redis_tls"))
		if c.TLSPort == 0 {
			c.TLSPort = DefaultTLSPort
		}
		if c.TLSPort < 1 || c.TLSPort > 65535 {
			errs = append(errs, fmt.Errorf("tls_port: %d is outside 1-65535", c.TLSPort))
		} else if c.TLSPort == c.Port {
			errs = append(errs, fmt.Errorf("tls_port: %d must differ from port", c.TLSPort))
		}
	} else {
		c.TLSPort = 0
	}
	errs = append(errs, agentcmd.CheckFiles(c.DataDir, &c.LogDir, &c.RedisServer)...)
	errs = append(errs, c.RedisLogs.Validate("redis_logs"))
	if c.MaxMemoryPercent == 0 {
		c.MaxMemoryPercent = DefaultMaxMemoryPercent
	}
	if c.MaxMemoryPercent < 1 || c.MaxMemoryPercent > 100 {
		errs = append(errs, fmt.Errorf("maxmemory_percent: %d is outside 1-100", c.MaxMemoryPercent))
	}
	if c.MaxMemoryMB < 0 {
		errs = append(errs, errors.New("maxmemory_mb must not be negative"))
	}
	errs = append(errs, agentcmd.CheckBackups(c.Backups), c.Cgroups.Validate("cgroups"))
	errs = append(errs, instance.CheckMaxScriptSeconds(&c.MaxScriptSeconds), c.Metrics.Validate())
	if h := c.HA; h != nil {
		if h.SentinelPort == 0 {
			h.SentinelPort = sentinel.DefaultPort
		}
		if h.SentinelPort < 1 || h.SentinelPort > 65535 || h.SentinelPort == c.Port || h.SentinelPort == c.TLSPort {
			errs = append(errs, fmt.Errorf("ha.sentinel_port: %d must be in 1-65535 and differ from port and tls_port", h.SentinelPort))
		}
	}
	return errors.Join(errs...)
}

// maxMemory returns redis-server's memory limit in bytes.
func (c *Config) maxMemory() (int64, error) {
	return agentcmd.MemoryLimit(c.MaxMemoryMB, "maxmemory_mb", func(total int64) int64 { return total / 100 * int64(c.MaxMemoryPercent) })
}
