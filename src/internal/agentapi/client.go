package agentapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/cf-redis/redis-for-cf/src/internal/jsonhttp"
)

// DefaultTimeout is the Timeout of a ClientConfig that sets none: long
// enough for a redis-server to load a large AOF on create, or for a node's
// reset (stop redis-server, delete its files, start it again).
const DefaultTimeout = 60 * time.Second

// ClientConfig says how to reach an agent.
type ClientConfig struct {
	// URL is the agent's base URL, http:// or https://.
	URL string `json:"url"`
	Credentials
	// CACert is the PEM CA that signed the agent's certificate; empty means
	// the system roots. Verification is never skipped.
	CACert string `json:"ca_cert,omitempty"`
	// Timeout bounds each request but the streaming ones; zero means
	// DefaultTimeout.
	Timeout time.Duration `json:"-"`
	// Noun names the agent in messages ("agent", "node"); empty means
	// "agent".
	Noun string `json:"-"`
}

// Client calls one agent. The zero value is not usable; call NewClient. A
// Client is safe for concurrent use.
type Client struct {
	c *jsonhttp.Client
}

// NewClient returns a client for the agent cfg describes.
func NewClient(cfg ClientConfig) (*Client, error) {
	noun := cfg.Noun
	if noun == "" {
		noun = "agent"
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%s url %q must be an absolute http or https URL", noun, cfg.URL)
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	c, err := jsonhttp.New(jsonhttp.Config{
		Noun: noun, Base: u, Username: cfg.Username, Password: cfg.Password, CACert: cfg.CACert,
		Timeout: timeout, Codes: errorCodes.Map(), Unavailable: ErrUnavailable,
	})
	if err != nil {
		return nil, err
	}
	return &Client{c: c}, nil
}

// NewNodeClient returns a client for a dedicated node's agent, whose API is
// HTTPS only: a URL that is not https and a config without a CA are
// refused. Messages name it a "node".
func NewNodeClient(cfg ClientConfig) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("node url %q must be an absolute https URL", cfg.URL)
	}
	if cfg.CACert == "" {
		return nil, errors.New("node ca_cert is required: the node's certificate is always verified")
	}
	cfg.Noun = "node"
	return NewClient(cfg)
}

// Capacity asks what the agent holds and can still take.
func (c *Client) Capacity(ctx context.Context) (Capacity, error) {
	var out Capacity
	return out, c.c.Do(ctx, http.MethodGet, "/v1/capacity", nil, &out)
}

// Node asks a dedicated node for its place in the pool.
func (c *Client) Node(ctx context.Context) (Node, error) {
	var out Node
	return out, c.c.Do(ctx, http.MethodGet, "/v1/node", nil, &out)
}

// List returns every instance on the agent.
func (c *Client) List(ctx context.Context) ([]Instance, error) {
	var out []Instance
	return out, c.c.Do(ctx, http.MethodGet, "/v1/instances", nil, &out)
}

// Get returns one instance with what its running server reports, or
// ErrNotFound.
func (c *Client) Get(ctx context.Context, id string) (Instance, error) {
	var out Instance
	return out, c.c.Do(ctx, http.MethodGet, instancePath(id), nil, &out)
}

// Create makes an instance (on a node: claims the node), or returns the
// existing one made by the same request. ErrFull: no room; ErrBusy: the
// node holds another instance; ErrDirty: the node is quarantined;
// ErrConflict: the instance exists with other settings.
func (c *Client) Create(ctx context.Context, id string, req InstanceRequest) (Instance, error) {
	var out Instance
	return out, c.c.Do(ctx, http.MethodPut, instancePath(id), req, &out)
}

// Update replaces an instance's parameters on the running server.
func (c *Client) Update(ctx context.Context, id string, req UpdateRequest) (Instance, error) {
	var out Instance
	return out, c.c.Do(ctx, http.MethodPatch, instancePath(id), req, &out)
}

// Resize gives an instance a new memory limit. A limit the VM's memory
// budget cannot hold is ErrFull; one below what the instance holds now,
// ErrConflict.
func (c *Client) Resize(ctx context.Context, id string, req ResizeRequest) (Instance, error) {
	var out Instance
	return out, c.c.Do(ctx, http.MethodPut, instancePath(id)+"/maxmemory", req, &out)
}

// Delete removes an instance and its data; on a node, resets it and
// verifies it empty (ErrDirty when it does not verify: the node is
// quarantined). ErrNotFound when there is no such instance.
func (c *Client) Delete(ctx context.Context, id string) error {
	return c.c.Do(ctx, http.MethodDelete, instancePath(id), nil, nil)
}

// Bind creates a binding user with the given password, or returns the
// identical one that exists.
func (c *Client) Bind(ctx context.Context, id, bindingID string, req BindingRequest) (Binding, error) {
	var out Binding
	return out, c.c.Do(ctx, http.MethodPut, bindingPath(id, bindingID), req, &out)
}

// Unbind deletes a binding user and closes its connections; ErrNotFound
// when there is no such user.
func (c *Client) Unbind(ctx context.Context, id, bindingID string) error {
	return c.c.Do(ctx, http.MethodDelete, bindingPath(id, bindingID), nil, nil)
}

// SetReplication makes an instance follow a leader, or lead when the
// request's Leader is nil.
func (c *Client) SetReplication(ctx context.Context, id string, req ReplicationRequest) (Instance, error) {
	var out Instance
	return out, c.c.Do(ctx, http.MethodPut, instancePath(id)+"/replication", req, &out)
}

// JoinHA makes a node's instance a member of an HA group (PUT
// /v1/instances/{id}/ha). ErrInvalid: the node runs no Sentinel or is not
// a member of the group; ErrConflict: it is in another group.
func (c *Client) JoinHA(ctx context.Context, id string, req HARequest) (Instance, error) {
	var out Instance
	return out, c.c.Do(ctx, http.MethodPut, instancePath(id)+"/ha", req, &out)
}

// CloseIdleConnections closes the client's kept-alive connections, e.g. when
// the agent leaves the broker's config. The client stays usable.
func (c *Client) CloseIdleConnections() { c.c.CloseIdleConnections() }

// Host is the agent's host:port, for messages.
func (c *Client) Host() string { return c.c.Host() }

func instancePath(id string) string { return "/v1/instances/" + url.PathEscape(id) }

func bindingPath(id, bindingID string) string {
	return instancePath(id) + "/bindings/" + url.PathEscape(bindingID)
}
