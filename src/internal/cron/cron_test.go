package cron_test

import (
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
		Entry("Sunday as 7", "0 0 * * 7", "2026-01-21T03:04:05Z", "2026-01-25T00:00:00Z"),
		Entry("both day fields: either matches", "0 0 1 * 1", "2026-01-21T03:04:05Z", "2026-01-26T00:00:00Z"),
		Entry("a leap day", "0 12 29 2 *", "2026-01-21T03:04:05Z", "2028-02-29T12:00:00Z"),
		Entry("lists, ranges and steps together", "5-10/5 8,20 * 1-3 *", "2026-03-31T20:10:00Z", "2027-01-01T08:05:00Z"),
		Entry("@every", "@every 6h", "2026-01-21T03:04:05Z", "2026-01-21T09:04:05Z"),
	)

	It("never fires on a day that does not exist", func() {
		s, err := cron.Parse("0 0 31 2 *")
		Expect(err).NotTo(HaveOccurred())
		Expect(s.Next(at("2026-01-21T03:04:05Z")).IsZero()).To(BeTrue())
	})

	It("rejects what it cannot read", func() {
		for _, spec := range []string{"", "* * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "* * * * 8",
			"*/0 * * * *", "a * * * *", "5-1 * * * *", "@every 10ms", "@every x", "@sometimes"} {
			_, err := cron.Parse(spec)
			Expect(err).To(HaveOccurred(), spec)
		}
	})
})
