package dedicatedha_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/testkit/systemspec"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

// startSystem starts a broker offering the dedicated-ha plan on n nodes,
// each with its Sentinel.
func startSystem(n int, opts systemtest.Options) *systemtest.System {
	GinkgoHelper()
	opts.Nodes, opts.HA = n, true
	return systemspec.Start(bins, opts)
}

// osbCall is systemtest.System.OSB for a broker that is expected to answer.
func osbCall(sys *systemtest.System, method, path string, body any) (int, map[string]any) {
	GinkgoHelper()
	code, out, err := sys.OSB(method, path, body)
	Expect(err).NotTo(HaveOccurred())
	return code, out
}

func provisionBody(plan string) map[string]any {
	return map[string]any{"service_id": systemtest.ServiceID, "plan_id": plan, "organization_guid": "org", "space_guid": "space"}
}

func provisionPath(id string) string {
	return "/v2/service_instances/" + id + "?accepts_incomplete=true"
}

func deletePath(id, plan string) string {
	return fmt.Sprintf("/v2/service_instances/%s?service_id=%s&plan_id=%s&accepts_incomplete=true", id, systemtest.ServiceID, plan)
}

func provision(sys *systemtest.System, id, plan string) (int, map[string]any) {
	GinkgoHelper()
	return osbCall(sys, "PUT", provisionPath(id), provisionBody(plan))
}

// deprovision deletes an instance and, when the broker answers 202, polls
// last_operation until it is gone, as Cloud Controller does.
func deprovision(sys *systemtest.System, id, plan string) int {
	GinkgoHelper()
	code, body := osbCall(sys, "DELETE", deletePath(id, plan), nil)
	if code != http.StatusAccepted {
		return code
	}
	Eventually(func() int {
		c, b := osbCall(sys, "GET", "/v2/service_instances/"+id+"/last_operation?operation=delete", nil)
		Expect(b["state"]).NotTo(Equal("failed"), "the delete failed: %v", b)
		return c
	}).WithTimeout(2*time.Minute).Should(Equal(http.StatusGone), "%v", body)
	return http.StatusOK
}

func bind(sys *systemtest.System, id, bindingID string) (int, map[string]any) {
	GinkgoHelper()
	return osbCall(sys, "PUT", "/v2/service_instances/"+id+"/service_bindings/"+bindingID, map[string]any{
		"service_id": systemtest.ServiceID, "plan_id": systemtest.HAPlanID, "app_guid": "app-" + bindingID,
	})
}

func unbind(sys *systemtest.System, id, bindingID string) int {
	GinkgoHelper()
	code, _ := osbCall(sys, "DELETE", fmt.Sprintf("/v2/service_instances/%s/service_bindings/%s?service_id=%s&plan_id=%s",
		id, bindingID, systemtest.ServiceID, systemtest.HAPlanID), nil)
	return code
}

func credentials(body map[string]any) map[string]any {
	GinkgoHelper()
	c, ok := body["credentials"].(map[string]any)
	Expect(ok).To(BeTrue(), "no credentials in %v", body)
	return c
}

// failoverClient is the go-redis FailoverClient an app makes of a
// binding's credentials: the Sentinels and master name, and the binding's
// user on the Sentinels and the members alike.
func failoverClient(creds map[string]any) *redis.Client {
	GinkgoHelper()
	var addrs []string
	for _, s := range creds["sentinels"].([]any) {
		m := s.(map[string]any)
		addrs = append(addrs, net.JoinHostPort(m["host"].(string), strconv.Itoa(int(m["port"].(float64)))))
	}
	user, pw := creds["username"].(string), creds["password"].(string)
	c := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName: creds["master_name"].(string), SentinelAddrs: addrs,
		SentinelUsername: user, SentinelPassword: pw, Username: user, Password: pw,
		TLSConfig:   tlsConfig(creds),
		DialTimeout: time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second, MaxRetries: -1,
	})
	DeferCleanup(c.Close)
	return c
}

