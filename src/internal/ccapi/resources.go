package ccapi

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// ServiceBroker is a broker registered with Cloud Controller.
type ServiceBroker struct {
	GUID string `json:"guid"`
	Name string `json:"name"`
	URL  string `json:"url"`
}

// BrokerRegistration is what Cloud Controller needs to call a broker.
type BrokerRegistration struct {
	Name     string
	URL      string
	Username string
	Password string
}

func (r BrokerRegistration) body() map[string]any {
	return map[string]any{
		"name": r.Name,
		"url":  r.URL,
		"authentication": map[string]any{
			"type":        "basic",
			"credentials": map[string]string{"username": r.Username, "password": r.Password},
		},
	}
}

// ServiceBrokerByName returns the broker registered under name, or nil.
func (c *Client) ServiceBrokerByName(ctx context.Context, name string) (*ServiceBroker, error) {
	brokers, err := list[ServiceBroker](ctx, c, "/v3/service_brokers"+query("names", []string{name}))
	if err != nil {
		return nil, err
	}
	for _, b := range brokers {
		if b.Name == name {
			return &b, nil
		}
	}
	return nil, nil
}

// CreateServiceBroker registers a broker and waits until Cloud Controller
// has read its catalog. It returns the job's warnings.
func (c *Client) CreateServiceBroker(ctx context.Context, r BrokerRegistration) ([]string, error) {
	job, err := c.do(ctx, http.MethodPost, "/v3/service_brokers", r.body(), nil)
	if err != nil {
		return nil, err
	}
	return c.WaitJob(ctx, job)
}

// UpdateServiceBroker changes a broker's URL, credentials and name and waits
// until Cloud Controller has read its catalog again. It returns the job's
// warnings.
func (c *Client) UpdateServiceBroker(ctx context.Context, guid string, r BrokerRegistration) ([]string, error) {
	job, err := c.do(ctx, http.MethodPatch, "/v3/service_brokers/"+url.PathEscape(guid), r.body(), nil)
	if err != nil {
		return nil, err
	}
	return c.WaitJob(ctx, job)
}

// DeleteServiceBroker removes a broker, its offerings and plans, and waits
// until Cloud Controller has done so. Cloud Controller refuses while the
// broker's plans have instances.
func (c *Client) DeleteServiceBroker(ctx context.Context, guid string) ([]string, error) {
	job, err := c.do(ctx, http.MethodDelete, "/v3/service_brokers/"+url.PathEscape(guid), nil, nil)
	if err != nil {
		return nil, err
	}
	return c.WaitJob(ctx, job)
}

// ServicePlan is a plan of a broker's offering.
type ServicePlan struct {
	GUID           string `json:"guid"`
	Name           string `json:"name"`
	VisibilityType string `json:"visibility_type"`
	BrokerCatalog  struct {
		ID string `json:"id"`
	} `json:"broker_catalog"`
	Relationships struct {
		ServiceOffering struct {
			Data struct {
				GUID string `json:"guid"`
			} `json:"data"`
		} `json:"service_offering"`
	} `json:"relationships"`
}

// ServicePlans lists the plans of a broker's offerings.
func (c *Client) ServicePlans(ctx context.Context, brokerGUID string) ([]ServicePlan, error) {
	return list[ServicePlan](ctx, c, "/v3/service_plans"+query("service_broker_guids", []string{brokerGUID}, "per_page", 5000))
}

// Organization is a Cloud Foundry org.
type Organization struct {
	GUID string `json:"guid"`
	Name string `json:"name"`
}

// Organizations returns the orgs of the given names that exist.
func (c *Client) Organizations(ctx context.Context, names []string) ([]Organization, error) {
	return list[Organization](ctx, c, "/v3/organizations"+query("names", names, "per_page", 5000))
}

// Visibility types of a plan.
const (
	VisibilityPublic       = "public"
	VisibilityOrganization = "organization"
	VisibilityAdmin        = "admin"
)

// Visibility says who may create instances of a plan.
type Visibility struct {
	Type string
	// OrgGUIDs are the orgs of an "organization" visibility.
	OrgGUIDs []string
}

func (v Visibility) body() map[string]any {
	b := map[string]any{"type": v.Type}
	if v.Type == VisibilityOrganization {
		orgs := []map[string]string{}
		for _, g := range v.OrgGUIDs {
			orgs = append(orgs, map[string]string{"guid": g})
		}
		b["organizations"] = orgs
	}
	return b
}

