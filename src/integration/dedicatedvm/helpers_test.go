package dedicatedvm_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/testkit/systemspec"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

// startSystem starts a broker with n dedicated nodes and no shared VM load.
func startSystem(n int) *systemtest.System {
	return startSystemWith(systemtest.Options{Nodes: n})
}

// startSystemWith starts a system (systemspec.Start) and checks the pool
// invariants when the spec ends, unless it failed already, before the
// system stops.
func startSystemWith(opts systemtest.Options) *systemtest.System {
	sys := systemspec.Start(bins, opts)
	DeferCleanup(func() {
		if !CurrentSpecReport().Failed() {
			expectPoolConsistent(sys)
		}
	})
	return sys
}

// httpClient opens a connection per request: the broker is killed and
// restarted in these specs, and a kept-alive connection to the dead one would
// fail a request that the new one would answer.
var httpClient = &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{DisableKeepAlives: true}}

// osbCall is systemtest.System.OSB for a broker that is expected to answer.
func osbCall(sys *systemtest.System, method, path string, body any) (int, map[string]any) {
	GinkgoHelper()
	code, out, err := sys.OSB(method, path, body)
	Expect(err).NotTo(HaveOccurred())
	return code, out
}

func provisionBody(params map[string]any) map[string]any {
	body := map[string]any{
		"service_id": systemtest.ServiceID, "plan_id": systemtest.DedicatedPlanID,
		"organization_guid": "org", "space_guid": "space",
	}
	if params != nil {
		body["parameters"] = params
	}
	return body
}

func provisionPath(id string) string {
	return "/v2/service_instances/" + id + "?accepts_incomplete=true"
}

func deletePath(id string) string {
	return fmt.Sprintf("/v2/service_instances/%s?service_id=%s&plan_id=%s&accepts_incomplete=true", id, systemtest.ServiceID, systemtest.DedicatedPlanID)
}

func provision(sys *systemtest.System, id string, params map[string]any) (int, map[string]any) {
	GinkgoHelper()
	return osbCall(sys, "PUT", provisionPath(id), provisionBody(params))
}

// deprovision deletes an instance and, when the broker answers 202, polls
// last_operation until it is gone, as Cloud Controller does.
func deprovision(sys *systemtest.System, id string) int {
	GinkgoHelper()
	code, body := osbCall(sys, "DELETE", deletePath(id), nil)
	if code != http.StatusAccepted {
		return code
	}
	Eventually(func() int {
		c, b := osbCall(sys, "GET", "/v2/service_instances/"+id+"/last_operation?operation=delete", nil)
		Expect(b["state"]).NotTo(Equal("failed"), "the delete failed: %v", b)
		return c
	}).WithTimeout(time.Minute).WithPolling(50*time.Millisecond).Should(Equal(http.StatusGone), "%v", body)
	return http.StatusOK
}

