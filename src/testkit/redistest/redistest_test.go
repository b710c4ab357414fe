package redistest_test

import (
	"net"
	"strconv"
	"syscall"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/testkit/redistest"
)

var _ = Describe("FreePort", func() {
	It("returns a port that can be listened on", func() {
		port, err := redistest.FreePort()
		Expect(err).NotTo(HaveOccurred())
		Expect(port).To(BeNumerically(">", 0))
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		Expect(err).NotTo(HaveOccurred())
		Expect(l.Close()).To(Succeed())
	})
})

var _ = Describe("Start", func() {
	var dir string

	BeforeEach(func() {
		dir = GinkgoT().TempDir()
	})

	startServer := func(extra ...string) *redistest.Server {
		s, err := redistest.Start(dir, extra...)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(s.Stop)
		return s
	}

	It("serves commands until Stop, and Stop is idempotent", func(ctx SpecContext) {
		s := startServer()
		Expect(s.Addr).To(Equal("127.0.0.1:" + strconv.Itoa(s.Port)))
		Expect(s.Dir).To(Equal(dir))

		c := redis.NewClient(&redis.Options{Addr: s.Addr})
		DeferCleanup(c.Close)
		Expect(c.Set(ctx, "k", "v", 0).Err()).To(Succeed())
		Expect(c.Get(ctx, "k").Val()).To(Equal("v"))

		pid := s.Cmd.Process.Pid
		Expect(s.Stop()).To(Succeed())
		Expect(s.Stop()).To(Succeed())
		Expect(syscall.Kill(pid, 0)).To(MatchError(syscall.ESRCH))
		_, err := net.Dial("tcp", s.Addr)
		Expect(err).To(HaveOccurred())
	})

	It("applies extra configuration after the defaults", func(ctx SpecContext) {
		s := startServer("requirepass sekrit")

		c := redis.NewClient(&redis.Options{Addr: s.Addr})
		DeferCleanup(c.Close)
		Expect(c.Ping(ctx).Err()).To(MatchError(ContainSubstring("NOAUTH")))

		authed := redis.NewClient(&redis.Options{Addr: s.Addr, Password: "sekrit"})
		DeferCleanup(authed.Close)
		Expect(authed.Ping(ctx).Err()).To(Succeed())
	})

	It("reports a server that fails to start with its log", func() {
		s, err := redistest.Start(dir, "no-such-directive yes")
		Expect(s).To(BeNil())
		Expect(err).To(MatchError(ContainSubstring("exit status 1")))
		Expect(err).To(MatchError(ContainSubstring("Bad directive")))
	})

	It("rejects an empty dir", func() {
		_, err := redistest.Start("")
		Expect(err).To(HaveOccurred())
	})

	It("does nothing when stopping a zero Server", func() {
		var s redistest.Server
		Expect(s.Stop()).To(Succeed())
	})
})
