package agentapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client calls one agent. The zero value is not usable; call NewClient.
type Client struct {
	base  *url.URL
	creds Credentials
	http  *http.Client
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
	u.Path = strings.TrimSuffix(u.Path, "/")
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if cfg.CACert != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(cfg.CACert)) {
			return nil, errors.New("agent ca_cert holds no PEM certificate")
		}
		transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	return &Client{base: u, creds: cfg.Credentials, http: &http.Client{Transport: transport, Timeout: timeout}}, nil
}

// Capacity asks what the agent holds and can still take.
func (c *Client) Capacity(ctx context.Context) (Capacity, error) {
	var out Capacity
	return out, c.do(ctx, http.MethodGet, "/v1/capacity", nil, &out)
}

// List returns every instance on the agent.
func (c *Client) List(ctx context.Context) ([]Instance, error) {
	var out []Instance
	return out, c.do(ctx, http.MethodGet, "/v1/instances", nil, &out)
}

// Get returns one instance, or ErrNotFound.
func (c *Client) Get(ctx context.Context, id string) (Instance, error) {
	var out Instance
	return out, c.do(ctx, http.MethodGet, "/v1/instances/"+url.PathEscape(id), nil, &out)
}

// Create makes an instance, or returns the existing one with the same limit.
func (c *Client) Create(ctx context.Context, id string, req InstanceRequest) (Instance, error) {
	var out Instance
	return out, c.do(ctx, http.MethodPut, "/v1/instances/"+url.PathEscape(id), req, &out)
}

// Update replaces an instance's parameters on the running server.
func (c *Client) Update(ctx context.Context, id string, req UpdateRequest) (Instance, error) {
	var out Instance
	return out, c.do(ctx, http.MethodPatch, "/v1/instances/"+url.PathEscape(id), req, &out)
}

// Delete removes an instance and its data; ErrNotFound when there is none.
func (c *Client) Delete(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/instances/"+url.PathEscape(id), nil, nil)
}

// Bind creates a binding user with the given password.
func (c *Client) Bind(ctx context.Context, id, bindingID string, req BindingRequest) (Binding, error) {
	var out Binding
	return out, c.do(ctx, http.MethodPut, bindingPath(id, bindingID), req, &out)
}

// Unbind deletes a binding user and closes its connections.
func (c *Client) Unbind(ctx context.Context, id, bindingID string) error {
	return c.do(ctx, http.MethodDelete, bindingPath(id, bindingID), nil, nil)
}

// SetReplication makes an instance follow a leader, or lead when the
// request's Leader is nil.
func (c *Client) SetReplication(ctx context.Context, id string, req ReplicationRequest) (Instance, error) {
	var out Instance
	return out, c.do(ctx, http.MethodPut, "/v1/instances/"+url.PathEscape(id)+"/replication", req, &out)
}

func bindingPath(id, bindingID string) string {
	return "/v1/instances/" + url.PathEscape(id) + "/bindings/" + url.PathEscape(bindingID)
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base.String()+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.SetBasicAuth(c.creds.Username, c.creds.Password)
	resp, err := c.http.Do(req)
	if err != nil {
		// The error names the URL, never the credentials (they travel in a
		// header, not in the URL).
		return fmt.Errorf("%w: agent %s: %v", ErrUnavailable, c.base.Host, unwrapURLError(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("%w: agent %s: reading response: %v", ErrUnavailable, c.base.Host, err)
	}
	if resp.StatusCode >= 300 {
		var eb ErrorBody
		_ = json.Unmarshal(data, &eb)
		sentinel, ok := codes[eb.Error]
		if !ok {
			sentinel = ErrUnavailable
			if resp.StatusCode == http.StatusUnauthorized {
				return fmt.Errorf("agent %s rejected the broker's credentials (HTTP 401)", c.base.Host)
			}
		}
		return fmt.Errorf("%w: agent %s: %s", sentinel, c.base.Host, eb.Description)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("agent %s sent an unreadable response: %w", c.base.Host, err)
	}
	return nil
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Host is the agent's host:port, for messages.
func (c *Client) Host() string { return c.base.Host }