// deleteUntilGone plays Cloud Controller and its user deleting an instance
// through failures: a delete without an answer, a 5xx or a failed
// last_operation is sent again, until the broker says the instance is gone.
func deleteUntilGone(sys *systemtest.System, id string) {
	GinkgoHelper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		Expect(time.Now()).To(BeTemporally("<", deadline), "instance %s is still not deleted", id)
		code, body, err := sys.OSB("DELETE", deletePath(id), nil)
		switch {
		case err != nil || code >= 500:
			time.Sleep(200 * time.Millisecond)
			continue
		case code == http.StatusOK || code == http.StatusGone:
			return
		}
		Expect(code).To(Equal(http.StatusAccepted), "delete of %s: %v", id, body)
		for {
			code, body, err := sys.OSB("GET", "/v2/service_instances/"+id+"/last_operation?operation=delete", nil)
			if err == nil && code == http.StatusGone {
				return
			}
			if err == nil && code == http.StatusOK && body["state"] == "failed" {
				// Sent again, as the user of `cf delete-service` would.
				break
			}
			Expect(time.Now()).To(BeTemporally("<", deadline), "instance %s is still being deleted: %d %v %v", id, code, body, err)
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// provisionUntilDone sends a provision again until the broker says the
// instance exists, as Cloud Controller's retry of a request that got no
// answer does.
func provisionUntilDone(sys *systemtest.System, id string) {
	GinkgoHelper()
	Eventually(func(g Gomega) int {
		code, body, err := sys.OSB("PUT", provisionPath(id), provisionBody(nil))
		g.Expect(err).NotTo(HaveOccurred())
		if code < 500 && code != http.StatusCreated && code != http.StatusOK {
			StopTrying(fmt.Sprintf("a provision retry answered %d: %v", code, body)).Now()
		}
		return code
	}).WithTimeout(time.Minute).WithPolling(200 * time.Millisecond).Should(BeElementOf(http.StatusCreated, http.StatusOK))
}

func bind(sys *systemtest.System, id, bindingID string) (int, map[string]any) {
	GinkgoHelper()
	return osbCall(sys, "PUT", "/v2/service_instances/"+id+"/service_bindings/"+bindingID, map[string]any{
		"service_id": systemtest.ServiceID, "plan_id": systemtest.DedicatedPlanID, "app_guid": "app-" + bindingID,
	})
}

func client(creds map[string]any) *redis.Client {
	GinkgoHelper()
	opt, err := redis.ParseURL(creds["uri"].(string))
	Expect(err).NotTo(HaveOccurred())
	// Retries off, so that a failure shows at once.
	opt.MaxRetries = -1
	opt.DialTimeout = 2 * time.Second
	opt.ReadTimeout = 10 * time.Second
	c := redis.NewClient(opt)
	DeferCleanup(c.Close)
	return c
}

func credentials(body map[string]any) map[string]any {
	GinkgoHelper()
	c, ok := body["credentials"].(map[string]any)
	Expect(ok).To(BeTrue(), "no credentials in %v", body)
	return c
}

// poolNodes returns GET /admin/v1/pool as the broker sent it.
func poolNodes(sys *systemtest.System) []map[string]any {
	GinkgoHelper()
	req, err := http.NewRequest("GET", sys.BrokerURL+"/admin/v1/pool", nil)
	Expect(err).NotTo(HaveOccurred())
	req.SetBasicAuth(sys.Username, sys.Password)
	resp, err := httpClient.Do(req)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	Expect(resp.StatusCode).To(Equal(http.StatusOK))
	var out struct {
		Nodes []map[string]any `json:"nodes"`
	}
	Expect(json.NewDecoder(resp.Body).Decode(&out)).To(Succeed())
	return out.Nodes
}

// pool returns the pool by node id.
func pool(sys *systemtest.System) map[string]map[string]any {
	GinkgoHelper()
	m := map[string]map[string]any{}
	for _, n := range poolNodes(sys) {
		m[n["id"].(string)] = n
	}
	return m
}

// poolStates returns each node's state, by node id.
func poolStates(sys *systemtest.System) map[string]string {
	GinkgoHelper()
	m := map[string]string{}
	for _, n := range poolNodes(sys) {
		m[n["id"].(string)], _ = n["state"].(string)
	}
	return m
}

// expectSettled waits until no node is resetting or quarantined: whatever
// was cut short has been finished.
func expectSettled(sys *systemtest.System) {
	GinkgoHelper()
	Eventually(func() map[string]string { return poolStates(sys) }).
		Should(HaveEach(BeElementOf("free", "claimed")), "every node free or claimed")
}

// expectPoolConsistent checks what must hold of the pool whatever happened
// before, when no request is in flight: every configured node appears once;
// a free node holds no instance and its agent says it is free; no instance
// is recorded on two nodes; a claimed node's instance exists, says it is on
// that node, and the node's agent says that instance holds it; and every
// instance of instances (those the test knows exist) holds a claimed node.
// It returns the pool by node id.
func expectPoolConsistent(sys *systemtest.System, instances ...string) map[string]map[string]any {
	GinkgoHelper()
	byID := map[string]map[string]any{}
	holder := map[string]string{}
	for _, n := range poolNodes(sys) {
		id := n["id"].(string)
		Expect(byID).NotTo(HaveKey(id), "node %s appears twice in the pool", id)
		byID[id] = n
		inst, _ := n["instance"].(string)
		if n["state"] == "free" {
			Expect(inst).To(BeEmpty(), "free node %s names instance %s", id, inst)
			continue
		}
		Expect(inst).NotTo(BeEmpty(), "node %s is %s for no instance", id, n["state"])
		Expect(holder).NotTo(HaveKey(inst), "instance %s is recorded on nodes %s and %s", inst, holder[inst], id)
		holder[inst] = id
	}
	var configured []string
	for _, p := range sys.Nodes {
		configured = append(configured, p.Name)
	}
	Expect(byID).To(HaveLen(len(configured)), "the pool holds exactly the configured nodes")
	for i, id := range configured {
		n, ok := byID[id]
		Expect(ok).To(BeTrue(), "node %s is missing from the pool", id)
		agent := nodeAgentState(sys, i)
		switch n["state"] {
		case "free":
			Expect(agent.State).To(Equal("free"), "the pool has node %s free, its agent says %s", id, agent.State)
		case "claimed":
			inst := n["instance"].(string)
			code, body := osbCall(sys, "GET", "/v2/service_instances/"+inst, nil)
			Expect(code).To(Equal(http.StatusOK), "instance %s holding node %s: %v", inst, id, body)
			Expect(attributes(body)["node"]).To(Equal(id), "instance %s", inst)
			Expect(agent.State).To(Equal("claimed"), "the pool has node %s claimed by %s", id, inst)
			Expect(agent.InstanceID).To(Equal(inst), "the agent of node %s", id)
		}
	}
	for _, inst := range instances {
		id, ok := holder[inst]
		Expect(ok).To(BeTrue(), "instance %s holds no node", inst)
		Expect(byID[id]["state"]).To(Equal("claimed"), "the node of instance %s", inst)
	}
	return byID
}

// agentState is what a node agent's state file says of its node.
type agentState struct {
	State      string `json:"state"`
	InstanceID string `json:"instance_id"`
	ResetError string `json:"reset_error"`
}

// nodeAgentState reads node i's state file, as its agent last wrote it
// (atomically, so never half).
func nodeAgentState(sys *systemtest.System, i int) agentState {
	GinkgoHelper()
	data, err := os.ReadFile(filepath.Join(sys.NodeDirs[i], "state.json"))
	Expect(err).NotTo(HaveOccurred())
	var s agentState
	Expect(json.Unmarshal(data, &s)).To(Succeed())
	return s
}

func attributes(body map[string]any) map[string]any {
	md, _ := body["metadata"].(map[string]any)
	attrs, _ := md["attributes"].(map[string]any)
	return attrs
}

// nodeOf returns the index of the node holding an instance.
func nodeOf(sys *systemtest.System, id string) int {
	GinkgoHelper()
	code, body := osbCall(sys, "GET", "/v2/service_instances/"+id, nil)
	Expect(code).To(Equal(http.StatusOK), "%v", body)
	name, _ := attributes(body)["node"].(string)
	for i, p := range sys.Nodes {
		if p.Name == name {
			return i
		}
	}
	Fail(fmt.Sprintf("instance %s is on node %q, not a node of the system", id, name))
	return -1
}

// redisPid reads the pid file node i's agent keeps for its redis-server.
func redisPid(sys *systemtest.System, i int) int {
	GinkgoHelper()
	data, err := os.ReadFile(filepath.Join(sys.NodeDirs[i], "redis.pid"))
	Expect(err).NotTo(HaveOccurred())
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	Expect(err).NotTo(HaveOccurred())
	return pid
}

// serverPid is the process_id redis-server reports in INFO server.
func serverPid(ctx context.Context, rc *redis.Client) (int, error) {
	info, err := rc.InfoMap(ctx, "server").Result()
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(info["Server"]["process_id"])
}

// dirSize sums the sizes of the files under dir.
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

var ctx = context.Background()
