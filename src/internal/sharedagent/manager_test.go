package sharedagent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/instance"
	"github.com/cf-redis/redis-for-cf/src/internal/params"
	"github.com/cf-redis/redis-for-cf/src/internal/portalloc"
	"github.com/cf-redis/redis-for-cf/src/internal/redisconf"
	"github.com/cf-redis/redis-for-cf/src/internal/secret"
	"github.com/cf-redis/redis-for-cf/src/internal/sharedagent"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

func TestSharedagent(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "sharedagent")
}

const mb = 1 << 20

// agent is a real Manager behind the real HTTP handler, driven through the
// real client, with real redis-servers.
type agent struct {
	cfg    sharedagent.Config
	mgr    *sharedagent.Manager
	client *agentapi.Client
	srv    *httptest.Server
}

func startAgent(cfg sharedagent.Config) *agent {
	Expect(cfg.Validate()).To(Succeed())
	mgr, err := sharedagent.New(cfg, slog.New(slog.NewTextHandler(GinkgoWriter, nil)))
	Expect(err).NotTo(HaveOccurred())
	mgr.Start(context.Background())
	srv := httptest.NewServer(agentapi.NewHandler(mgr, cfg.Credentials, slog.New(slog.NewTextHandler(GinkgoWriter, nil))))
	client, err := agentapi.NewClient(agentapi.ClientConfig{URL: srv.URL, Credentials: cfg.Credentials})
	Expect(err).NotTo(HaveOccurred())
	return &agent{cfg: cfg, mgr: mgr, client: client, srv: srv}
}

func (a *agent) stop() {
	a.srv.Close()
	a.mgr.Shutdown(context.Background())
	for _, d := range a.mgr.CgroupDirs() {
		Expect(d).NotTo(BeADirectory(), "an agent that shut down leaves no cgroup behind")
	}
}

func config(dir string) sharedagent.Config {
	return sharedagent.Config{
		Listen:         "127.0.0.1:0",
		Credentials:    agentapi.Credentials{Username: "broker", Password: secret.New()},
		Host:           "127.0.0.1",
		DataDir:        dir,
		MemoryBudgetMB: 256,
	}
}

func request(mem int64) agentapi.InstanceRequest {
	return agentapi.InstanceRequest{MaxMemoryBytes: mem * mb, Parameters: params.Defaults()}
}

func tenant(inst agentapi.Instance, user, pass string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: net.JoinHostPort(inst.Host, strconv.Itoa(inst.Port)), Username: user, Password: pass})
	DeferCleanup(c.Close)
	return c
}

func pidOf(dir, id string) int {
	data, err := os.ReadFile(filepath.Join(dir, "instances", id, "redis.pid"))
	Expect(err).NotTo(HaveOccurred())
	pid, err := strconv.Atoi(string(data[:len(data)-countNewline(data)]))
	Expect(err).NotTo(HaveOccurred())
	return pid
}

func countNewline(b []byte) int {
	if len(b) > 0 && b[len(b)-1] == '\n' {
		return 1
	}
	return 0
}

