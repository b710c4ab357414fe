package ccapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ErrBadCredentials means UAA refused the configured client or user.
var ErrBadCredentials = errors.New("bad credentials")

// Info is what Cloud Controller's root document says about it.
type Info struct {
	// UAA is the URL of the UAA that issues Cloud Controller's tokens.
	UAA string
}

// Info reads Cloud Controller's root document (GET /), which needs no
// token.
func (c *Client) Info(ctx context.Context) (Info, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base.String()+"/", nil)
	if err != nil {
		return Info{}, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return Info{}, fmt.Errorf("%w: cannot reach Cloud Controller at %s: %w", ErrUnreachable, c.base, unwrapURLError(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Info{}, fmt.Errorf("%w: reading Cloud Controller's root document: %w", ErrUnreachable, err)
	}
	if resp.StatusCode != http.StatusOK {
		return Info{}, fmt.Errorf("Cloud Controller at %s answered GET / with %d %s: is it Cloud Controller's API URL?", c.base, resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	type link struct {
		Href string `json:"href"`
	}
	var root struct {
		Links struct {
			UAA   *link `json:"uaa"`
			Login *link `json:"login"`
		} `json:"links"`
	}
	if err := json.Unmarshal(data, &root); err != nil {
		return Info{}, fmt.Errorf("Cloud Controller at %s: its root document is not JSON: is it Cloud Controller's API URL?", c.base)
	}
	// links.uaa is where tokens come from; an older deployment may give only
	// links.login, which serves the same token endpoint.
	for _, l := range []*link{root.Links.UAA, root.Links.Login} {
		if l != nil && l.Href != "" {
			return Info{UAA: strings.TrimSuffix(l.Href, "/")}, nil
		}
	}
	return Info{}, fmt.Errorf("Cloud Controller at %s names no UAA in its root document (links.uaa, links.login)", c.base)
}

// Authenticate gets a token from UAA now, so bad credentials show before
// anything is asked of Cloud Controller. It returns whose credentials they
// were, for messages.
func (c *Client) Authenticate(ctx context.Context) (string, error) {
	if _, err := c.bearer(ctx); err != nil {
		return "", err
	}
	return c.cfg.who(), nil
}

// bearer returns a token, asking UAA for one when there is none or it is
// about to expire.
func (c *Client) bearer(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token != "" && time.Now().Before(c.expiry) {
		return c.token, nil
	}
	if c.tokenURL == "" {
		info, err := c.Info(ctx)
		if err != nil {
			return "", err
		}
		u, err := url.Parse(info.UAA)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return "", fmt.Errorf("Cloud Controller names UAA at %q, which is not an https URL", info.UAA)
		}
		c.tokenURL = info.UAA + "/oauth/token"
	}
	token, ttl, err := c.fetchToken(ctx)
	if err != nil {
		return "", err
	}
	c.token = token
	// Renewed a minute early (or halfway, for short-lived tokens), so a
	// request never goes out with a token that expires on the way.
	c.expiry = time.Now().Add(ttl - min(time.Minute, ttl/2))
	return token, nil
}

// fetchToken asks UAA for a token with the configured grant.
func (c *Client) fetchToken(ctx context.Context) (string, time.Duration, error) {
	form := url.Values{"grant_type": {c.cfg.grant()}, "response_type": {"token"}}
	if c.cfg.Username != "" {
		form.Set("username", c.cfg.Username)
		form.Set("password", c.cfg.Password)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(url.QueryEscape(c.cfg.ClientID), url.QueryEscape(c.cfg.ClientSecret))
	resp, err := c.http.Do(req)
	if err != nil {
		return "", 0, fmt.Errorf("%w: cannot reach UAA at %s: %w", ErrUnreachable, c.tokenURL, unwrapURLError(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", 0, fmt.Errorf("%w: reading UAA's answer: %w", ErrUnreachable, err)
	}
	var doc struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int    `json:"expires_in"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	_ = json.Unmarshal(data, &doc)
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden ||
		(resp.StatusCode == http.StatusBadRequest && (doc.Error == "invalid_grant" || doc.Error == "invalid_client" || doc.Error == "unauthorized_client")):
		return "", 0, fmt.Errorf("%w: UAA at %s refused the credentials of %s: %s", ErrBadCredentials, c.tokenURL, c.cfg.who(), uaaReason(resp.StatusCode, doc.Error, doc.Description))
	case resp.StatusCode != http.StatusOK:
		return "", 0, fmt.Errorf("UAA at %s answered a token request for %s with %s", c.tokenURL, c.cfg.who(), uaaReason(resp.StatusCode, doc.Error, doc.Description))
	case doc.AccessToken == "" || !strings.EqualFold(doc.TokenType, "bearer"):
		return "", 0, fmt.Errorf("UAA at %s gave no bearer token", c.tokenURL)
	}
	ttl := time.Duration(doc.ExpiresIn) * time.Second
	if ttl <= 0 {
		ttl = 10 * time.Minute
	}
	return doc.AccessToken, ttl, nil
}

func uaaReason(status int, code, description string) string {
	s := fmt.Sprintf("%d %s", status, http.StatusText(status))
	if code != "" {
		s += " " + code
	}
	if description != "" {
		s += ": " + description
	}
	return s
}
