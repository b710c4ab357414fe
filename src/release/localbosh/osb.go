package localbosh

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/osbhttp"
	"github.com/cf-redis/redis-for-cf/src/internal/tlsca"
)

// Broker is a client of the deployment's service broker that plays Cloud
// Controller from the apps' namespace: OSB 2.14 requests with basic auth,
// asynchronous operations polled to their end.
type Broker struct {
	URL, Username, Password string
	HTTP                    *http.Client
}

// Broker returns a client of the broker of the deployment's first
// instance group that runs redis-broker, with the credentials its manifest
// gives it.
func (d *Director) Broker() (*Broker, error) {
	if err := d.loadDeployed(); err != nil {
		return nil, err
	}
	if d.st == nil {
		if err := d.loadState(); err != nil {
			return nil, err
		}
	}
	for _, g := range d.manifest.InstanceGroups {
		for _, mj := range g.Jobs {
			if mj.Name != "redis-broker" || g.Instances == 0 {
				continue
			}
			in := d.find(g.Name, 0)
			if in == nil {
				return nil, fmt.Errorf("instance %s/0 is not deployed", g.Name)
			}
			prop := func(name string) any { v, _ := d.Property(g.Name, mj.Name, name); return v }
			scheme := "http"
			if tlsOn, _ := prop("broker.tls.enabled").(bool); tlsOn {
				scheme = "https"
			}
			return &Broker{
				URL:      fmt.Sprintf("%s://%s", scheme, net.JoinHostPort(in.IP, fmt.Sprint(prop("broker.port")))),
				Username: fmt.Sprint(prop("broker.username")),
				Password: fmt.Sprint(prop("broker.password")),
				HTTP: &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{
					DialContext:       d.Dial,
					DisableKeepAlives: true,
					// The apps' namespace trusts the broker this deployment
					// made; its certificate names a BOSH DNS name.
					TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // local deployment only
				}},
			}, nil
		}
	}
	return nil, fmt.Errorf("no instance group of the deployment runs redis-broker")
}

// Do sends one OSB request and returns the status and the body.
func (b *Broker) Do(ctx context.Context, method, path string, body any) (int, []byte, error) {
	c := osbhttp.Client{URL: b.URL, Username: b.Username, Password: b.Password, HTTP: b.HTTP}
	p, q, _ := strings.Cut(path, "?")
	query, err := url.ParseQuery(q)
	if err != nil {
		return 0, nil, err
	}
	r, err := c.Do(ctx, method, p, query, body)
	return r.Status, r.Body, err
}

// call is Do for a request that must answer one of the ok statuses; it
// decodes the body into out (when not nil).
func (b *Broker) call(ctx context.Context, method, path string, body, out any, ok ...int) (int, error) {
	code, data, err := b.Do(ctx, method, path, body)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", method, path, err)
	}
	for _, c := range ok {
		if code == c {
			if out != nil && len(data) > 0 {
				if err := json.Unmarshal(data, out); err != nil {
					return code, fmt.Errorf("%s %s: %w", method, path, err)
				}
			}
			return code, nil
		}
	}
	return code, fmt.Errorf("%s %s: %d %s", method, path, code, bytes.TrimSpace(data))
}

// Plan is a plan of the catalog.
type Plan struct {
	ID              string `json:"id"`
	Name            string `json:"name"`
	MaintenanceInfo *struct {
		Version string `json:"version"`
	} `json:"maintenance_info,omitempty"`
}

// Service is the catalog's offering.
type Service struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Plans []Plan `json:"plans"`
}

// Catalog returns the broker's one service offering.
func (b *Broker) Catalog(ctx context.Context) (Service, error) {
	var c struct {
		Services []Service `json:"services"`
	}
	if _, err := b.call(ctx, "GET", "/v2/catalog", nil, &c, http.StatusOK); err != nil {
		return Service{}, err
	}
	if len(c.Services) != 1 {
		return Service{}, fmt.Errorf("the catalog has %d services, not 1", len(c.Services))
	}
	return c.Services[0], nil
}

