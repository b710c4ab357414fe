package dedicatedvm_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
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

// poolStates returns each node's state, by node id.
func poolStates(sys *systemtest.System) map[string]string {
	GinkgoHelper()
	m := map[string]string{}
	for _, n := range systemspec.PoolNodes(sys) {
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
	for _, n := range systemspec.PoolNodes(sys) {
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
		agent := systemspec.NodeAgentState(sys, i)
		switch n["state"] {
		case "free":
			Expect(agent.State).To(Equal("free"), "the pool has node %s free, its agent says %s", id, agent.State)
		case "claimed":
			inst := n["instance"].(string)
			code, body := systemspec.OSB(sys, "GET", "/v2/service_instances/"+inst, nil)
			Expect(code).To(Equal(http.StatusOK), "instance %s holding node %s: %v", inst, id, body)
			Expect(systemspec.Attributes(body)["node"]).To(Equal(id), "instance %s", inst)
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

// nodeOf returns the index of the node holding an instance.
func nodeOf(sys *systemtest.System, id string) int {
	GinkgoHelper()
	code, body := systemspec.OSB(sys, "GET", "/v2/service_instances/"+id, nil)
	Expect(code).To(Equal(http.StatusOK), "%v", body)
	name, _ := systemspec.Attributes(body)["node"].(string)
	for i, p := range sys.Nodes {
		if p.Name == name {
			return i
		}
	}
	Fail(fmt.Sprintf("instance %s is on node %q, not a node of the system", id, name))
	return -1
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
