package agentapi

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/cf-redis/redis-for-cf/src/internal/jsonhttp"
)

// Client calls one agent. The zero value is not usable; call NewClient.
type Client struct {
	c *jsonhttp.Client
}

// ClientConfig says how to reach an agent.
type ClientConfig struct {
	// URL is the agent's base URL, http:// or https://.
	URL string `json:"url"`
	Credentials
	// CACert is the PEM CA that signed the agent's certificate; empty means the
	// system roots. Verification is never skipped.
	CACert string `json:"ca_cert,omitempty"`
	// Timeout bounds each request; zero means 30s, long enough for a
	// redis-server to load a large AOF on create.
	Timeout time.Duration `json:"-"`
}

// NewClient returns a client for the agent cfg describes.
func NewClient(cfg ClientConfig) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("agent url %q must be an absolute http or https URL", cfg.URL)
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	c, err := jsonhttp.New(jsonhttp.Config{
		Noun: "agent", Base: u, Username: cfg.Username, Password: cfg.Password, CACert: cfg.CACert,
		Timeout: timeout, Codes: codes, Unavailable: ErrUnavailable,
	})
	if err != nil {
		return nil, err
	}
	return &Client{c: c}, nil
}

// Capacity asks what the agent holds and can still take.
func (c *Client) Capacity(ctx context.Context) (Capacity, error) {
	var out Capacity
	return out, c.c.Do(ctx, http.MethodGet, "/v1/capacity", nil, &out)
}

// List returns every instance on the agent.
func (c *Client) List(ctx context.Context) ([]Instance, error) {
	var out []Instance
	return out, c.c.Do(ctx, http.MethodGet, "/v1/instances", nil, &out)
}

// Get returns one instance, or ErrNotFound.
func (c *Client) Get(ctx context.Context, id string) (Instance, error) {
	var out Instance
	return out, c.c.Do(ctx, http.MethodGet, "/v1/instances/"+url.PathEscape(id), nil, &out)
}

// Create makes an instance, or returns the existing one with the same limit.
func (c *Client) Create(ctx context.Context, id string, req InstanceRequest) (Instance, error) {
	var out Instance
	return out, c.c.Do(ctx, http.MethodPut, "/v1/instances/"+url.PathEscape(id), req, &out)
}

// Update replaces an instance's parameters on the running server.
func (c *Client) Update(ctx context.Context, id string, req UpdateRequest) (Instance, error) {
	var out Instance
	return out, c.c.Do(ctx, http.MethodPatch, "/v1/instances/"+url.PathEscape(id), req, &out)
}

// Resize gives an instance a new memory limit. A limit the VM's memory
// budget cannot hold is ErrFull; one below what the instance holds now,
// ErrConflict.
func (c *Client) Resize(ctx context.Context, id string, req ResizeRequest) (Instance, error) {
	var out Instance
	return out, c.c.Do(ctx, http.MethodPut, "/v1/instances/"+url.PathEscape(id)+"/maxmemory", req, &out)
}

// Delete removes an instance and its data; ErrNotFound when there is none.
func (c *Client) Delete(ctx context.Context, id string) error {
	return c.c.Do(ctx, http.MethodDelete, "/v1/instances/"+url.PathEscape(id), nil, nil)
}

// Bind creates a binding user with the given password.
func (c *Client) Bind(ctx context.Context, id, bindingID string, req BindingRequest) (Binding, error) {
	var out Binding
	return out, c.c.Do(ctx, http.MethodPut, bindingPath(id, bindingID), req, &out)
}

// Unbind deletes a binding user and closes its connections.
func (c *Client) Unbind(ctx context.Context, id, bindingID string) error {
	return c.c.Do(ctx, http.MethodDelete, bindingPath(id, bindingID), nil, nil)
}

// SetReplication makes an instance follow a leader, or lead when the
// request's Leader is nil.
func (c *Client) SetReplication(ctx context.Context, id string, req ReplicationRequest) (Instance, error) {
	var out Instance
	return out, c.c.Do(ctx, http.MethodPut, "/v1/instances/"+url.PathEscape(id)+"/replication", req, &out)
}

func bindingPath(id, bindingID string) string {
	return "/v1/instances/" + url.PathEscape(id) + "/bindings/" + url.PathEscape(bindingID)
}

// Host is the agent's host:port, for messages.
func (c *Client) Host() string { return c.c.Host() }
