package sharedvm_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"
	osb "sigs.k8s.io/go-open-service-broker-client/v2"

	"github.com/cf-redis/redis-for-cf/src/testkit/systemspec"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

var _ = Describe("Updating an instance", Ordered, ContinueOnFailure, func() {
	var sys *system
	var id string
	var rc *redis.Client

	newParams := map[string]any{"maxmemory-policy": "allkeys-lru", "notify-keyspace-events": "Ex", "timeout": 300}

	update := func(params map[string]any) error {
		resp, err := sys.osb.UpdateInstance(updateRequest(id, params))
		if err == nil {
			Expect(resp.Async).To(BeFalse())
		}
		return err
	}

	// expiredEventArrives subscribes to expired-key events, lets a key
	// expire, and expects its event.
	expiredEventArrives := func(ctx context.Context) {
		GinkgoHelper()
		sub := rc.Subscribe(ctx, "__keyevent@0__:expired")
		defer sub.Close()
		_, err := sub.Receive(ctx) // the subscription's confirmation
		Expect(err).NotTo(HaveOccurred())
		key := newID("expiring")
		Expect(rc.Set(ctx, key, "v", 50*time.Millisecond).Err()).To(Succeed())
		var msg *redis.Message
		Eventually(sub.Channel(), 5*time.Second).Should(Receive(&msg))
		Expect(msg.Payload).To(Equal(key))
	}

	BeforeAll(func() {
		sys = startSystem(systemtest.Options{})
		id = newID("inst")
		sys.provision(id, nil)
		rc = connect(sys.bind(id, newID("bind")))
	})

	It("applies maxmemory-policy, notify-keyspace-events and timeout to the running server, without a restart", func(ctx SpecContext) {
		pid, err := serverPid(ctx, rc)
		Expect(err).NotTo(HaveOccurred())
		Expect(infoField(ctx, rc, "memory", "maxmemory_policy")).To(Equal("noeviction"))

		Expect(update(newParams)).To(Succeed())

		Expect(serverPid(ctx, rc)).To(Equal(pid))
		Expect(infoField(ctx, rc, "memory", "maxmemory_policy")).To(Equal("allkeys-lru"))
		expiredEventArrives(ctx)
	})

	It("returns the parameters on GET instance, with no password in the answer", func() {
		got, err := sys.osb.GetInstance(&osb.GetInstanceRequest{InstanceID: id})
		Expect(err).NotTo(HaveOccurred())
		Expect(got.PlanID).To(Equal(systemtest.PlanID))
		Expect(got.Parameters).To(HaveKeyWithValue("maxmemory-policy", "allkeys-lru"))
		Expect(got.Parameters).To(HaveKeyWithValue("notify-keyspace-events", "Ex"))
		Expect(got.Parameters).To(HaveKeyWithValue("timeout", BeNumerically("==", 300)))

		status, body := sys.do(http.MethodGet, instancePath(id), nil)
		Expect(status).To(Equal(http.StatusOK))
		Expect(strings.ToLower(string(body))).NotTo(ContainSubstring("password"))
		for _, secret := range sys.secrets() {
			Expect(string(body)).NotTo(ContainSubstring(secret))
		}
	})

	It("keeps the parameters when its redis-server is killed with -9 and comes back", func(ctx SpecContext) {
		pid := sys.redisPid(id)
		Expect(syscall.Kill(pid, syscall.SIGKILL)).To(Succeed())
		Eventually(func() (int, error) { return serverPid(ctx, rc) }, 15*time.Second, 50*time.Millisecond).
			Should(SatisfyAll(BeNumerically(">", 0), Not(Equal(pid))))

		Expect(infoField(ctx, rc, "memory", "maxmemory_policy")).To(Equal("allkeys-lru"))
		expiredEventArrives(ctx)
	})

	It("keeps the values of the parameters an update leaves out", func(ctx SpecContext) {
		Expect(update(map[string]any{"timeout": 10})).To(Succeed())
		got, err := sys.osb.GetInstance(&osb.GetInstanceRequest{InstanceID: id})
		Expect(err).NotTo(HaveOccurred())
		Expect(got.Parameters).To(HaveKeyWithValue("timeout", BeNumerically("==", 10)))
		Expect(got.Parameters).To(HaveKeyWithValue("maxmemory-policy", "allkeys-lru"))
		Expect(got.Parameters).To(HaveKeyWithValue("notify-keyspace-events", "Ex"))
		Expect(infoField(ctx, rc, "memory", "maxmemory_policy")).To(Equal("allkeys-lru"))
	})

	DescribeTable("answers 400 naming the key to parameters outside the schema, and changes nothing",
		func(ctx SpecContext, params map[string]any, key string) {
			err := update(params)
			Expect(httpStatus(err)).To(Equal(http.StatusBadRequest), fmt.Sprint(err))
			Expect(errDescription(err)).To(ContainSubstring(key))

			got, err := sys.osb.GetInstance(&osb.GetInstanceRequest{InstanceID: id})
			Expect(err).NotTo(HaveOccurred())
			Expect(got.Parameters).To(HaveKeyWithValue("maxmemory-policy", "allkeys-lru"))
			Expect(infoField(ctx, rc, "memory", "maxmemory_policy")).To(Equal("allkeys-lru"))
		},
		Entry("an unknown maxmemory-policy", map[string]any{"maxmemory-policy": "bogus"}, `"maxmemory-policy"`),
		Entry("an unknown parameter beside a valid one", map[string]any{"maxmemory-policy": "volatile-lru", "nope": 1}, `"nope"`),
		Entry("a negative timeout", map[string]any{"timeout": -1}, `"timeout"`),
		Entry("a keyspace event flag Redis does not know", map[string]any{"notify-keyspace-events": "Ex!"}, `"notify-keyspace-events"`),
	)

	It("refuses the platform's own addresses and leaders the operator did not list as replica_of (400), and stays a leader", func(ctx SpecContext) {
		port := func(addr string) int {
			_, p, err := net.SplitHostPort(addr)
			Expect(err).NotTo(HaveOccurred())
			n, err := strconv.Atoi(p)
			Expect(err).NotTo(HaveOccurred())
			return n
		}
		redisPort := port(rc.Options().Addr)
		for host, says := range map[string]string{
			"127.0.0.1":        "127.0.0.1 is a loopback address",
			"::ffff:127.0.0.1": "::ffff:127.0.0.1 is a loopback address",
			"localhost":        "localhost is a loopback address",
			"169.254.169.254":  "169.254.169.254 is a link-local address",
			"0x7f.1":           `leader.host: "0x7f.1" is neither an IP address`,
			"2130706433":       `leader.host: "2130706433" is neither an IP address`,
			"203.0.113.7":      "203.0.113.7 is not in the operator's external_leaders list",
		} {
			for _, p := range []int{redisPort, port(sys.Agents[0].Addr)} {
				err := update(map[string]any{"replica_of": map[string]any{"host": host, "port": p, "username": "default", "password": "x"}})
				Expect(httpStatus(err)).To(Equal(http.StatusBadRequest), "%s:%d: %v", host, p, err)
				Expect(errDescription(err)).To(ContainSubstring(says), host)
			}
		}
		Expect(infoField(ctx, rc, "replication", "role")).To(Equal("master"))
		got, err := sys.osb.GetInstance(&osb.GetInstanceRequest{InstanceID: id})
		Expect(err).NotTo(HaveOccurred())
		Expect(got.Parameters).NotTo(HaveKey("replica_of"))
	})

	It("answers 400 to a change to a plan that does not exist", func() {
		plan := "no-such-plan"
		_, err := sys.osb.UpdateInstance(&osb.UpdateInstanceRequest{
			InstanceID: id, AcceptsIncomplete: true, ServiceID: systemtest.ServiceID, PlanID: &plan,
		})
		Expect(httpStatus(err)).To(Equal(http.StatusBadRequest), fmt.Sprint(err))
		Expect(errDescription(err)).To(ContainSubstring(plan))
	})

	It("answers an update of an instance that does not exist with 404", func() {
		_, err := sys.osb.UpdateInstance(updateRequest(newID("inst"), newParams))
		Expect(httpStatus(err)).To(Equal(http.StatusNotFound), fmt.Sprint(err))
	})
})

