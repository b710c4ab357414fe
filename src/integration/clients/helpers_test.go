package clients_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/internal/osbhttp"
	"github.com/cf-redis/redis-for-cf/src/internal/portalloc"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemspec"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

// redisPorts is where this suite's shared agent puts redis-servers: outside
// the kernel's ephemeral range and apart from the ranges of the other suites,
// which run side by side.
var redisPorts = portalloc.Range{Min: 26500, Max: 26999}

// The interpreters: Debian's, explicitly, since a python3 earlier on PATH
// (pyenv's) does not see Debian's python3-redis.
const (
	python = "/usr/bin/python3"
	ruby   = "/usr/bin/ruby"
	node   = "node"
)

// testdata is the folder of the client scripts, absolute (go test runs in
// the package's folder).
func testdata() string {
	dir, err := filepath.Abs("testdata")
	Expect(err).NotTo(HaveOccurred())
	return dir
}

// requireClients fails the suite at once, saying how to install it, when a
// client library is missing: scripts/test installs them all.
func requireClients() {
	GinkgoHelper()
	checks := []struct {
		what string
		cmd  []string
	}{
		{"Debian's python3-redis (apt-get install python3-redis)", []string{python, "-c", "import redis"}},
		{"Debian's ruby-redis (apt-get install ruby-redis)", []string{ruby, "-e", `require "redis"`}},
		{"ioredis and node-redis (npm ci in src/integration/clients/testdata)", []string{node, "-e", `require("ioredis"); require("redis")`}},
	}
	for _, c := range checks {
		cmd := exec.Command(c.cmd[0], c.cmd[1:]...)
		cmd.Dir = testdata()
		out, err := cmd.CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "%s is missing; scripts/test installs it:\n%s", c.what, out)
	}
}

// plan is one of the two plans the clients connect to.
type plan struct {
	name string
	id   string
}

var (
	sharedPlan    = plan{name: "shared-vm", id: systemtest.PlanID}
	dedicatedPlan = plan{name: "dedicated-vm", id: systemtest.DedicatedPlanID}
	plans         = []plan{sharedPlan, dedicatedPlan}
)

// Modes, as the scripts read them from MODE.
const (
	modePlain        = "plain"
	modeTLS          = "tls"
	modeTLSOnly      = "tls-only"
	modePasswordOnly = "password-only"
)

var modes = []string{modePlain, modeTLS, modeTLSOnly, modePasswordOnly}

// system is the running product with the instances the specs bind to.
type system struct {
	*systemtest.System
	osb osbhttp.Client
	// service is the catalog's service: its name labels VCAP_SERVICES and
	// its tags are what apps find it by.
	service struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}
	// instances are those provisioned so far, by plan and whether TLS-only;
	// a provision that failed is kept as its error, for every spec that
	// needs that instance to fail with it.
	instances map[string]provisioned
}

type provisioned struct {
	id  string
	err error
}

// startSystem starts the product with both plans and TLS on: a shared agent
// and two dedicated nodes, one for each of the dedicated plan's instances.
func startSystem() *system {
	GinkgoHelper()
	s := &system{
		System:    systemspec.Start(bins, systemtest.Options{RedisTLS: true, Nodes: 2, PortRange: redisPorts}),
		instances: map[string]provisioned{},
	}
	s.osb = osbhttp.Client{URL: s.BrokerURL, Username: s.Username, Password: s.Password, Poll: 50 * time.Millisecond}
	r, err := s.osb.Do(context.Background(), http.MethodGet, "/v2/catalog", nil, nil)
	Expect(err).NotTo(HaveOccurred())
	Expect(r.Status).To(Equal(http.StatusOK), "GET /v2/catalog")
	var catalog struct {
		Services []json.RawMessage `json:"services"`
	}
	Expect(json.Unmarshal(r.Body, &catalog)).To(Succeed())
	Expect(catalog.Services).To(HaveLen(1))
	Expect(json.Unmarshal(catalog.Services[0], &s.service)).To(Succeed())
	Expect(s.service.Tags).To(ContainElement("redis"))
	return s
}

