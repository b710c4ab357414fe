package fakeleader_test

import (
	"context"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/testkit/fakeleader"
	"github.com/cf-redis/redis-for-cf/src/testkit/redistest"
)

var _ = Describe("a fake leader", func() {
	It("is followed by a real redis-server, which runs its stream as admin, again after Repeat, until it stops following", func() {
		ctx := context.Background()
		l, err := fakeleader.Start(
			[]string{"CONFIG", "SET", "maxmemory", "12345678"},
			[]string{"SET", "from-leader", "1"},
		)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(l.Close)
		srv, err := redistest.Start(GinkgoT().TempDir(), "maxmemory 1000000")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(srv.Stop)
		rc := redis.NewClient(&redis.Options{Addr: srv.Addr})
		DeferCleanup(rc.Close)
		maxmemory := func() string { return rc.ConfigGet(ctx, "maxmemory").Val()["maxmemory"] }

		Expect(rc.Do(ctx, "REPLICAOF", l.Host(), strconv.Itoa(l.Port())).Err()).To(Succeed())
		Eventually(func() string { return rc.Get(ctx, "from-leader").Val() }).WithTimeout(15 * time.Second).Should(Equal("1"))
		Expect(maxmemory()).To(Equal("12345678"), "the stream's CONFIG SET ran on the follower")
		Expect(l.Connections()).To(BeNumerically(">=", 1))
		Expect(l.Syncs()).To(BeNumerically(">=", 1))
		Expect(l.Open()).To(Equal(1))

		Expect(rc.ConfigSet(ctx, "maxmemory", "1000000").Err()).To(Succeed())
		Consistently(maxmemory).WithTimeout(300*time.Millisecond).Should(Equal("1000000"), "without Repeat the stream is sent once")
		l.Repeat(20 * time.Millisecond)
		Eventually(maxmemory).WithTimeout(15*time.Second).Should(Equal("12345678"), "the repeated stream sets it again")

		Expect(rc.Do(ctx, "REPLICAOF", "NO", "ONE").Err()).To(Succeed())
		Eventually(l.Open).WithTimeout(15*time.Second).Should(BeZero(), "the follower closed its connection")
	})
})
