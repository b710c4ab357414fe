package keylock_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/internal/keylock"
)

func TestKeylock(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "keylock")
}

var _ = Describe("Map", func() {
	It("lets one holder per key in at a time", func() {
		var m keylock.Map
		var inside, most atomic.Int32
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() {
				unlock := m.Lock("k")
				defer unlock()
				n := inside.Add(1)
				if n > most.Load() {
					most.Store(n)
				}
				time.Sleep(100 * time.Microsecond)
				inside.Add(-1)
			})
		}
		wg.Wait()
		Expect(most.Load()).To(Equal(int32(1)))
	})

	It("does not hold one key up for another", func() {
		var m keylock.Map
		unlock := m.Lock("a")
		defer unlock()
		done := make(chan struct{})
		go func() { m.Lock("b")(); close(done) }()
		Eventually(done).Should(BeClosed())
	})

	It("gives up when the context ends", func() {
		var m keylock.Map
		unlock := m.Lock("a")
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		_, err := m.LockContext(ctx, "a")
		Expect(err).To(MatchError(context.DeadlineExceeded))
		unlock()
		again, err := m.LockContext(context.Background(), "a")
		Expect(err).NotTo(HaveOccurred())
		again()
	})
})
