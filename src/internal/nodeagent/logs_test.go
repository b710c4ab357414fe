package nodeagent_test

import (
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/internal/logrotate"
	"github.com/cf-redis/redis-for-cf/src/testkit/redistest"
)

var _ = Describe("the node's redis-server log", func() {
	It("is LogDir/redis-server.log, rotated past its size with at most Keep old files while the server goes on logging, and no line of a tenant outlives a reset", func(ctx SpecContext) {
		dir := tempDir()
		cfg := nodeConfig(dir, "127.0.0.1")
		cfg.LogDir = filepath.Join(dir, "sys-log")
		cfg.RedisLogs = logrotate.Policy{MaxSizeMB: 1, Keep: 2}
		nd := startNode(cfg)
		log := filepath.Join(cfg.LogDir, "redis-server.log")
		Expect(read(log)).To(ContainSubstring("Ready to accept connections"), "redis-server writes its own log there")

		nd.claim(ctx, "inst-1")
		c, _ := nd.bind(ctx, "inst-1", "b1")
		Expect(redistest.WriteLog(ctx, c, "tenant-line", 1)).To(Succeed())
		Expect(read(log)).To(ContainSubstring("tenant-line"))
		for round := range 3 {
			Expect(redistest.WriteLog(ctx, c, strings.Repeat("f", 1000), 1100)).To(Succeed())
			nd.n.RotateLogs()
			Expect(log).NotTo(BeAnExistingFile(), "round %d", round)
			Expect(redistest.WriteLog(ctx, c, "tenant-line", 1)).To(Succeed())
			Expect(read(log)).To(ContainSubstring("tenant-line"), "the server creates the file again at its next line")
		}
		old, err := logrotate.Rotated(log)
		Expect(err).NotTo(HaveOccurred())
		Expect(old).To(HaveLen(2), "at most Keep rotated files")
		Expect(c.ConfigSet(ctx, "logfile", filepath.Join(dir, "elsewhere.log")).Err()).To(MatchError(ContainSubstring("NOPERM")))

		Expect(nd.client.Delete(ctx, "inst-1")).To(Succeed())
		Expect(logrotate.Rotated(log)).To(BeEmpty(), "the reset removed the rotated files")
		Expect(read(log)).NotTo(ContainSubstring("tenant-line"), "only the wiped server's own lines")
		Expect(read(log)).To(ContainSubstring("Ready to accept connections"))
	})
})

func read(path string) string {
	data, err := os.ReadFile(path)
	Expect(err).NotTo(HaveOccurred())
	return string(data)
}
