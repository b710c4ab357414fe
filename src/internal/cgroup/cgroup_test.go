package cgroup_test

import (
	"bytes"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/internal/cgroup"
)

// start runs argv in g and returns it started; it is killed and reaped
// when the spec ends.
func start(g *cgroup.Group, argv ...string) *exec.Cmd {
	cmd := exec.Command(argv[0], argv[1:]...)
	after, err := g.Place(cmd)
	Expect(err).NotTo(HaveOccurred())
	err = cmd.Start()
	pid := 0
	if err == nil {
		pid = cmd.Process.Pid
		DeferCleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	}
	Expect(after(pid)).To(Succeed())
	Expect(err).NotTo(HaveOccurred())
	return cmd
}

// openTree opens a tree of a name no other test or agent uses, and
// destroys it when the spec ends.
func openTree() *cgroup.Tree {
	t, err := cgroup.Open(cgroup.Required, cgroup.Name(GinkgoT().TempDir()), slog.New(slog.NewTextHandler(GinkgoWriter, nil)))
	Expect(err).NotTo(HaveOccurred(), "this machine has cgroups (v1 memory and cpu, or v2)")
	DeferCleanup(func() { Expect(t.Destroy()).To(Succeed()) })
	return t
}

var _ = Describe("a Tree of real cgroups", func() {
	It("bounds each group's memory by the kernel: the group over its ceiling is killed, its neighbour is not", func() {
		t := openTree()
		hog, neighbour := t.Group("hog"), t.Group("neighbour")
		Expect(hog.Create(64 << 20)).To(Succeed())
		Expect(neighbour.Create(64 << 20)).To(Succeed())
		lim, err := hog.Limits()
		Expect(err).NotTo(HaveOccurred())
		cpu := int64(cgroup.CPUShares)
		if t.Version() == 2 {
			cpu = cgroup.CPUWeight
		}
		Expect(lim).To(Equal(cgroup.Limits{Memory: 64 << 20, CPU: cpu}))

		quiet := start(neighbour, "sleep", "600")
		Expect(neighbour.Contains(quiet.Process.Pid)).To(BeTrue())
		Expect(hog.Contains(quiet.Process.Pid)).To(BeFalse())

		// 256 MB of touched memory in a 64 MB group.
		big := start(hog, "python3", "-c", "import time; a = b'x' * (256 << 20); time.sleep(600)")
		err = big.Wait()
		Expect(err).To(HaveOccurred())
		ws := big.ProcessState.Sys().(syscall.WaitStatus)
		Expect(ws.Signaled() && ws.Signal() == syscall.SIGKILL).To(BeTrue(), "killed by the kernel: %v", err)
		Expect(hog.OOMKills()).To(BeNumerically(">=", 1))
		Expect(neighbour.OOMKills()).To(BeZero())
		Expect(syscall.Kill(quiet.Process.Pid, 0)).To(Succeed(), "the neighbour runs on")

		Expect(neighbour.Kill()).To(Succeed())
		Expect(quiet.Wait()).To(MatchError(ContainSubstring("killed")))
		Expect(neighbour.Remove()).To(Succeed())
		Expect(hog.Remove()).To(Succeed())
		for _, d := range append(hog.Dirs(), neighbour.Dirs()...) {
			Expect(d).NotTo(BeADirectory())
		}
		Expect(t.Remove()).To(Succeed())
		for _, d := range hog.Dirs() {
			Expect(filepath.Dir(d)).NotTo(BeADirectory(), "the subtree is gone with its last group")
		}
	})

	It("keeps the subtree while a group holds a process", func() {
		t := openTree()
		g := t.Group("kept")
		Expect(g.Create(64 << 20)).To(Succeed())
		p := start(g, "sleep", "600")
		Expect(t.Remove()).To(Succeed())
		Expect(g.Contains(p.Process.Pid)).To(BeTrue())
		Expect(g.Dirs()[0]).To(BeADirectory())
	})

	It("destroys the subtrees of agents whose data dirs lie in a dir, for a harness whose agents were killed", func() {
		dir := GinkgoT().TempDir()
		t, err := cgroup.Open(cgroup.Required, cgroup.Name(filepath.Join(dir, "agent-0")), slog.New(slog.DiscardHandler))
		Expect(err).NotTo(HaveOccurred())
		other := openTree()
		g := t.Group("left")
		Expect(g.Create(64 << 20)).To(Succeed())
		p := start(g, "sleep", "600")
		Expect(other.Group("kept").Create(64 << 20)).To(Succeed())

		Expect(cgroup.DestroyUnder(dir)).To(Succeed())
		Expect(p.Wait()).To(MatchError(ContainSubstring("killed")))
		for _, d := range t.Dirs() {
			Expect(d).NotTo(BeADirectory())
		}
		Expect(other.Group("kept").Dirs()[0]).To(BeADirectory(), "another dir's subtree stays")
	})

	It("kills every process of a group, forks included", func() {
		t := openTree()
		g := t.Group("forks")
		Expect(g.Create(64 << 20)).To(Succeed())
		sh := start(g, "sh", "-c", "sleep 600 & sleep 600 & wait")
		Eventually(func() int { return len(pidsOf(g)) }).Should(Equal(3))
		Expect(g.Kill()).To(Succeed())
		Expect(sh.Wait()).To(HaveOccurred())
		Expect(g.Remove()).To(Succeed())
	})

	It("lowers and raises the ceiling of an existing group", func() {
		t := openTree()
		g := t.Group("resized")
		Expect(g.Create(256 << 20)).To(Succeed())
		Expect(g.Create(64 << 20)).To(Succeed())
		Expect(g.Limits()).To(HaveField("Memory", int64(64<<20)))
		Expect(g.Create(512 << 20)).To(Succeed())
		Expect(g.Limits()).To(HaveField("Memory", int64(512<<20)))
	})
})

