// Package ccapi is a client of Cloud Foundry's Cloud Controller v3 API and
// of the UAA that issues its tokens: the few calls that register a service
// broker, open its plans to orgs, and remove it with its instances.
//
// Cloud Controller does the slow work (reading a broker's catalog, deleting
// a broker) in asynchronous jobs; the calls here that start one wait for it
// and return its outcome, so a caller sees Cloud Controller's own error text
// when a job fails.
//
// Why not github.com/cloudfoundry/go-cfclient/v3 (v3.0.0-alpha.20, tried
// against ccapitest in 2026-12): it lists brokers, creates them and polls
// their jobs, with both UAA grants, but it cannot purge a service instance
// (ServiceInstances.Delete sends no purge=true, and neither does
// ServiceOfferings.Delete), which the deregistrar's purge needs; its
// PollComplete drops the warnings of a job that completed, which the
// errands print; config.New calls Cloud Controller and UAA when it is
// built, with context.Background(), so a cancelled errand cannot stop it;
// UAA's refusal comes back as oauth2's text, without our ErrBadCredentials
// or ErrUnreachable; and it brings five more modules (martini among them).
package ccapi

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
	"sync"
	"time"

	"github.com/cf-redis/redis-for-cf/src/internal/tlsca"
)

// Client calls one Cloud Controller. The zero value is not usable; call New.
type Client struct {
	cfg  Config
	base *url.URL
	http *http.Client

	mu       sync.Mutex
	tokenURL string // UAA's token endpoint, found on first use
	token    string
	expiry   time.Time
}

// New returns a client for the Cloud Controller cfg describes; cfg must have
// passed Validate. It makes no request yet.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("cloud controller url %q is not an absolute URL", cfg.URL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if transport.TLSClientConfig, err = tlsca.SystemClientConfig(cfg.CACert); err != nil {
		return nil, fmt.Errorf("cloud controller ca_cert %w", err)
	}
	// The operator's choice, made where the config says so; Info's caller
	// is told (see SkipsVerification).
	transport.TLSClientConfig.InsecureSkipVerify = cfg.SkipSSLValidation
	return &Client{cfg: cfg, base: u, http: &http.Client{
		Transport: transport,
		Timeout:   60 * time.Second,
		// A redirect could carry the token to another host.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}, nil
}

// SkipsVerification reports whether the client accepts any certificate
// (Config.SkipSSLValidation).
func (c *Client) SkipsVerification() bool { return c.cfg.SkipSSLValidation }

// URL is Cloud Controller's API URL.
func (c *Client) URL() string { return c.base.String() }

// Error is Cloud Controller's answer to a request it refused, with the
// errors of its body.
type Error struct {
	Method, Path string
	Status       int
	Errors       []APIError
}

// APIError is one entry of the "errors" list of Cloud Controller's error
// answers and failed jobs.
type APIError struct {
	Code   int    `json:"code"`
	Title  string `json:"title"`
	Detail string `json:"detail"`
}

func (e APIError) String() string {
	switch {
	case e.Title == "":
		return e.Detail
	case e.Detail == "":
		return e.Title
	}
	return e.Title + ": " + e.Detail
}

func joinErrors(errs []APIError) string {
	var parts []string
	for _, e := range errs {
		parts = append(parts, e.String())
	}
	return strings.Join(parts, "; ")
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("Cloud Controller answered %s %s with %d %s", e.Method, e.Path, e.Status, http.StatusText(e.Status))
	if len(e.Errors) > 0 {
		msg += ": " + joinErrors(e.Errors)
	}
	return msg
}

// NotFound reports whether Cloud Controller answered 404.
func (e *Error) NotFound() bool { return e.Status == http.StatusNotFound }

// JobFailedError is a Cloud Controller job that ended FAILED.
type JobFailedError struct {
	GUID, Operation string
	Errors          []APIError
}

func (e *JobFailedError) Error() string {
	msg := fmt.Sprintf("Cloud Controller job %s (%s) failed", e.GUID, e.Operation)
	if len(e.Errors) > 0 {
		msg += ": " + joinErrors(e.Errors)
	}
	return msg
}

// ErrUnreachable wraps every failure to reach Cloud Controller or UAA at
// all (refused connections, DNS, TLS, timeouts).
var ErrUnreachable = errors.New("unreachable")

// do sends a request to Cloud Controller with a token and decodes a JSON
// answer into out (when not nil). target is a path under the API URL, or
// an absolute URL on Cloud Controller's host (pagination and job links). It
// returns the answer's Location header.
func (c *Client) do(ctx context.Context, method, target string, body, out any) (string, error) {
	location, err := c.send(ctx, method, target, body, out)
	var e *Error
	if errors.As(err, &e) && e.Status == http.StatusUnauthorized {
		// The token expired or was revoked early: one more try with a new
		// one (send dropped the old).
		location, err = c.send(ctx, method, target, body, out)
	}
	return location, err
}

func (c *Client) send(ctx context.Context, method, target string, body, out any) (string, error) {
	u, err := c.resolve(target)
	if err != nil {
		return "", err
	}
	token, err := c.bearer(ctx)
	if err != nil {
		return "", err
	}
	var reader io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return "", err
		}
		reader = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), reader)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "bearer "+token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("%w: cannot reach Cloud Controller at %s: %w", ErrUnreachable, c.base, unwrapURLError(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return "", fmt.Errorf("%w: reading Cloud Controller's answer to %s %s: %w", ErrUnreachable, method, u.Path, err)
	}
	if resp.StatusCode >= 300 {
		if resp.StatusCode == http.StatusUnauthorized {
			// A token UAA gave but Cloud Controller refuses: ask for a new
			// one next time.
			c.mu.Lock()
			c.token = ""
			c.mu.Unlock()
		}
		e := &Error{Method: method, Path: u.Path, Status: resp.StatusCode}
		var doc struct {
			Errors []APIError `json:"errors"`
		}
		if json.Unmarshal(data, &doc) == nil {
			e.Errors = doc.Errors
		}
		return "", e
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return "", fmt.Errorf("decoding Cloud Controller's answer to %s %s: %w", method, u.Path, err)
		}
	}
	return resp.Header.Get("Location"), nil
}

