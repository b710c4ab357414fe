package sharedvm_test

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"
	osb "sigs.k8s.io/go-open-service-broker-client/v2"

	"github.com/cf-redis/redis-for-cf/src/testkit/systemspec"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

// serving keeps writing and reading an instance until stopped, and returns
// the failures it saw.
func serving(rc *redis.Client) (stop func() []error) {
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var failures []error
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			key := fmt.Sprintf("serving:%d", i%100)
			err := rc.Set(ctx, key, i, 0).Err()
			if err == nil {
				var got int
				got, err = rc.Get(ctx, key).Int()
				if err == nil && got != i {
					err = fmt.Errorf("read %d after writing %d", got, i)
				}
			}
			if err != nil && ctx.Err() == nil {
				mu.Lock()
				failures = append(failures, err)
				mu.Unlock()
			}
			time.Sleep(2 * time.Millisecond)
		}
	})
	return func() []error {
		cancel()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return failures
	}
}

var _ = Describe("A redis-server killed with -9", Ordered, func() {
	var sys *system

	BeforeAll(func() {
		sys = startSystem(systemtest.Options{})
	})

	It("is back within seconds, with a new pid and the data written before the kill", func(ctx SpecContext) {
		id := newID("inst")
		sys.provision(id, nil)
		rc := connect(sys.bind(id, newID("bind")))
		systemspec.WriteKeys(ctx, rc, "before-kill", 1000)
		systemspec.WaitForAOF()

		pid := sys.redisPid(id)
		Expect(serverPid(ctx, rc)).To(Equal(pid))
		Expect(syscall.Kill(pid, syscall.SIGKILL)).To(Succeed())

		Eventually(func() (int, error) { return serverPid(ctx, rc) }, 10*time.Second, 20*time.Millisecond).
			Should(SatisfyAll(BeNumerically(">", 0), Not(Equal(pid))))
		systemspec.ExpectKeys(ctx, rc, "before-kill", 1000)
		Expect(sys.redisPid(id)).NotTo(Equal(pid))
		Expect(alive(pid)).To(BeFalse())
	})
})

var _ = Describe("The agent killed with -9", Ordered, ContinueOnFailure, func() {
	var sys *system
	var id string
	var c creds
	var rc *redis.Client

	BeforeAll(func(ctx SpecContext) {
		sys = startSystem(systemtest.Options{})
		id = newID("inst")
		sys.provision(id, nil)
		c = sys.bind(id, newID("bind"))
		rc = connect(c)
		systemspec.WriteKeys(ctx, rc, "before-agent-kill", 100)
	})

	It("leaves its instances serving, and once restarted adopts them: same pid, bindings work", func(ctx SpecContext) {
		pid := sys.redisPid(id)
		stop := serving(connect(c))

		sys.Agents[0].Kill9()
		Expect(rc.Ping(ctx).Err()).To(Succeed())
		Expect(sys.Agents[0].Start()).To(Succeed())
		// The agent adopts while it already serves its API: wait until the
		// instance is back under supervision.
		Eventually(func() string {
			_, body := sys.doAgent(http.MethodGet, "/v1/instances/"+id, nil)
			return string(body)
		}).Should(ContainSubstring(`"state":"running"`))

		Expect(stop()).To(BeEmpty())
		Expect(sys.redisPid(id)).To(Equal(pid))
		Expect(serverPid(ctx, rc)).To(Equal(pid))
		systemspec.ExpectKeys(ctx, rc, "before-agent-kill", 100)

		bid := newID("bind")
		c2 := sys.bind(id, bid)
		Expect(connect(c2).Get(ctx, "before-agent-kill:7").Val()).To(Equal("7"))
		sys.unbind(id, bid)
		Expect(connect(c2).Ping(ctx).Err()).To(MatchError(ContainSubstring("WRONGPASS")))
	})

	It("supervises the adopted redis-server: killed with -9, it comes back", func(ctx SpecContext) {
		pid := sys.redisPid(id)
		Expect(syscall.Kill(pid, syscall.SIGKILL)).To(Succeed())
		Eventually(func() (int, error) { return serverPid(ctx, rc) }, 10*time.Second, 20*time.Millisecond).
			Should(SatisfyAll(BeNumerically(">", 0), Not(Equal(pid))))
		systemspec.ExpectKeys(ctx, rc, "before-agent-kill", 100)
	})

	It("gives a new instance a port of its own after the restart", func(ctx SpecContext) {
		other := newID("inst")
		sys.provision(other, nil)
		c2 := sys.bind(other, newID("bind"))
		Expect(c2.Port).NotTo(Equal(c.Port))
		Expect(connect(c2).Ping(ctx).Err()).To(Succeed())
		Expect(rc.Ping(ctx).Err()).To(Succeed())
	})

	It("brings its instances back with their data after a crash of the whole VM: agent and redis-servers killed with -9", func(ctx SpecContext) {
		systemspec.WriteKeys(ctx, rc, "before-reboot", 500)
		systemspec.WaitForAOF()

		sys.Agents[0].Kill9()
		pidFiles, err := filepath.Glob(filepath.Join(sys.agentDir(0), "instances", "*", "redis.pid"))
		Expect(err).NotTo(HaveOccurred())
		Expect(pidFiles).NotTo(BeEmpty())
		var pids []int
		for _, f := range pidFiles {
			pid := sys.redisPid(filepath.Base(filepath.Dir(f)))
			Expect(syscall.Kill(pid, syscall.SIGKILL)).To(Succeed())
			pids = append(pids, pid)
		}
		for _, pid := range pids {
			Eventually(func() bool { return alive(pid) }).Should(BeFalse())
		}
		Expect(rc.Ping(ctx).Err()).To(HaveOccurred())

		Expect(sys.Agents[0].Start()).To(Succeed())
		Eventually(func() error { return rc.Ping(ctx).Err() }, 15*time.Second, 20*time.Millisecond).Should(Succeed())
		Expect(serverPid(ctx, rc)).NotTo(BeElementOf(pids))
		systemspec.ExpectKeys(ctx, rc, "before-reboot", 500)
		systemspec.ExpectKeys(ctx, rc, "before-agent-kill", 100)
		Expect(connect(sys.bind(id, newID("bind"))).Get(ctx, "before-reboot:42").Val()).To(Equal("42"))
	})
})