// Provision creates an instance and waits until it is ready.
func (b *Broker) Provision(ctx context.Context, id, serviceID, planID string, params map[string]any) error {
	body := map[string]any{"service_id": serviceID, "plan_id": planID, "organization_guid": "local-org", "space_guid": "local-space"}
	if params != nil {
		body["parameters"] = params
	}
	code, err := b.call(ctx, "PUT", "/v2/service_instances/"+id+"?accepts_incomplete=true", body, nil, http.StatusCreated, http.StatusOK, http.StatusAccepted)
	if err != nil || code != http.StatusAccepted {
		return err
	}
	return b.await(ctx, id, "create")
}

// Update changes an instance's parameters (nil: none) and, when
// maintenanceVersion is set, records that it runs that version.
func (b *Broker) Update(ctx context.Context, id, serviceID, planID string, params map[string]any, maintenanceVersion string) error {
	body := map[string]any{"service_id": serviceID, "plan_id": planID}
	if params != nil {
		body["parameters"] = params
	}
	if maintenanceVersion != "" {
		body["maintenance_info"] = map[string]any{"version": maintenanceVersion}
	}
	code, err := b.call(ctx, "PATCH", "/v2/service_instances/"+id+"?accepts_incomplete=true", body, nil, http.StatusOK, http.StatusAccepted)
	if err != nil || code != http.StatusAccepted {
		return err
	}
	return b.await(ctx, id, "update")
}

// Instance returns GET /v2/service_instances/ID.
func (b *Broker) Instance(ctx context.Context, id string) (map[string]any, error) {
	var out map[string]any
	_, err := b.call(ctx, "GET", "/v2/service_instances/"+id, nil, &out, http.StatusOK)
	return out, err
}

// Credentials are a binding's credentials.
type Credentials struct {
	Host     string `json:"host"`
	Port     int    `json:"port"`
	Username string `json:"username"`
	Password string `json:"password"`
	URI      string `json:"uri"`
	// TLSPort, TLSURI and TLSCA are set when the instance serves TLS too.
	TLSPort int    `json:"tls_port,omitempty"`
	TLSURI  string `json:"tls_uri,omitempty"`
	TLSCA   string `json:"tls_ca,omitempty"`
	// MasterName and Sentinels are set for a dedicated-ha instance: the
	// name its Sentinels know the group by, and where they listen.
	MasterName string     `json:"master_name,omitempty"`
	Sentinels  []HostPort `json:"sentinels,omitempty"`
}

// HostPort is an address in credentials.
type HostPort struct {
	Host string `json:"host"`
	Port int    `json:"port"`
}

// Addr is host:port.
func (c Credentials) Addr() string { return net.JoinHostPort(c.Host, strconv.Itoa(c.Port)) }

// Bind creates a binding for an app and returns its credentials.
func (b *Broker) Bind(ctx context.Context, id, bindingID, serviceID, planID string) (Credentials, error) {
	c := osbhttp.Client{URL: b.URL, Username: b.Username, Password: b.Password, HTTP: b.HTTP}
	raw, err := c.Bind(ctx, osbhttp.BindRequest{InstanceID: id, BindingID: bindingID, ServiceID: serviceID, PlanID: planID, AppGUID: "local-app"})
	if err != nil {
		return Credentials{}, fmt.Errorf("binding %s to %s: %w", bindingID, id, err)
	}
	var creds Credentials
	if err := json.Unmarshal(raw, &creds); err != nil {
		return Credentials{}, fmt.Errorf("binding %s to %s: credentials: %w", bindingID, id, err)
	}
	return creds, nil
}

// Unbind deletes a binding.
func (b *Broker) Unbind(ctx context.Context, id, bindingID, serviceID, planID string) error {
	q := url.Values{"service_id": {serviceID}, "plan_id": {planID}}
	_, err := b.call(ctx, "DELETE", "/v2/service_instances/"+id+"/service_bindings/"+bindingID+"?"+q.Encode(), nil, nil, http.StatusOK, http.StatusGone)
	return err
}

