package logrotate_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/internal/logrotate"
)

func TestLogrotate(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "logrotate")
}

// The rotation of a log a real redis-server writes is tested where the
// agents run their servers (sharedagent, nodeagent); these specs pin the
// renames themselves.
var _ = Describe("Rotator", func() {
	var dir, log string
	write := func(path string, mb int, mark string) {
		Expect(os.WriteFile(path, []byte(mark+"\n"+strings.Repeat("x", mb<<20)), 0o600)).To(Succeed())
	}
	first := func(path string) string {
		data, err := os.ReadFile(path)
		Expect(err).NotTo(HaveOccurred())
		line, _, _ := strings.Cut(string(data), "\n")
		return line
	}
	BeforeEach(func() {
		dir = GinkgoT().TempDir()
		log = filepath.Join(dir, "redis-i1.log")
	})

	It("renames a file past the size to .1, shifts the older ones and keeps no more than Keep", func() {
		r := logrotate.New(logrotate.Policy{MaxSizeMB: 1, Keep: 2}, func() []string { return []string{log, filepath.Join(dir, "gone.log")} }, nil)
		for _, mark := range []string{"a", "b", "c"} {
			write(log, 2, mark)
			r.Check()
			Expect(log).NotTo(BeAnExistingFile())
		}
		old, err := logrotate.Rotated(log)
		Expect(err).NotTo(HaveOccurred())
		Expect(old).To(HaveLen(2))
		Expect(first(old[1])).To(Equal("c"))
		Expect(first(old[2])).To(Equal("b"))
	})

	It("leaves a file within the size alone", func() {
		r := logrotate.New(logrotate.Policy{MaxSizeMB: 1, Keep: 2}, func() []string { return []string{log} }, nil)
		Expect(os.WriteFile(log, []byte("small\n"), 0o600)).To(Succeed())
		r.Check()
		Expect(first(log)).To(Equal("small"))
		Expect(logrotate.Rotated(log)).To(BeEmpty())
	})

	It("removes rotated files beyond a Keep lowered since, and nothing of other logs", func() {
		for i, name := range []string{"redis-i1.log.1", "redis-i1.log.2", "redis-i1.log.3", "redis-i1.log.x", "redis-i1.log.01", "redis-i10.log.1"} {
			Expect(os.WriteFile(filepath.Join(dir, name), []byte(strings.Repeat("o", i)), 0o600)).To(Succeed())
		}
		write(log, 2, "new")
		logrotate.New(logrotate.Policy{MaxSizeMB: 1, Keep: 1}, func() []string { return []string{log} }, nil).Check()
		entries, err := os.ReadDir(dir)
		Expect(err).NotTo(HaveOccurred())
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		Expect(names).To(ConsistOf("redis-i1.log.1", "redis-i1.log.x", "redis-i1.log.01", "redis-i10.log.1"))
		Expect(first(filepath.Join(dir, "redis-i1.log.1"))).To(Equal("new"))
	})

	It("removes a log with its rotated files, and only those", func() {
		r := logrotate.New(logrotate.Policy{}, func() []string { return nil }, nil)
		for _, name := range []string{"redis-i1.log", "redis-i1.log.1", "redis-i1.log.7", "redis-i10.log", "redis-i10.log.1"} {
			Expect(os.WriteFile(filepath.Join(dir, name), nil, 0o600)).To(Succeed())
		}
		Expect(r.Remove(log)).To(Succeed())
		Expect(r.Remove(log)).To(Succeed(), "removing what is gone is no error")
		entries, err := os.ReadDir(dir)
		Expect(err).NotTo(HaveOccurred())
		Expect(entries).To(HaveLen(2))
		Expect(r.Remove(filepath.Join(dir, "missing-dir", "x.log"))).To(Succeed())
	})
})

var _ = Describe("Policy", func() {
	It("fills in 10 MB and two files, and names the field at fault", func() {
		var p logrotate.Policy
		Expect(p.Validate("redis_logs")).To(Succeed())
		Expect(p).To(Equal(logrotate.Policy{MaxSizeMB: 10, Keep: 2}))
		p = logrotate.Policy{MaxSizeMB: -1, Keep: 101}
		err := p.Validate("redis_logs")
		Expect(err).To(MatchError(ContainSubstring("redis_logs.max_size_mb")))
		Expect(err).To(MatchError(ContainSubstring("redis_logs.keep must be in 1-100")))
	})
})
