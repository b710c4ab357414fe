package sharedvm_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"
	osb "sigs.k8s.io/go-open-service-broker-client/v2"

	"github.com/cf-redis/redis-for-cf/src/internal/portalloc"
	"github.com/cf-redis/redis-for-cf/src/testkit/redistest"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemspec"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

// apiVersion is what the specs send as X-Broker-API-Version, as the OSB
// client does.
const apiVersion = "2.14"

// system is a running broker and agents, with the clients a spec plays Cloud
// Controller with.
type system struct {
	*systemtest.System
	osb osb.Client

	mu sync.Mutex
	// issued holds every binding password the broker handed out, for the
	// checks that no secret leaks.
	issued []string
}

// startSystem starts a system (systemspec.Start) whose agents put
// redis-servers in redisPorts unless opts says otherwise.
func startSystem(opts systemtest.Options) *system {
	if opts.PortRange == (portalloc.Range{}) {
		opts.PortRange = redisPorts
	}
	s := &system{System: systemspec.Start(bins, opts)}
	var err error
	s.osb, err = s.Client()
	Expect(err).NotTo(HaveOccurred())
	return s
}

// redisPorts is where the suite's agents put redis-servers: outside the
// kernel's ephemeral range (32768-60999), which the product's default range
// overlaps, so a port the harness picked for a broker or agent of this or
// another test process, free but not yet bound, is never handed to a
// redis-server meanwhile.
var redisPorts = portalloc.Range{Min: 24000, Max: 24999}

// agentDir is the data directory of agent i.
func (s *system) agentDir(i int) string {
	return filepath.Join(s.Dir, fmt.Sprintf("agent-%d", i))
}

// instanceDir is where agent 0 keeps an instance's files.
func (s *system) instanceDir(id string) string {
	return filepath.Join(s.agentDir(0), "instances", id)
}

// redisPid reads the pid of an instance's redis-server from its pid file.
func (s *system) redisPid(id string) int {
	data, err := os.ReadFile(filepath.Join(s.instanceDir(id), "redis.pid"))
	Expect(err).NotTo(HaveOccurred())
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	Expect(err).NotTo(HaveOccurred())
	return pid
}

// brokerRecords returns the instance records of the broker's state file.
func (s *system) brokerRecords() map[string]map[string]any {
	data, err := os.ReadFile(filepath.Join(s.Dir, "broker", "broker-state.json"))
	if os.IsNotExist(err) {
		return nil
	}
	Expect(err).NotTo(HaveOccurred())
	var st struct {
		Instances map[string]map[string]any `json:"instances"`
	}
	Expect(json.Unmarshal(data, &st)).To(Succeed())
	return st.Instances
}

// agentPassword is the password the broker presents to agent 0.
func (s *system) agentPassword() string {
	data, err := os.ReadFile(s.Agents[0].Config)
	Expect(err).NotTo(HaveOccurred())
	var cfg struct {
		Credentials struct{ Password string } `json:"credentials"`
	}
	Expect(json.Unmarshal(data, &cfg)).To(Succeed())
	Expect(cfg.Credentials.Password).NotTo(BeEmpty())
	return cfg.Credentials.Password
}

// secrets are every password of the system a log or response must not show.
func (s *system) secrets() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string{s.Password, s.agentPassword()}, s.issued...)
}

func newID(kind string) string { return kind + "-" + uuid.NewString() }

// provisionRequest is what Cloud Controller sends to create an instance.
func provisionRequest(id string, params map[string]any) *osb.ProvisionRequest {
	return &osb.ProvisionRequest{
		InstanceID:        id,
		AcceptsIncomplete: true,
		ServiceID:         systemtest.ServiceID,
		PlanID:            systemtest.PlanID,
		OrganizationGUID:  "org-1",
		SpaceGUID:         "space-1",
		Parameters:        params,
	}
}

// provision creates an instance through the OSB client and expects the
// synchronous success the shared-vm plan gives.
func (s *system) provision(id string, params map[string]any) {
	GinkgoHelper()
	resp, err := s.osb.ProvisionInstance(provisionRequest(id, params))
	Expect(err).NotTo(HaveOccurred())
	Expect(resp.Async).To(BeFalse())
}

// updateRequest is what Cloud Controller sends to change an instance's
// parameters.
func updateRequest(id string, params map[string]any) *osb.UpdateInstanceRequest {
	return &osb.UpdateInstanceRequest{
		InstanceID: id, AcceptsIncomplete: true, ServiceID: systemtest.ServiceID, Parameters: params,
	}
}

