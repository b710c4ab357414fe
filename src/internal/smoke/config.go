package smoke

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/cf-redis/redis-for-cf/src/internal/tlsca"
)

// Config is the config file of smoke-tests.
type Config struct {
	// Broker is the OSB API under test.
	Broker Broker `json:"broker"`
	// Service is the id or name of the service offering to test; empty means
	// the catalog's only offering.
	Service string `json:"service,omitempty"`
	// Plans are the ids or names of the plans to test, in order; empty
	// means every plan of the offering, in catalog order.
	Plans []string `json:"plans,omitempty"`
	// TimeoutSeconds bounds the tests (cleanup aside); zero means 600.
	TimeoutSeconds int `json:"timeout_seconds,omitempty"`
	// CleanupTimeoutSeconds bounds the cleanup after a failure, during
	// which deletes that fail are retried; zero means 120.
	CleanupTimeoutSeconds int `json:"cleanup_timeout_seconds,omitempty"`
}

// Broker says how to reach the broker.
type Broker struct {
	// URL is the broker's base URL, http:// or https://.
	URL string `json:"url"`
	// Username and Password are its basic-auth credentials.
	Username string `json:"username"`
	Password string `json:"password"`
	// CACert is the PEM CA that signed the broker's certificate; empty
	// means the system roots. Verification is never skipped.
	CACert string `json:"ca_cert,omitempty"`
}

// Validate checks the config and fills in defaults, naming the field at
// fault.
func (c *Config) Validate() error {
	var errs []error
	if u, err := url.Parse(c.Broker.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("broker.url %q must be an absolute http or https URL", c.Broker.URL))
	}
	if c.Broker.Username == "" || c.Broker.Password == "" {
		errs = append(errs, errors.New("broker.username and broker.password are required"))
	}
	if c.Broker.CACert != "" {
		if _, err := tlsca.Pool(c.Broker.CACert); err != nil {
			errs = append(errs, fmt.Errorf("broker.ca_cert %w", err))
		}
	}
	seen := map[string]bool{}
	for i, p := range c.Plans {
		if p == "" {
			errs = append(errs, fmt.Errorf("plans[%d] is empty", i))
		}
		if seen[p] {
			errs = append(errs, fmt.Errorf("plans[%d] %q is listed twice", i, p))
		}
		seen[p] = true
	}
	if c.TimeoutSeconds < 0 {
		errs = append(errs, errors.New("timeout_seconds must not be negative"))
	}
	if c.TimeoutSeconds == 0 {
		c.TimeoutSeconds = 600
	}
	if c.CleanupTimeoutSeconds < 0 {
		errs = append(errs, errors.New("cleanup_timeout_seconds must not be negative"))
	}
	if c.CleanupTimeoutSeconds == 0 {
		c.CleanupTimeoutSeconds = 120
	}
	return errors.Join(errs...)
}

func (c *Config) timeout() time.Duration { return time.Duration(c.TimeoutSeconds) * time.Second }

func (c *Config) cleanupTimeout() time.Duration {
	return time.Duration(c.CleanupTimeoutSeconds) * time.Second
}
