package portalloc_test

import (
	"net"
	"strconv"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/internal/portalloc"
)

func TestPortalloc(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "portalloc")
}

var _ = Describe("Next", func() {
	r := portalloc.Range{Min: 100, Max: 104}

	It("starts after the last port and wraps around", func() {
		Expect(portalloc.Next(r, nil, 0, nil)).To(Equal(100))
		Expect(portalloc.Next(r, nil, 101, nil)).To(Equal(102))
		Expect(portalloc.Next(r, nil, 104, nil)).To(Equal(100))
		Expect(portalloc.Next(r, map[int]bool{100: true, 101: true}, 104, nil)).To(Equal(102))
	})

	It("skips reserved ports and ports the check refuses, and says when none is left", func() {
		used := map[int]bool{100: true, 102: true}
		busy := func(p int) bool { return p != 101 && p != 103 }
		Expect(portalloc.Next(r, used, 99, busy)).To(Equal(104))
		used[104] = true
		_, err := portalloc.Next(r, used, 99, busy)
		Expect(err).To(MatchError(portalloc.ErrExhausted))
	})

	It("hands out every port of the range exactly once when each is reserved as it goes", func() {
		big := portalloc.Range{Min: 40000, Max: 40999}
		used := map[int]bool{}
		last := 0
		for range big.Size() {
			p, err := portalloc.Next(big, used, last, nil)
			Expect(err).NotTo(HaveOccurred())
			Expect(used).NotTo(HaveKey(p))
			used[p], last = true, p
		}
		_, err := portalloc.Next(big, used, last, nil)
		Expect(err).To(MatchError(portalloc.ErrExhausted))
	})

	It("refuses a range that is empty or out of bounds", func() {
		for _, bad := range []portalloc.Range{{}, {Min: 5, Max: 4}, {Min: 0, Max: 10}, {Min: 1, Max: 70000}} {
			Expect(bad.Validate()).NotTo(Succeed())
			_, err := portalloc.Next(bad, nil, 0, nil)
			Expect(err).To(HaveOccurred())
		}
		Expect(portalloc.Default.Validate()).To(Succeed())
		Expect(portalloc.Default.Size()).To(Equal(61000 - 32768 + 1))
	})
})

var _ = Describe("Listenable", func() {
	It("reports a port another process listens on as unavailable", func() {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		defer l.Close()
		port := l.Addr().(*net.TCPAddr).Port
		check := portalloc.Listenable("127.0.0.1")
		Expect(check(port)).To(BeFalse())
		l.Close()
		Expect(check(port)).To(BeTrue(), "port "+strconv.Itoa(port)+" should be free once closed")
	})
})