// deprovision deletes an instance through the OSB client.
func (s *system) deprovision(id string) {
	GinkgoHelper()
	resp, err := s.osb.DeprovisionInstance(&osb.DeprovisionRequest{
		InstanceID: id, AcceptsIncomplete: true, ServiceID: systemtest.ServiceID, PlanID: systemtest.PlanID,
	})
	Expect(err).NotTo(HaveOccurred())
	Expect(resp.Async).To(BeFalse())
}

// provisionBody is the JSON body of a provision request; params, when not
// nil, is put in as raw JSON so a spec can send any document.
func provisionBody(params string) map[string]any {
	body := map[string]any{
		"service_id":        systemtest.ServiceID,
		"plan_id":           systemtest.PlanID,
		"organization_guid": "org-1",
		"space_guid":        "space-1",
	}
	if params != "" {
		body["parameters"] = json.RawMessage(params)
	}
	return body
}

// creds are a binding's credentials as an app reads them from VCAP_SERVICES.
type creds struct {
	Host     string `json:"host"`
	Hostname string `json:"hostname"`
	Port     int    `json:"port"`
	Username string `json:"username"`
	Password string `json:"password"`
	URI      string `json:"uri"`
}

// bindingResponse is the body of a bind or GET binding answer, typed as the
// OSB spec says: endpoint ports are strings ("6379" or "9000-9010").
type bindingResponse struct {
	Credentials json.RawMessage `json:"credentials"`
	Endpoints   []struct {
		Host     string   `json:"host"`
		Ports    []string `json:"ports"`
		Protocol string   `json:"protocol"`
	} `json:"endpoints"`
	Description string `json:"description"`
}

func (r bindingResponse) creds() creds {
	GinkgoHelper()
	var c creds
	Expect(json.Unmarshal(r.Credentials, &c)).To(Succeed())
	return c
}

// bindRaw sends a bind request and returns the status and decoded body.
//
// Binds go over raw HTTP, not the OSB client: the client decodes endpoint
// ports as numbers (its Endpoint.Ports is []uint16), while the spec and
// brokerapi send them as strings, so the client rejects every bind answer
// that lists endpoints.
func (s *system) bindRaw(id, bindingID, appGUID string) (int, bindingResponse) {
	GinkgoHelper()
	status, body := s.do(http.MethodPut, bindingPath(id, bindingID)+"?accepts_incomplete=true", map[string]any{
		"service_id":    systemtest.ServiceID,
		"plan_id":       systemtest.PlanID,
		"app_guid":      appGUID,
		"bind_resource": map[string]any{"app_guid": appGUID},
	})
	var r bindingResponse
	Expect(json.Unmarshal(body, &r)).To(Succeed(), string(body))
	if status < 300 {
		s.mu.Lock()
		s.issued = append(s.issued, r.creds().Password)
		s.mu.Unlock()
	}
	return status, r
}

// bind creates a binding for app-1 and returns its credentials.
func (s *system) bind(id, bindingID string) creds {
	GinkgoHelper()
	status, r := s.bindRaw(id, bindingID, "app-1")
	Expect(status).To(Equal(http.StatusCreated), r.Description)
	return r.creds()
}

// unbind deletes a binding through the OSB client.
func (s *system) unbind(id, bindingID string) {
	GinkgoHelper()
	resp, err := s.osb.Unbind(&osb.UnbindRequest{
		InstanceID: id, BindingID: bindingID, AcceptsIncomplete: true,
		ServiceID: systemtest.ServiceID, PlanID: systemtest.PlanID,
	})
	Expect(err).NotTo(HaveOccurred())
	Expect(resp.Async).To(BeFalse())
}

// getBinding fetches a binding over raw HTTP (see bindRaw for why).
func (s *system) getBinding(id, bindingID string) (int, bindingResponse) {
	GinkgoHelper()
	status, body := s.do(http.MethodGet, bindingPath(id, bindingID), nil)
	var r bindingResponse
	Expect(json.Unmarshal(body, &r)).To(Succeed(), string(body))
	return status, r
}

func instancePath(id string) string { return "/v2/service_instances/" + url.PathEscape(id) }

func bindingPath(id, bindingID string) string {
	return instancePath(id) + "/service_bindings/" + url.PathEscape(bindingID)
}

