// Package deploylocal_test proves the release's upgrade path on a local
// deployment (package localbosh): manifests/redis.yml rendered through the
// real job templates, every instance a VM of namespaces with its own
// address and /var/vcap, processes started as their bpm.yml says and
// stopped through their drain scripts, apps' traffic from the apps'
// namespace. It must run as root (it is root in CI); it removes every
// namespace, mount and process it made, failed or not.
package deploylocal_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/release/localbosh"
	"github.com/cf-redis/redis-for-cf/src/testkit/redistest"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemspec"
)

func TestDeployLocal(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Local deployment suite")
}

var _ = BeforeSuite(func() {
	if os.Geteuid() != 0 {
		Skip("a local deployment makes namespaces and mounts: run as root (CI does)")
	}
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	systemspec.QuietRedisLog()
})

// lockMachine makes the calling container the only one on this machine
// that deploys, until it ends: the namespaces' names are fixed.
func lockMachine() {
	GinkgoHelper()
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "redis-for-cf-deploylocal-test.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	Expect(err).NotTo(HaveOccurred())
	Expect(syscall.Flock(int(lock.Fd()), syscall.LOCK_EX)).To(Succeed())
	DeferCleanup(lock.Close)
}

// takeMachine makes the calling container the only one on this machine
// that deploys (lockMachine), removes what a run killed before its cleanup
// left (the names are fixed), and registers the end of the deployment *d
// comes to hold, state in folder state: down, with its logs kept when a
// spec failed, and then nothing of it left: no namespace, mount or process,
// and no process of a VM (they run from /var/vcap).
func takeMachine(state string, d **localbosh.Director) {
	GinkgoHelper()
	lockMachine()
	stale, err := localbosh.New(localbosh.Options{Name: name, StateDir: filepath.Join(state, "stale"), Out: GinkgoWriter})
	Expect(err).NotTo(HaveOccurred())
	Expect(stale.Down(context.Background())).To(Succeed())
	DeferCleanup(func() {
		if *d == nil {
			return
		}
		Expect((*d).Leftovers()).To(BeEmpty())
		Expect(vcapProcesses()).To(BeEmpty())
	})
	DeferCleanup(func() {
		if *d == nil {
			return
		}
		if CurrentSpecReport().Failed() {
			keepLogs(state)
		}
		Expect((*d).Down(context.Background())).To(Succeed())
	})
}

// moduleRoot is the release's checkout.
func moduleRoot() string {
	GinkgoHelper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	Expect(err).NotTo(HaveOccurred())
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// redisPackage is the tests' Redis build (redistest.Current), laid out as
// the release's compiled redis package: the deployment's VMs run it, as
// every other suite does, rather than Debian's redis-server.
func redisPackage() string {
	GinkgoHelper()
	b, err := redistest.Current()
	Expect(err).NotTo(HaveOccurred())
	return b.Dir
}
