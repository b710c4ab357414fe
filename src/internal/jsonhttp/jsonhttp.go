// Package jsonhttp is JSON over HTTP as the agents' API (agentapi) and the
// broker's admin endpoints speak it: error bodies whose codes stand for
// sentinel errors (Codes); the server side (basic auth, strict decoding,
// replies, streamed archives); and the client side, JSON requests with basic
// auth to one server over TLS verified against a CA when one is given, with
// error bodies turned back into the sentinels.
package jsonhttp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cf-redis/redis-for-cf/src/internal/tlsca"
)

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Error       string `json:"error"`
	Description string `json:"description"`
}

// Code is one error of an API: its sentinel, the "error" code of its
// ErrorBody and the HTTP status it is answered with.
type Code struct {
	Err    error
	Code   string
	Status int
}

// Codes are the errors of an API, in the order Classify tries them.
type Codes []Code

// Map maps each code to its sentinel, for Config.Codes.
func (cs Codes) Map() map[string]error {
	m := make(map[string]error, len(cs))
	for _, c := range cs {
		m[c.Code] = c.Err
	}
	return m
}

// Classify returns the code and status of the first sentinel that err is,
// or "internal" and 500.
func (cs Codes) Classify(err error) (string, int) {
	for _, c := range cs {
		if errors.Is(err, c.Err) {
			return c.Code, c.Status
		}
	}
	return "internal", http.StatusInternalServerError
}

// Config says how to reach a server and how to word its errors.
type Config struct {
	// Noun names the server in messages, as in "agent 10.0.0.5:9001".
	Noun string
	// Base is the server's base URL; a trailing slash of its path is dropped.
	Base *url.URL
	// Username and Password are the basic-auth credentials of every request.
	Username, Password string
	// CACert is the PEM CA that signed the server's certificate; empty means
	// the system roots. Verification is never skipped.
	CACert string
	// Timeout bounds each request but the streaming ones.
	Timeout time.Duration
	// Codes maps the "error" codes of error bodies to sentinel errors.
	Codes map[string]error
	// Unavailable is the sentinel of a server that cannot be reached or
	// answers an unknown code.
	Unavailable error
}

// Client calls one server. The zero value is not usable; call New. A Client
// is safe for concurrent use.
type Client struct {
	cfg  Config
	base *url.URL
	http *http.Client
}

// New returns a client for the server cfg describes. Its only error is a
// CACert that holds no PEM certificate.
func New(cfg Config) (*Client, error) {
	base := *cfg.Base
	base.Path = strings.TrimSuffix(base.Path, "/")
	transport := http.DefaultTransport.(*http.Transport).Clone()
	tlsCfg, err := tlsca.ClientConfig(cfg.CACert)
	if err != nil {
		return nil, fmt.Errorf("%s ca_cert %w", cfg.Noun, err)
	}
	transport.TLSClientConfig = tlsCfg
	return &Client{cfg: cfg, base: &base, http: &http.Client{Transport: transport, Timeout: cfg.Timeout}}, nil
}

// Host is the server's host:port, for messages.
func (c *Client) Host() string { return c.base.Host }

// CloseIdleConnections closes the client's kept-alive connections. The
// client stays usable.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// who names the server in messages.
func (c *Client) who() string { return c.cfg.Noun + " " + c.base.Host }

// Do sends in (when not nil) as JSON to path below the base URL and decodes
// a 2xx answer into out (when not nil). An error answer comes back as the
// sentinel of its code, or Unavailable.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(data)
	}
	req, err := c.newRequest(ctx, method, path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return c.unreachable(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("%w: %s: reading response: %v", c.cfg.Unavailable, c.who(), err)
	}
	if resp.StatusCode >= 300 {
		return c.errorOf(resp.StatusCode, data)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s sent an unreadable response: %w", c.who(), err)
	}
	return nil
}

// Stream sends body (application/gzip, when not nil) to path below the base
// URL without the client's overall timeout (ctx bounds it) and returns a 200
// response, whose body the caller closes, or the server's error.
func (c *Client) Stream(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	req, err := c.newRequest(ctx, method, path, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/gzip")
	}
	resp, err := (&http.Client{Transport: c.http.Transport}).Do(req)
	if err != nil {
		return nil, c.unreachable(err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return nil, c.errorOf(resp.StatusCode, data)
	}
	return resp, nil
}

// StreamJSON is Stream that decodes the JSON answer into out; what names
// the answer in the error of one it cannot read.
func (c *Client) StreamJSON(ctx context.Context, method, path string, body io.Reader, out any, what string) error {
	resp, err := c.Stream(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(out); err != nil {
		return fmt.Errorf("%s sent an unreadable %s: %w", c.who(), what, err)
	}
	return nil
}

func (c *Client) newRequest(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base.String()+path, body)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(c.cfg.Username, c.cfg.Password)
	return req, nil
}

// unreachable words an error of the transport. It names the URL, never the
// credentials (they travel in a header, not in the URL).
func (c *Client) unreachable(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("%w: %s: %v", c.cfg.Unavailable, c.who(), err)
}

// errorOf turns an error response's status and body into the sentinel of
// its code, or Unavailable for a code it does not know.
func (c *Client) errorOf(status int, body []byte) error {
	var eb ErrorBody
	_ = json.Unmarshal(body, &eb)
	sentinel, ok := c.cfg.Codes[eb.Error]
	if !ok {
		if status == http.StatusUnauthorized {
			return fmt.Errorf("%s rejected the credentials it was given (HTTP 401)", c.who())
		}
		sentinel = c.cfg.Unavailable
	}
	// The description starts with the code's own words; once is enough.
	return fmt.Errorf("%w: %s: %s", sentinel, c.who(), strings.TrimPrefix(eb.Description, sentinel.Error()+": "))
}
