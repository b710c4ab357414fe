package deploylocal_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	"github.com/onsi/gomega/gexec"

	"github.com/cf-redis/redis-for-cf/src/internal/localbosh"
)

var _ = Describe("scripts/deploy-local", Ordered, func() {
	var state string

	script := func(args ...string) *gexec.Session {
		GinkgoHelper()
		cmd := exec.Command(filepath.Join(moduleRoot(), "scripts", "deploy-local"), append([]string{"--name", name, "--state", state}, args...)...)
		s, err := gexec.Start(cmd, GinkgoWriter, GinkgoWriter)
		Expect(err).NotTo(HaveOccurred())
		Eventually(s).WithTimeout(4 * time.Minute).Should(gexec.Exit())
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
			script("--down")
			Expect(leftovers()).To(BeEmpty())
		})
	})

	It("deploys, runs the smoke tests and says which backup errand it ran", func() {
		s := script()
		Expect(s).To(gexec.Exit(0))
		out := string(s.Out.Contents())
		Expect(out).To(ContainSubstring("Succeeded"))
		Expect(out).To(MatchRegexp(`(?s)Smoke tests\n.*(smoke-tests on .*: exit code 0|  passed\n)`))
		Expect(out).To(ContainSubstring("Backup errand"))
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
		Expect(leftovers()).To(BeEmpty())
		Expect(filepath.Join(state, "disks", name+"-redis-broker-0")).To(BeADirectory())
	})

	It("leaves a deployment running when a deploy fails before it changes a VM", func() {
		Expect(script("--skip-errands")).To(gexec.Exit(0))
		s := script("--skip-errands", "-o", "/nonexistent/ops.yml")
		Expect(s).To(gexec.Exit(1))
		Expect(string(s.Err.Contents())).To(ContainSubstring("before it changed any VM"))
		Expect(leftovers()).To(ContainElement(ContainSubstring("network namespace " + name + "-redis-broker-0")))
	})

	It("stops every VM when it is killed in the middle of a deploy", func() {
		// A new build: every VM is updated, and the program is killed during
		// the first update.
		cmd := exec.Command(filepath.Join(moduleRoot(), "scripts", "deploy-local"), "--name", name, "--state", state, "--skip-errands", "--ldflags", "-X main.killed=1")
		s, err := gexec.Start(cmd, GinkgoWriter, GinkgoWriter)
		Expect(err).NotTo(HaveOccurred())
		Eventually(s.Out).WithTimeout(3 * time.Minute).Should(gbytes.Say("updating redis-broker/0"))
		Expect(killChild(cmd.Process.Pid)).To(Succeed())
		Eventually(s).WithTimeout(2 * time.Minute).Should(gexec.Exit(137))
		Expect(leftovers()).To(BeEmpty())
	})
})

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