var _ = Describe("Open", func() {
	var logs *bytes.Buffer
	var logger *slog.Logger
	BeforeEach(func() {
		logs = &bytes.Buffer{}
		logger = slog.New(slog.NewTextHandler(logs, nil))
	})

	It("uses no cgroups when off", func() {
		t, err := cgroup.Open(cgroup.Off, "x", logger)
		Expect(err).NotTo(HaveOccurred())
		Expect(t).To(BeNil())
		Expect(t.Group("a")).To(BeNil())
		Expect(logs.String()).To(ContainSubstring("cgroups are off"))
	})

	It("falls back when the machine has no cgroups, unless they are required", func() {
		root, proc := GinkgoT().TempDir(), GinkgoT().TempDir()
		Expect(os.WriteFile(filepath.Join(proc, "cgroup"), []byte("0::/\n"), 0o600)).To(Succeed())
		t, err := cgroup.OpenAt(cgroup.Auto, root, proc, "x", logger)
		Expect(err).NotTo(HaveOccurred())
		Expect(t).To(BeNil())
		Expect(logs.String()).To(ContainSubstring("cgroups cannot be used"))
		_, err = cgroup.OpenAt(cgroup.Required, root, proc, "x", logger)
		Expect(err).To(MatchError(ContainSubstring("cgroups are required but cannot be used")))
	})

	It("refuses a v2 hierarchy without the memory and cpu controllers", func() {
		root, proc := GinkgoT().TempDir(), GinkgoT().TempDir()
		Expect(os.WriteFile(filepath.Join(proc, "cgroup"), []byte("0::/\n"), 0o600)).To(Succeed())
		Expect(os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("cpu io\n"), 0o600)).To(Succeed())
		_, err := cgroup.OpenAt(cgroup.Required, root, proc, "x", logger)
		Expect(err).To(MatchError(ContainSubstring("not memory and cpu")))
	})

	It("validates the mode", func() {
		var m cgroup.Mode
		Expect(m.Validate("cgroups")).To(Succeed())
		Expect(m).To(Equal(cgroup.Auto))
		m = "sometimes"
		Expect(m.Validate("cgroups")).To(MatchError(`cgroups: "sometimes" is not one of auto, required, off`))
	})
})

var _ = Describe("a v2 group", func() {
	It("starts a child inside it (clone into the cgroup) and kills it with cgroup.kill", func() {
		unified := "/sys/fs/cgroup/unified"
		if _, err := os.Stat(filepath.Join(unified, "cgroup.procs")); err != nil {
			unified = cgroup.Root
		}
		Expect(filepath.Join(unified, "cgroup.controllers")).To(BeARegularFile(), "a cgroup v2 hierarchy, hybrid or pure")
		dir := filepath.Join(unified, cgroup.Name(GinkgoT().TempDir()))
		Expect(os.Mkdir(dir, 0o755)).To(Succeed())
		g := cgroup.V2Group(dir)
		DeferCleanup(func() { _ = g.Kill(); Expect(g.Remove()).To(Succeed()) })
		p := start(g, "sleep", "600")
		Expect(g.Contains(p.Process.Pid)).To(BeTrue())
		own, err := os.ReadFile("/proc/" + strconv.Itoa(p.Process.Pid) + "/cgroup")
		Expect(err).NotTo(HaveOccurred())
		Expect(string(own)).To(ContainSubstring("0::/" + filepath.Base(dir) + "\n"))
		Expect(g.Kill()).To(Succeed())
		Expect(p.Wait()).To(MatchError(ContainSubstring("killed")))
	})
})

func pidsOf(g *cgroup.Group) []string {
	data, _ := os.ReadFile(filepath.Join(g.Dirs()[0], "cgroup.procs"))
	return strings.Fields(string(data))
}

