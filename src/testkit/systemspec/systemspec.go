// Package systemspec starts the whole product for a Ginkgo spec and ends it
// with the checks every integration suite makes: no process left behind, no
// data race in any log, and the logs of a failed spec kept. It also holds
// the data helpers the suites share (WriteKeys, ExpectKeys, WaitForAOF) and,
// in osb.go, the OSB calls and node reads of the dedicated suites (Provision,
// Bind, Deprovision, DeleteUntilGone, Pool, NodeAgentState, ...).
//
// It is the Ginkgo side of package systemtest, which builds and runs the
// real binaries and knows nothing of Ginkgo.
package systemspec

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

// failures counts the specs of the suite that failed so far: a system
// started in a BeforeAll ends after several specs, and keeps its logs when
// any of them failed.
var failures atomic.Int32

var _ = ReportAfterEach(func(r SpecReport) {
	if r.Failed() {
		failures.Add(1)
	}
})

// Start starts a system of bins with opts in a fresh temporary directory;
// see StartIn.
func Start(bins systemtest.Binaries, opts systemtest.Options) *systemtest.System {
	GinkgoHelper()
	return StartIn(GinkgoT().TempDir(), bins, opts)
}

// StartIn starts a system in dir and registers its end for when the current
// node's container ends: the logs kept when a spec failed meanwhile, every
// program stopped gracefully, then the checks that nothing still runs in
// dir and that no program's log reports a data race; whatever a killed
// program left running is killed in any case.
//
// systemtest picks free ports and releases them before the programs bind
// them, so another system started meanwhile (suites run side by side) can
// take one: a system whose programs did not all come up as its own is
// started again, up to three times.
func StartIn(dir string, bins systemtest.Binaries, opts systemtest.Options) *systemtest.System {
	GinkgoHelper()
	DeferCleanup(systemtest.KillStrays, dir)
	var sys *systemtest.System
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		if sys, err = systemtest.Start(bins, dir, opts); err != nil {
			continue
		}
		if err = ours(sys); err == nil {
			break
		}
		fmt.Fprintf(GinkgoWriter, "the system started in %s is not all ours (%v); starting it again\n", dir, err)
		sys.Stop()
	}
	Expect(err).NotTo(HaveOccurred())
	failedBefore := failures.Load()
	DeferCleanup(func() {
		if failures.Load() > failedBefore || CurrentSpecReport().Failed() {
			keepLogs(sys)
		}
		procs := Processes(sys)
		for _, p := range procs {
			_ = p.Stop()
		}
		var left []string
		for _, pid := range systemtest.Strays(dir) {
			cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
			left = append(left, fmt.Sprintf("%d %q in %s", pid, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}), cwd))
		}
		sys.Stop()
		Expect(left).To(BeEmpty(), "processes still running in %s after the system stopped", dir)
		for _, p := range procs {
			Expect(p.Log()).NotTo(ContainSubstring("DATA RACE"), "%s log", p.Name)
		}
	})
	return sys
}

// Processes are the system's programs: the broker, the dedicated nodes'
// agents, the shared VMs' agents.
func Processes(sys *systemtest.System) []*systemtest.Process {
	return append(append([]*systemtest.Process{sys.Broker}, sys.Nodes...), sys.Agents...)
}

// ours checks that the system's programs are alive and that its broker
// answers with its credentials.
func ours(sys *systemtest.System) error {
	time.Sleep(50 * time.Millisecond) // a program that lost its port exits at once
	for _, p := range Processes(sys) {
		if p.Pid() == 0 || syscall.Kill(p.Pid(), 0) != nil {
			return fmt.Errorf("%s exited", p.Name)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, sys.BrokerURL+"/v2/catalog", nil)
	if err != nil {
		return err
	}
	req.SetBasicAuth(sys.Username, sys.Password)
	req.Header.Set("X-Broker-API-Version", "2.17")
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /v2/catalog answered %d", resp.StatusCode)
	}
	return nil
}

// keepLogs copies the logs of a system whose spec failed out of its
// directory, which is removed, and says where they are: every program's,
// and every redis-server's log and agent state file under the system's
// directory.
func keepLogs(sys *systemtest.System) {
	dir, err := os.MkdirTemp("", "system-logs-")
	if err != nil {
		return
	}
	for _, p := range Processes(sys) {
		_ = os.WriteFile(filepath.Join(dir, p.Name+".log"), []byte(p.Log()), 0o600)
	}
	_ = filepath.WalkDir(sys.Dir, func(path string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() || (filepath.Ext(path) != ".log" && e.Name() != "state.json") {
			return nil
		}
		rel, _ := filepath.Rel(sys.Dir, path)
		if data, err := os.ReadFile(path); err == nil {
			_ = os.WriteFile(filepath.Join(dir, strings.ReplaceAll(rel, string(filepath.Separator), "-")), data, 0o600)
		}
		return nil
	})
	fmt.Fprintf(os.Stderr, "\nlogs of the system in %s kept in %s\n", sys.Dir, dir)
}