// tlsConfig verifies the group's redis-servers and Sentinels with the
// credentials' tls_ca; nil when they carry none (no TLS).
func tlsConfig(creds map[string]any) *tls.Config {
	GinkgoHelper()
	ca, _ := creds["tls_ca"].(string)
	if ca == "" {
		return nil
	}
	pool := x509.NewCertPool()
	Expect(pool.AppendCertsFromPEM([]byte(ca))).To(BeTrue())
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// memberClient connects to node i's redis-server with a binding's user.
func memberClient(sys *systemtest.System, i int, creds map[string]any) *redis.Client {
	GinkgoHelper()
	c := redis.NewClient(&redis.Options{
		Addr:     net.JoinHostPort(sys.NodeHosts[i], strconv.Itoa(sys.NodePorts[i])),
		Username: creds["username"].(string), Password: creds["password"].(string),
		DialTimeout: time.Second, ReadTimeout: 2 * time.Second, MaxRetries: -1,
	})
	DeferCleanup(c.Close)
	return c
}

// sentinelLeader asks node i's Sentinel, as the binding's user, which
// address leads.
func sentinelLeader(sys *systemtest.System, i int, creds map[string]any) (string, error) {
	c := redis.NewSentinelClient(&redis.Options{
		Addr:     net.JoinHostPort(sys.NodeHosts[i], strconv.Itoa(sys.SentinelPorts[i])),
		Username: creds["username"].(string), Password: creds["password"].(string),
		DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1,
	})
	defer c.Close()
	addr, err := c.GetMasterAddrByName(ctx, creds["master_name"].(string)).Result()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(addr[0], addr[1]), nil
}

// nodeAt is the index of the node whose redis-server is at host:port.
func nodeAt(sys *systemtest.System, addr string) int {
	GinkgoHelper()
	for i := range sys.Nodes {
		if net.JoinHostPort(sys.NodeHosts[i], strconv.Itoa(sys.NodePorts[i])) == addr {
			return i
		}
	}
	Fail(fmt.Sprintf("no node at %s", addr))
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

// agentState is what a node agent's state file says of its node.
type agentState struct {
	State      string `json:"state"`
	InstanceID string `json:"instance_id"`
}

// nodeAgentState reads node i's state file, as its agent last wrote it.
func nodeAgentState(sys *systemtest.System, i int) agentState {
	GinkgoHelper()
	data, err := os.ReadFile(filepath.Join(sys.NodeDirs[i], "state.json"))
	Expect(err).NotTo(HaveOccurred())
	var s agentState
	Expect(json.Unmarshal(data, &s)).To(Succeed())
	return s
}

// poolNodes returns GET /admin/v1/pool by node id.
func poolNodes(sys *systemtest.System) map[string]map[string]any {
	GinkgoHelper()
	req, err := http.NewRequest("GET", sys.BrokerURL+"/admin/v1/pool", nil)
	Expect(err).NotTo(HaveOccurred())
	req.SetBasicAuth(sys.Username, sys.Password)
	resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	Expect(resp.StatusCode).To(Equal(http.StatusOK))
	var out struct {
		Nodes []map[string]any `json:"nodes"`
	}
	Expect(json.NewDecoder(resp.Body).Decode(&out)).To(Succeed())
	m := map[string]map[string]any{}
	for _, n := range out.Nodes {
		m[n["id"].(string)] = n
	}
	return m
}

func attributes(body map[string]any) map[string]any {
	md, _ := body["metadata"].(map[string]any)
	attrs, _ := md["attributes"].(map[string]any)
	return attrs
}

// expectPoolConsistent checks, when no request is in flight, that every
// node is free or claimed; a free node's agent says it is free; a claimed
// node's instance exists, names the node among its group's, and the
// node's agent says that instance holds it; a group holds three nodes.
// It returns the instances holding nodes.
func expectPoolConsistent(sys *systemtest.System) []string {
	GinkgoHelper()
	held := map[string][]string{}
	for i, p := range sys.Nodes {
		n := poolNodes(sys)[p.Name]
		Expect(n).NotTo(BeNil(), "node %s is not in the pool", p.Name)
		agent := nodeAgentState(sys, i)
		switch n["state"] {
		case "free":
			Expect(n["instance"]).To(BeNil(), "free node %s", p.Name)
			Expect(agent.State).To(Equal("free"), "the pool has node %s free", p.Name)
		case "claimed":
			inst := n["instance"].(string)
			held[inst] = append(held[inst], p.Name)
			code, body := osbCall(sys, "GET", "/v2/service_instances/"+inst, nil)
			Expect(code).To(Equal(http.StatusOK), "instance %s holding node %s: %v", inst, p.Name, body)
			Expect(attributes(body)["nodes"]).To(ContainElement(p.Name), "instance %s", inst)
			Expect(agent).To(Equal(agentState{State: "claimed", InstanceID: inst}), "the agent of node %s", p.Name)
		default:
			Fail(fmt.Sprintf("node %s is %v", p.Name, n["state"]))
		}
	}
	for inst, nodes := range held {
		Expect(nodes).To(HaveLen(3), "instance %s", inst)
	}
	out := []string{}
	for inst := range held {
		out = append(out, inst)
	}
	slices.Sort(out)
	return out
}

// expectAllFreeAndClean checks that every node is free in the pool and by
// its agent, and that no Sentinel listens any more.
func expectAllFreeAndClean(sys *systemtest.System) {
	GinkgoHelper()
	Expect(expectPoolConsistent(sys)).To(BeEmpty())
	for i := range sys.Nodes {
		_, err := net.DialTimeout("tcp", net.JoinHostPort(sys.NodeHosts[i], strconv.Itoa(sys.SentinelPorts[i])), time.Second)
		Expect(err).To(HaveOccurred(), "node %d's Sentinel still listens after the reset", i)
	}
}

// expectBothFollowers waits until both followers confirm every write made
// so far (WAIT, within the client's read timeout, asked again until then).
func expectBothFollowers(c *redis.Client) {
	GinkgoHelper()
	Eventually(func() (int64, error) { return c.Do(ctx, "WAIT", 2, 1000).Int64() }).WithTimeout(time.Minute).Should(BeEquivalentTo(2))
}