// instance returns the instance of p for mode, provisioning it on first use:
// a TLS-only one (parameter tls_only) for the tls-only mode, and one with
// the plan's defaults for the others.
func (s *system) instance(ctx context.Context, p plan, mode string) string {
	GinkgoHelper()
	key := p.name + "/default"
	var params map[string]any
	if mode == modeTLSOnly {
		key, params = p.name+"/tls-only", map[string]any{"tls_only": true}
	}
	got, ok := s.instances[key]
	if !ok {
		got.id = "clients-" + strings.ReplaceAll(key, "/", "-") + "-" + uuid.NewString()[:8]
		got.err = s.provision(ctx, p, got.id, params)
		s.instances[key] = got
	}
	Expect(got.err).NotTo(HaveOccurred(), "provisioning the %s instance", key)
	return got.id
}

// provision creates an instance as Cloud Controller does and waits for it.
func (s *system) provision(ctx context.Context, p plan, id string, params map[string]any) error {
	body := map[string]any{
		"service_id": systemtest.ServiceID, "plan_id": p.id,
		"organization_guid": "org-clients", "space_guid": "space-clients",
		"context": map[string]any{"platform": "cloudfoundry", "organization_guid": "org-clients", "space_guid": "space-clients"},
	}
	if params != nil {
		body["parameters"] = params
	}
	path := osbhttp.InstancePath(id)
	r, err := s.osb.Do(ctx, http.MethodPut, path, url.Values{"accepts_incomplete": {"true"}}, body)
	switch {
	case err != nil:
		return err
	case r.Status == http.StatusAccepted:
		wait, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		return s.osb.WaitLastOperation(wait, path, systemtest.ServiceID, p.id, osbhttp.Operation(r), false)
	case r.Status != http.StatusCreated:
		return osbhttp.Unexpected(http.MethodPut, path, r)
	}
	return nil
}

// creds are the fields of a binding's credentials the specs check; the
// clients get the credentials whole, as the broker sent them.
type creds struct {
	Host     string `json:"host"`
	Port     int    `json:"port"`
	Username string `json:"username"`
	Password string `json:"password"`
	URI      string `json:"uri"`
	TLSPort  int    `json:"tls_port"`
	TLSURI   string `json:"tls_uri"`
	TLSCA    string `json:"tls_ca"`

	bindingID string
	raw       json.RawMessage
}

// bind creates a binding of instance id for a new app.
func (s *system) bind(ctx context.Context, p plan, id string) creds {
	GinkgoHelper()
	bindingID := "b-" + uuid.NewString()[:8]
	raw, err := s.osb.Bind(ctx, osbhttp.BindRequest{
		InstanceID: id, BindingID: bindingID, ServiceID: systemtest.ServiceID, PlanID: p.id,
		AppGUID: "app-" + bindingID, Context: map[string]any{"platform": "cloudfoundry"},
	})
	Expect(err).NotTo(HaveOccurred(), "binding %s", id)
	c := creds{bindingID: bindingID, raw: raw}
	Expect(json.Unmarshal(raw, &c)).To(Succeed())
	return c
}

// unbind deletes the binding c of instance id, as Cloud Controller does.
func (s *system) unbind(ctx context.Context, p plan, id string, c creds) {
	GinkgoHelper()
	path := osbhttp.BindingPath(id, c.bindingID)
	q := url.Values{"service_id": {systemtest.ServiceID}, "plan_id": {p.id}, "accepts_incomplete": {"true"}}
	r, err := s.osb.Do(ctx, http.MethodDelete, path, q, nil)
	Expect(err).NotTo(HaveOccurred())
	switch r.Status {
	case http.StatusOK:
	case http.StatusAccepted:
		Expect(s.osb.WaitLastOperation(ctx, path, systemtest.ServiceID, p.id, osbhttp.Operation(r), true)).To(Succeed())
	default:
		Fail(osbhttp.Unexpected(http.MethodDelete, path, r).Error())
	}
}

