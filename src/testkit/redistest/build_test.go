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
	for _, f := range []string{redistest.BuildPointer, "config/blobs.yml", "src/redis/build.sh", "src/redis/patches/series", "src/redis/patches/cf-password-only-login.patch"} {
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
		// And then the release's own patch, after Debian's.
		Expect(b.Info["cf_applied"]).To(Equal("cf-password-only-login.patch"))
		Expect(b.Info["cf_patches_sha256"]).To(MatchRegexp(`^[0-9a-f]{64}$`))

		// --version names the revision and says it carries the release's
		// patch.
		server, err := redistest.Program("redis-server")
		Expect(err).NotTo(HaveOccurred())
		out, err := exec.Command(server, "--version").CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		label := noEpoch[strings.LastIndex(noEpoch, "~")+1:]
		Expect(string(out)).To(HavePrefix(fmt.Sprintf("Redis server v=7.0.15 sha=%s+cf1:0 ", label)))
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

	It("refuses a build of other blobs, another build script, other patches of the release's, or none, and says to run scripts/setup", func() {
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

		for _, f := range []string{"src/redis/patches/cf-password-only-login.patch", "src/redis/patches/series"} {
			dir = copyRoot()
			f, err := os.OpenFile(filepath.Join(dir, f), os.O_APPEND|os.O_WRONLY, 0)
			Expect(err).NotTo(HaveOccurred())
			_, err = f.WriteString("other.patch\n")
			Expect(err).NotTo(HaveOccurred())
			Expect(f.Close()).To(Succeed())
			Expect(os.WriteFile(filepath.Join(dir, "src/redis/patches/other.patch"), nil, 0o644)).To(Succeed())
			_, err = redistest.LoadBuild(dir)
			Expect(err).To(MatchError(And(MatchRegexp("cf_patches_sha256|cf_applied"), ContainSubstring("run scripts/setup"))))
		}

		dir = copyRoot()
		Expect(os.Remove(filepath.Join(dir, redistest.BuildPointer))).To(Succeed())
		_, err = redistest.LoadBuild(dir)
		Expect(err).To(MatchError(And(ContainSubstring("no Redis build for the tests"), ContainSubstring("run scripts/setup"))))
	})
})
