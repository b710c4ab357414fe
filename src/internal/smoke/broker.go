package smoke

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cf-redis/redis-for-cf/src/internal/tlsca"
)

// apiVersion is the OSB API version the smoke tests speak, as Cloud
// Controller does.
const apiVersion = "2.14"

// brokerClient calls a broker's OSB API as Cloud Controller would: basic
// auth, the version header, accepts_incomplete, and last_operation polling
// when the broker answers 202.
type brokerClient struct {
	base               *url.URL
	username, password string
	http               *http.Client
	// poll is the first pause between last_operation polls; it doubles up
	// to 5s.
	poll time.Duration
}

func newBrokerClient(cfg Broker) (*brokerClient, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("broker url %q is not an absolute URL", cfg.URL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if transport.TLSClientConfig, err = tlsca.ClientConfig(cfg.CACert); err != nil {
		return nil, fmt.Errorf("broker ca_cert %w", err)
	}
	return &brokerClient{
		base: u, username: cfg.Username, password: cfg.Password, poll: 200 * time.Millisecond,
		// Longer than the broker's own bound on a request (120s): the
		// broker, not this client, says when an operation took too long.
		http: &http.Client{Transport: transport, Timeout: 150 * time.Second},
	}, nil
}

// brokerError is a broker's answer with an unexpected status.
type brokerError struct {
	Method, Path string
	Status       int
	Code         string // OSB "error" field
	Description  string
}

func (e *brokerError) Error() string {
	msg := fmt.Sprintf("the broker answered %s %s with %d %s", e.Method, e.Path, e.Status, http.StatusText(e.Status))
	if e.Code != "" {
		msg += " (" + e.Code + ")"
	}
	if e.Description != "" {
		msg += ": " + e.Description
	}
	return msg
}

// call sends one request and returns the status and body of the answer.
func (c *brokerClient) call(ctx context.Context, method, path string, q url.Values, body any) (int, []byte, http.Header, error) {
	u := *c.base
	u.Path += path
	u.RawQuery = q.Encode()
	var reader io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return 0, nil, nil, err
		}
		reader = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), reader)
	if err != nil {
		return 0, nil, nil, err
	}
	req.SetBasicAuth(c.username, c.password)
	req.Header.Set("X-Broker-API-Version", apiVersion)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, nil, nil, fmt.Errorf("cannot reach the broker at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("reading the broker's answer to %s %s: %w", method, path, err)
	}
	return resp.StatusCode, data, resp.Header, nil
}

// fail builds the error for an unexpected answer. The body is not quoted
// whole: a binding's answer holds credentials.
func fail(method, path string, status int, body []byte) error {
	var doc struct {
		Error       string `json:"error"`
		Description string `json:"description"`
	}
	_ = json.Unmarshal(body, &doc)
	return &brokerError{Method: method, Path: path, Status: status, Code: doc.Error, Description: doc.Description}
}

// catalogService is a service offering of the broker's catalog.
type catalogService struct {
	ID       string        `json:"id"`
	Name     string        `json:"name"`
	Bindable bool          `json:"bindable"`
	Plans    []catalogPlan `json:"plans"`
}

// catalogPlan is a plan of the catalog.
type catalogPlan struct {
	ID              string           `json:"id"`
	Name            string           `json:"name"`
	Bindable        *bool            `json:"bindable"`
	MaintenanceInfo *json.RawMessage `json:"maintenance_info,omitempty"`
}