// vcapServices is the VCAP_SERVICES of an app bound to an instance of p
// with credentials c, in Cloud Foundry's shape. In the password-only mode
// the credentials are only those Redis for PCF handed out: host, port and
// password, and the URI without a username.
func (s *system) vcapServices(p plan, c creds, mode string) string {
	GinkgoHelper()
	credentials := c.raw
	if mode == modePasswordOnly {
		var err error
		credentials, err = json.Marshal(map[string]any{
			"host": c.Host, "port": c.Port, "password": c.Password,
			"uri": (&url.URL{Scheme: "redis", User: url.UserPassword("", c.Password), Host: net.JoinHostPort(c.Host, strconv.Itoa(c.Port))}).String(),
		})
		Expect(err).NotTo(HaveOccurred())
	}
	doc := map[string]any{s.service.Name: []map[string]any{{
		"name": "my-redis", "label": s.service.Name, "plan": p.name, "tags": s.service.Tags,
		"instance_guid": uuid.NewString(), "binding_guid": uuid.NewString(), "binding_name": nil,
		"provider": nil, "syslog_drain_url": nil, "volume_mounts": []any{},
		"credentials": credentials,
	}}}
	data, err := json.Marshal(doc)
	Expect(err).NotTo(HaveOccurred())
	return string(data)
}

// runID names one client's run: its keys and channel start with it and it is
// the value the run writes, so no run can pass on another's data.
func runID(client, mode string, p plan) string {
	return fmt.Sprintf("%s:%s:%s:%s", client, mode, p.name, uuid.NewString()[:8])
}

// result is what a client printed for one operation.
type result struct {
	Op    string  `json:"op"`
	Value *string `json:"value"`
	Error string  `json:"error"`
}

// runScript runs a client script as an app with VCAP_SERVICES, MODE and
// RUN_ID set and returns its output and exit error.
func runScript(ctx context.Context, argv []string, vcap, mode, id string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = testdata()
	cmd.Env = append(os.Environ(), "VCAP_SERVICES="+vcap, "MODE="+mode, "RUN_ID="+id, "NODE_NO_WARNINGS=1")
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// parseResults reads the JSON lines of a run: each operation's value, and
// the errors; a line that is not a result is an error too (a library's
// warning on stdout, say).
func parseResults(out string) (values map[string]string, errs []string) {
	values = map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var r result
		if err := json.Unmarshal([]byte(line), &r); err != nil || r.Op == "" {
			errs = append(errs, "not a result line: "+line)
			continue
		}
		if r.Value == nil {
			errs = append(errs, r.Op+": "+r.Error)
			continue
		}
		values[r.Op] = *r.Value
	}
	return values, errs
}

// expected is what a run with id must read back, logged in as username on
// the server port port.
func expected(id, username string, port int) map[string]string {
	return map[string]string{
		"connect":  "ok",
		"whoami":   username,
		"port":     strconv.Itoa(port),
		"set_get":  id,
		"pipeline": "42 " + id,
		"multi":    "2 " + id,
		"eval":     fmt.Sprintf("%s:%d", id, len(id)),
		"pubsub":   "1 " + id,
	}
}

// listeningPorts are the TCP ports process pid listens on, read from /proc:
// the proof that a TLS-only redis-server opened no plaintext port.
func listeningPorts(pid int) []int {
	GinkgoHelper()
	inodes := map[string]bool{}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	Expect(err).NotTo(HaveOccurred())
	for _, fd := range fds {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(target, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")] = true
		}
	}
	var ports []int
	for _, table := range []string{"tcp", "tcp6"} {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		Expect(err).NotTo(HaveOccurred())
		for _, line := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(line)
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			if len(f) < 10 || f[3] != "0A" || !inodes[f[9]] {
				continue
			}
			_, hexPort, _ := strings.Cut(f[1], ":")
			port, err := strconv.ParseInt(hexPort, 16, 32)
			Expect(err).NotTo(HaveOccurred())
			ports = append(ports, int(port))
		}
	}
	return ports
}
