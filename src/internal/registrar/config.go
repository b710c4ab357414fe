package registrar

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"time"

	"github.com/cf-redis/redis-for-cf/src/internal/ccapi"
)

// Service access modes of Config.ServiceAccess.
const (
	// AccessPublic lets every org create instances of every plan.
	AccessPublic = "public"
	// AccessOrgs lets the orgs of Config.Orgs create instances.
	AccessOrgs = "orgs"
	// AccessNone leaves plan visibility as it is (new plans are seen by
	// admins only), for operators who manage it with cf enable-service-access.
	AccessNone = "none"
)

// Config is the config file of broker-registrar.
type Config struct {
	// CloudController is where the broker is registered, and who does it.
	CloudController ccapi.Config `json:"cloud_controller"`
	// Broker is the broker as Cloud Controller will call it.
	Broker Broker `json:"broker"`
	// ServiceAccess is "public", "orgs" or "none" (see the Access
	// constants); it is required.
	ServiceAccess string `json:"service_access"`
	// Orgs are the org names of the "orgs" access; every one must exist.
	Orgs []string `json:"orgs,omitempty"`
	// TimeoutSeconds bounds the whole registration; zero means 600.
	TimeoutSeconds int `json:"timeout_seconds,omitempty"`
}

// Broker is a service broker's registration.
type Broker struct {
	// Name is the broker's name in Cloud Controller (cf service-brokers).
	Name string `json:"name"`
	// URL is where Cloud Controller calls the broker.
	URL string `json:"url"`
	// Username and Password are the basic-auth credentials of the broker's
	// OSB API.
	Username string `json:"username"`
	Password string `json:"password"`
}

// brokerName is what Cloud Controller accepts as a broker name here: no
// commas, which its name filters use as separators.
var brokerName = regexp.MustCompile(`^[^,\s][^,]{0,254}$`)

// Validate checks the config and fills in defaults, naming the field at
// fault.
func (c *Config) Validate() error {
	errs := []error{c.CloudController.Validate("cloud_controller")}
	if !brokerName.MatchString(c.Broker.Name) {
		errs = append(errs, errors.New("broker.name is required, and may hold no commas"))
	}
	if u, err := url.Parse(c.Broker.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("broker.url %q must be an absolute http or https URL", c.Broker.URL))
	}
	if c.Broker.Username == "" || c.Broker.Password == "" {
		errs = append(errs, errors.New("broker.username and broker.password are required"))
	}
	switch c.ServiceAccess {
	case AccessPublic, AccessNone:
		if len(c.Orgs) > 0 {
			errs = append(errs, fmt.Errorf("orgs are given only with service_access %q, not %q", AccessOrgs, c.ServiceAccess))
		}
	case AccessOrgs:
		if len(c.Orgs) == 0 {
			errs = append(errs, fmt.Errorf("orgs must name at least one org with service_access %q", AccessOrgs))
		}
		for i, o := range c.Orgs {
			if o == "" || !brokerName.MatchString(o) {
				errs = append(errs, fmt.Errorf("orgs[%d] %q is not an org name", i, o))
			}
		}
	default:
		errs = append(errs, fmt.Errorf("service_access must be %q, %q or %q, not %q", AccessPublic, AccessOrgs, AccessNone, c.ServiceAccess))
	}
	errs = append(errs, validateTimeout(&c.TimeoutSeconds))
	return errors.Join(errs...)
}

// DeregisterConfig is the config file of broker-deregistrar.
type DeregisterConfig struct {
	// CloudController is where the broker is removed, and who does it.
	CloudController ccapi.Config `json:"cloud_controller"`
	// BrokerName is the broker's name in Cloud Controller.
	BrokerName string `json:"broker_name"`
	// Purge, when true, purges the broker's service offerings, with their
	// instances, from Cloud Controller's records (cf purge-service-offering:
	// without asking the broker) so the broker can go; false (the zero
	// value, for a hand-written config) refuses while any instance exists.
	// The job's purge property defaults to true, as Redis for PCF purged.
	Purge bool `json:"purge,omitempty"`
	// TimeoutSeconds bounds the whole deregistration; zero means 600.
	TimeoutSeconds int `json:"timeout_seconds,omitempty"`
}

// Validate checks the config and fills in defaults, naming the field at
// fault.
func (c *DeregisterConfig) Validate() error {
	errs := []error{c.CloudController.Validate("cloud_controller")}
	if !brokerName.MatchString(c.BrokerName) {
		errs = append(errs, errors.New("broker_name is required, and may hold no commas"))
	}
	errs = append(errs, validateTimeout(&c.TimeoutSeconds))
	return errors.Join(errs...)
}

func validateTimeout(seconds *int) error {
	if *seconds < 0 {
		return errors.New("timeout_seconds must not be negative")
	}
	if *seconds == 0 {
		*seconds = 600
	}
	return nil
}

// Timeout is the config's time limit.
func (c *Config) Timeout() time.Duration { return time.Duration(c.TimeoutSeconds) * time.Second }

// Timeout is the config's time limit.
func (c *DeregisterConfig) Timeout() time.Duration {
	return time.Duration(c.TimeoutSeconds) * time.Second
}