// WriteKeys sets n keys named prefix:i to i.
func WriteKeys(ctx context.Context, rc *redis.Client, prefix string, n int) {
	GinkgoHelper()
	_, err := rc.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range n {
			p.Set(ctx, fmt.Sprintf("%s:%d", prefix, i), i, 0)
		}
		return nil
	})
	Expect(err).NotTo(HaveOccurred())
}

// ExpectKeys checks the keys WriteKeys set.
func ExpectKeys(ctx context.Context, rc *redis.Client, prefix string, n int) {
	GinkgoHelper()
	keys := make([]string, n)
	for i := range n {
		keys[i] = fmt.Sprintf("%s:%d", prefix, i)
	}
	vals, err := rc.MGet(ctx, keys...).Result()
	Expect(err).NotTo(HaveOccurred())
	for i, v := range vals {
		Expect(v).To(Equal(strconv.Itoa(i)), keys[i])
	}
}

// WaitForAOF lets redis-server fsync what it was sent: with appendfsync
// everysec a write reaches the disk within a second, and no command a tenant
// may run tells when. A kill -9 must not lose what an app wrote more than a
// second ago.
func WaitForAOF() { time.Sleep(1500 * time.Millisecond) }

// Build builds the product's programs with the race detector, once for the
// suite, into a temporary directory Ginkgo removes when the suite ends. It
// also sends go-redis's own log lines (the failed dials that specs killing
// servers cause on purpose) where Ginkgo shows them only for a failed spec.
// Call it from BeforeSuite.
func Build() systemtest.Binaries {
	GinkgoHelper()
	QuietRedisLog()
	bins, err := systemtest.Build(GinkgoT().TempDir(), true)
	Expect(err).NotTo(HaveOccurred())
	return bins
}

// QuietRedisLog sends go-redis's log lines to GinkgoWriter.
func QuietRedisLog() { redis.SetLogger(ginkgoLogger{}) }

type ginkgoLogger struct{}

func (ginkgoLogger) Printf(_ context.Context, format string, v ...any) {
	fmt.Fprintf(GinkgoWriter, "go-redis: "+format+"\n", v...)
}

// MakeUnwipeable puts into dir a directory that cannot be deleted, the way a
// failing disk or an operator's stray immutable file would stop a wipe, and
// returns the function that makes it deletable again. As root it uses the immutable attribute (chattr +i), or a
// read-only bind mount where the file system has no such attribute;
// otherwise a directory without write permission.
//
// A reset moves the data directory aside (dir + ".wiped") before it removes
// it, so undo acts on the locked folder in either place.
func MakeUnwipeable(dir string) (how string, undo func()) {
	GinkgoHelper()
	locked := filepath.Join(dir, "locked")
	Expect(os.MkdirAll(locked, 0o700)).To(Succeed())
	file := filepath.Join(locked, "stuck")
	Expect(os.WriteFile(file, []byte("x"), 0o600)).To(Succeed())
	movedAside := filepath.Join(dir+".wiped", "locked")
	if os.Geteuid() != 0 {
		Expect(os.Chmod(locked, 0o500)).To(Succeed())
		return "a directory without write permission", func() {
			_ = os.Chmod(locked, 0o700)
			_ = os.Chmod(movedAside, 0o700)
		}
	}
	if exec.Command("chattr", "+i", file).Run() == nil {
		return "an immutable file (chattr +i)", func() {
			_ = exec.Command("chattr", "-i", file).Run()
			_ = exec.Command("chattr", "-i", filepath.Join(movedAside, "stuck")).Run()
		}
	}
	if err := syscall.Mount(locked, locked, "", syscall.MS_BIND, ""); err == nil {
		if err := syscall.Mount("", locked, "", syscall.MS_REMOUNT|syscall.MS_BIND|syscall.MS_RDONLY, ""); err == nil {
			return "a read-only bind mount", func() {
				_ = syscall.Unmount(locked, syscall.MNT_DETACH)
				_ = syscall.Unmount(movedAside, syscall.MNT_DETACH)
			}
		}
		_ = syscall.Unmount(locked, syscall.MNT_DETACH)
	}
	Skip("cannot make a directory undeletable here: no chattr +i and no bind mount")
	return "", nil
}
