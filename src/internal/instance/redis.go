package instance

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sys/unix"

	"github.com/cf-redis/redis-for-cf/src/internal/tlsca"
)

// Setup prepares an agent's start: it checks the TLS files (nil: no TLS),
// makes dirs, private to the agent's user (0700, existing ones too), and
// returns the absolute path of the redis-server binary named in the config
// (RedisServerPath). It sets the process's umask to 077, so every file the
// agent and the redis-servers it starts create (RDB and AOF files, their
// temporary files, logs) is private: redis-server creates its files with
// the umask it inherits.
func Setup(t *RedisTLS, redisServer string, dirs ...string) (string, error) {
	unix.Umask(0o077)
	if err := t.Check("redis_tls"); err != nil {
		return "", err
	}
	for _, dir := range dirs {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", err
		}
		// MkdirAll leaves an existing dir as it was: one an earlier
		// version (or BOSH) made 0755.
		if err := os.Chmod(dir, 0o700); err != nil {
			return "", err
		}
	}
	return RedisServerPath(redisServer)
}

// tighten takes group and other permissions off the files and dirs in dir
// and its appendonlydir, as an earlier version without a umask left them
// (0644): redis-server keeps appending to an AOF file it did not create.
func tighten(dir string) error {
	for _, d := range []string{dir, filepath.Join(dir, "appendonlydir")} {
		entries, err := os.ReadDir(d)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		for _, e := range entries {
			info, err := e.Info()
			if err != nil {
				continue // removed meanwhile
			}
			if mode := info.Mode().Perm(); mode&0o077 != 0 {
				if err := os.Chmod(filepath.Join(d, e.Name()), mode&^0o077); err != nil && !errors.Is(err, os.ErrNotExist) {
					return err
				}
			}
		}
	}
	return nil
}

// RedisServerPath returns the absolute path of the redis-server binary
// named in a config (a name is looked up on PATH): adoption compares it
// with /proc/PID/exe.
func RedisServerPath(name string) (string, error) {
	server, err := exec.LookPath(name)
	if err == nil {
		server, err = filepath.Abs(server)
	}
	if err != nil {
		return "", fmt.Errorf("redis_server: %w", err)
	}
	return server, nil
}

// RedisClient returns a client of the redis-server at addr with one
// connection and no retries, for an agent's own commands; with TLS when
// tlsConf is not nil.
func RedisClient(addr string, tlsConf *tls.Config, user, password string, timeout time.Duration) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:            addr,
		TLSConfig:       tlsConf,
		Username:        user,
		Password:        password,
		Protocol:        2,
		DisableIdentity: true,
		MaxRetries:      -1,
		// One dial attempt: readiness is polled every few milliseconds, and
		// go-redis would otherwise retry a refused dial 5 times, 100ms apart.
		DialerRetries: 1,
		PoolSize:      1,
		DialTimeout:   min(2*time.Second, timeout),
		ReadTimeout:   timeout,
		WriteTimeout:  timeout,
	})
}

// client is an admin connection to the server of r.
func (s *Server) client(r Record, timeout time.Duration) *redis.Client {
	return RedisClient(s.addr(r), s.clientTLS(r), AdminUser, r.AdminPassword, timeout)
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
	for _, f := range t.files() {
		if f.path == "" {
			errs = append(errs, fmt.Errorf("%s.%s is required when %s is set", name, f.field, name))
		}
	}
	return errors.Join(errs...)
}

func (t *RedisTLS) files() []struct{ field, path string } {
	return []struct{ field, path string }{{"cert_file", t.CertFile}, {"key_file", t.KeyFile}, {"ca_file", t.CAFile}}
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
	for _, f := range t.files() {
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
	} else if _, err := tlsca.Pool(string(ca)); err != nil {
		errs = append(errs, fmt.Errorf("%s.ca_file: %s %w", name, t.CAFile, err))
	} else {
		t.caPEM = string(ca)
	}
	return errors.Join(errs...)
}

// ClientConfig is the TLS config an agent dials its own servers' TLS ports
// with (TLS-only instances): the server's certificate must chain to the CA.
// Its names are not checked: the agent dials the servers' bind address,
// which the certificate need not name (0.0.0.0, say), and only the holder
// of a key the CA signed can answer.
func (t *RedisTLS) ClientConfig() (*tls.Config, error) {
	pool, err := tlsca.Pool(t.CA())
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Verified below, against the CA but without a name.
		InsecureSkipVerify: true, //nolint:gosec
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the server sent no certificate")
			}
			opts := x509.VerifyOptions{Roots: pool, Intermediates: x509.NewCertPool()}
			for _, c := range cs.PeerCertificates[1:] {
				opts.Intermediates.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(opts)
			return err
		},
	}, nil
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
