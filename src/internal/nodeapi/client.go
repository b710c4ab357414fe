package nodeapi

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
	base  *url.URL
	creds Credentials
	http  *http.Client
}

// NewClient returns a client for the node cfg describes. It refuses a URL that
// is not https and a config without a CA.
func NewClient(cfg ClientConfig) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("node url %q must be an absolute https URL", cfg.URL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	if cfg.CACert == "" {
		return nil, errors.New("node ca_cert is required: the node's certificate is always verified")
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(cfg.CACert)) {
		return nil, errors.New("node ca_cert holds no PEM certificate")
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	return &Client{
		base:  u,
		creds: Credentials{Username: cfg.Username, Password: cfg.Password},
		http:  &http.Client{Transport: transport, Timeout: timeout},
	}, nil
}

// Status describes the node.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var out Status
	return out, c.do(ctx, http.MethodGet, "/v1/status", nil, &out)
}

// Claim hands a free node to an instance, or returns the node already
// claimed by the same instance with the same parameters. ErrBusy: another
// instance holds it; ErrDirty: it is quarantined; ErrConflict: the same
// instance holds it with other parameters.
func (c *Client) Claim(ctx context.Context, req ClaimRequest) (Status, error) {
	var out Status
	return out, c.do(ctx, http.MethodPut, "/v1/claim", req, &out)
}

// UpdateParameters applies new parameters to the running server and its
// redis.conf.
func (c *Client) UpdateParameters(ctx context.Context, req ParametersRequest) (Status, error) {
	var out Status
	return out, c.do(ctx, http.MethodPatch, "/v1/parameters", req, &out)
}

// Bind creates a binding user with the given password, or returns the
// identical one that exists.
func (c *Client) Bind(ctx context.Context, bindingID string, req BindingRequest) (Binding, error) {
	var out Binding
	return out, c.do(ctx, http.MethodPut, "/v1/bindings/"+url.PathEscape(bindingID), req, &out)
}

// Unbind deletes a binding user and closes its connections; ErrNotFound when
// there is no such user.
func (c *Client) Unbind(ctx context.Context, instanceID, bindingID string) error {
	path := "/v1/bindings/" + url.PathEscape(bindingID) + "?" + url.Values{"instance_id": {instanceID}}.Encode()
	return c.do(ctx, http.MethodDelete, path, nil, nil)
}

// Reset wipes the node's data and users and returns it to the pool once it
// verified empty. ErrDirty: the verification failed and the node is
// quarantined; ErrConflict: another instance holds the node.
func (c *Client) Reset(ctx context.Context, req ResetRequest) (Status, error) {
	var out Status
	return out, c.do(ctx, http.MethodPost, "/v1/reset", req, &out)
}

// SetReplication makes the node a follower of req.Leader, or a leader again
// when req.Leader is nil.
func (c *Client) SetReplication(ctx context.Context, req ReplicationRequest) (Status, error) {
	var out Status
	return out, c.do(ctx, http.MethodPut, "/v1/replication", req, &out)
}

// CloseIdleConnections closes the client's kept-alive connections, e.g. when
// the node leaves the broker's config. The client stays usable.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// Host is the agent's host:port, for messages.
func (c *Client) Host() string { return c.base.Host }

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
		return fmt.Errorf("%w: node %s: %v", ErrUnavailable, c.base.Host, unwrapURLError(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("%w: node %s: reading response: %v", ErrUnavailable, c.base.Host, err)
	}
	if resp.StatusCode >= 300 {
		var eb ErrorBody
		_ = json.Unmarshal(data, &eb)
		sentinel, ok := codes[eb.Error]
		if !ok {
			if resp.StatusCode == http.StatusUnauthorized {
				return fmt.Errorf("node %s rejected the broker's credentials (HTTP 401)", c.base.Host)
			}
			sentinel = ErrUnavailable
		}
		return fmt.Errorf("%w: node %s: %s", sentinel, c.base.Host, eb.Description)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("node %s sent an unreadable response: %w", c.base.Host, err)
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
