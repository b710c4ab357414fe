package sentinel_test

import (
	"strings"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/internal/redisconf"
	"github.com/cf-redis/redis-for-cf/src/internal/secret"
	"github.com/cf-redis/redis-for-cf/src/internal/sentinel"
)

func TestSentinel(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "sentinel")
}

func group() sentinel.Group {
	return sentinel.Group{
		MasterName: "redis-inst-1",
		Members: []sentinel.Member{
			{Host: "10.0.0.1", Port: 6379, SentinelPort: 26379},
			{Host: "10.0.0.2", Port: 6379, SentinelPort: 26379},
			{Host: "node-3.redis.bosh", Port: 6379, SentinelPort: 26379},
		},
		Leader: 1, ReplicationPassword: secret.New(), SentinelPassword: secret.New(),
	}
}

var _ = Describe("Group", func() {
	It("accepts three distinct members and names the faults of the rest", func() {
		Expect(group().Check()).To(Succeed())
		g := group()
		g.Members = g.Members[:2]
		Expect(g.Check()).To(MatchError(ContainSubstring("a group has 3 members, not 2")))
		g = group()
		g.Members[2] = g.Members[0]
		Expect(g.Check()).To(MatchError(ContainSubstring("members[2]: 10.0.0.1:6379 is named twice")))
		g = group()
		g.Members[0].Host = "127.1"
		Expect(g.Check()).To(MatchError(ContainSubstring("members[0].host")))
		g = group()
		g.Leader = 3
		Expect(g.Check()).To(MatchError(ContainSubstring("leader: 3")))
		g = group()
		g.MasterName = "a b"
		Expect(g.Check()).To(MatchError(ContainSubstring("master_name")))
		g = group()
		g.SentinelPassword = "short"
		Expect(g.Check()).To(MatchError(ContainSubstring("at least 32 characters")))
		g = group()
		g.Members[1].SentinelPort = g.Members[1].Port
		Expect(g.Check()).To(MatchError(ContainSubstring("members[1]: port and sentinel_port must be distinct")))
	})

	It("finds a member by its address", func() {
		i, ok := group().Self("10.0.0.2", 6379)
		Expect(ok).To(BeTrue())
		Expect(i).To(Equal(1))
		_, ok = group().Self("10.0.0.2", 6380)
		Expect(ok).To(BeFalse())
	})

	It("leaves backups to the first follower in member order that is up, whichever member leads", func() {
		g := group()
		Expect(g.Backer("10.0.0.1", 6379, nil)).To(Equal(1), "the first member leads: the second backs up")
		Expect(g.Backer("10.0.0.2", 6379, nil)).To(Equal(0))
		Expect(g.Backer("node-3.redis.bosh", 6379, nil)).To(Equal(0))
		Expect(g.Backer("10.0.0.9", 6379, nil)).To(Equal(0), "a leader outside the group")
		up := map[string]bool{"10.0.0.1:6379": false, "node-3.redis.bosh:6379": true}
		Expect(g.Backer("10.0.0.2", 6379, up)).To(Equal(2), "the first follower is down: the next backs up")
		Expect(g.Backer("10.0.0.2", 6379, map[string]bool{})).To(Equal(0), "none up: the first follower")
	})
})

var _ = Describe("Render", func() {
	It("monitors the first leader with quorum 2, fast detection and the group's users", func() {
		g := group()
		admin := redisconf.User{Name: "platform-admin", PasswordHash: secret.Hash("x"), Admin: true}
		app := redisconf.User{Name: "app", PasswordHash: secret.Hash("y")}
		b, err := sentinel.Render(sentinel.Conf{Group: g, Self: 0, Bind: "10.0.0.1", Dir: "/var/vcap/store/sentinel", Users: []redisconf.User{admin, app}})
		Expect(err).NotTo(HaveOccurred())
		conf := string(b)
		for _, line := range []string{
			"port 26379",
			`sentinel announce-ip "10.0.0.1"`,
			`sentinel monitor redis-inst-1 "10.0.0.2" 6379 2`,
			"sentinel auth-user redis-inst-1 ha-sentinel",
			"sentinel down-after-milliseconds redis-inst-1 2000",
			"sentinel failover-timeout redis-inst-1 5000",
			"sentinel sentinel-user ha-sentinel",
			`sentinel known-replica redis-inst-1 "10.0.0.1" 6379`,
			`sentinel known-replica redis-inst-1 "node-3.redis.bosh" 6379`,
			"sentinel known-sentinel redis-inst-1 \"10.0.0.2\" 26379 " + sentinel.PeerID(g, 1),
			"sentinel myid " + sentinel.PeerID(g, 0),
			"user default off resetpass resetchannels -@all",
			"user app " + sentinel.Rule(app),
		} {
			Expect(conf).To(ContainSubstring(line + "\n"))
		}
		Expect(conf).NotTo(ContainSubstring(`known-replica redis-inst-1 "10.0.0.2"`), "the leader is no follower")
		Expect(sentinel.PeerID(g, 0)).To(MatchRegexp(`^[0-9a-f]{40}$`))
		Expect(sentinel.PeerID(g, 0)).NotTo(Equal(sentinel.PeerID(g, 1)))
		Expect(sentinel.Rule(app)).To(HavePrefix("on #" + app.PasswordHash + " resetchannels &+switch-master"))
		Expect(sentinel.Rule(app)).To(ContainSubstring(" -@all +auth"))
		Expect(sentinel.Rule(app)).NotTo(ContainSubstring("sentinel|set"))
		Expect(sentinel.Rule(redisconf.User{Name: sentinel.User, PasswordHash: app.PasswordHash})).To(ContainSubstring("+sentinel|is-master-down-by-addr"))
	})

	It("serves TLS only when the group runs over TLS", func() {
		g := group()
		g.TLS = true
		_, err := sentinel.Render(sentinel.Conf{Group: g, Self: 0, Bind: "10.0.0.1", Dir: "/d"})
		Expect(err).To(MatchError(ContainSubstring("TLS certificate")))
		b, err := sentinel.Render(sentinel.Conf{Group: g, Self: 0, Bind: "10.0.0.1", Dir: "/d", TLS: &redisconf.TLS{CertFile: "/c", KeyFile: "/k", CAFile: "/ca"}})
		Expect(err).NotTo(HaveOccurred())
		conf := string(b)
		Expect(conf).To(ContainSubstring("port 0\ntls-port 26379\n"))
		Expect(conf).To(ContainSubstring("tls-replication \"yes\"\n"))
		Expect(strings.Count(conf, "tls-port")).To(Equal(1))
	})
})
