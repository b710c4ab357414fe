package redistest_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/testkit/redistest"
)

// repoRoot is the repository's root: this package is src/testkit/redistest.
func repoRoot() string {
	GinkgoHelper()
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	Expect(err).NotTo(HaveOccurred())
	Expect(filepath.Join(root, "go.mod")).To(BeARegularFile())
	return root
}

// copyRoot copies what LoadBuild reads into a folder of its own, so a test
// can change one of them.
func copyRoot() string {
	GinkgoHelper()
	root := repoRoot()
	dir := GinkgoT().TempDir()
	for _, f := range []string{redistest.BuildPointer, "config/blobs.yml", "src/redis/build.sh"} {
		data, err := os.ReadFile(filepath.Join(root, f))
		Expect(err).NotTo(HaveOccurred())
		Expect(os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755)).To(Succeed())
		Expect(os.WriteFile(filepath.Join(dir, f), data, 0o644)).To(Succeed())
	}
	return dir
}

var _ = Describe("the tests' Redis build", func() {
	It("is the release's: built from config/blobs.yml's redis blobs, Debian's revision, with its security patches", func() {
		b, err := redistest.LoadBuild(repoRoot())
		Expect(err).NotTo(HaveOccurred())
		blobs, err := os.ReadFile(filepath.Join(repoRoot(), "config/blobs.yml"))
		Expect(err).NotTo(HaveOccurred())
		// debian_version "5:7.0.15-1~deb12u10" is the blob
		// redis/redis_7.0.15-1~deb12u10.debian.tar.xz.
		version := b.Info["debian_version"]
		Expect(version).To(MatchRegexp(`^\d+:7\.0\.\d+-\S+~deb12u\d+$`))
		noEpoch := version[strings.Index(version, ":")+1:]
		Expect(string(blobs)).To(ContainSubstring("redis/redis_" + noEpoch + ".debian.tar.xz:"))
		Expect(string(blobs)).To(ContainSubstring("sha: sha256:" + b.Info["debian_sha256"] + "\n"))
		Expect(string(blobs)).To(ContainSubstring("sha: sha256:" + b.Info["orig_sha256"] + "\n"))
		Expect(strings.Fields(b.Info["applied"])).To(ContainElements("CVE-2025-49844.patch", "CVE-2025-46817.patch", "CVE-2025-46818.patch", "CVE-2025-46819.patch"))
		Expect(strings.Fields(b.Info["excluded"])).To(ConsistOf(HavePrefix("debian-packaging/"), ContainSubstring("USE_SYSTEM_JEMALLOC")))

		// --version names the revision.
		server, err := redistest.Program("redis-server")
		Expect(err).NotTo(HaveOccurred())
		out, err := exec.Command(server, "--version").CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		label := noEpoch[strings.LastIndex(noEpoch, "~")+1:]
		Expect(string(out)).To(HavePrefix(fmt.Sprintf("Redis server v=7.0.15 sha=%s:0 ", label)))
	})

	It("is what Start runs", func(ctx SpecContext) {
		s, err := redistest.Start(GinkgoT().TempDir())
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(s.Stop)
		b, err := redistest.LoadBuild(repoRoot())
		Expect(err).NotTo(HaveOccurred())
		// The running process's own executable, not the path it was given.
		Expect(b.VerifyFile("redis-server", fmt.Sprintf("/proc/%d/exe", s.Cmd.Process.Pid))).To(Succeed())

		// And it carries Debian's fix for CVE-2025-67733: CRLF in an error
		// a script raises no longer injects a reply of its own into the
		// connection (upstream 7.0.15 answers "-ERR X\r\n+INJECTED
		// script: ...\r\n", and the connection's next command reads
		// "INJECTED script: ...").
		c := redis.NewClient(&redis.Options{Addr: s.Addr, PoolSize: 1, MaxRetries: -1})
		DeferCleanup(c.Close)
		err = c.Eval(ctx, `error(redis.error_reply("X\r\n+INJECTED"))`, nil).Err()
		Expect(err).To(MatchError(ContainSubstring("+INJECTED")))
		Expect(c.Ping(ctx).Result()).To(Equal("PONG"))
	})

	It("refuses a redis-server that is not the build's", func() {
		b, err := redistest.LoadBuild(repoRoot())
		Expect(err).NotTo(HaveOccurred())
		server, err := b.Program("redis-server")
		Expect(err).NotTo(HaveOccurred())
		data, err := os.ReadFile(server)
		Expect(err).NotTo(HaveOccurred())
		other := filepath.Join(GinkgoT().TempDir(), "redis-server")
		Expect(os.WriteFile(other, append(data, 0), 0o755)).To(Succeed())
		Expect(b.VerifyFile("redis-server", other)).To(MatchError(ContainSubstring("is not the redis-server of the Redis build")))
		if _, err := os.Stat("/usr/bin/redis-server"); err == nil {
			Expect(b.VerifyFile("redis-server", "/usr/bin/redis-server")).To(MatchError(ContainSubstring("is not the redis-server")), "Debian's build is not the release's")
		}
	})

	It("refuses a build of other blobs, another build script, or none, and says to run scripts/setup", func() {
		dir := copyRoot()
		blobs := filepath.Join(dir, "config/blobs.yml")
		data, err := os.ReadFile(blobs)
		Expect(err).NotTo(HaveOccurred())
		b, err := redistest.LoadBuild(dir)
		Expect(err).NotTo(HaveOccurred())
		Expect(os.WriteFile(blobs, []byte(strings.Replace(string(data), b.Info["debian_sha256"], strings.Repeat("0", 64), 1)), 0o644)).To(Succeed())
		_, err = redistest.LoadBuild(dir)
		Expect(err).To(MatchError(And(ContainSubstring("debian_sha256"), ContainSubstring("run scripts/setup"))))

		dir = copyRoot()
		f, err := os.OpenFile(filepath.Join(dir, "src/redis/build.sh"), os.O_APPEND|os.O_WRONLY, 0)
		Expect(err).NotTo(HaveOccurred())
		_, err = f.WriteString("# changed\n")
		Expect(err).NotTo(HaveOccurred())
		Expect(f.Close()).To(Succeed())
		_, err = redistest.LoadBuild(dir)
		Expect(err).To(MatchError(And(ContainSubstring("build_script_sha256"), ContainSubstring("run scripts/setup"))))

		dir = copyRoot()
		Expect(os.Remove(filepath.Join(dir, redistest.BuildPointer))).To(Succeed())
		_, err = redistest.LoadBuild(dir)
		Expect(err).To(MatchError(And(ContainSubstring("no Redis build for the tests"), ContainSubstring("run scripts/setup"))))
	})
})
