package sharedvm_test

import (
	"os"
	"path/filepath"
	"regexp"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

var _ = Describe("What a binding's user may run", Ordered, ContinueOnFailure, func() {
	var sys *system
	var rc *redis.Client
	var pid int
	var id, user string

	BeforeAll(func(ctx SpecContext) {
		sys = startSystem(systemtest.Options{})
		id = newID("inst")
		sys.provision(id, nil)
		c := sys.bind(id, newID("bind"))
		user = c.Username
		rc = connect(c)
		var err error
		pid, err = serverPid(ctx, rc)
		Expect(err).NotTo(HaveOccurred())
	})

	DescribeTable("the platform's commands are refused with NOPERM",
		func(ctx SpecContext, args ...any) {
			err := rc.Do(ctx, args...).Err()
			Expect(err).To(MatchError(ContainSubstring("NOPERM")))
		},
		Entry(nil, "CONFIG", "GET", "maxmemory"),
		Entry(nil, "CONFIG", "SET", "maxmemory", "0"),
		Entry(nil, "SHUTDOWN", "NOSAVE"),
		Entry(nil, "MODULE", "LIST"),
		Entry(nil, "ACL", "LIST"),
		Entry(nil, "ACL", "SETUSER", "intruder", "on", ">password", "+@all"),
		Entry(nil, "REPLICAOF", "NO", "ONE"),
		Entry(nil, "SLAVEOF", "NO", "ONE"),
		Entry(nil, "REPLICAOF", "127.0.0.1", "1"),
		Entry(nil, "SYNC"),
		Entry(nil, "PSYNC", "?", "-1"),
		Entry(nil, "FAILOVER"),
		Entry(nil, "CLUSTER", "INFO"),
		Entry(nil, "MONITOR"),
		Entry(nil, "MIGRATE", "127.0.0.1", "1", "some-key", "0", "1000"),
		Entry(nil, "SAVE"),
		Entry(nil, "BGSAVE"),
		Entry(nil, "BGREWRITEAOF"),
	)

	It("refuses DEBUG: enable-debug-command answers before the ACL, which denies it too", func(ctx SpecContext) {
		err := rc.Do(ctx, "DEBUG", "SLEEP", "0").Err()
		Expect(err).To(MatchError(Or(ContainSubstring("NOPERM"), ContainSubstring("DEBUG command not allowed"))))
		acl, err := os.ReadFile(filepath.Join(sys.instanceDir(id), "users.acl"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(acl)).To(MatchRegexp(`(?m)^user %s .* -debug( |$)`, regexp.QuoteMeta(user)))
	})

	It("runs Lua scripts: EVAL, SCRIPT LOAD and EVALSHA", func(ctx SpecContext) {
		Expect(rc.Eval(ctx, "return redis.call('SET', KEYS[1], ARGV[1])", []string{"lua-key"}, "lua-value").Err()).To(Succeed())
		Expect(rc.Get(ctx, "lua-key").Val()).To(Equal("lua-value"))
		sha, err := rc.ScriptLoad(ctx, "return redis.call('GET', KEYS[1])").Result()
		Expect(err).NotTo(HaveOccurred())
		Expect(rc.EvalSha(ctx, sha, []string{"lua-key"}).Val()).To(Equal("lua-value"))
	})

	It("refuses the platform's commands called from a Lua script", func(ctx SpecContext) {
		for _, script := range []string{
			"return redis.call('CONFIG', 'GET', 'maxmemory')",
			"return redis.call('CONFIG', 'SET', 'maxmemory', '0')",
			"return redis.call('MIGRATE', '127.0.0.1', '1', 'k', '0', '1000')",
		} {
			err := rc.Eval(ctx, script, nil).Err()
			Expect(err).To(HaveOccurred(), script)
			Expect(err).NotTo(Equal(redis.Nil), script)
		}
	})

	It("runs functions: FUNCTION LOAD and FCALL", func(ctx SpecContext) {
		lib := "#!lua name=testlib\nredis.register_function('echo_arg', function(keys, args) return args[1] end)"
		Expect(rc.FunctionLoadReplace(ctx, lib).Err()).To(Succeed())
		Expect(rc.FCall(ctx, "echo_arg", nil, "hello").Val()).To(Equal("hello"))
	})

	It("runs transactions: MULTI and EXEC", func(ctx SpecContext) {
		var incr *redis.IntCmd
		_, err := rc.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, "tx-counter", 41, 0)
			incr = p.Incr(ctx, "tx-counter")
			return nil
		})
		Expect(err).NotTo(HaveOccurred())
		Expect(incr.Val()).To(BeEquivalentTo(42))
	})

	It("publishes to a subscriber: PUBLISH and SUBSCRIBE", func(ctx SpecContext) {
		sub := rc.Subscribe(ctx, "news")
		DeferCleanup(sub.Close)
		_, err := sub.Receive(ctx) // the subscription's confirmation
		Expect(err).NotTo(HaveOccurred())
		Expect(rc.Publish(ctx, "news", "hello").Val()).To(BeEquivalentTo(1))
		var msg *redis.Message
		Eventually(sub.Channel()).Should(Receive(&msg))
		Expect(msg.Payload).To(Equal("hello"))
	})

	It("runs KEYS, SCAN, DEL and EXPIRE", func(ctx SpecContext) {
		for _, k := range []string{"scan:1", "scan:2", "scan:3"} {
			Expect(rc.Set(ctx, k, "v", 0).Err()).To(Succeed())
		}
		Expect(rc.Keys(ctx, "scan:*").Val()).To(ConsistOf("scan:1", "scan:2", "scan:3"))
		var found []string
		iter := rc.Scan(ctx, 0, "scan:*", 100).Iterator()
		for iter.Next(ctx) {
			found = append(found, iter.Val())
		}
		Expect(iter.Err()).NotTo(HaveOccurred())
		Expect(found).To(ConsistOf("scan:1", "scan:2", "scan:3"))
		Expect(rc.Del(ctx, "scan:1").Val()).To(BeEquivalentTo(1))
		Expect(rc.Expire(ctx, "scan:2", time.Hour).Val()).To(BeTrue())
		Expect(rc.TTL(ctx, "scan:2").Val()).To(BeNumerically(">", 59*time.Minute))
	})

	It("is still the same server afterwards: nothing refused above took effect", func(ctx SpecContext) {
		Expect(serverPid(ctx, rc)).To(Equal(pid))
		Expect(infoField(ctx, rc, "replication", "role")).To(Equal("master"))
		Expect(infoField(ctx, rc, "memory", "maxmemory")).To(Equal("16777216"))
	})
})
