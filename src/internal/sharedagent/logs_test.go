package sharedagent_test

import (
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/logrotate"
	"github.com/cf-redis/redis-for-cf/src/internal/secret"
	"github.com/cf-redis/redis-for-cf/src/testkit/redistest"
)

var _ = Describe("each instance's redis-server log", func() {
	It("is LogDir/redis-ID.log, rotated past its size with at most Keep old files while the server goes on logging, and goes with the instance", func(ctx SpecContext) {
		dir := tempDir()
		cfg := config(dir)
		cfg.LogDir = filepath.Join(dir, "sys-log")
		cfg.RedisLogs = logrotate.Policy{MaxSizeMB: 1, Keep: 2}
		a := startAgent(cfg)
		DeferCleanup(a.stop)
		inst, err := a.client.Create(ctx, "i1", request(16))
		Expect(err).NotTo(HaveOccurred())
		_, err = a.client.Create(ctx, "i2", request(16))
		Expect(err).NotTo(HaveOccurred())
		pw := secret.New()
		_, err = a.client.Bind(ctx, "i1", "b1", agentapi.BindingRequest{Password: pw})
		Expect(err).NotTo(HaveOccurred())
		c := tenant(inst, "b1", pw)

		log := filepath.Join(cfg.LogDir, "redis-i1.log")
		Expect(read(log)).To(ContainSubstring("Ready to accept connections"), "redis-server writes its own log there")
		Expect(redistest.WriteLog(ctx, c, "tenant-line-1", 1)).To(Succeed())
		Expect(read(log)).To(ContainSubstring("tenant-line-1"))

		a.mgr.RotateLogs()
		Expect(read(log)).To(ContainSubstring("tenant-line-1"), "a file within the size stays")
		for round := range 3 {
			// 1,100 lines of 1,000 bytes: past the 1 MB limit.
			Expect(redistest.WriteLog(ctx, c, strings.Repeat("f", 1000), 1100)).To(Succeed())
			a.mgr.RotateLogs()
			Expect(log).NotTo(BeAnExistingFile(), "round %d", round)
			Expect(redistest.WriteLog(ctx, c, "after-rotation", 1)).To(Succeed())
			Expect(read(log)).To(ContainSubstring("after-rotation"), "the server creates the file again at its next line")
		}
		old, err := logrotate.Rotated(log)
		Expect(err).NotTo(HaveOccurred())
		Expect(old).To(HaveLen(2), "at most Keep rotated files")
		Expect(read(old[2])).NotTo(ContainSubstring("tenant-line-1"), "the oldest went")
		Expect(filepath.Join(cfg.LogDir, "redis-i2.log")).To(BeARegularFile(), "one file per instance")

		// The tenant cannot point the server's log elsewhere; nor can the
		// platform while it runs.
		Expect(c.ConfigSet(ctx, "logfile", filepath.Join(dir, "elsewhere.log")).Err()).To(MatchError(ContainSubstring("NOPERM")))
		Expect(c.Do(ctx, "CONFIG", "GET", "logfile").Err()).To(MatchError(ContainSubstring("NOPERM")))
		Expect(adminOf(ctx, dir, inst).ConfigSet(ctx, "logfile", filepath.Join(dir, "elsewhere.log")).Err()).To(MatchError(ContainSubstring("immutable")))
		Expect(filepath.Join(dir, "elsewhere.log")).NotTo(BeAnExistingFile())

		Expect(a.client.Delete(ctx, "i1")).To(Succeed())
		Expect(files(cfg.LogDir, "redis-i1.log")).To(BeEmpty(), "nothing of the instance's logs is left")
		Expect(files(cfg.LogDir, "redis-i2.log")).To(ConsistOf("redis-i2.log"), "the other instance's log stays")
	})
})

func read(path string) string {
	data, err := os.ReadFile(path)
	Expect(err).NotTo(HaveOccurred())
	return string(data)
}

// files are the names in dir that begin with prefix.
func files(dir, prefix string) []string {
	entries, err := os.ReadDir(dir)
	Expect(err).NotTo(HaveOccurred())
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out
}