var _ = Describe("The broker killed with -9", Ordered, ContinueOnFailure, func() {
	var sys *system

	BeforeAll(func() {
		sys = startSystem(systemtest.Options{})
	})

	// expectAllThere checks that the broker still knows an instance and its
	// binding, hands out the same credentials, and deletes the instance.
	expectAllThere := func(ctx context.Context, id, bindingID string, c creds) {
		GinkgoHelper()
		got, err := sys.osb.GetInstance(&osb.GetInstanceRequest{InstanceID: id})
		Expect(err).NotTo(HaveOccurred())
		Expect(got.Parameters).To(HaveKeyWithValue("maxmemory-policy", "allkeys-lru"))

		status, b := sys.getBinding(id, bindingID)
		Expect(status).To(Equal(http.StatusOK), b.Description)
		Expect(b.creds()).To(Equal(c))
		status, again := sys.bindRaw(id, bindingID, "app-1")
		Expect(status).To(Equal(http.StatusOK), again.Description)
		Expect(again.creds()).To(Equal(c))

		rc := connect(c)
		systemspec.ExpectKeys(ctx, rc, "before-broker-kill", 100)
		Expect(connect(sys.bind(id, newID("bind"))).Get(ctx, "before-broker-kill:3").Val()).To(Equal("3"))

		sys.deprovision(id)
		Expect(rc.Ping(ctx).Err()).To(HaveOccurred())
		Expect(sys.instanceDir(id)).NotTo(BeAnExistingFile())
	}

	setUp := func(ctx context.Context) (string, string, creds) {
		GinkgoHelper()
		id, bindingID := newID("inst"), newID("bind")
		sys.provision(id, map[string]any{"maxmemory-policy": "allkeys-lru"})
		c := sys.bind(id, bindingID)
		systemspec.WriteKeys(ctx, connect(c), "before-broker-kill", 100)
		return id, bindingID, c
	}

	It("keeps instances, bindings and data once restarted, and still deletes", func(ctx SpecContext) {
		id, bindingID, c := setUp(ctx)
		sys.Broker.Kill9()
		Expect(sys.Broker.Start()).To(Succeed())
		expectAllThere(ctx, id, bindingID, c)
	})

	It("keeps everything when the broker and the agent are killed with -9 together", func(ctx SpecContext) {
		id, bindingID, c := setUp(ctx)
		sys.Broker.Kill9()
		sys.Agents[0].Kill9()
		Expect(sys.Agents[0].Start()).To(Succeed())
		Expect(sys.Broker.Start()).To(Succeed())
		expectAllThere(ctx, id, bindingID, c)
	})
})
