package broker

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/backup"
	"github.com/cf-redis/redis-for-cf/src/internal/sentinel"
)

const (
	serviceID     = "svc-id"
	sharedPlanID  = "shared-plan"
	dedicPlanID   = "dedicated-plan"
	brokerUser    = "cc"
	brokerPass    = "cc-secret"
	apiVersion    = "2.14"
	tenantOrg     = "org"
	tenantSpace   = "space"
	otherSpace    = "space-2"
	backupsFolder = "backups"
)

// fixture is a broker on a state folder of its own with in-memory agents:
// two shared VMs (a0, a1) and two dedicated nodes (n0, n1).
type fixture struct {
	dir    string
	cfg    Config
	agents map[string]*memAgent
	// resolver, when set, is the DNS of every broker open starts.
	resolver resolver
	// leader, when set, is the member index the Sentinels of every HA
	// group name the leader in the brokers open starts: these agents run
	// no Sentinel (the integration suite's real nodes do).
	leader *int
	b      *Broker
	h      http.Handler
}

func newFixture() *fixture {
	GinkgoHelper()
	dir := GinkgoT().TempDir()
	f := &fixture{dir: dir, agents: map[string]*memAgent{
		"a0": newMemAgent("10.0.0.10"),
		"a1": newMemAgent("10.0.0.11"),
		"n0": newMemNode("n0", "10.0.1.10"),
		"n1": newMemNode("n1", "10.0.1.11"),
	}}
	// a1 has less room: placement puts instances on a0 first.
	f.agents["a1"].memory = 512 << 20
	agent := func(id string) AgentConfig {
		return AgentConfig{ID: id, ClientConfig: agentapi.ClientConfig{URL: "http://" + id,
			Credentials: agentapi.Credentials{Username: "u", Password: "p"}}}
	}
	node := func(id string) NodeConfig {
		return NodeConfig{ID: id, ClientConfig: agentapi.ClientConfig{URL: "https://" + id,
			Credentials: agentapi.Credentials{Username: "u", Password: "p"}, CACert: "CA"}}
	}
	f.cfg = Config{
		Listen:      "127.0.0.1:0",
		Credentials: agentapi.Credentials{Username: brokerUser, Password: brokerPass},
		StateDir:    filepath.Join(dir, "state"),
		Catalog:     Catalog{ServiceID: serviceID},
		SharedVM: &SharedVMPlan{PlanID: sharedPlanID, MaxInstances: 3, MaxMemoryMB: 64,
			Agents: []AgentConfig{agent("a0"), agent("a1")}},
		DedicatedVM: &DedicatedVMPlan{PlanID: dedicPlanID, Nodes: []NodeConfig{node("n0"), node("n1")}},
		Backups:     &backup.Destination{Local: &backup.Local{Path: filepath.Join(dir, backupsFolder)}},
	}
	Expect(f.cfg.Validate()).To(Succeed())
	Expect(os.MkdirAll(f.cfg.StateDir, 0o700)).To(Succeed())
	f.open()
	return f
}

// open starts a broker on the fixture's state, as a restarted broker
// process would: the one before is abandoned where it stood.
func (f *fixture) open() {
	GinkgoHelper()
	clients := map[string]Agent{}
	for id, a := range f.agents {
		clients[id] = a
	}
	b, err := New(f.cfg, clients, slog.New(slog.NewTextHandler(GinkgoWriter, nil)))
	Expect(err).NotTo(HaveOccurred())
	if f.resolver != nil {
		b.resolver = f.resolver
	}
	if f.leader != nil {
		b.askLeader = func(_ context.Context, g sentinel.Group, _ *tls.Config) (sentinel.View, bool) {
			if *f.leader < 0 {
				return sentinel.View{}, false
			}
			m := g.Members[*f.leader]
			return sentinel.View{Host: m.Host, Port: m.Port, Epoch: 1}, true
		}
	}
	f.b, f.h = b, b.Handler()
	DeferCleanup(b.Wait)
}

// call sends an OSB request through the broker's HTTP handler and returns
// the status and the decoded JSON body.
func (f *fixture) call(method, path string, body any) (int, map[string]any) {
	GinkgoHelper()
	var r io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		Expect(err).NotTo(HaveOccurred())
		r = bytes.NewReader(data)
	}
	req := httptest.NewRequest(method, path, r)
	req.SetBasicAuth(brokerUser, brokerPass)
	req.Header.Set("X-Broker-API-Version", apiVersion)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-ID", "req-1")
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, req)
	out := map[string]any{}
	if w.Body.Len() > 0 {
		Expect(json.Unmarshal(w.Body.Bytes(), &out)).To(Succeed(), w.Body.String())
	}
	return w.Code, out
}