var _ = Describe("Manager", func() {
	var (
		dir string
		a   *agent
	)
	BeforeEach(func() {
		dir = tempDir()
	})
	JustBeforeEach(func() {
		if a == nil {
			a = startAgent(config(dir))
		}
		DeferCleanup(func() { a.stop(); a = nil })
	})

	It("creates a running instance once, and returns the same one to a repeated request", func(ctx SpecContext) {
		inst, err := a.client.Create(ctx, "i1", request(16))
		Expect(err).NotTo(HaveOccurred())
		Expect(inst.State).To(Equal("running"))
		Expect(inst.Port).To(BeNumerically(">=", portalloc.Default.Min))
		again, err := a.client.Create(ctx, "i1", request(16))
		Expect(err).NotTo(HaveOccurred())
		Expect(again.Port).To(Equal(inst.Port))
		_, err = a.client.Create(ctx, "i1", request(32))
		Expect(err).To(MatchError(agentapi.ErrConflict))
	})

	It("runs its many small servers' background tasks at redisconf.SharedHz, not Redis's default", func(ctx SpecContext) {
		inst, err := a.client.Create(ctx, "i1", request(16))
		Expect(err).NotTo(HaveOccurred())
		pw := secret.New()
		_, err = a.client.Bind(ctx, "i1", "b1", agentapi.BindingRequest{Password: pw})
		Expect(err).NotTo(HaveOccurred())
		info, err := tenant(inst, "b1", pw).InfoMap(ctx, "server").Result()
		Expect(err).NotTo(HaveOccurred())
		Expect(info["Server"]).To(HaveKeyWithValue("configured_hz", strconv.Itoa(redisconf.SharedHz)))
		conf, err := os.ReadFile(filepath.Join(dir, "instances", "i1", "redis.conf"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(conf)).To(ContainSubstring(fmt.Sprintf("\nhz %d\n", redisconf.SharedHz)))
	})

	It("serves each instance's verbs on that instance alone, and none on an instance it does not hold", func(ctx SpecContext) {
		i1, err := a.client.Create(ctx, "i1", request(16))
		Expect(err).NotTo(HaveOccurred())
		i2, err := a.client.Create(ctx, "i2", request(16))
		Expect(err).NotTo(HaveOccurred())
		Expect(i2.Port).NotTo(Equal(i1.Port))
		pw := secret.New()
		b, err := a.client.Bind(ctx, "i1", "b1", agentapi.BindingRequest{Password: pw})
		Expect(err).NotTo(HaveOccurred())
		Expect(b.Port).To(Equal(i1.Port))
		Expect(tenant(i1, "b1", pw).Set(ctx, "k", "v", 0).Err()).To(Succeed())
		Expect(tenant(i2, "b1", pw).Ping(ctx).Err()).To(MatchError(ContainSubstring("WRONGPASS")), "a binding opens its own instance only")
		p := params.Parameters{MaxMemoryPolicy: "volatile-ttl", NotifyKeyspaceEvents: "Ex", Timeout: 42}
		_, err = a.client.Update(ctx, "i1", agentapi.UpdateRequest{Parameters: p})
		Expect(err).NotTo(HaveOccurred())

		got, err := a.client.Get(ctx, "i1")
		Expect(err).NotTo(HaveOccurred())
		Expect(got.Parameters).To(Equal(p))
		Expect(got.Bindings).To(Equal([]string{"b1"}))
		Expect(got.Live).NotTo(BeNil())
		Expect(got.Live.Keys).To(Equal(int64(1)))
		Expect(got.NodeID).To(BeEmpty())
		other, err := a.client.Get(ctx, "i2")
		Expect(err).NotTo(HaveOccurred())
		Expect(other.Parameters).To(Equal(params.Defaults()))
		Expect(other.Bindings).To(BeEmpty())
		Expect(other.Live.Keys).To(BeZero())
		list, err := a.client.List(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(list).To(HaveExactElements(HaveField("ID", "i1"), HaveField("ID", "i2")))

		Expect(a.client.Get(ctx, "nope")).Error().To(MatchError(agentapi.ErrNotFound))
		Expect(a.client.Bind(ctx, "nope", "b1", agentapi.BindingRequest{Password: pw})).Error().To(MatchError(agentapi.ErrNotFound))
		Expect(a.client.Unbind(ctx, "nope", "b1")).To(MatchError(agentapi.ErrNotFound))
		Expect(a.client.Update(ctx, "nope", agentapi.UpdateRequest{Parameters: p})).Error().To(MatchError(agentapi.ErrNotFound))
		Expect(a.client.SetReplication(ctx, "nope", agentapi.ReplicationRequest{})).Error().To(MatchError(agentapi.ErrNotFound))
		Expect(a.client.Snapshot(ctx, "nope", agentapi.SnapshotRequest{})).Error().To(MatchError(agentapi.ErrNotFound))
		Expect(a.client.Restore(ctx, "nope", agentapi.RestoreRequest{}, strings.NewReader(""))).Error().To(MatchError(agentapi.ErrNotFound))
	})

	It("resizes an instance live within the VM's budget, never below what it holds, and keeps the limit in redis.conf", func(ctx SpecContext) {
		inst, err := a.client.Create(ctx, "i1", request(16))
		Expect(err).NotTo(HaveOccurred())
		_, err = a.client.Create(ctx, "i2", request(16))
		Expect(err).NotTo(HaveOccurred())
		pid := pidOf(dir, "i1")
		pw := secret.New()
		_, err = a.client.Bind(ctx, "i1", "b1", agentapi.BindingRequest{Password: pw})
		Expect(err).NotTo(HaveOccurred())
		c := tenant(inst, "b1", pw)
		maxmemory := func() string {
			info, err := c.Info(ctx, "memory").Result()
			Expect(err).NotTo(HaveOccurred())
			for _, l := range strings.Split(info, "\r\n") {
				if v, ok := strings.CutPrefix(l, "maxmemory:"); ok {
					return v
				}
			}
			return ""
		}

		got, err := a.client.Resize(ctx, "i1", agentapi.ResizeRequest{MaxMemoryBytes: 64 * mb})
		Expect(err).NotTo(HaveOccurred())
		Expect(got.MaxMemoryBytes).To(BeEquivalentTo(64 * mb))
		Expect(maxmemory()).To(Equal(strconv.FormatInt(64*mb, 10)), "live, without a restart")
		Expect(pidOf(dir, "i1")).To(Equal(pid))
		conf, err := os.ReadFile(filepath.Join(dir, "instances", "i1", "redis.conf"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(conf)).To(ContainSubstring(fmt.Sprintf("maxmemory %d\n", 64*mb)))
		capacity, err := a.client.Capacity(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(capacity.AllocatedBytes).To(BeEquivalentTo(80 * mb))

		// The budget is 256 MB, 80 of them taken: 64 -> 241 needs 177 more.
		_, err = a.client.Resize(ctx, "i1", agentapi.ResizeRequest{MaxMemoryBytes: 241 * mb})
		Expect(err).To(MatchError(agentapi.ErrFull))
		Expect(err.Error()).To(ContainSubstring("it keeps 64 MB"))

		// Fill it past 8 MB, then ask for 8: refused, nothing evicted.
		value := strings.Repeat("x", 64<<10)
		for i := range 200 {
			Expect(c.Set(ctx, fmt.Sprintf("k%d", i), value, 0).Err()).To(Succeed())
		}
		_, err = a.client.Resize(ctx, "i1", agentapi.ResizeRequest{MaxMemoryBytes: 8 * mb})
		Expect(err).To(MatchError(agentapi.ErrConflict))
		Expect(err.Error()).To(ContainSubstring("more than the new limit of 8 MB: it keeps 64 MB"))
		Expect(c.DBSize(ctx).Val()).To(BeEquivalentTo(200))
		Expect(maxmemory()).To(Equal(strconv.FormatInt(64*mb, 10)))
		// Down to a limit that holds it.
		_, err = a.client.Resize(ctx, "i1", agentapi.ResizeRequest{MaxMemoryBytes: 32 * mb})
		Expect(err).NotTo(HaveOccurred())
		Expect(maxmemory()).To(Equal(strconv.FormatInt(32*mb, 10)))
		Expect(c.DBSize(ctx).Val()).To(BeEquivalentTo(200))

		_, err = a.client.Resize(ctx, "nope", agentapi.ResizeRequest{MaxMemoryBytes: 32 * mb})
		Expect(err).To(MatchError(agentapi.ErrNotFound))
		_, err = a.client.Resize(ctx, "i1", agentapi.ResizeRequest{MaxMemoryBytes: 0})
		Expect(err).To(MatchError(agentapi.ErrInvalid))
	})

	It("refuses ids that are not safe as file names or usernames", func(ctx SpecContext) {
		for _, id := range []string{"..", ".hidden", "a/b", "a b", string(make([]byte, 200))} {
			_, err := a.client.Create(ctx, id, request(16))
			Expect(err).To(HaveOccurred(), id)
		}
		_, err := a.client.Create(ctx, "i1", request(16))
		Expect(err).NotTo(HaveOccurred())
		_, err = a.client.Bind(ctx, "i1", instance.AdminUser, agentapi.BindingRequest{Password: secret.New()})
		Expect(err).To(MatchError(agentapi.ErrInvalid))
	})

	It("deletes the process, files and port, and says so when asked again", func(ctx SpecContext) {
		inst, err := a.client.Create(ctx, "i1", request(16))
		Expect(err).NotTo(HaveOccurred())
		Expect(a.client.Delete(ctx, "i1")).To(Succeed())
		Expect(filepath.Join(dir, "instances", "i1")).NotTo(BeAnExistingFile())
		Expect(portalloc.Listenable("127.0.0.1")(inst.Port)).To(BeTrue())
		Expect(a.client.Delete(ctx, "i1")).To(MatchError(agentapi.ErrNotFound))
		c, err := a.client.Capacity(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(c.Instances).To(BeZero())
	})

	It("gives concurrent creates distinct ports", func(ctx SpecContext) {
		var wg sync.WaitGroup
		ports := make([]int, 10)
		errs := make([]error, 10)
		for i := range 10 {
			wg.Go(func() {
				inst, err := a.client.Create(ctx, fmt.Sprintf("c%d", i), request(8))
				ports[i], errs[i] = inst.Port, err
			})
		}
		wg.Wait()
		seen := map[int]bool{}
		for i := range 10 {
			Expect(errs[i]).NotTo(HaveOccurred())
			Expect(seen).NotTo(HaveKey(ports[i]))
			seen[ports[i]] = true
		}
	})

	Context("with a small budget and port range", func() {
		BeforeEach(func() {
			cfg := config(dir)
			cfg.MemoryBudgetMB = 40
			lo, err := systemtest.FreePortRange(3)
			Expect(err).NotTo(HaveOccurred())
			cfg.Ports = portalloc.Range{Min: lo, Max: lo + 2}
			cfg.MaxInstances = 3
			a = startAgent(cfg)
		})

		It("refuses an instance that would exceed memory, ports or count with ErrFull, and keeps serving", func(ctx SpecContext) {
			_, err := a.client.Create(ctx, "big", request(41))
			Expect(err).To(MatchError(agentapi.ErrFull))
			for i := range 3 {
				_, err := a.client.Create(ctx, fmt.Sprintf("s%d", i), request(8))
				Expect(err).NotTo(HaveOccurred())
			}
			_, err = a.client.Create(ctx, "s3", request(8))
			Expect(err).To(MatchError(agentapi.ErrFull))
			c, err := a.client.Capacity(ctx)
			Expect(err).NotTo(HaveOccurred())
			Expect(c.FreePorts).To(BeZero())
			Expect(c.Fits(mb)).To(BeFalse())
		})
	})

	Context("when another process takes a new instance's port", func() {
		var taken net.Listener
		BeforeEach(func() {
			cfg := config(dir)
			lo, err := systemtest.FreePortRange(3)
			Expect(err).NotTo(HaveOccurred())
			cfg.Ports = portalloc.Range{Min: lo, Max: lo + 2}
			taken, err = net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(lo)))
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(taken.Close)
			a = startAgent(cfg)
			a.mgr.SkipPortCheck()
		})

		It("moves the instance to the next port", func(ctx SpecContext) {
			inst, err := a.client.Create(ctx, "i1", request(16))
			Expect(err).NotTo(HaveOccurred())
			Expect(inst.Port).To(Equal(a.cfg.Ports.Min + 1))
			Expect(inst.State).To(Equal("running"))
		})
	})

	Context("when redis-server cannot start", func() {
		BeforeEach(func() {
			cfg := config(dir)
			cfg.RedisServer = "/bin/false"
			a = startAgent(cfg)
		})

		It("fails the create and leaves nothing behind", func(ctx SpecContext) {
			_, err := a.client.Create(ctx, "i1", request(16))
			Expect(err).To(MatchError(agentapi.ErrUnavailable))
			Expect(a.client.Get(ctx, "i1")).Error().To(MatchError(agentapi.ErrNotFound))
			Expect(filepath.Join(dir, "instances", "i1")).NotTo(BeAnExistingFile())
		})
	})

	It("rejects wrong credentials", func(ctx SpecContext) {
		bad, err := agentapi.NewClient(agentapi.ClientConfig{URL: a.srv.URL, Credentials: agentapi.Credentials{Username: "broker", Password: "wrong"}})
		Expect(err).NotTo(HaveOccurred())
		_, err = bad.Capacity(ctx)
		Expect(err).To(MatchError(ContainSubstring("401")))
		Expect(err.Error()).NotTo(ContainSubstring(a.cfg.Credentials.Password))
	})

	It("adopts running instances after a crash and finishes an interrupted delete", func(ctx SpecContext) {
		_, err := a.client.Create(ctx, "keep", request(16))
		Expect(err).NotTo(HaveOccurred())
		_, err = a.client.Create(ctx, "gone", request(16))
		Expect(err).NotTo(HaveOccurred())
		keepPid, gonePid := pidOf(dir, "keep"), pidOf(dir, "gone")

		// A crash: the HTTP server goes, the manager is abandoned without
		// Shutdown, its redis-servers keep running. Then mark "gone" as
		// deleting, as a delete cut short would have left it.
		a.srv.Close()
		a.mgr.Abandon()
		statePath := filepath.Join(dir, "state.json")
		var st map[string]any
		data, err := os.ReadFile(statePath)
		Expect(err).NotTo(HaveOccurred())
		Expect(json.Unmarshal(data, &st)).To(Succeed())
		st["instances"].(map[string]any)["gone"].(map[string]any)["deleting"] = true
		data, err = json.Marshal(st)
		Expect(err).NotTo(HaveOccurred())
		Expect(os.WriteFile(statePath, data, 0o600)).To(Succeed())

		a = startAgent(a.cfg)
		Expect(pidOf(dir, "keep")).To(Equal(keepPid))
		got, err := a.client.Get(ctx, "keep")
		Expect(err).NotTo(HaveOccurred())
		Expect(got.State).To(Equal("running"))
		Expect(a.client.Get(ctx, "gone")).Error().To(MatchError(agentapi.ErrNotFound))
		Expect(filepath.Join(dir, "instances", "gone")).NotTo(BeAnExistingFile())
		Eventually(func() error { return processAlive(gonePid) }).Should(HaveOccurred())
	})
})

var _ = Describe("a state file written before the one record shape", func() {
	It("loads, and its instance serves its binding and replication users with their old passwords", func(ctx SpecContext) {
		dir := tempDir()
		port, err := portalloc.Next(portalloc.Default, nil, 0, portalloc.Listenable("127.0.0.1"))
		Expect(err).NotTo(HaveOccurred())
		appPw, replPw := secret.New(), secret.New()
		// As the shared agent wrote it before: a binding user is its bare
		// password hash, replication users are kept apart.
		legacy := fmt.Sprintf(`{
  "last_port": %[1]d,
  "instances": {
    "old-1": {
      "id": "old-1",
      "port": %[1]d,
      "maxmemory_bytes": 16777216,
      "parameters": {"maxmemory-policy": "noeviction", "notify-keyspace-events": "", "timeout": 0},
      "admin_password": %[2]q,
      "bindings": {"app": %[3]q},
      "replicators": {"repl-follower": %[4]q},
      "created_at": "2026-11-01T10:00:00Z"
    }
  }
}`, port, secret.New(), secret.Hash(appPw), secret.Hash(replPw))
		Expect(os.WriteFile(filepath.Join(dir, "state.json"), []byte(legacy), 0o600)).To(Succeed())

		a := startAgent(config(dir))
		DeferCleanup(a.stop)
		inst, err := a.client.Get(ctx, "old-1")
		Expect(err).NotTo(HaveOccurred())
		Expect(inst.State).To(Equal(agentapi.StateRunning))
		Expect(inst.Port).To(Equal(port))
		Expect(inst.Bindings).To(Equal([]string{"app", "repl-follower"}))
		app := tenant(inst, "app", appPw)
		Expect(app.Set(ctx, "k", "v", 0).Err()).To(Succeed())
		repl := tenant(inst, "repl-follower", replPw)
		Expect(repl.Get(ctx, "k").Err()).To(MatchError(ContainSubstring("NOPERM")), "still a replication user")
		_, err = a.client.Bind(ctx, "old-1", "repl-follower", agentapi.BindingRequest{Password: replPw, Role: agentapi.RoleReplication})
		Expect(err).NotTo(HaveOccurred(), "the same user again")
		Expect(a.client.Unbind(ctx, "old-1", "repl-follower")).To(Succeed())

		var st struct {
			Instances map[string]map[string]json.RawMessage `json:"instances"`
		}
		data, err := os.ReadFile(filepath.Join(dir, "state.json"))
		Expect(err).NotTo(HaveOccurred())
		Expect(json.Unmarshal(data, &st)).To(Succeed())
		Expect(st.Instances["old-1"]).NotTo(HaveKey("replicators"))
		Expect(string(st.Instances["old-1"]["bindings"])).To(MatchJSON(fmt.Sprintf(`{"app": {"password_hash": %q}}`, secret.Hash(appPw))))
	})
})
