package smoke

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	osb "sigs.k8s.io/go-open-service-broker-client/v2"

	"github.com/cf-redis/redis-for-cf/src/internal/osbhttp"
	"github.com/cf-redis/redis-for-cf/src/internal/tlsca"
)

// brokerClient calls a broker's OSB API as Cloud Controller would: basic
// auth, the version header, accepts_incomplete, and last_operation polling
// when the broker answers 202. The catalog, last_operation and unbind go
// through sigs.k8s.io/go-open-service-broker-client; provision, bind and
// deprovision through osbhttp, for what that client cannot do (see there).
type brokerClient struct {
	base *url.URL
	osb  osb.Client
	raw  *osbhttp.Client
	// poll is the first pause between last_operation polls; it doubles up
	// to 5s.
	poll time.Duration
}

// requestTimeout is longer than the broker's own bound on a request (120s):
// the broker, not this client, says when an operation took too long.
const requestTimeout = 150 * time.Second

func newBrokerClient(cfg Broker) (*brokerClient, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("broker url %q is not an absolute URL", cfg.URL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	tlsConfig, err := tlsca.ClientConfig(cfg.CACert)
	if err != nil {
		return nil, fmt.Errorf("broker ca_cert %w", err)
	}
	client, err := osb.NewClient(&osb.ClientConfiguration{
		Name: "smoke-tests", URL: u.String(), APIVersion: osb.Version2_14(),
		AuthConfig: &osb.AuthConfig{BasicAuthConfig: &osb.BasicAuthConfig{Username: cfg.Username, Password: cfg.Password}},
		TLSConfig:  tlsConfig.Clone(),
		// Alpha: plans' maintenance_info, binding last_operation and
		// Retry-After, all OSB 2.14.
		EnableAlphaFeatures: true,
		TimeoutSeconds:      int(requestTimeout / time.Second),
	})
	if err != nil {
		return nil, err
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = tlsConfig
	poll := 200 * time.Millisecond
	return &brokerClient{
		base: u, osb: client, poll: poll,
		raw: &osbhttp.Client{
			URL: u.String(), Username: cfg.Username, Password: cfg.Password, Poll: poll,
			HTTP: &http.Client{Transport: transport, Timeout: requestTimeout},
		},
	}, nil
}

// call runs f, a call of the OSB client, which takes no context, and
// returns when f does or ctx ends; the request then runs on in the
// background, bounded by requestTimeout.
func call[T any](ctx context.Context, f func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := f()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, context.Cause(ctx)
	}
}

// clientError words an error of the OSB client as osbhttp words its own: a
// broker's answer as an *osbhttp.Error, a transport error as unreachable.
func (c *brokerClient) clientError(method, path string, err error) error {
	if he, ok := osb.IsHTTPError(err); ok {
		e := &osbhttp.Error{Method: method, Path: path, Status: he.StatusCode}
		if he.ErrorMessage != nil {
			e.Code = *he.ErrorMessage
		}
		if he.Description != nil {
			e.Description = *he.Description
		}
		return e
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("cannot reach the broker at %s: %w", c.base, ue.Err)
	}
	return err
}

// catalogService is a service offering of the broker's catalog.
type catalogService struct {
	ID       string
	Name     string
	Bindable bool
	Plans    []catalogPlan
}

// catalogPlan is a plan of the catalog.
type catalogPlan struct {
	ID              string
	Name            string
	Bindable        *bool
	MaintenanceInfo *json.RawMessage
}

func (c *brokerClient) catalog(ctx context.Context) ([]catalogService, error) {
	resp, err := call(ctx, c.osb.GetCatalog)
	if err != nil {
		return nil, c.clientError(http.MethodGet, "/v2/catalog", err)
	}
	var services []catalogService
	for _, s := range resp.Services {
		svc := catalogService{ID: s.ID, Name: s.Name, Bindable: s.Bindable}
		for _, p := range s.Plans {
			plan := catalogPlan{ID: p.ID, Name: p.Name, Bindable: p.Bindable}
			if p.MaintenanceInfo != nil {
				data, err := json.Marshal(p.MaintenanceInfo)
				if err != nil {
					return nil, err
				}
				raw := json.RawMessage(data)
				plan.MaintenanceInfo = &raw
			}
			svc.Plans = append(svc.Plans, plan)
		}
		services = append(services, svc)
	}
	return services, nil
}

// provision creates an instance, polling last_operation when the broker
// works on it asynchronously. It sends the plan's maintenance_info, as
// Cloud Controller does.
func (c *brokerClient) provision(ctx context.Context, id string, svc catalogService, plan catalogPlan, org, space string) error {
	req := map[string]any{
		"service_id": svc.ID, "plan_id": plan.ID,
		"organization_guid": org, "space_guid": space,
		"context": map[string]any{"platform": "cloudfoundry", "organization_guid": org, "space_guid": space},
	}
	if plan.MaintenanceInfo != nil {
		req["maintenance_info"] = plan.MaintenanceInfo
	}
	path := osbhttp.InstancePath(id)
	r, err := c.raw.Do(ctx, http.MethodPut, path, url.Values{"accepts_incomplete": {"true"}}, req)
	switch {
	case err != nil:
		return err
	case r.Status == http.StatusOK || r.Status == http.StatusCreated:
		return nil
	case r.Status == http.StatusAccepted:
		return c.waitInstance(ctx, id, svc.ID, plan.ID, osbhttp.Operation(r), false)
	}
	return osbhttp.Unexpected(http.MethodPut, path, r)
}

// deprovision deletes an instance and waits until it is gone. An instance
// the broker does not know (410) is not an error: gone reports it.
func (c *brokerClient) deprovision(ctx context.Context, id, serviceID, planID string) (gone bool, err error) {
	path := osbhttp.InstancePath(id)
	q := url.Values{"service_id": {serviceID}, "plan_id": {planID}, "accepts_incomplete": {"true"}}
	r, err := c.raw.Do(ctx, http.MethodDelete, path, q, nil)
	switch {
	case err != nil:
		return false, err
	case r.Status == http.StatusGone:
		return true, nil
	case r.Status == http.StatusOK:
		return false, nil
	case r.Status == http.StatusAccepted:
		return false, c.waitInstance(ctx, id, serviceID, planID, osbhttp.Operation(r), true)
	}
	return false, osbhttp.Unexpected(http.MethodDelete, path, r)
}

// waitInstance polls an instance's last_operation until the operation
// succeeded (for a delete, until the instance is gone: 410) or failed.
func (c *brokerClient) waitInstance(ctx context.Context, id, serviceID, planID, op string, deleting bool) error {
	req := &osb.LastOperationRequest{InstanceID: id, ServiceID: &serviceID, PlanID: &planID}
	if op != "" {
		key := osb.OperationKey(op)
		req.OperationKey = &key
	}
	return c.wait(ctx, osbhttp.InstancePath(id)+"/last_operation", deleting, func() (*osb.LastOperationResponse, error) {
		return c.osb.PollLastOperation(req)
	})
}

// waitBinding polls a binding's last_operation the same way.
func (c *brokerClient) waitBinding(ctx context.Context, id, bindingID, serviceID, planID, op string, deleting bool) error {
	req := &osb.BindingLastOperationRequest{InstanceID: id, BindingID: bindingID, ServiceID: &serviceID, PlanID: &planID}
	if op != "" {
		key := osb.OperationKey(op)
		req.OperationKey = &key
	}
	return c.wait(ctx, osbhttp.BindingPath(id, bindingID)+"/last_operation", deleting, func() (*osb.LastOperationResponse, error) {
		return c.osb.PollBindingLastOperation(req)
	})
}

func (c *brokerClient) wait(ctx context.Context, path string, deleting bool, poll func() (*osb.LastOperationResponse, error)) error {
	delay := c.poll
	for {
		lo, err := call(ctx, poll)
		switch {
		case err != nil && deleting && osb.IsGoneError(err):
			return nil
		case err != nil:
			return c.clientError(http.MethodGet, path, err)
		}
		description := ""
		if lo.Description != nil {
			description = *lo.Description
		}
		switch lo.State {
		case osb.StateSucceeded:
			return nil
		case osb.StateFailed:
			return fmt.Errorf("the broker reports the operation failed: %s", description)
		case osb.StateInProgress:
		default:
			return fmt.Errorf("the broker's last_operation has an unknown state %q", lo.State)
		}
		pause := delay
		if lo.PollDelay != nil && *lo.PollDelay > 0 {
			pause = min(*lo.PollDelay, 30*time.Second)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("still in progress (%s): %w", description, context.Cause(ctx))
		case <-time.After(pause):
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// bindingCredentials are the credentials the smoke tests connect with: the
// uri, and tls_uri and tls_ca when the instance serves TLS (the port may be
// a number or a string, so the rest is not decoded).
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
	raw, err := c.raw.Bind(ctx, osbhttp.BindRequest{
		InstanceID: id, BindingID: bindingID, ServiceID: serviceID, PlanID: planID, AppGUID: appGUID,
		Context: map[string]any{"platform": "cloudfoundry"},
	})
	if err != nil {
		return none, err
	}
	var creds bindingCredentials
	if err := json.Unmarshal(raw, &creds); err != nil {
		return none, errors.New("the binding's credentials are not a JSON object")
	}
	if creds.URI == "" {
		return none, errors.New("the binding's credentials have no uri")
	}
	if (creds.TLSURI == "") != (creds.TLSCA == "") {
		return none, errors.New("the binding's credentials have one of tls_uri and tls_ca without the other")
	}
	return creds, nil
}

// unbind deletes a binding, waiting when the broker works on it
// asynchronously. A binding that is gone already (410) is not an error.
func (c *brokerClient) unbind(ctx context.Context, id, bindingID, serviceID, planID string) error {
	resp, err := call(ctx, func() (*osb.UnbindResponse, error) {
		return c.osb.Unbind(&osb.UnbindRequest{InstanceID: id, BindingID: bindingID, ServiceID: serviceID, PlanID: planID, AcceptsIncomplete: true})
	})
	if err != nil {
		return c.clientError(http.MethodDelete, osbhttp.BindingPath(id, bindingID), err)
	}
	if !resp.Async {
		return nil
	}
	op := ""
	if resp.OperationKey != nil {
		op = string(*resp.OperationKey)
	}
	return c.waitBinding(ctx, id, bindingID, serviceID, planID, op, true)
}