func instancePath(id string) string { return "/v2/service_instances/" + id }

func (f *fixture) provisionIn(id, plan, space string, params map[string]any) (int, map[string]any) {
	GinkgoHelper()
	body := map[string]any{"service_id": serviceID, "plan_id": plan, "organization_guid": tenantOrg, "space_guid": space}
	if params != nil {
		body["parameters"] = params
	}
	return f.call(http.MethodPut, instancePath(id), body)
}

func (f *fixture) provision(id, plan string) (int, map[string]any) {
	GinkgoHelper()
	return f.provisionIn(id, plan, tenantSpace, nil)
}

// mustProvision provisions and expects 201.
func (f *fixture) mustProvision(id, plan string) {
	GinkgoHelper()
	code, body := f.provision(id, plan)
	Expect(code).To(Equal(http.StatusCreated), "%v", body)
}

func (f *fixture) deprovision(id, plan string, async bool) (int, map[string]any) {
	GinkgoHelper()
	q := url.Values{"service_id": {serviceID}, "plan_id": {plan}}
	if async {
		q.Set("accepts_incomplete", "true")
	}
	return f.call(http.MethodDelete, instancePath(id)+"?"+q.Encode(), nil)
}

func (f *fixture) update(id string, body map[string]any) (int, map[string]any) {
	GinkgoHelper()
	body["service_id"] = serviceID
	return f.call(http.MethodPatch, instancePath(id), body)
}

func (f *fixture) bind(id, bindingID, app string) (int, map[string]any) {
	GinkgoHelper()
	return f.call(http.MethodPut, instancePath(id)+"/service_bindings/"+bindingID,
		map[string]any{"service_id": serviceID, "plan_id": sharedPlanID, "app_guid": app})
}

func (f *fixture) unbind(id, bindingID string) (int, map[string]any) {
	GinkgoHelper()
	q := url.Values{"service_id": {serviceID}, "plan_id": {sharedPlanID}}
	return f.call(http.MethodDelete, instancePath(id)+"/service_bindings/"+bindingID+"?"+q.Encode(), nil)
}

func (f *fixture) lastOperation(id string) (int, map[string]any) {
	GinkgoHelper()
	return f.call(http.MethodGet, instancePath(id)+"/last_operation", nil)
}

// attributes returns GET instance's metadata.attributes.
func (f *fixture) attributes(id string) map[string]any {
	GinkgoHelper()
	code, body := f.call(http.MethodGet, instancePath(id), nil)
	Expect(code).To(Equal(http.StatusOK), "%v", body)
	md, _ := body["metadata"].(map[string]any)
	attrs, _ := md["attributes"].(map[string]any)
	return attrs
}

// record returns the broker's record of an instance, or nil.
func (f *fixture) record(id string) *instance {
	GinkgoHelper()
	inst, err := f.b.find(id)
	Expect(err).NotTo(HaveOccurred())
	return inst
}

// pool returns the broker's record of a node.
func (f *fixture) pool(id string) poolNode {
	GinkgoHelper()
	var out poolNode
	Expect(f.b.state.View(func(s state) {
		if p := s.Pool[id]; p != nil {
			out = *p
		}
	})).To(Succeed())
	return out
}

// description is the OSB error body's description.
func description(body map[string]any) string {
	s, _ := body["description"].(string)
	return s
}

// credentialsOf returns a bind response's credentials.
func credentialsOf(body map[string]any) map[string]any {
	c, _ := body["credentials"].(map[string]any)
	return c
}

// backupTaken is when storeBackup's backups were taken.
var backupTaken = time.Date(2026, 1, 21, 3, 0, 0, 0, time.UTC)

// storeBackup puts a backup of instance id, taken at backupTaken, in the
// fixture's backup folder.
func storeBackup(f *fixture, id, content string) {
	GinkgoHelper()
	path := filepath.Join(f.dir, backupsFolder, filepath.FromSlash(backup.ObjectName("", id, backupTaken)))
	Expect(os.MkdirAll(filepath.Dir(path), 0o700)).To(Succeed())
	Expect(os.WriteFile(path, []byte(content), 0o600)).To(Succeed())
}

// ctx is the context of test calls to agents.
var ctx = context.Background()