// ApplyVisibility sets a plan's visibility type; for "organization" it adds
// the orgs to those that already see the plan.
func (c *Client) ApplyVisibility(ctx context.Context, planGUID string, v Visibility) error {
	_, err := c.do(ctx, http.MethodPost, "/v3/service_plans/"+url.PathEscape(planGUID)+"/visibility", v.body(), nil)
	return err
}

// ReplaceVisibility sets a plan's visibility; for "organization" the orgs
// replace those that saw the plan.
func (c *Client) ReplaceVisibility(ctx context.Context, planGUID string, v Visibility) error {
	_, err := c.do(ctx, http.MethodPatch, "/v3/service_plans/"+url.PathEscape(planGUID)+"/visibility", v.body(), nil)
	return err
}

// ServiceInstance is an instance of a plan.
type ServiceInstance struct {
	GUID          string `json:"guid"`
	Name          string `json:"name"`
	Relationships struct {
		ServicePlan struct {
			Data struct {
				GUID string `json:"guid"`
			} `json:"data"`
		} `json:"service_plan"`
	} `json:"relationships"`
}

// ServiceInstances lists the instances of the given plans.
func (c *Client) ServiceInstances(ctx context.Context, planGUIDs []string) ([]ServiceInstance, error) {
	if len(planGUIDs) == 0 {
		return nil, nil
	}
	return list[ServiceInstance](ctx, c, "/v3/service_instances"+query("service_plan_guids", planGUIDs, "per_page", 5000))
}

// ServiceOffering is a service offering (cf marketplace's "service").
type ServiceOffering struct {
	GUID string `json:"guid"`
	Name string `json:"name"`
}

// ServiceOfferings lists a broker's offerings.
func (c *Client) ServiceOfferings(ctx context.Context, brokerGUID string) ([]ServiceOffering, error) {
	return list[ServiceOffering](ctx, c, "/v3/service_offerings"+query("service_broker_guids", []string{brokerGUID}, "per_page", 5000))
}

// PurgeServiceOffering removes an offering with its plans, their instances
// and the instances' bindings and keys from Cloud Controller's records
// without asking the broker: what cf purge-service-offering does.
func (c *Client) PurgeServiceOffering(ctx context.Context, guid string) error {
	_, err := c.do(ctx, http.MethodDelete, "/v3/service_offerings/"+url.PathEscape(guid)+"?purge=true", nil, nil)
	return err
}

// Job states.
const (
	JobProcessing = "PROCESSING"
	JobPolling    = "POLLING"
	JobComplete   = "COMPLETE"
	JobFailed     = "FAILED"
)

// job is a Cloud Controller job as GET /v3/jobs/:guid shows it.
type job struct {
	GUID      string     `json:"guid"`
	Operation string     `json:"operation"`
	State     string     `json:"state"`
	Errors    []APIError `json:"errors"`
	Warnings  []struct {
		Detail string `json:"detail"`
	} `json:"warnings"`
}

// WaitJob polls the job at location (a Location header) until it is
// COMPLETE, returning its warnings, or FAILED, returning a *JobFailedError
// with Cloud Controller's errors, or ctx ends.
func (c *Client) WaitJob(ctx context.Context, location string) ([]string, error) {
	if location == "" {
		return nil, fmt.Errorf("Cloud Controller started a job but gave no Location for it")
	}
	// Quick jobs are seen quickly; long ones (a big catalog) are not polled
	// more than every few seconds.
	delay := 100 * time.Millisecond
	for {
		var j job
		if _, err := c.do(ctx, http.MethodGet, location, nil, &j); err != nil {
			return nil, fmt.Errorf("polling Cloud Controller job %s: %w", location, err)
		}
		var warnings []string
		for _, w := range j.Warnings {
			warnings = append(warnings, w.Detail)
		}
		switch j.State {
		case JobComplete:
			return warnings, nil
		case JobFailed:
			return warnings, &JobFailedError{GUID: j.GUID, Operation: j.Operation, Errors: j.Errors}
		}
		select {
		case <-ctx.Done():
			return warnings, fmt.Errorf("Cloud Controller job %s (%s) still %s: %w", j.GUID, j.Operation, j.State, context.Cause(ctx))
		case <-time.After(delay):
		}
		delay = min(2*delay, 3*time.Second)
	}
}
