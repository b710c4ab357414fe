package ccapi

import (
	"errors"
	"fmt"
	"net/url"

	"github.com/cf-redis/redis-for-cf/src/internal/tlsca"
)

// Config says where Cloud Controller is and who calls it. The UAA that
// issues its tokens is found from Cloud Controller's root document.
type Config struct {
	// URL is Cloud Controller's API URL, e.g. https://api.sys.example.com.
	URL string `json:"url"`
	// CACert is PEM CA certificates (Ops Manager's, an operator's) that
	// may have signed Cloud Controller's and UAA's certificates. They are
	// trusted beside the system's roots (the VM's trust store, where BOSH
	// puts the director's trusted certificates); empty means those roots
	// alone.
	CACert string `json:"ca_cert,omitempty"`
	// SkipSSLValidation, when true, accepts any certificate from Cloud
	// Controller and UAA, as cf api --skip-ssl-validation does: for
	// foundations whose certificates nothing here can verify (Ops
	// Manager's "Disable SSL certificate verification"). The zero value
	// verifies them.
	SkipSSLValidation bool `json:"skip_ssl_validation,omitempty"`
	// ClientID and ClientSecret are a UAA client's. Without Username they are
	// used in a client-credentials grant, and both are required. With
	// Username they are the client of a password grant; an empty ClientID
	// then means "cf", the cf CLI's client, whose secret is empty.
	ClientID     string `json:"client_id,omitempty"`
	ClientSecret string `json:"client_secret,omitempty"`
	// Username and Password, when Username is set, are a UAA user's, used in
	// a password grant.
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
}

// Validate checks the config and fills in defaults, naming the field at
// fault under prefix (e.g. "cloud_controller").
func (c *Config) Validate(prefix string) error {
	var errs []error
	u, err := url.Parse(c.URL)
	if c.URL == "" {
		errs = append(errs, fmt.Errorf("%s.url is required", prefix))
	} else if err != nil || u.Scheme != "https" || u.Host == "" {
		// Tokens and the broker's credentials travel on it: https only.
		errs = append(errs, fmt.Errorf("%s.url %q must be an absolute https URL", prefix, c.URL))
	}
	if c.CACert != "" {
		if _, err := tlsca.Pool(c.CACert); err != nil {
			errs = append(errs, fmt.Errorf("%s.ca_cert %w", prefix, err))
		}
	}
	switch {
	case c.Username != "":
		if c.Password == "" {
			errs = append(errs, fmt.Errorf("%s.password is required with %s.username", prefix, prefix))
		}
		if c.ClientID == "" {
			c.ClientID = "cf"
		}
	case c.Password != "":
		errs = append(errs, fmt.Errorf("%s.username is required with %s.password", prefix, prefix))
	case c.ClientID == "" || c.ClientSecret == "":
		errs = append(errs, fmt.Errorf("%s: client_id and client_secret (a UAA client), or username and password (a UAA user), are required", prefix))
	}
	return errors.Join(errs...)
}

// grant names the OAuth grant the config makes UAA tokens with.
func (c *Config) grant() string {
	if c.Username != "" {
		return "password"
	}
	return "client_credentials"
}

// who says whose credentials a token is asked with, for messages.
func (c *Config) who() string {
	if c.Username != "" {
		return fmt.Sprintf("user %q (client %q)", c.Username, c.ClientID)
	}
	return fmt.Sprintf("client %q", c.ClientID)
}
