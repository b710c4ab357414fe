package deploylocal_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	"github.com/onsi/gomega/gexec"

	"github.com/cf-redis/redis-for-cf/src/release/localbosh"
)

var _ = Describe("scripts/deploy-local", Ordered, func() {
	var state string

	script := func(args ...string) *gexec.Session {
		GinkgoHelper()
		cmd := exec.Command(filepath.Join(moduleRoot(), "scripts", "deploy-local"), append([]string{"--name", name, "--state", state, "--redis-package", redisPackage()}, args...)...)
		s, err := gexec.Start(cmd, GinkgoWriter, GinkgoWriter)
		Expect(err).NotTo(HaveOccurred())
		Eventually(s).WithTimeout(12 * time.Minute).Should(gexec.Exit())
		return s
	}
	leftovers := func() []string {
		d, err := localbosh.New(localbosh.Options{Name: name, StateDir: state})
		Expect(err).NotTo(HaveOccurred())
		return append(d.Leftovers(), vcapProcesses()...)
	}

	BeforeAll(func() {
		lockMachine()
		state = GinkgoT().TempDir()
		stale, err := localbosh.New(localbosh.Options{Name: name, StateDir: filepath.Join(state, "stale"), Out: GinkgoWriter})
		Expect(err).NotTo(HaveOccurred())
		Expect(stale.Down(context.Background())).To(Succeed())
		DeferCleanup(func() {
			// A run that overran its guard still holds the state's lock.
			gexec.KillAndWait()
			script("--down")
			Expect(leftovers()).To(BeEmpty())
			// MinIO's data and credentials with the rest.
			Expect(state).NotTo(BeADirectory())
		})
	})

	It("deploys with MinIO as its S3, runs the smoke tests and the backup errand, and lists the bucket", func() {
		s := script()
		Expect(s).To(gexec.Exit(0))
		out := string(s.Out.Contents())
		Expect(out).To(ContainSubstring("Succeeded"))
		Expect(out).To(ContainSubstring("S3 stand-in started: MinIO at http://10.244.0.3:9000 (netns " + name + "-s3)"))
		Expect(out).To(MatchRegexp(`(?s)Smoke tests\n.*(smoke-tests on .*: exit code 0|  passed\n)`))
		// `bosh run-errand backup`: an errand VM of its own.
		Expect(out).To(MatchRegexp(`(?s)Backup errand\n.*backup on backup/0 .*: exit code 0\n`))
		Expect(out).To(ContainSubstring("s3://redis-backups at http://10.244.0.3:9000 holds 0 objects"))
		Expect(leftovers()).To(ContainElement(MatchRegexp(`^process \d+: \S*minio server ` + regexp.QuoteMeta(filepath.Join(state, "s3", "data")))))

		// The generated credentials are kept for the user, privately, and
		// shown to no one.
		info, err := os.Stat(filepath.Join(state, "s3", "credentials.json"))
		Expect(err).NotTo(HaveOccurred())
		Expect(info.Mode().Perm()).To(Equal(os.FileMode(0o600)))
		secret := s3Secret(state)
		Expect(out + string(s.Err.Contents())).NotTo(ContainSubstring(secret))
		Expect(out).To(ContainSubstring("access key id and secret in " + filepath.Join(state, "s3", "credentials.json")))
	})

	It("stops every VM when a deploy fails after it changed one, keeping the disks", func() {
		// A broker that cannot listen: it exits as soon as it starts.
		ops := filepath.Join(GinkgoT().TempDir(), "bad-port.yml")
		Expect(os.WriteFile(ops, []byte(`
- type: replace
  path: /instance_groups/name=redis-broker/jobs/name=redis-broker/properties/broker/port?
  value: 99999
`), 0o600)).To(Succeed())
		s := script("--skip-errands", "-o", ops)
		Expect(s).To(gexec.Exit(1))
		Expect(string(s.Err.Contents())).To(ContainSubstring("redis-broker is not running"))
		// MinIO too is stopped, its data and credentials kept.
		Expect(leftovers()).To(BeEmpty())
		Expect(filepath.Join(state, "disks", name+"-redis-broker-0")).To(BeADirectory())
		Expect(filepath.Join(state, "s3", "data", "redis-backups")).To(BeADirectory())
	})

	It("leaves a deployment running when a deploy fails before it changes a VM", func() {
		secret := s3Secret(state)
		// Without S3: the manifest as given, no MinIO.
		s := script("--skip-errands", "--no-s3")
		Expect(s).To(gexec.Exit(0))
		Expect(string(s.Out.Contents())).NotTo(ContainSubstring("S3 stand-in"))
		Expect(leftovers()).NotTo(ContainElement(ContainSubstring("minio")))
		Expect(leftovers()).NotTo(ContainElement(ContainSubstring(name + "-s3")))
		Expect(s3Secret(state)).To(Equal(secret), "the credentials are kept")
		s = script("--skip-errands", "-o", "/nonexistent/ops.yml")
		Expect(s).To(gexec.Exit(1))
		Expect(string(s.Err.Contents())).To(ContainSubstring("before it changed any VM"))
		Expect(leftovers()).To(ContainElement(ContainSubstring("network namespace " + name + "-redis-broker-0")))
	})

	It("stops every VM and MinIO when it is killed in the middle of a deploy", func() {
		// A new build, with S3 again: MinIO starts, every VM is updated, and
		// the program is killed during the first update.
		cmd := exec.Command(filepath.Join(moduleRoot(), "scripts", "deploy-local"), "--name", name, "--state", state, "--redis-package", redisPackage(), "--skip-errands", "--ldflags", "-X main.killed=1")
		s, err := gexec.Start(cmd, GinkgoWriter, GinkgoWriter)
		Expect(err).NotTo(HaveOccurred())
		Eventually(s.Out).WithTimeout(8 * time.Minute).Should(gbytes.Say("updating redis-broker/0"))
		Expect(killChild(cmd.Process.Pid)).To(Succeed())
		Eventually(s).WithTimeout(5 * time.Minute).Should(gexec.Exit(137))
		Expect(string(s.Out.Contents())).To(ContainSubstring("S3 stand-in started"))
		Expect(leftovers()).To(BeEmpty())
	})
})

// s3Secret is the secret of the S3 stand-in's credentials in state.
func s3Secret(state string) string {
	GinkgoHelper()
	data, err := os.ReadFile(filepath.Join(state, "s3", "credentials.json"))
	Expect(err).NotTo(HaveOccurred())
	var c struct {
		Secret string `json:"secret_access_key"`
	}
	Expect(json.Unmarshal(data, &c)).To(Succeed())
	Expect(c.Secret).To(HaveLen(40))
	return c.Secret
}

// killChild sends SIGKILL to the one child of pid (the deploy-local program
// the script runs).
func killChild(pid int) error {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "task", strconv.Itoa(pid), "children"))
	if err != nil {
		return err
	}
	children := strings.Fields(string(data))
	if len(children) != 1 {
		return fmt.Errorf("pid %d has children %v", pid, children)
	}
	child, err := strconv.Atoi(children[0])
	if err != nil {
		return err
	}
	return syscall.Kill(child, syscall.SIGKILL)
}
