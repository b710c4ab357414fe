package dedicatedha_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
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

func unbind(sys *systemtest.System, id, bindingID string) int {
	GinkgoHelper()
	code, _ := systemspec.OSB(sys, "DELETE", fmt.Sprintf("/v2/service_instances/%s/service_bindings/%s?service_id=%s&plan_id=%s",
		id, bindingID, systemtest.ServiceID, systemtest.HAPlanID), nil)
	return code
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
		DialTimeout: oneShot, ReadTimeout: oneShot, WriteTimeout: oneShot, MaxRetries: -1,
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
		DialTimeout: oneShot, ReadTimeout: oneShot, MaxRetries: -1,
	})
	DeferCleanup(c.Close)
	return c
}

// oneShot bounds a member's or a Sentinel's answer to a check asked once
// (a refusal, WRONGPASS, NOPERM): long enough for a loaded two-core machine
// running race-detector builds, so that a slow answer is not taken for the
// wrong one.
const oneShot = 5 * time.Second

// sentinelLeader asks node i's Sentinel, as the binding's user, which
// address leads.
func sentinelLeader(sys *systemtest.System, i int, creds map[string]any) (string, error) {
	c := redis.NewSentinelClient(&redis.Options{
		Addr:     net.JoinHostPort(sys.NodeHosts[i], strconv.Itoa(sys.SentinelPorts[i])),
		Username: creds["username"].(string), Password: creds["password"].(string),
		DialTimeout: oneShot, ReadTimeout: oneShot, MaxRetries: -1,
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

// expectPoolConsistent checks, when no request is in flight, that every
// node is free or claimed; a free node's agent says it is free; a claimed
// node's instance exists, names the node among its group's, and the
// node's agent says that instance holds it; a group holds three nodes.
// It returns the instances holding nodes.
func expectPoolConsistent(sys *systemtest.System) []string {
	GinkgoHelper()
	held := map[string][]string{}
	for i, p := range sys.Nodes {
		n := systemspec.Pool(sys)[p.Name]
		Expect(n).NotTo(BeNil(), "node %s is not in the pool", p.Name)
		agent := systemspec.NodeAgentState(sys, i)
		switch n["state"] {
		case "free":
			Expect(n["instance"]).To(BeNil(), "free node %s", p.Name)
			Expect(agent.State).To(Equal("free"), "the pool has node %s free", p.Name)
		case "claimed":
			inst := n["instance"].(string)
			held[inst] = append(held[inst], p.Name)
			code, body := systemspec.OSB(sys, "GET", "/v2/service_instances/"+inst, nil)
			Expect(code).To(Equal(http.StatusOK), "instance %s holding node %s: %v", inst, p.Name, body)
			Expect(systemspec.Attributes(body)["nodes"]).To(ContainElement(p.Name), "instance %s", inst)
			Expect(agent).To(Equal(systemspec.AgentState{State: "claimed", InstanceID: inst}), "the agent of node %s", p.Name)
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
