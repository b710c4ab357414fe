// Package agentcmd is the main of the two agents' commands, the shared VMs'
// (sharedagent) and the dedicated nodes' (nodeagent): it loads a config,
// runs the agent and serves its API; and the checks of the fields both
// agents' configs have.
package agentcmd

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/backup"
)

// CheckAPI checks the address and the credentials of an agent's API.
func CheckAPI(listen string, creds agentapi.Credentials) []error {
	var errs []error
	if _, _, err := net.SplitHostPort(listen); err != nil {
		errs = append(errs, fmt.Errorf("listen: %q is not host:port", listen))
	}
	if creds.Username == "" || creds.Password == "" {
		errs = append(errs, errors.New("credentials.username and credentials.password are required"))
	}
	return errs
}

// CheckHost checks the address apps connect to, and makes it the address
// redis-server listens on when bind is empty.
func CheckHost(host string, bind *string) []error {
	var errs []error
	if host == "" {
		errs = append(errs, errors.New("host is required"))
	}
	if *bind == "" {
		*bind = host
	}
	return errs
}

// CheckFiles checks where an agent keeps its files and fills in the
// defaults: logDir is dataDir/logs, redisServer the redis-server on PATH.
func CheckFiles(dataDir string, logDir, redisServer *string) []error {
	var errs []error
	if dataDir == "" || !filepath.IsAbs(dataDir) {
		errs = append(errs, errors.New("data_dir must be an absolute path"))
	}
	if *logDir == "" {
		*logDir = filepath.Join(dataDir, "logs")
	}
	if *redisServer == "" {
		*redisServer = "redis-server"
	}
	return errs
}

// MemoryLimit returns mb megabytes, or when mb is not positive the share of
// the machine's memory that share says; field names mb's config field in
// the error.
func MemoryLimit(mb int64, field string, share func(total int64) int64) (int64, error) {
	if mb > 0 {
		return mb << 20, nil
	}
	total, err := MachineMemory()
	if err != nil {
		return 0, fmt.Errorf("%s is unset and %w", field, err)
	}
	return share(total), nil
}

// CheckBackups checks an agent's scheduled backups, when it has them.
func CheckBackups(b *backup.Schedule) error {
	if b == nil {
		return nil
	}
	return b.Validate("backups")
}

// MachineMemory returns the machine's memory in bytes, MemTotal of
// /proc/meminfo.
func MachineMemory() (int64, error) {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, fmt.Errorf("the machine's memory is unknown: %w", err)
	}
	var kb int64
	if _, err := fmt.Sscanf(string(data), "MemTotal: %d kB", &kb); err != nil {
		return 0, fmt.Errorf("the machine's memory is unknown: %w", err)
	}
	return kb << 10, nil
}

// TLS names a certificate and key in PEM files.
type TLS struct {
	CertFile string `json:"cert_file"`
	KeyFile  string `json:"key_file"`
}