var _ = Describe("Changing the plan's memory limit", func() {
	// restartBroker restarts the broker with the plan's maxmemory_mb set to
	// mb, as a redeploy with a changed shared_vm.maxmemory_mb does.
	restartBroker := func(sys *system, mb int) {
		GinkgoHelper()
		Expect(sys.Broker.Stop()).To(Succeed())
		data, err := os.ReadFile(sys.Broker.Config)
		Expect(err).NotTo(HaveOccurred())
		var cfg map[string]any
		Expect(json.Unmarshal(data, &cfg)).To(Succeed())
		cfg["shared_vm"].(map[string]any)["maxmemory_mb"] = mb
		data, err = json.Marshal(cfg)
		Expect(err).NotTo(HaveOccurred())
		Expect(os.WriteFile(sys.Broker.Config, data, 0o600)).To(Succeed())
		Expect(sys.Broker.Start()).To(Succeed())
	}

	It("reaches running instances live, keeping their data and credentials, and never shrinks one below what it holds", func(ctx SpecContext) {
		sys := startSystem(systemtest.Options{MaxMemoryMB: 16, AgentMemoryMB: 128})
		small, full := newID("small"), newID("full")
		sys.provision(small, nil)
		sys.provision(full, nil)
		rcSmall, rcFull := connect(sys.bind(small, newID("bind"))), connect(sys.bind(full, newID("bind")))
		systemspec.WriteKeys(ctx, rcSmall, "kept", 100)
		pid, err := serverPid(ctx, rcSmall)
		Expect(err).NotTo(HaveOccurred())
		maxmemory := func(rc *redis.Client) func() (string, error) {
			return func() (string, error) { return infoField(ctx, rc, "memory", "maxmemory") }
		}

		restartBroker(sys, 48)
		Eventually(maxmemory(rcSmall), 10*time.Second).Should(Equal(strconv.Itoa(48 << 20)))
		Eventually(maxmemory(rcFull), 10*time.Second).Should(Equal(strconv.Itoa(48 << 20)))
		Expect(serverPid(ctx, rcSmall)).To(Equal(pid), "applied live")
		Expect(rcSmall.DBSize(ctx).Val()).To(BeEquivalentTo(100))

		// Fill one past 8 MB; a plan shrunk to 8 MB shrinks only the other.
		value := strings.Repeat("x", 64<<10)
		for i := range 200 {
			Expect(rcFull.Set(ctx, fmt.Sprintf("big-%d", i), value, 0).Err()).To(Succeed())
		}
		restartBroker(sys, 8)
		Eventually(maxmemory(rcSmall), 10*time.Second).Should(Equal(strconv.Itoa(8 << 20)))
		Consistently(maxmemory(rcFull), 2*time.Second).Should(Equal(strconv.Itoa(48 << 20)))
		Expect(rcFull.DBSize(ctx).Val()).To(BeEquivalentTo(200), "nothing evicted")
		Expect(sys.Broker.Log()).To(ContainSubstring("an instance keeps its memory limit for now"))

		// A limit beyond the VM's budget (2 x 100 MB > 128 MB) reaches what fits.
		restartBroker(sys, 100)
		Eventually(func() int {
			n := 0
			for _, rc := range []*redis.Client{rcSmall, rcFull} {
				if v, _ := infoField(ctx, rc, "memory", "maxmemory"); v == strconv.Itoa(100<<20) {
					n++
				}
			}
			return n
		}, 10*time.Second).Should(Equal(1))
		Consistently(func() int {
			n := 0
			for _, rc := range []*redis.Client{rcSmall, rcFull} {
				if v, _ := infoField(ctx, rc, "memory", "maxmemory"); v == strconv.Itoa(100<<20) {
					n++
				}
			}
			return n
		}, time.Second).Should(Equal(1))
		Expect(rcSmall.Get(ctx, "kept:1").Err()).To(Succeed(), "credentials and data kept")
	})
})
