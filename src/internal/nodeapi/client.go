package nodeapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/cf-redis/redis-for-cf/src/internal/jsonhttp"
)

// DefaultTimeout is the Timeout of a ClientConfig that sets none: long enough
// for a reset, which stops redis-server, deletes its files and starts it again.
const DefaultTimeout = 60 * time.Second

// ClientConfig says how to reach a node agent.
type ClientConfig struct {
	// URL is the agent's base URL; it must be https://.
	URL string `json:"url"`
	// Username and Password are the basic-auth credentials of the agent.
	Username string `json:"username"`
	Password string `json:"password"`
	// CACert is the PEM CA that signed the agent's certificate; it is
	// required, and verification is never skipped.
	CACert string `json:"ca_cert"`
	// Timeout bounds each request; zero means DefaultTimeout.
	Timeout time.Duration `json:"-"`
}

// Client calls one node agent. The zero value is not usable; call NewClient.
// A Client is safe for concurrent use.
type Client struct {
	c *jsonhttp.Client
}

// NewClient returns a client for the node cfg describes. It refuses a URL that
// is not https and a config without a CA.
func NewClient(cfg ClientConfig) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("node url %q must be an absolute https URL", cfg.URL)
	}
	if cfg.CACert == "" {
		return nil, errors.New("node ca_cert is required: the node's certificate is always verified")
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	c, err := jsonhttp.New(jsonhttp.Config{
		Noun: "node", Base: u, Username: cfg.Username, Password: cfg.Password, CACert: cfg.CACert,
		Timeout: timeout, Codes: codes, Unavailable: ErrUnavailable,
	})
	if err != nil {
		return nil, err
	}
	return &Client{c: c}, nil
}

// Status describes the node.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var out Status
	return out, c.c.Do(ctx, http.MethodGet, "/v1/status", nil, &out)
}

// Claim hands a free node to an instance, or returns the node already
// claimed by the same instance with the same parameters. ErrBusy: another
// instance holds it; ErrDirty: it is quarantined; ErrConflict: the same
// instance holds it with other parameters.
func (c *Client) Claim(ctx context.Context, req ClaimRequest) (Status, error) {
	var out Status
	return out, c.c.Do(ctx, http.MethodPut, "/v1/claim", req, &out)
}

// UpdateParameters applies new parameters to the running server and its
// redis.conf.
func (c *Client) UpdateParameters(ctx context.Context, req ParametersRequest) (Status, error) {
	var out Status
	return out, c.c.Do(ctx, http.MethodPatch, "/v1/parameters", req, &out)
}

// Bind creates a binding user with the given password, or returns the
// identical one that exists.
func (c *Client) Bind(ctx context.Context, bindingID string, req BindingRequest) (Binding, error) {
	var out Binding
	return out, c.c.Do(ctx, http.MethodPut, "/v1/bindings/"+url.PathEscape(bindingID), req, &out)
}

// Unbind deletes a binding user and closes its connections; ErrNotFound when
// there is no such user.
func (c *Client) Unbind(ctx context.Context, instanceID, bindingID string) error {
	path := "/v1/bindings/" + url.PathEscape(bindingID) + "?" + url.Values{"instance_id": {instanceID}}.Encode()
	return c.c.Do(ctx, http.MethodDelete, path, nil, nil)
}

// Reset wipes the node's data and users and returns it to the pool once it
// verified empty. ErrDirty: the verification failed and the node is
// quarantined; ErrConflict: another instance holds the node.
func (c *Client) Reset(ctx context.Context, req ResetRequest) (Status, error) {
	var out Status
	return out, c.c.Do(ctx, http.MethodPost, "/v1/reset", req, &out)
}

// SetReplication makes the node a follower of req.Leader, or a leader again
// when req.Leader is nil.
func (c *Client) SetReplication(ctx context.Context, req ReplicationRequest) (Status, error) {
	var out Status
	return out, c.c.Do(ctx, http.MethodPut, "/v1/replication", req, &out)
}

// CloseIdleConnections closes the client's kept-alive connections, e.g. when
// the node leaves the broker's config. The client stays usable.
func (c *Client) CloseIdleConnections() { c.c.CloseIdleConnections() }

// Host is the agent's host:port, for messages.
func (c *Client) Host() string { return c.c.Host() }