// resolve turns a path or a link of Cloud Controller's into a URL, refusing
// links to other hosts: they would get the token.
func (c *Client) resolve(target string) (*url.URL, error) {
	if strings.HasPrefix(target, "/") {
		ref, err := url.Parse(target)
		if err != nil {
			return nil, err
		}
		u := *c.base
		u.Path = c.base.Path + ref.Path
		u.RawQuery = ref.RawQuery
		return &u, nil
	}
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("Cloud Controller link %q: %w", target, err)
	}
	if u.Scheme != c.base.Scheme || u.Host != c.base.Host {
		return nil, fmt.Errorf("Cloud Controller link %q leads away from %s", target, c.base.Host)
	}
	return u, nil
}

// unwrapURLError drops url.Error's "Get \"URL\":" prefix: the caller says
// which server it was.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// page is one page of a Cloud Controller list.
type page[T any] struct {
	Pagination struct {
		Next *struct {
			Href string `json:"href"`
		} `json:"next"`
	} `json:"pagination"`
	Resources []T `json:"resources"`
}

// list reads every page of a list, following the "next" links.
func list[T any](ctx context.Context, c *Client, path string) ([]T, error) {
	var all []T
	target := path
	for pages := 0; target != ""; pages++ {
		if pages == 1000 {
			return nil, fmt.Errorf("Cloud Controller list %s has more than 1000 pages", path)
		}
		var p page[T]
		if _, err := c.do(ctx, http.MethodGet, target, nil, &p); err != nil {
			return nil, err
		}
		all = append(all, p.Resources...)
		target = ""
		if p.Pagination.Next != nil {
			target = p.Pagination.Next.Href
		}
	}
	return all, nil
}

// query builds "?k=v&..." with each value list joined by commas, as Cloud
// Controller's filters take them.
func query(kv ...any) string {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		switch v := kv[i+1].(type) {
		case []string:
			q.Set(kv[i].(string), strings.Join(v, ","))
		default:
			q.Set(kv[i].(string), fmt.Sprint(v))
		}
	}
	return "?" + q.Encode()
}
