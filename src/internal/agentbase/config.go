// Package agentbase is what the two agents, the shared VMs' (sharedagent)
// and the dedicated nodes' (nodeagent), and their commands have in common:
// the checks of the fields both configs have, and the main that loads a
// config, runs an agent and serves its API.
package agentbase

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
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

// RedisTLS turns TLS on for the Redis ports: every redis-server serves a TLS
// port beside its plaintext one, with this certificate.
type RedisTLS struct {
	// CertFile and KeyFile are the servers' certificate and key, PEM.
	CertFile string `json:"cert_file"`
	KeyFile  string `json:"key_file"`
	// CAFile is the PEM CA that signed the certificate: apps get it in their
	// credentials to verify the servers, and redis-server's
	// tls-ca-cert-file is set to it.
	CAFile string `json:"ca_file"`

	// caPEM is CAFile's content, read by Check.
	caPEM string
}

// Validate checks that the three files are named, naming the fields under
// the config's key name. Whether they exist and parse is Check's, at the
// agent's start (a config is checked where the files may not be yet, as
// when a BOSH template renders it).
func (t *RedisTLS) Validate(name string) error {
	var errs []error
	for _, f := range []struct{ field, path string }{{"cert_file", t.CertFile}, {"key_file", t.KeyFile}, {"ca_file", t.CAFile}} {
		if f.path == "" {
			errs = append(errs, fmt.Errorf("%s.%s is required when %s is set", name, f.field, name))
		}
	}
	return errors.Join(errs...)
}

// Check checks that the three files exist and parse (the certificate
// matches its key, the CA file holds a certificate), naming the fields
// under the config's key name, and keeps the CA for CA. Without TLS (a nil
// t) there is nothing to check.
func (t *RedisTLS) Check(name string) error {
	if t == nil {
		return nil
	}
	if err := t.Validate(name); err != nil {
		return err
	}
	var errs []error
	for _, f := range []struct{ field, path string }{{"cert_file", t.CertFile}, {"key_file", t.KeyFile}, {"ca_file", t.CAFile}} {
		if _, err := os.Stat(f.path); err != nil {
			errs = append(errs, fmt.Errorf("%s.%s: %w", name, f.field, err))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
		// The error names neither the key's bytes nor the file's content.
		errs = append(errs, fmt.Errorf("%s.cert_file and %s.key_file do not make a certificate and its key: %v", name, name, err))
	}
	ca, err := os.ReadFile(t.CAFile)
	if err != nil {
		errs = append(errs, fmt.Errorf("%s.ca_file: %w", name, err))
	} else if !x509.NewCertPool().AppendCertsFromPEM(ca) {
		errs = append(errs, fmt.Errorf("%s.ca_file: %s holds no PEM certificate", name, t.CAFile))
	} else {
		t.caPEM = string(ca)
	}
	return errors.Join(errs...)
}

// CA returns the CA certificate (PEM) apps verify the servers with: the
// content of CAFile as Check read it, or as it reads now.
func (t *RedisTLS) CA() string {
	if t.caPEM == "" {
		if data, err := os.ReadFile(t.CAFile); err == nil {
			return string(data)
		}
	}
	return t.caPEM
}