var _ = Describe("spares", func() {
	// spareScript runs the spare's shell script outside any cgroup, with
	// orders written to its fd 3, and returns how it exited.
	spareScript := func(orders string) error {
		r, w, err := os.Pipe()
		Expect(err).NotTo(HaveOccurred())
		cmd := exec.Command("/bin/sh", "-c", cgroup.SpareScript)
		cmd.ExtraFiles = []*os.File{r}
		Expect(cmd.Start()).To(Succeed())
		r.Close()
		_, err = w.WriteString(orders)
		Expect(err).NotTo(HaveOccurred())
		Expect(w.Close()).To(Succeed())
		return cmd.Wait()
	}

	It("run the ordered program, with its arguments, directory and log, and nothing without complete orders", func() {
		dir := GinkgoT().TempDir()
		log := filepath.Join(dir, "log")
		Expect(spareScript(dir + "\n" + log + "\n5\n/bin/sh\n-c\necho \"$0|$1\"; pwd; echo oops >&2\nzero\nfirst arg\n" + "go\n")).To(Succeed())
		out, err := os.ReadFile(log)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(out)).To(Equal("zero|first arg\n" + dir + "\noops\n"))

		marker := filepath.Join(dir, "ran")
		order := "\n" + log + "\n2\n/usr/bin/touch\n" + marker + "\n"
		Expect(spareScript("")).To(MatchError(ContainSubstring("exit status 1")), "the agent died before any order")
		Expect(spareScript(order)).To(MatchError(ContainSubstring("exit status 1")), "cut before go")
		Expect(spareScript("\n"+log+"\n3\n/usr/bin/touch\n"+marker+"\ngo\n")).To(MatchError(ContainSubstring("exit status 1")), "fewer arguments than counted")
		Expect(marker).NotTo(BeAnExistingFile())
		Expect(spareScript(order + "go\n")).To(Succeed())
		Expect(marker).To(BeAnExistingFile())
	})

	It("are kept ready, taken over by a new group with its limits, replaced once its start is over, removed by the next agent's tree and stopped by Remove", func() {
		name := cgroup.Name(GinkgoT().TempDir())
		logger := slog.New(slog.NewTextHandler(GinkgoWriter, nil))
		open := func() *cgroup.Tree {
			t, err := cgroup.Open(cgroup.Required, name, logger)
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(func() { Expect(t.Destroy()).To(Succeed()) })
			return t
		}
		t := open()
		t.KeepSpares(2, logger)
		if t.Version() != 1 {
			Consistently(func() map[string]string { return spareShells(t) }).WithTimeout(time.Second).Should(BeEmpty(), "v2 needs none")
			return
		}
		Eventually(func() map[string]string { return spareShells(t) }).WithTimeout(time.Minute).Should(HaveLen(2))
		before := spareShells(t)

		g := t.Group("new")
		Expect(g.Create(64 << 20)).To(Succeed())
		Expect(g.Limits()).To(HaveField("Memory", int64(64<<20)))
		Expect(pidsOf(g)).To(HaveLen(1), "the group holds a spare's shell")
		Expect(slices.Collect(maps.Values(before))).To(ContainElement(pidsOf(g)[0]))
		for _, d := range g.Dirs() {
			Expect(os.ReadFile(filepath.Join(d, "cgroup.procs"))).To(Equal([]byte(pidsOf(g)[0]+"\n")), "in every hierarchy")
		}
		Expect(spareShells(t)).To(HaveLen(1), "not replaced while the group's start may run")
		g.Started()
		Eventually(func() map[string]string { return spareShells(t) }).WithTimeout(time.Minute).Should(HaveLen(2), "replaced once the start is over")
		Expect(g.Kill()).To(Succeed())
		Expect(g.Remove()).To(Succeed())

		old := spareShells(t)
		next := open() // as the agent's next start does, the first one killed
		next.KeepSpares(1, logger)
		Eventually(func() map[string]string { return spareShells(next) }).WithTimeout(time.Minute).Should(HaveLen(1))
		for _, pid := range spareShells(next) {
			Expect(slices.Collect(maps.Values(old))).NotTo(ContainElement(pid), "the old spares were removed")
		}
		Expect(next.Remove()).To(Succeed())
		Expect(spareShells(next)).To(BeEmpty())
		for _, d := range next.Dirs() {
			Expect(d).NotTo(BeADirectory())
		}
	})
})

// spareShells maps the tree's spare cgroups (memory hierarchy) to the pid
// each holds.
func spareShells(t *cgroup.Tree) map[string]string {
	m := map[string]string{}
	entries, _ := os.ReadDir(t.Dirs()[0])
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".spare-") {
			continue
		}
		data, _ := os.ReadFile(filepath.Join(t.Dirs()[0], e.Name(), "cgroup.procs"))
		if pids := strings.Fields(string(data)); len(pids) == 1 {
			m[e.Name()] = pids[0]
		}
	}
	return m
}
