// Package osbhttp sends Open Service Broker API requests as Cloud Controller
// does (basic auth, the version header, JSON both ways, last_operation
// polled after a 202) and creates bindings.
//
// It is for what sigs.k8s.io/go-open-service-broker-client/v2 cannot do,
// which the smoke tests use for the rest: that client decodes a binding's
// endpoints[].ports as numbers where the OSB spec and brokerapi send
// strings, so it cannot read a compliant bind answer; it answers a delete
// the broker did not know (410) as it answers a delete (200); it sends no
// maintenance_info on a provision; and it takes neither a context nor a
// custom dialer (deploy-local reaches the broker inside a network
// namespace).
package osbhttp

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
)

// APIVersion is the OSB API version of every request, Cloud Controller's.
const APIVersion = "2.14"

// Client calls one broker.
type Client struct {
	// URL is the broker's base URL, e.g. https://10.0.0.5:8080.
	URL string
	// Username and Password are the broker's basic auth credentials.
	Username, Password string
	// HTTP sends the requests; nil means http.DefaultClient.
	HTTP *http.Client
	// Poll is the first pause between last_operation polls, doubling up to
	// 5 s (or what the broker's Retry-After says, up to 30 s); zero means
	// 200 ms.
	Poll time.Duration
}

// Response is a broker's answer.
type Response struct {
	Status int
	Body   []byte
	Header http.Header
}

// Do sends one request (body, when not nil, as JSON) and returns the
// answer, whatever its status. Its errors are those of the transport.
func (c *Client) Do(ctx context.Context, method, path string, query url.Values, body any) (Response, error) {
	var reader io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return Response{}, err
		}
		reader = bytes.NewReader(data)
	}
	target := strings.TrimSuffix(c.URL, "/") + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, target, reader)
	if err != nil {
		return Response{}, err
	}
	req.SetBasicAuth(c.Username, c.Password)
	req.Header.Set("X-Broker-API-Version", APIVersion)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return Response{}, fmt.Errorf("cannot reach the broker at %s: %w", c.URL, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return Response{}, fmt.Errorf("reading the broker's answer to %s %s: %w", method, path, err)
	}
	return Response{Status: resp.StatusCode, Body: data, Header: resp.Header}, nil
}

// Error is a broker's answer with a status the caller did not expect. It
// never quotes the body whole: a binding's answer holds credentials.
type Error struct {
	Method, Path string
	Status       int
	// Code and Description are the OSB error body's "error" and
	// "description", when it has them.
	Code, Description string
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("the broker answered %s %s with %d %s", e.Method, e.Path, e.Status, http.StatusText(e.Status))
	if e.Code != "" {
		msg += " (" + e.Code + ")"
	}
	if e.Description != "" {
		msg += ": " + e.Description
	}
	return msg
}

// Unexpected returns the *Error for answer r to method and path.
func Unexpected(method, path string, r Response) error {
	var doc struct {
		Error       string `json:"error"`
		Description string `json:"description"`
	}
	_ = json.Unmarshal(r.Body, &doc)
	return &Error{Method: method, Path: path, Status: r.Status, Code: doc.Error, Description: doc.Description}
}

// InstancePath is the path of a service instance.
func InstancePath(instanceID string) string {
	return "/v2/service_instances/" + url.PathEscape(instanceID)
}

// BindingPath is the path of a binding of a service instance.
func BindingPath(instanceID, bindingID string) string {
	return InstancePath(instanceID) + "/service_bindings/" + url.PathEscape(bindingID)
}

// Operation returns the "operation" of a 202 answer's body, or "".
func Operation(r Response) string {
	var op struct {
		Operation string `json:"operation"`
	}
	_ = json.Unmarshal(r.Body, &op)
	return op.Operation
}

// WaitLastOperation polls the last_operation under path (an instance's or a
// binding's) until the operation succeeded, or failed, or ctx ends. With
// deleting, a 410 (the resource is gone) is its success.
func (c *Client) WaitLastOperation(ctx context.Context, path, serviceID, planID, operation string, deleting bool) error {
	q := url.Values{"service_id": {serviceID}, "plan_id": {planID}}
	if operation != "" {
		q.Set("operation", operation)
	}
	path += "/last_operation"
	delay := c.Poll
	if delay <= 0 {
		delay = 200 * time.Millisecond
	}
	for {
		r, err := c.Do(ctx, http.MethodGet, path, q, nil)
		if err != nil {
			return err
		}
		switch {
		case r.Status == http.StatusGone && deleting:
			return nil
		case r.Status != http.StatusOK:
			return Unexpected(http.MethodGet, path, r)
		}
		var lo struct {
			State       string `json:"state"`
			Description string `json:"description"`
		}
		if err := json.Unmarshal(r.Body, &lo); err != nil {
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
		if s, err := strconv.Atoi(r.Header.Get("Retry-After")); err == nil && s > 0 {
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

// BindRequest is a binding to create for an app.
type BindRequest struct {
	InstanceID, BindingID string
	ServiceID, PlanID     string
	AppGUID               string
	// Context is the OSB context object; nil sends none.
	Context map[string]any
}

// Bind creates a binding, accepting an asynchronous one (then it polls the
// binding's last_operation and fetches it), and returns its credentials as
// the broker sent them, for the caller to decode.
func (c *Client) Bind(ctx context.Context, b BindRequest) (json.RawMessage, error) {
	path := BindingPath(b.InstanceID, b.BindingID)
	body := map[string]any{
		"service_id": b.ServiceID, "plan_id": b.PlanID, "app_guid": b.AppGUID,
		"bind_resource": map[string]any{"app_guid": b.AppGUID},
	}
	if b.Context != nil {
		body["context"] = b.Context
	}
	r, err := c.Do(ctx, http.MethodPut, path, url.Values{"accepts_incomplete": {"true"}}, body)
	switch {
	case err != nil:
		return nil, err
	case r.Status == http.StatusAccepted:
		if err := c.WaitLastOperation(ctx, path, b.ServiceID, b.PlanID, Operation(r), false); err != nil {
			return nil, err
		}
		if r, err = c.Do(ctx, http.MethodGet, path, url.Values{"service_id": {b.ServiceID}, "plan_id": {b.PlanID}}, nil); err != nil {
			return nil, err
		}
		if r.Status != http.StatusOK {
			return nil, Unexpected(http.MethodGet, path, r)
		}
	case r.Status != http.StatusOK && r.Status != http.StatusCreated:
		return nil, Unexpected(http.MethodPut, path, r)
	}
	var doc struct {
		Credentials json.RawMessage `json:"credentials"`
	}
	if err := json.Unmarshal(r.Body, &doc); err != nil {
		return nil, errors.New("the binding's answer is not valid JSON")
	}
	if len(doc.Credentials) == 0 || string(doc.Credentials) == "null" {
		return nil, errors.New("the binding's answer has no credentials")
	}
	return doc.Credentials, nil
}
