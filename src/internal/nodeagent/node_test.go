package nodeagent_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/nodeagent"
	"github.com/cf-redis/redis-for-cf/src/internal/params"
	"github.com/cf-redis/redis-for-cf/src/internal/redisconf"
	"github.com/cf-redis/redis-for-cf/src/internal/replication"
	"github.com/cf-redis/redis-for-cf/src/internal/secret"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemspec"
	"github.com/cf-redis/redis-for-cf/src/testkit/tlstest"
)

const library = "#!lua name=tenantlib\nredis.register_function('hello', function() return 'hi' end)"

var _ = Describe("a dedicated node", func() {
	var nd *node
	var dir string
	BeforeEach(func() {
		dir = tempDir()
		nd = startNode(nodeConfig(dir, "127.0.0.1"))
	})

	It("starts free and empty, and says which node it is", func(ctx SpecContext) {
		Expect(nd.node(ctx)).To(Equal(agentapi.Node{NodeID: "node-127-0-0-1", State: agentapi.NodeFree}))
		c, err := nd.client.Capacity(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(c).To(Equal(agentapi.Capacity{MemoryBytes: 64 << 20, MaxInstances: 1, FreePorts: 1, PortsPerInstance: 1}))
		Expect(c.Fits(0)).To(BeTrue())
		Expect(nd.client.List(ctx)).To(BeEmpty())
		_, err = nd.client.Get(ctx, "inst-1")
		Expect(err).To(MatchError(agentapi.ErrNotFound))
		_, err = nd.client.Resize(ctx, "inst-1", agentapi.ResizeRequest{MaxMemoryBytes: 1 << 30})
		Expect(err).To(MatchError(agentapi.ErrInvalid), "a node's limit is the VM's")

		inst := nd.claim(ctx, "inst-1")
		Expect(inst.ID).To(Equal("inst-1"))
		Expect(inst.NodeID).To(Equal("node-127-0-0-1"))
		Expect(inst.State).To(Equal(agentapi.StateRunning))
		Expect(inst.MaxMemoryBytes).To(Equal(int64(64 << 20)))
		Expect(inst.Host).To(Equal("127.0.0.1"))
		Expect(inst.Port).To(Equal(nd.cfg.Port))
		Expect(inst.Parameters).To(Equal(params.Defaults()))
		Expect(inst.Live).NotTo(BeNil())
		Expect(inst.Live.RedisVersion).To(HavePrefix("7."))
		Expect(inst.Live.UsedMemoryBytes).To(BeNumerically(">", 0))
		Expect(inst.Live.Keys).To(BeZero())
		Expect(inst.Live.Replication.Role).To(Equal(replication.RoleLeader))
		Expect(nd.client.List(ctx)).To(HaveExactElements(HaveField("ID", "inst-1")))
		c, err = nd.client.Capacity(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(c.Fits(0)).To(BeFalse())
	})

	It("is claimed by one instance, idempotently, and is busy for any other", func(ctx SpecContext) {
		nd.claim(ctx, "inst-1")
		Expect(nd.node(ctx)).To(Equal(agentapi.Node{NodeID: "node-127-0-0-1", State: agentapi.NodeClaimed, InstanceID: "inst-1"}))
		state, err := os.ReadFile(filepath.Join(nd.cfg.DataDir, "state.json"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(state)).To(MatchRegexp(`"instance_id":\s*"inst-1"`), "the claim is on disk before the answer")

		again := nd.claim(ctx, "inst-1")
		Expect(again.ID).To(Equal("inst-1"))
		_, err = nd.client.Create(ctx, "inst-1", agentapi.InstanceRequest{MaxMemoryBytes: 1 << 30, Parameters: params.Defaults()})
		Expect(err).To(MatchError(agentapi.ErrInvalid), "a node's limit is the VM's")
		_, err = nd.client.Create(ctx, "inst-1", agentapi.InstanceRequest{MaxMemoryBytes: 64 << 20, Parameters: params.Defaults()})
		Expect(err).NotTo(HaveOccurred(), "or the node's own")
		_, err = nd.client.Create(ctx, "inst-2", agentapi.InstanceRequest{Parameters: params.Defaults()})
		Expect(err).To(MatchError(agentapi.ErrBusy))
		other := params.Defaults()
		other.Timeout = 5
		_, err = nd.client.Create(ctx, "inst-1", agentapi.InstanceRequest{Parameters: other})
		Expect(err).To(MatchError(agentapi.ErrConflict))
		_, err = nd.client.Create(ctx, "../x", agentapi.InstanceRequest{Parameters: params.Defaults()})
		Expect(err).To(MatchError(agentapi.ErrInvalid))
		_, err = nd.client.Create(ctx, "inst-3", agentapi.InstanceRequest{Parameters: params.Parameters{MaxMemoryPolicy: "bad"}})
		Expect(err).To(MatchError(agentapi.ErrInvalid))
	})

	It("runs its one server's background tasks at Redis's default rate", func(ctx SpecContext) {
		nd.claim(ctx, "inst-1")
		c, _ := nd.bind(ctx, "inst-1", "b1")
		info, err := c.InfoMap(ctx, "server").Result()
		Expect(err).NotTo(HaveOccurred())
		Expect(info["Server"]).To(HaveKeyWithValue("configured_hz", strconv.Itoa(redisconf.DefaultHz)))
	})

	It("serves the instance's verbs only to the instance holding the node", func(ctx SpecContext) {
		pw := secret.New()
		p := params.Parameters{MaxMemoryPolicy: "allkeys-lru", NotifyKeyspaceEvents: "Ex", Timeout: 42}
		leader := &replication.Leader{Host: "127.0.0.1", Port: 1}
		verbs := func(id string) []error {
			_, err1 := nd.client.Bind(ctx, id, "b1", agentapi.BindingRequest{Password: pw})
			err2 := nd.client.Unbind(ctx, id, "b9")
			_, err3 := nd.client.Update(ctx, id, agentapi.UpdateRequest{Parameters: p})
			_, err4 := nd.client.SetReplication(ctx, id, agentapi.ReplicationRequest{Leader: leader})
			_, err5 := nd.client.Snapshot(ctx, id, agentapi.SnapshotRequest{})
			_, err6 := nd.client.Restore(ctx, id, agentapi.RestoreRequest{}, strings.NewReader(""))
			_, err7 := nd.client.Get(ctx, id)
			return []error{err1, err2, err3, err4, err5, err6, err7}
		}
		for _, err := range verbs("inst-1") {
			Expect(err).To(MatchError(agentapi.ErrNotFound), "a free node holds no instance")
		}
		nd.claim(ctx, "inst-1")
		for _, err := range verbs("inst-2") {
			Expect(err).To(MatchError(agentapi.ErrConflict), "the node is another instance's")
		}
		c, _ := nd.bind(ctx, "inst-1", "b1")
		Expect(c.Set(ctx, "k", "v", 0).Err()).To(Succeed())
		inst, err := nd.client.Update(ctx, "inst-1", agentapi.UpdateRequest{Parameters: p})
		Expect(err).NotTo(HaveOccurred())
		Expect(inst.Parameters).To(Equal(p))
		Expect(inst.NodeID).To(Equal("node-127-0-0-1"))
		Expect(c.Info(ctx, "memory").Val()).To(ContainSubstring("maxmemory_policy:allkeys-lru"))
		_, err = nd.client.Create(ctx, "inst-1", agentapi.InstanceRequest{Parameters: p})
		Expect(err).NotTo(HaveOccurred(), "a claim again with the parameters of now")
	})

	It("resets: wipes keys, users, functions and scripts, verifies, and the next tenant starts from nothing", func(ctx SpecContext) {
		nd.claim(ctx, "inst-1")
		c, pw := nd.bind(ctx, "inst-1", "b1")
		pipe := c.Pipeline()
		for i := range 1000 {
			pipe.Set(ctx, "key-"+strconv.Itoa(i), i, 0)
		}
		pipe.HSet(ctx, "db-zero-hash", "f", "v")
		_, err := pipe.Exec(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(c.Do(ctx, "SELECT", "7").Err()).To(Succeed())
		Expect(c.Set(ctx, "in-db-7", "v", 0).Err()).To(Succeed())
		Expect(c.FunctionLoad(ctx, library).Err()).To(Succeed())
		sha, err := c.ScriptLoad(ctx, "return 1").Result()
		Expect(err).NotTo(HaveOccurred())
		Expect(nd.get(ctx, "inst-1").Live.Keys).To(Equal(int64(1002)))
		// A node that follows a leader leads again after its reset.
		_, err = nd.client.SetReplication(ctx, "inst-1", agentapi.ReplicationRequest{Leader: &replication.Leader{Host: "127.0.0.1", Port: freePort("127.0.0.1")}})
		Expect(err).NotTo(HaveOccurred())
		oldAdmin := nd.adminPassword()

		Expect(nd.client.Delete(ctx, "inst-2")).To(MatchError(agentapi.ErrConflict), "another instance cannot reset the node")

		started := time.Now()
		Expect(nd.client.Delete(ctx, "inst-1")).To(Succeed())
		GinkgoWriter.Printf("reset took %v\n", time.Since(started))
		Expect(nd.node(ctx)).To(Equal(agentapi.Node{NodeID: "node-127-0-0-1", State: agentapi.NodeFree}))
		_, err = nd.client.Get(ctx, "inst-1")
		Expect(err).To(MatchError(agentapi.ErrNotFound))
		admin := nd.admin(nd.adminPassword())
		Expect(admin.DBSize(ctx).Val()).To(BeZero())
		Expect(admin.Do(ctx, "ACL", "USERS").Val()).To(ConsistOf("default", adminUser))
		Expect(admin.Info(ctx, "replication").Val()).To(ContainSubstring("role:master"))
		Expect(nd.adminPassword()).NotTo(Equal(oldAdmin), "a new admin password")
		Expect(nd.tenant("b1", pw).Ping(ctx).Err()).To(MatchError(ContainSubstring("WRONGPASS")))
		Expect(nd.admin(oldAdmin).Ping(ctx).Err()).To(MatchError(ContainSubstring("WRONGPASS")))
		entries, err := os.ReadDir(filepath.Join(nd.cfg.DataDir, "data"))
		Expect(err).NotTo(HaveOccurred())
		for _, e := range entries {
			Expect(e.Name()).To(BeElementOf("appendonlydir", "dump.rdb"), "only the new server's own files")
		}

		Expect(nd.client.Delete(ctx, "inst-1")).To(Succeed(), "resetting a free node is a no-op")
		Expect(nd.node(ctx).State).To(Equal(agentapi.NodeFree))

		nd.claim(ctx, "inst-2")
		next, _ := nd.bind(ctx, "inst-2", "b2")
		Expect(next.DBSize(ctx).Val()).To(BeZero())
		Expect(next.Do(ctx, "SELECT", "7").Err()).To(Succeed())
		Expect(next.DBSize(ctx).Val()).To(BeZero())
		Expect(next.FunctionList(ctx, redis.FunctionListQuery{}).Val()).To(BeEmpty())
		Expect(next.ScriptExists(ctx, sha).Val()).To(Equal([]bool{false}))
	})

	It("refuses a claim of a free node it finds not empty, and quarantines it", func(ctx SpecContext) {
		// Someone with root on the VM wrote into the free node.
		admin := nd.admin(nd.adminPassword())
		Expect(admin.Set(ctx, "left-over", "x", 0).Err()).To(Succeed())
		_, err := nd.client.Create(ctx, "inst-1", agentapi.InstanceRequest{Parameters: params.Defaults()})
		Expect(err).To(MatchError(agentapi.ErrDirty))
		Expect(err).To(MatchError(ContainSubstring("db0 holds 1 keys")))
		Expect(nd.node(ctx).State).To(Equal(agentapi.NodeResetFailed))

		Expect(nd.client.Delete(ctx, "any-id")).To(Succeed())
		Expect(nd.node(ctx).State).To(Equal(agentapi.NodeFree))
		nd.claim(ctx, "inst-1")
	})

	It("quarantines a node whose data cannot be wiped until a later reset passes", func(ctx SpecContext) {
		nd.claim(ctx, "inst-1")
		c, pw := nd.bind(ctx, "inst-1", "b1")
		Expect(c.Set(ctx, "k", "v", 0).Err()).To(Succeed())
		how, undo := systemspec.MakeUnwipeable(filepath.Join(nd.cfg.DataDir, "data"))
		DeferCleanup(undo)
		By("making the data directory undeletable with " + how)

		err := nd.client.Delete(ctx, "inst-1")
		Expect(err).To(MatchError(agentapi.ErrDirty))
		Expect(err).To(MatchError(ContainSubstring("wiping the data directory")))
		st := nd.node(ctx)
		Expect(st.State).To(Equal(agentapi.NodeResetFailed))
		Expect(st.InstanceID).To(Equal("inst-1"))
		Expect(st.ResetError).To(ContainSubstring("wiping"))
		Expect(nd.tenant("b1", pw).Ping(ctx).Err()).To(MatchError(ContainSubstring("WRONGPASS")), "the tenant is locked out all the same")

		_, err = nd.client.Create(ctx, "inst-2", agentapi.InstanceRequest{Parameters: params.Defaults()})
		Expect(err).To(MatchError(agentapi.ErrDirty))
		Expect(nd.client.Delete(ctx, "inst-2")).To(MatchError(agentapi.ErrConflict))
		Expect(nd.client.Delete(ctx, "inst-1")).To(MatchError(agentapi.ErrDirty), "still undeletable")

		undo()
		Expect(nd.client.Delete(ctx, "inst-1")).To(Succeed())
		Expect(nd.node(ctx)).To(Equal(agentapi.Node{NodeID: "node-127-0-0-1", State: agentapi.NodeFree}))
		Expect(filepath.Join(nd.cfg.DataDir, "data", "locked")).NotTo(BeAnExistingFile())
		Expect(filepath.Join(nd.cfg.DataDir, "data.wiped")).NotTo(BeAnExistingFile())
		Expect(nd.claim(ctx, "inst-2").ID).To(Equal("inst-2"))
	})

	It("empties and removes the tenant's files while the server dies, through no link", func(ctx SpecContext) {
		nd.claim(ctx, "inst-1")
		c, _ := nd.bind(ctx, "inst-1", "b1")
		Expect(c.Set(ctx, "k", strings.Repeat("v", 1<<20), 0).Err()).To(Succeed())
		data := filepath.Join(nd.cfg.DataDir, "data")
		// A file outside the data directory, linked from inside it: the
		// reset empties what it removes, and must not empty that.
		outside := filepath.Join(GinkgoT().TempDir(), "outside")
		Expect(os.WriteFile(outside, []byte("not the tenant's"), 0o600)).To(Succeed())
		Expect(os.Symlink(outside, filepath.Join(data, "link"))).To(Succeed())
		Eventually(func() (int64, error) { return dirBytes(filepath.Join(data, "appendonlydir")) }).Should(BeNumerically(">=", 1<<20))

		Expect(nd.client.Delete(ctx, "inst-1")).To(Succeed())
		Expect(nd.node(ctx).State).To(Equal(agentapi.NodeFree))
		Expect(os.ReadFile(outside)).To(Equal([]byte("not the tenant's")))
		Expect(data + ".wiped").NotTo(BeAnExistingFile())
		Expect(filepath.Join(data, "link")).NotTo(BeAnExistingFile())
		Expect(dirBytes(data)).To(BeNumerically("<", 1<<20), "only the wiped server's own files")
	})

	It("adopts its redis-server after an agent crash", func(ctx SpecContext) {
		nd.claim(ctx, "inst-1")
		c, _ := nd.bind(ctx, "inst-1", "b1")
		Expect(c.Set(ctx, "k", "v", 0).Err()).To(Succeed())
		pid := nd.pid()
		nd.crash()
		// The agent died between writing its files and telling the server:
		// the server has a user and a setting the files do not.
		admin := nd.admin(nd.adminPassword())
		Expect(admin.Do(ctx, "ACL", "SETUSER", "stray", "on", ">"+secret.New(), "~*", "+@all").Err()).To(Succeed())
		Expect(admin.ConfigSet(ctx, "timeout", "99").Err()).To(Succeed())

		nd = startNode(nd.cfg)
		Expect(nd.pid()).To(Equal(pid))
		Expect(admin.Do(ctx, "ACL", "USERS").Val()).To(ConsistOf("b1", "default", adminUser))
		Expect(admin.ConfigGet(ctx, "timeout").Val()).To(HaveKeyWithValue("timeout", "0"))
		Expect(nd.node(ctx).State).To(Equal(agentapi.NodeClaimed))
		Expect(nd.get(ctx, "inst-1").Live.Keys).To(Equal(int64(1)))
		Expect(c.Get(ctx, "k").Val()).To(Equal("v"))
	})

	DescribeTable("finishes on start a reset that a crash interrupted",
		func(ctx SpecContext, serverDied, movedAside bool) {
			nd.claim(ctx, "inst-1")
			c, pw := nd.bind(ctx, "inst-1", "b1")
			for i := range 100 {
				Expect(c.Set(ctx, fmt.Sprint(i), i, 0).Err()).To(Succeed())
			}
			pid := nd.pid()
			nd.crash()
			if serverDied {
				Expect(syscall.Kill(pid, syscall.SIGKILL)).To(Succeed())
				Eventually(func() error { return processAlive(pid) }).Should(HaveOccurred())
			}
			dataDir := filepath.Join(nd.cfg.DataDir, "data")
			if movedAside {
				// It died after moving the tenant's data aside for removal,
				// before the removal finished.
				Expect(os.Rename(dataDir, dataDir+".wiped")).To(Succeed())
				Expect(os.Mkdir(dataDir, 0o700)).To(Succeed())
			}

			// The agent died right after recording the reset's first step.
			statePath := filepath.Join(nd.cfg.DataDir, "state.json")
			var st map[string]any
			data, err := os.ReadFile(statePath)
			Expect(err).NotTo(HaveOccurred())
			Expect(json.Unmarshal(data, &st)).To(Succeed())
			st["state"] = agentapi.NodeResetting
			data, err = json.Marshal(st)
			Expect(err).NotTo(HaveOccurred())
			Expect(os.WriteFile(statePath, data, 0o600)).To(Succeed())

			nd = startNode(nd.cfg)
			Expect(nd.node(ctx)).To(Equal(agentapi.Node{NodeID: "node-127-0-0-1", State: agentapi.NodeFree}))
			admin := nd.admin(nd.adminPassword())
			Expect(admin.DBSize(ctx).Val()).To(BeZero())
			Expect(nd.pid()).NotTo(Equal(pid), "the old server was stopped")
			Eventually(func() error { return processAlive(pid) }).Should(HaveOccurred())
			Expect(nd.tenant("b1", pw).Ping(ctx).Err()).To(MatchError(ContainSubstring("WRONGPASS")))
			Expect(dataDir+".wiped").NotTo(BeAnExistingFile(), "nothing of the tenant's data is left beside the data directory")
			nd.claim(ctx, "inst-2")
		},
		Entry("with its redis-server still running", false, false),
		Entry("with its redis-server killed too", true, false),
		Entry("with the tenant's data moved aside, not yet removed", true, true),
	)

	It("serves only clients that trust its CA and know its credentials", func(ctx SpecContext) {
		other, err := tlstest.NewCA("other-ca")
		Expect(err).NotTo(HaveOccurred())
		_, err = nd.clientWith(nd.cfg.Credentials, other.PEM).Node(ctx)
		Expect(err).To(MatchError(agentapi.ErrUnavailable))
		Expect(err).To(MatchError(ContainSubstring("certificate")))

		_, err = nd.clientWith(agentapi.Credentials{Username: "broker", Password: "wrong"}, ca.PEM).Node(ctx)
		Expect(err).To(MatchError(ContainSubstring("401")))
		Expect(err.Error()).NotTo(ContainSubstring(nd.cfg.Credentials.Password))

		_, err = agentapi.NewNodeClient(agentapi.ClientConfig{URL: "http://" + nd.addr(), CACert: ca.PEM})
		Expect(err).To(MatchError(ContainSubstring("https")))
		_, err = agentapi.NewNodeClient(agentapi.ClientConfig{URL: nd.url})
		Expect(err).To(MatchError(ContainSubstring("ca_cert")))
		_, err = agentapi.NewNodeClient(agentapi.ClientConfig{URL: nd.url, CACert: "junk"})
		Expect(err).To(MatchError(ContainSubstring("PEM")))
	})

	DescribeTable("answers bad requests with a JSON error",
		func(method, path, contentType, body string, auth bool, want int, code string) {
			resp := rawRequest(nd, method, path, contentType, body, auth)
			Expect(resp.status).To(Equal(want))
			Expect(resp.contentType).To(Equal("application/json"))
			Expect(resp.body.Error).To(Equal(code))
		},
		Entry("no credentials", "GET", "/v1/node", "", "", false, 401, "unauthorized"),
		Entry("malformed JSON", "PUT", "/v1/instances/i", "application/json", `{"parameters":`, true, 400, "invalid"),
		Entry("unknown field", "PUT", "/v1/instances/i", "application/json", `{"params":{}}`, true, 400, "invalid"),
		Entry("trailing data", "PUT", "/v1/instances/i", "application/json", `{} {}`, true, 400, "invalid"),
		Entry("wrong content type", "PUT", "/v1/instances/i", "text/plain", `{}`, true, 415, "invalid"),
		Entry("huge body", "PUT", "/v1/instances/i", "application/json", `{"parameters":"`+strings.Repeat("a", 100<<10)+`"}`, true, 413, "invalid"),
		Entry("an unsafe instance id", "DELETE", "/v1/instances/..%2Fx", "", "", true, 400, "invalid"),
		Entry("binding on a free node", "PUT", "/v1/instances/i/bindings/b1", "application/json", `{"password":"`+secret.New()+`"}`, true, 404, "not_found"),
		Entry("unbind on a free node", "DELETE", "/v1/instances/i/bindings/b1", "", "", true, 404, "not_found"),
		Entry("resize", "PUT", "/v1/instances/i/maxmemory", "application/json", `{"maxmemory_bytes":1}`, true, 400, "invalid"),
		Entry("replication with a bad leader", "PUT", "/v1/instances/i/replication", "application/json", `{"leader":{"host":"a b","port":1}}`, true, 400, "invalid"),
	)
})

var _ = Describe("Config", func() {
	It("names every field at fault and fills in defaults", func() {
		var c nodeagent.Config
		err := c.Validate()
		Expect(err).To(HaveOccurred())
		for _, field := range []string{"listen", "credentials.username", "tls.cert_file", "node_id", "host", "data_dir"} {
			Expect(err.Error()).To(ContainSubstring(field))
		}
		c = nodeagent.Config{
			Listen: "127.0.0.1:9002", Credentials: agentapi.Credentials{Username: "u", Password: "p"},
			TLS: nodeagent.TLS{CertFile: "c", KeyFile: "k"}, NodeID: "n1", Host: "10.0.0.7", DataDir: "/var/vcap/store/redis",
		}
		Expect(c.Validate()).To(Succeed())
		Expect(c.Port).To(Equal(6379))
		Expect(c.Bind).To(Equal("10.0.0.7"))
		Expect(c.MaxMemoryPercent).To(Equal(75))
		Expect(c.LogDir).To(Equal("/var/vcap/store/redis/logs"))
		Expect(c.MaxScriptSeconds).To(Equal(60))
		c.MaxMemoryPercent = 101
		Expect(c.Validate()).To(MatchError(ContainSubstring("maxmemory_percent")))
		c.MaxMemoryPercent = 75
		c.MaxScriptSeconds = 3601
		Expect(c.Validate()).To(MatchError(ContainSubstring("max_script_seconds: 3601 is outside 1-3600")))
	})
})
var _ = Describe("Node with redis_tls", func() {
	It("serves the claimed instance's binding users over TLS and in plaintext", func(ctx SpecContext) {
		dir := tempDir()
		cfg := nodeConfig(dir, "127.0.0.1")
		cfg.RedisTLS = ca.RedisTLS(GinkgoT(), dir, "127.0.0.1")
		cfg.TLSPort = freePort("127.0.0.1")
		nd := startNode(cfg)
		st := nd.claim(ctx, "inst-1")
		Expect(st.TLSPort).To(Equal(cfg.TLSPort))
		Expect(st.TLSCA).To(Equal(ca.PEM), "the claim's answer carries the CA, for the broker to know before any binding")
		pw := secret.New()
		b, err := nd.client.Bind(ctx, "inst-1", "b1", agentapi.BindingRequest{Password: pw})
		Expect(err).NotTo(HaveOccurred())
		Expect(b.TLSPort).To(Equal(cfg.TLSPort))
		Expect(b.TLSCA).To(Equal(ca.PEM))
		c := tlstest.RedisClient(GinkgoT(), "127.0.0.1", b.TLSPort, b.TLSCA, "b1", pw)
		Expect(c.Ping(ctx).Err()).To(Succeed())
		Expect(c.Set(ctx, "k", "v", 0).Err()).To(Succeed())
		Expect(nd.tenant("b1", pw).Get(ctx, "k").Val()).To(Equal("v"))
	})

	It("turns TLS on and off on a running server when the agent restarts, keeping its process and data", func(ctx SpecContext) {
		dir := tempDir()
		cfg := nodeConfig(dir, "127.0.0.1")
		nd := startNode(cfg)
		nd.claim(ctx, "inst-1")
		c, pw := nd.bind(ctx, "inst-1", "b1")
		Expect(c.Set(ctx, "k", "kept", 0).Err()).To(Succeed())
		pid := nd.pid()

		nd.crash()
		cfg.RedisTLS = ca.RedisTLS(GinkgoT(), dir, "127.0.0.1")
		cfg.TLSPort = freePort("127.0.0.1")
		nd = startNode(cfg)
		Expect(nd.pid()).To(Equal(pid))
		st, err := nd.client.Get(ctx, "inst-1")
		Expect(err).NotTo(HaveOccurred())
		Expect(st.TLSPort).To(Equal(cfg.TLSPort))
		Expect(tlstest.RedisClient(GinkgoT(), "127.0.0.1", cfg.TLSPort, ca.PEM, "b1", pw).Get(ctx, "k").Val()).To(Equal("kept"))

		nd.crash()
		tlsPort := cfg.TLSPort
		cfg.RedisTLS, cfg.TLSPort = nil, 0
		nd = startNode(cfg)
		Expect(nd.pid()).To(Equal(pid))
		st, err = nd.client.Get(ctx, "inst-1")
		Expect(err).NotTo(HaveOccurred())
		Expect(st.TLSPort).To(BeZero())
		_, err = net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(tlsPort)), time.Second)
		Expect(err).To(HaveOccurred(), "nothing listens on the TLS port any more")
		conf, err := os.ReadFile(filepath.Join(cfg.DataDir, "redis.conf"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(conf)).To(ContainSubstring("tls-port 0\n"))
		Expect(string(conf)).NotTo(ContainSubstring("tls-cert-file"))
		Expect(c.Get(ctx, "k").Val()).To(Equal("kept"))
	})

	It("checks redis_tls and tls_port", func() {
		dir := tempDir()
		cfg := nodeConfig(dir, "127.0.0.1")
		Expect(cfg.Validate()).To(Succeed())
		Expect(cfg.TLSPort).To(BeZero())
		cfg.RedisTLS = ca.RedisTLS(GinkgoT(), dir, "127.0.0.1")
		Expect(cfg.Validate()).To(Succeed())
		Expect(cfg.TLSPort).To(Equal(nodeagent.DefaultTLSPort))
		cfg.TLSPort = cfg.Port
		Expect(cfg.Validate()).To(MatchError(ContainSubstring("tls_port")))
		cfg.TLSPort = 0
		cfg.RedisTLS.CAFile = ""
		Expect(cfg.Validate()).To(MatchError(ContainSubstring("redis_tls.ca_file is required")))
		// Files that are missing or wrong stop the agent's start (a config
		// is also checked where they are not yet: a BOSH template's).
		cfg.RedisTLS = ca.RedisTLS(GinkgoT(), dir, "127.0.0.1")
		cfg.RedisTLS.CertFile = filepath.Join(dir, "missing.crt")
		Expect(cfg.Validate()).To(Succeed())
		n, err := nodeagent.New(cfg, testLogger())
		Expect(n).To(BeNil())
		Expect(err).To(MatchError(ContainSubstring("redis_tls.cert_file")))
	})
})

var _ = Describe("a state file written before the one record shape", func() {
	It("loads, and the node serves its claimed instance with the old credentials", func(ctx SpecContext) {
		cfg := nodeConfig(tempDir(), "127.0.0.1")
		Expect(os.MkdirAll(cfg.DataDir, 0o700)).To(Succeed())
		appPw, replPw := secret.New(), secret.New()
		// As the node agent wrote it before: the claim's fields at the top,
		// the claim's time as claimed_at.
		legacy := fmt.Sprintf(`{
  "state": "claimed",
  "instance_id": "old-1",
  "parameters": {"maxmemory-policy": "allkeys-lru", "notify-keyspace-events": "", "timeout": 0},
  "admin_password": %q,
  "bindings": {
    "app": {"password_hash": %q},
    "repl-follower": {"password_hash": %q, "role": "replication"}
  },
  "claimed_at": "2026-11-01T10:00:00Z"
}`, secret.New(), secret.Hash(appPw), secret.Hash(replPw))
		Expect(os.WriteFile(filepath.Join(cfg.DataDir, "state.json"), []byte(legacy), 0o600)).To(Succeed())

		nd := startNode(cfg)
		Expect(nd.node(ctx)).To(Equal(agentapi.Node{NodeID: "node-127-0-0-1", State: agentapi.NodeClaimed, InstanceID: "old-1"}))
		inst := nd.get(ctx, "old-1")
		Expect(inst.Bindings).To(Equal([]string{"app", "repl-follower"}))
		Expect(inst.Parameters.MaxMemoryPolicy).To(Equal("allkeys-lru"))
		Expect(inst.MaxMemoryBytes).To(Equal(int64(64 << 20)))
		app := nd.tenant("app", appPw)
		Expect(app.Set(ctx, "k", "v", 0).Err()).To(Succeed())
		Expect(nd.tenant("repl-follower", replPw).Get(ctx, "k").Err()).To(MatchError(ContainSubstring("NOPERM")))

		a, err := nd.client.Snapshot(ctx, "old-1", agentapi.SnapshotRequest{})
		Expect(err).NotTo(HaveOccurred(), "the claim's time carried over, so the snapshot knows its instance")
		var buf bytes.Buffer
		_, err = buf.ReadFrom(a)
		Expect(err).NotTo(HaveOccurred())
		Expect(a.Close()).To(Succeed())

		var st map[string]json.RawMessage
		data, err := os.ReadFile(filepath.Join(cfg.DataDir, "state.json"))
		Expect(err).NotTo(HaveOccurred())
		Expect(json.Unmarshal(data, &st)).To(Succeed())
		Expect(st).NotTo(HaveKey("claimed_at"))
		Expect(string(st["created_at"])).To(Equal(`"2026-11-01T10:00:00Z"`))
		Expect(string(st["id"])).To(Equal(`"old-1"`))

		Expect(nd.client.Delete(ctx, "old-1")).To(Succeed())
		Expect(nd.tenant("app", appPw).Ping(ctx).Err()).To(MatchError(ContainSubstring("WRONGPASS")))
	})
})

// dirBytes sums the sizes of the regular files under dir.
func dirBytes(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err == nil {
			n += info.Size()
		}
		return err
	})
	return n, err
}
