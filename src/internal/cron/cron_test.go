package cron_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/internal/cron"
)

func TestCron(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "cron")
}

func at(s string) time.Time {
	GinkgoHelper()
	t, err := time.Parse(time.RFC3339, s)
	Expect(err).NotTo(HaveOccurred())
	return t
}

var _ = Describe("Parse and Next", func() {
	DescribeTable("the next firing time",
		func(spec, from, want string) {
			s, err := cron.Parse(spec)
			Expect(err).NotTo(HaveOccurred())
			Expect(s.Next(at(from))).To(Equal(at(want)))
			Expect(s.String()).To(Equal(spec))
		},
		Entry("@daily", "@daily", "2026-01-21T03:04:05Z", "2026-01-22T00:00:00Z"),
		Entry("@hourly", "@hourly", "2026-01-21T03:04:05Z", "2026-01-21T04:00:00Z"),
		Entry("a time of day, passed today", "30 2 * * *", "2026-01-21T03:04:05Z", "2026-01-22T02:30:00Z"),
		Entry("a time of day, still to come", "30 2 * * *", "2026-01-21T02:29:59Z", "2026-01-21T02:30:00Z"),
		Entry("a step", "*/15 * * * *", "2026-01-21T03:04:05Z", "2026-01-21T03:15:00Z"),
		Entry("Sunday as 0", "0 0 * * 0", "2026-01-21T03:04:05Z", "2026-01-25T00:00:00Z"),
		Entry("Sunday as 7, as Vixie cron and our earlier parser read it", "0 0 * * 7", "2026-01-21T03:04:05Z", "2026-01-25T00:00:00Z"),
		Entry("a range up to 7 reaches Sunday", "0 0 * * 5-7", "2026-01-24T01:00:00Z", "2026-01-25T00:00:00Z"),
		Entry("a range up to 7 starts on its first day", "0 0 * * 5-7", "2026-01-21T03:04:05Z", "2026-01-23T00:00:00Z"),
		Entry("a stepped range whose step lands on 7", "0 0 * * 1-7/2", "2026-01-24T01:00:00Z", "2026-01-25T00:00:00Z"),
		Entry("a stepped range whose step misses 7", "0 0 * * 2-7/2", "2026-01-24T01:00:00Z", "2026-01-27T00:00:00Z"),
		Entry("7 in a list, with a time zone", "CRON_TZ=UTC 0 0 * * 3,7", "2026-01-22T03:04:05Z", "2026-01-25T00:00:00Z"),
		Entry("Sunday by name", "0 0 * * sun", "2026-01-21T03:04:05Z", "2026-01-25T00:00:00Z"),
		Entry("both day fields: either matches", "0 0 1 * 1", "2026-01-21T03:04:05Z", "2026-01-26T00:00:00Z"),
		Entry("a leap day", "0 12 29 2 *", "2026-01-21T03:04:05Z", "2028-02-29T12:00:00Z"),
		Entry("lists, ranges and steps together", "5-10/5 8,20 * 1-3 *", "2026-03-31T20:10:00Z", "2027-01-01T08:05:00Z"),
		Entry("@every", "@every 6h", "2026-01-21T03:04:05Z", "2026-01-21T09:04:05Z"),
		Entry("a time zone of its own", "CRON_TZ=Asia/Tokyo 0 9 * * *", "2026-01-21T03:04:05Z", "2026-01-22T00:00:00Z"),
	)

	It("evaluates in UTC whatever the zone of the time it is given", func() {
		s, err := cron.Parse("30 2 * * *")
		Expect(err).NotTo(HaveOccurred())
		tokyo := time.FixedZone("JST", 9*3600)
		next := s.Next(at("2026-01-21T03:04:05Z").In(tokyo))
		Expect(next.Equal(at("2026-01-22T02:30:00Z"))).To(BeTrue(), next.String())
	})

	It("never fires on a day that does not exist", func() {
		s, err := cron.Parse("0 0 31 2 *")
		Expect(err).NotTo(HaveOccurred())
		Expect(s.Next(at("2026-01-21T03:04:05Z")).IsZero()).To(BeTrue())
	})

	It("rejects what it cannot read, quoting it and saying why", func() {
		for spec, why := range map[string]string{
			"":                               "empty",
			"* * * *":                        "5 fields",
			"60 * * * *":                     "above maximum (59)",
			"* 24 * * *":                     "above maximum (23)",
			"* * 0 * *":                      "below minimum (1)",
			"* * * 13 *":                     "above maximum (12)",
			"* * * * 8":                      "above maximum (6)",
			"*/0 * * * *":                    "step",
			"a * * * *":                      `"a"`,
			"5-1 * * * *":                    "beyond end of range",
			"@every 10ms":                    "a second or more",
			"@every x":                       "a second or more",
			"@sometimes":                     "unrecognized descriptor",
			"TZ=UTC":                         "needs a schedule after it",
			"CRON_TZ=Nowhere":                "needs a schedule after it",
			"CRON_TZ=Nowhere/Land 0 0 * * *": "Nowhere/Land",
		} {
			_, err := cron.Parse(spec)
			Expect(err).To(MatchError(ContainSubstring(why)), spec)
			if spec != "" {
				Expect(err).To(MatchError(ContainSubstring("%q", spec)))
			}
		}
	})
})

var _ = Describe("Run", func() {
	It("calls fn when the schedule fires, skips firings while fn runs, and returns after fn once ctx ends", func() {
		s, err := cron.Parse("@every 1s")
		Expect(err).NotTo(HaveOccurred())
		ctx, cancel := context.WithCancel(context.Background())
		var calls, running, overlaps atomic.Int32
		release := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer GinkgoRecover()
			defer close(done)
			cron.Run(ctx, s, func(ctx context.Context) {
				if running.Add(1) != 1 {
					overlaps.Add(1)
				}
				calls.Add(1)
				if calls.Load() == 1 {
					<-release // hold the first run over several firings
				}
				running.Add(-1)
			})
		}()
		Eventually(calls.Load, 3*time.Second, 50*time.Millisecond).Should(Equal(int32(1)))
		Consistently(calls.Load, 2500*time.Millisecond, 100*time.Millisecond).Should(Equal(int32(1)))
		close(release)
		Eventually(calls.Load, 3*time.Second, 50*time.Millisecond).Should(BeNumerically(">=", 2))
		cancel()
		Eventually(done, 3*time.Second).Should(BeClosed())
		n := calls.Load()
		Consistently(calls.Load, 1500*time.Millisecond, 100*time.Millisecond).Should(Equal(n))
		Expect(overlaps.Load()).To(BeZero(), "two runs at once")
	})

	It("returns only when the run in progress has returned", func() {
		s, err := cron.Parse("@every 1s")
		Expect(err).NotTo(HaveOccurred())
		ctx, cancel := context.WithCancel(context.Background())
		started := make(chan struct{})
		var finished atomic.Bool
		done := make(chan struct{})
		go func() {
			defer GinkgoRecover()
			defer close(done)
			cron.Run(ctx, s, func(ctx context.Context) {
				close(started)
				<-ctx.Done()
				time.Sleep(300 * time.Millisecond) // cleanup after cancellation
				finished.Store(true)
			})
		}()
		Eventually(started, 3*time.Second).Should(BeClosed())
		cancel()
		Eventually(done, 3*time.Second).Should(BeClosed())
		Expect(finished.Load()).To(BeTrue())
	})
})