// do sends an OSB request over raw HTTP, with the broker's credentials and
// the API version header, and returns the status and body. body is sent as
// is when it is a string or []byte, as JSON otherwise, and not at all when
// nil. edits change the request before it goes, e.g. to drop a header.
func (s *system) do(method, path string, body any, edits ...func(*http.Request)) (int, []byte) {
	GinkgoHelper()
	return send(s.BrokerURL, method, path, body, func(r *http.Request) {
		r.SetBasicAuth(s.Username, s.Password)
		r.Header.Set("X-Broker-API-Version", apiVersion)
		for _, e := range edits {
			e(r)
		}
	})
}

// doAgent sends a request to agent 0's API with its credentials.
func (s *system) doAgent(method, path string, body any, edits ...func(*http.Request)) (int, []byte) {
	GinkgoHelper()
	return send("http://"+s.Agents[0].Addr, method, path, body, func(r *http.Request) {
		r.SetBasicAuth("broker", s.agentPassword())
		for _, e := range edits {
			e(r)
		}
	})
}

// httpClient follows no redirect, so a spec sees what the server answered.
var httpClient = &http.Client{
	Timeout:       60 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func send(base, method, path string, body any, edit func(*http.Request)) (int, []byte) {
	GinkgoHelper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		Expect(err).NotTo(HaveOccurred())
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, base+path, rd)
	Expect(err).NotTo(HaveOccurred())
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	edit(req)
	resp, err := httpClient.Do(req)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	Expect(err).NotTo(HaveOccurred())
	return resp.StatusCode, data
}

// description is the description of an OSB error body.
func description(body []byte) string {
	var e struct {
		Description string `json:"description"`
	}
	_ = json.Unmarshal(body, &e)
	return e.Description
}

// httpStatus is the status of an OSB client error, or 0 when err is not an
// HTTP error.
func httpStatus(err error) int {
	if e, ok := osb.IsHTTPError(err); ok {
		return e.StatusCode
	}
	return 0
}

// errDescription is the description of an OSB client error.
func errDescription(err error) string {
	if e, ok := osb.IsHTTPError(err); ok && e.Description != nil {
		return *e.Description
	}
	return ""
}

// connect opens a go-redis client on a binding's URI, as an app would, with
// retries off so a failure shows at once.
func connect(c creds) *redis.Client {
	GinkgoHelper()
	opts, err := redis.ParseURL(c.URI)
	Expect(err).NotTo(HaveOccurred())
	opts.MaxRetries = -1
	opts.DialTimeout = 2 * time.Second
	opts.ReadTimeout = 5 * time.Second
	opts.DisableIdentity = true
	rc := redis.NewClient(opts)
	DeferCleanup(rc.Close)
	return rc
}

// serverPid is the process_id redis-server reports in INFO server, once it
// has loaded its dataset.
func serverPid(ctx context.Context, rc *redis.Client) (int, error) {
	info, err := rc.InfoMap(ctx, "server", "persistence").Result()
	if err != nil {
		return 0, err
	}
	// A restarted server answers INFO while it loads its dataset, and
	// LOADING to everything else: it serves once loading is 0.
	if loading := info["Persistence"]["loading"]; loading != "0" {
		return 0, fmt.Errorf("redis-server is loading its dataset (loading:%s)", loading)
	}
	return strconv.Atoi(info["Server"]["process_id"])
}

// infoField reads one field of an INFO section.
func infoField(ctx context.Context, rc *redis.Client, section, field string) (string, error) {
	info, err := rc.InfoMap(ctx, section).Result()
	if err != nil {
		return "", err
	}
	for _, fields := range info {
		if v, ok := fields[field]; ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("INFO %s has no %s", section, field)
}

// redisCLI runs redis-cli -u uri with args and returns its output.
func redisCLI(uri string, args ...string) string {
	GinkgoHelper()
	cmd := exec.Command(redistest.MustProgram(GinkgoT(), "redis-cli"), append([]string{"-u", uri, "--no-auth-warning"}, args...)...)
	out, err := cmd.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), string(out))
	return strings.TrimSpace(string(out))
}

// alive reports whether pid is a live process (a zombie counts as dead).
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(data, ')')
	return i < 0 || len(data) < i+3 || data[i+2] != 'Z'
}

// portFree reports whether port can be listened on.
func portFree(host string, port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// redisCLIResult runs redis-cli -u uri with args and returns its output and
// error, for commands expected to fail.
func redisCLIResult(uri string, args ...string) (string, error) {
	cmd := exec.Command(redistest.MustProgram(GinkgoT(), "redis-cli"), append([]string{"-u", uri, "--no-auth-warning"}, args...)...)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}
