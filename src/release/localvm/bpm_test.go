package localvm_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/sys/unix"

	"github.com/cf-redis/redis-for-cf/src/release/localvm"
)

// vm points localvm's /var/vcap paths at a temporary folder and returns it.
func vm() string {
	GinkgoHelper()
	dir := GinkgoT().TempDir()
	old := []string{localvm.JobsDir, localvm.LogDir, localvm.RunDir, localvm.DataDir, localvm.StoreDir}
	localvm.JobsDir = filepath.Join(dir, "jobs")
	localvm.LogDir = filepath.Join(dir, "sys/log")
	localvm.RunDir = filepath.Join(dir, "sys/run/bpm")
	localvm.DataDir = filepath.Join(dir, "data")
	localvm.StoreDir = filepath.Join(dir, "store")
	DeferCleanup(func() {
		localvm.JobsDir, localvm.LogDir, localvm.RunDir, localvm.DataDir, localvm.StoreDir = old[0], old[1], old[2], old[3], old[4]
	})
	return dir
}

func writeFile(path, data string) {
	GinkgoHelper()
	Expect(os.MkdirAll(filepath.Dir(path), 0o755)).To(Succeed())
	Expect(os.WriteFile(path, []byte(data), 0o644)).To(Succeed())
}

func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(data)
	return !strings.HasPrefix(s[strings.LastIndexByte(s, ')')+2:], "Z")
}

var _ = Describe("bpm's stand-in", func() {
	var dir string
	BeforeEach(func() {
		dir = vm()
		// The process leaves a child in its session, as an agent leaves its
		// redis-servers.
		writeFile(filepath.Join(dir, "jobs/web/config/bpm.yml"), `
processes:
- name: web
  executable: /bin/sh
  args: [-c, 'echo started; sleep 1000 & echo $! > child.pid; wait']
  workdir: `+dir+`
  env: {GREETING: hi}
  persistent_disk: true
  limits:
    open_files: 1024
    memory: 1G
`)
	})

	It("starts a job's process as its bpm.yml says, and says what it does not apply", func() {
		var notes bytes.Buffer
		Expect(localvm.BPMStart("web", "", &notes)).To(Succeed())
		DeferCleanup(func() { _ = localvm.BPMStop("web", "") })
		Expect(notes.String()).To(ContainSubstring("limits.memory 1G is not applied"))

		pid, err := localvm.BPMPid("web", "")
		Expect(err).NotTo(HaveOccurred())
		Expect(filepath.Join(dir, "sys/run/bpm/web/web.pid")).To(BeARegularFile())
		Eventually(func() string {
			out, _ := os.ReadFile(filepath.Join(dir, "sys/log/web/web.stdout.log"))
			return string(out)
		}).Should(Equal("started\n"))
		environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		Expect(err).NotTo(HaveOccurred())
		Expect(strings.Split(string(environ), "\x00")).To(ContainElements("GREETING=hi", "TMPDIR="+filepath.Join(dir, "data/web/tmp")))
		limits, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(limits)).To(MatchRegexp(`Max open files\s+1024\s+1024`))
		Expect(filepath.Join(dir, "store/web")).To(BeADirectory())
		sid, err := unix.Getsid(pid)
		Expect(err).NotTo(HaveOccurred())
		Expect(sid).To(Equal(pid), "a session of its own, as a container")

		// Started once: a second start leaves it be.
		Expect(localvm.BPMStart("web", "", &notes)).To(Succeed())
		Expect(localvm.BPMPid("web", "")).To(Equal(pid))
	})

	It("stops the process and what it left in its session", func() {
		Expect(localvm.BPMStart("web", "", GinkgoWriter)).To(Succeed())
		pid, err := localvm.BPMPid("web", "")
		Expect(err).NotTo(HaveOccurred())
		var child int
		Eventually(func() error {
			data, err := os.ReadFile(filepath.Join(dir, "child.pid"))
			if err == nil {
				child, err = strconv.Atoi(strings.TrimSpace(string(data)))
			}
			return err
		}).Should(Succeed())
		Expect(alive(child)).To(BeTrue())

		Expect(localvm.BPMStop("web", "")).To(Succeed())
		Expect(alive(pid)).To(BeFalse())
		Eventually(func() bool { return alive(child) }).Should(BeFalse())
		Expect(filepath.Join(dir, "sys/run/bpm/web/web.pid")).NotTo(BeAnExistingFile())
		_, err = localvm.BPMPid("web", "")
		Expect(err).To(MatchError(ContainSubstring("not running")))
		Expect(localvm.BPMStop("web", "")).To(Succeed(), "stopping a stopped job is no error")
	})

	It("refuses a process the job does not have", func() {
		Expect(localvm.BPMStart("web", "other", GinkgoWriter)).To(MatchError(ContainSubstring("job web has no process other")))
	})
})

var _ = Describe("monit's stand-in", func() {
	var dir string
	BeforeEach(func() { dir = vm() })

	monit := func(job, start string) {
		pidfile := filepath.Join(dir, job+".pid")
		writeFile(filepath.Join(dir, "jobs", job, "monit"), fmt.Sprintf(`check process %[1]s
  with pidfile %[2]s
  start program "/bin/sh -c '%[3]s & echo $! > %[2]s'"
  stop program "/bin/sh -c 'kill $(cat %[2]s)'"
  group vcap
`, job, pidfile, start))
		DeferCleanup(func() {
			if data, err := os.ReadFile(pidfile); err == nil {
				pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		})
	}

	It("reads every job's monit file and runs its start and stop programs", func() {
		monit("api", "exec sleep 1000")
		monit("worker", "exec sleep 1000")
		writeFile(filepath.Join(dir, "jobs/errand/monit"), "")
		procs, err := localvm.MonitProcesses()
		Expect(err).NotTo(HaveOccurred())
		Expect(procs).To(HaveLen(2))
		Expect(procs[0].Name).To(Equal("api"))
		Expect(procs[0].Stop).To(HavePrefix("/bin/sh -c 'kill"))

		Expect(localvm.MonitStart(context.Background(), 300*time.Millisecond, GinkgoWriter)).To(Succeed())
		var summary bytes.Buffer
		Expect(localvm.MonitSummary(&summary)).To(Succeed())
		Expect(summary.String()).To(MatchRegexp(`Process 'api'\s+running\nProcess 'worker'\s+running\n`))

		Expect(localvm.MonitStop(context.Background(), GinkgoWriter)).To(Succeed())
		summary.Reset()
		Expect(localvm.MonitSummary(&summary)).To(Succeed())
		Expect(summary.String()).To(MatchRegexp(`Process 'api'\s+not monitored\nProcess 'worker'\s+not monitored\n`))
	})

	It("fails a start whose process does not stay up, with the tail of its job's logs", func() {
		writeFile(filepath.Join(dir, "sys/log/crash/crash.stderr.log"), "listen tcp: address in use\n")
		monit("crash", "sleep 0.1")
		err := localvm.MonitStart(context.Background(), 2*time.Second, GinkgoWriter)
		Expect(err).To(MatchError(And(ContainSubstring("crash is not running"), ContainSubstring("listen tcp: address in use"))))
	})
})