// Deprovision deletes an instance and waits until it is gone.
func (b *Broker) Deprovision(ctx context.Context, id, serviceID, planID string) error {
	q := url.Values{"service_id": {serviceID}, "plan_id": {planID}, "accepts_incomplete": {"true"}}
	code, err := b.call(ctx, "DELETE", "/v2/service_instances/"+id+"?"+q.Encode(), nil, nil, http.StatusOK, http.StatusGone, http.StatusAccepted)
	if err != nil || code != http.StatusAccepted {
		return err
	}
	return b.await(ctx, id, "delete")
}

// await polls last_operation until the operation ends; for a delete, 410
// is its success.
func (b *Broker) await(ctx context.Context, id, op string) error {
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		var lo struct {
			State       string `json:"state"`
			Description string `json:"description"`
		}
		code, err := b.call(ctx, "GET", "/v2/service_instances/"+id+"/last_operation", nil, &lo, http.StatusOK, http.StatusGone)
		switch {
		case err != nil:
			return err
		case code == http.StatusGone && op == "delete":
			return nil
		case code == http.StatusGone:
			return fmt.Errorf("%s of %s: the instance is gone", op, id)
		case lo.State == "succeeded":
			return nil
		case lo.State == "failed":
			return fmt.Errorf("%s of %s failed: %s", op, id, lo.Description)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s of %s did not end in 5 minutes", op, id)
}

// RedisTLS returns a client for the binding's TLS port, from the apps'
// namespace, verifying the server against the credentials' tls_ca for the
// host they name.
func (d *Director) RedisTLS(c Credentials) (*redis.Client, error) {
	if c.TLSPort == 0 {
		return nil, errors.New("the credentials have no tls_port")
	}
	roots, err := tlsca.Pool(c.TLSCA)
	if err != nil {
		return nil, fmt.Errorf("the credentials' tls_ca %w", err)
	}
	cfg := &tls.Config{RootCAs: roots, ServerName: c.Host, MinVersion: tls.VersionTLS12}
	return redis.NewClient(&redis.Options{
		Addr: net.JoinHostPort(c.Host, strconv.Itoa(c.TLSPort)), Username: c.Username, Password: c.Password,
		// go-redis adds TLS only to its own dialer: this one does it itself.
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := d.Dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			tc := tls.Client(conn, cfg)
			if err := tc.HandshakeContext(ctx); err != nil {
				conn.Close()
				return nil, err
			}
			return tc, nil
		},
		MaxRetries: -1, DialTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		Protocol: 2, DisableIdentity: true,
	}), nil
}

// Failover returns go-redis's Sentinel-aware client for a dedicated-ha
// binding, as an app configures it from the credentials (master_name,
// sentinels, the binding's user on the Sentinels and the members), connecting
// from the apps' namespace.
func (d *Director) Failover(c Credentials) (*redis.Client, error) {
	if c.MasterName == "" || len(c.Sentinels) == 0 {
		return nil, errors.New("the credentials have no master_name and sentinels")
	}
	var addrs []string
	for _, s := range c.Sentinels {
		addrs = append(addrs, net.JoinHostPort(s.Host, strconv.Itoa(s.Port)))
	}
	return redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName: c.MasterName, SentinelAddrs: addrs,
		SentinelUsername: c.Username, SentinelPassword: c.Password,
		Username: c.Username, Password: c.Password,
		Dialer: d.Dial,
		// go-redis asks the Sentinel it last used for the leader within
		// the deadline of the dial to the leader, twice, and only then the
		// others; a dial deadline that ends first leaves it asking a lost
		// VM's Sentinel forever. One dial attempt, and a deadline longer
		// than two failed ones ("no route to host" once the lost VM's
		// neighbour entry is gone), let it move on (README, go-redis).
		DialerRetries: 1, DialTimeout: 10 * time.Second,
		MaxRetries: -1, ReadTimeout: 10 * time.Second,
		Protocol: 2, DisableIdentity: true,
	}), nil
}

// Redis returns a client with a binding's credentials that connects from
// the apps' namespace.
func (d *Director) Redis(c Credentials) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: c.Addr(), Username: c.Username, Password: c.Password,
		Dialer:     d.Dial,
		MaxRetries: -1, DialTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		Protocol: 2, DisableIdentity: true,
	})
}