func (c *brokerClient) catalog(ctx context.Context) ([]catalogService, error) {
	status, body, _, err := c.call(ctx, http.MethodGet, "/v2/catalog", nil, nil)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fail(http.MethodGet, "/v2/catalog", status, body)
	}
	var doc struct {
		Services []catalogService `json:"services"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("the broker's catalog is not valid JSON: %w", err)
	}
	return doc.Services, nil
}

func instancePath(id string) string { return "/v2/service_instances/" + url.PathEscape(id) }

func bindingPath(id, bindingID string) string {
	return instancePath(id) + "/service_bindings/" + url.PathEscape(bindingID)
}

// operation is the body of a 202 answer.
type operation struct {
	Operation string `json:"operation"`
}

func asyncOperation(body []byte) string {
	var op operation
	_ = json.Unmarshal(body, &op)
	return op.Operation
}

// provision creates an instance, polling last_operation when the broker
// works on it asynchronously.
func (c *brokerClient) provision(ctx context.Context, id string, svc catalogService, plan catalogPlan, org, space string) error {
	req := map[string]any{
		"service_id": svc.ID, "plan_id": plan.ID,
		"organization_guid": org, "space_guid": space,
		"context": map[string]any{"platform": "cloudfoundry", "organization_guid": org, "space_guid": space},
	}
	if plan.MaintenanceInfo != nil {
		req["maintenance_info"] = plan.MaintenanceInfo
	}
	path := instancePath(id)
	status, body, _, err := c.call(ctx, http.MethodPut, path, url.Values{"accepts_incomplete": {"true"}}, req)
	switch {
	case err != nil:
		return err
	case status == http.StatusOK || status == http.StatusCreated:
		return nil
	case status == http.StatusAccepted:
		return c.waitInstance(ctx, id, svc.ID, plan.ID, asyncOperation(body), false)
	}
	return fail(http.MethodPut, path, status, body)
}

// deprovision deletes an instance and waits until it is gone. An instance
// the broker does not know (410) is not an error: gone reports it.
func (c *brokerClient) deprovision(ctx context.Context, id, serviceID, planID string) (gone bool, err error) {
	path := instancePath(id)
	q := url.Values{"service_id": {serviceID}, "plan_id": {planID}, "accepts_incomplete": {"true"}}
	status, body, _, err := c.call(ctx, http.MethodDelete, path, q, nil)
	switch {
	case err != nil:
		return false, err
	case status == http.StatusGone:
		return true, nil
	case status == http.StatusOK:
		return false, nil
	case status == http.StatusAccepted:
		return false, c.waitInstance(ctx, id, serviceID, planID, asyncOperation(body), true)
	}
	return false, fail(http.MethodDelete, path, status, body)
}

// lastOperation is the body of a last_operation answer.
type lastOperation struct {
	State       string `json:"state"`
	Description string `json:"description"`
}

// waitInstance polls an instance's last_operation until the operation
// succeeded (for a delete, until the instance is gone: 410) or failed.
func (c *brokerClient) waitInstance(ctx context.Context, id, serviceID, planID, op string, deleting bool) error {
	q := url.Values{"service_id": {serviceID}, "plan_id": {planID}}
	if op != "" {
		q.Set("operation", op)
	}
	return c.wait(ctx, instancePath(id)+"/last_operation", q, deleting)
}

// waitBinding polls a binding's last_operation the same way.
func (c *brokerClient) waitBinding(ctx context.Context, id, bindingID, serviceID, planID, op string, deleting bool) error {
	q := url.Values{"service_id": {serviceID}, "plan_id": {planID}}
	if op != "" {
		q.Set("operation", op)
	}
	return c.wait(ctx, bindingPath(id, bindingID)+"/last_operation", q, deleting)
}

func (c *brokerClient) wait(ctx context.Context, path string, q url.Values, deleting bool) error {
	delay := c.poll
	for {
		status, body, header, err := c.call(ctx, http.MethodGet, path, q, nil)
		if err != nil {
			return err
		}
		switch {
		case status == http.StatusGone && deleting:
			return nil
		case status != http.StatusOK:
			return fail(http.MethodGet, path, status, body)
		}
		var lo lastOperation
		if err := json.Unmarshal(body, &lo); err != nil {
			return fmt.Errorf("the broker's last_operation is not valid JSON: %w", err)
		}
		switch lo.State {
		case "succeeded":
			return nil
		case "failed":
			return fmt.Errorf("the broker reports the operation failed: %s", lo.Description)
		case "in progress":
		default:
			return fmt.Errorf("the broker's last_operation has an unknown state %q", lo.State)
		}
		pause := delay
		if s, err := strconv.Atoi(header.Get("Retry-After")); err == nil && s > 0 {
			pause = min(time.Duration(s)*time.Second, 30*time.Second)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("still in progress (%s): %w", lo.Description, context.Cause(ctx))
		case <-time.After(pause):
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// bindingAnswer is the part of a binding the smoke tests read: the
// credentials' uri, and tls_uri and tls_ca when the instance serves TLS (the
// port may be a number or a string, so the rest is not decoded).
type bindingAnswer struct {
	Credentials bindingCredentials `json:"credentials"`
}

// bindingCredentials are the credentials the smoke tests connect with.
type bindingCredentials struct {
	URI string `json:"uri"`
	// TLSURI (rediss://) and TLSCA (PEM) are empty when the instance serves
	// no TLS.
	TLSURI string `json:"tls_uri"`
	TLSCA  string `json:"tls_ca"`
}

// bind creates a binding and returns its credentials.
func (c *brokerClient) bind(ctx context.Context, id, bindingID, serviceID, planID, appGUID string) (bindingCredentials, error) {
	var none bindingCredentials
	path := bindingPath(id, bindingID)
	req := map[string]any{
		"service_id": serviceID, "plan_id": planID, "app_guid": appGUID,
		"bind_resource": map[string]any{"app_guid": appGUID},
		"context":       map[string]any{"platform": "cloudfoundry"},
	}
	status, body, _, err := c.call(ctx, http.MethodPut, path, url.Values{"accepts_incomplete": {"true"}}, req)
	switch {
	case err != nil:
		return none, err
	case status == http.StatusAccepted:
		if err := c.waitBinding(ctx, id, bindingID, serviceID, planID, asyncOperation(body), false); err != nil {
			return none, err
		}
		status, body, _, err = c.call(ctx, http.MethodGet, path, url.Values{"service_id": {serviceID}, "plan_id": {planID}}, nil)
		if err != nil {
			return none, err
		}
		if status != http.StatusOK {
			return none, fail(http.MethodGet, path, status, body)
		}
	case status != http.StatusOK && status != http.StatusCreated:
		return none, fail(http.MethodPut, path, status, body)
	}
	var b bindingAnswer
	if err := json.Unmarshal(body, &b); err != nil {
		return none, errors.New("the binding's answer is not valid JSON")
	}
	if b.Credentials.URI == "" {
		return none, errors.New("the binding's credentials have no uri")
	}
	if (b.Credentials.TLSURI == "") != (b.Credentials.TLSCA == "") {
		return none, errors.New("the binding's credentials have one of tls_uri and tls_ca without the other")
	}
	return b.Credentials, nil
}

// unbind deletes a binding, waiting when the broker works on it
// asynchronously. A binding that is gone already (410) is not an error.
func (c *brokerClient) unbind(ctx context.Context, id, bindingID, serviceID, planID string) error {
	path := bindingPath(id, bindingID)
	q := url.Values{"service_id": {serviceID}, "plan_id": {planID}, "accepts_incomplete": {"true"}}
	status, body, _, err := c.call(ctx, http.MethodDelete, path, q, nil)
	switch {
	case err != nil:
		return err
	case status == http.StatusOK || status == http.StatusGone:
		return nil
	case status == http.StatusAccepted:
		return c.waitBinding(ctx, id, bindingID, serviceID, planID, asyncOperation(body), true)
	}
	return fail(http.MethodDelete, path, status, body)
}
