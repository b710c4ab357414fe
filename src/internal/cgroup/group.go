package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Equal CPU weights: every server of an agent gets the kernel's default
// weight, so servers that compete for CPU get equal shares, however many
// threads or forks one of them runs.
const (
	// CPUWeight is every server's cpu.weight on v2 (the kernel's default).
	CPUWeight = 100
	// CPUShares is every server's cpu.shares on v1 (the kernel's default).
	CPUShares = 1024
)

// removeWait bounds how long Remove waits for killed processes to leave.
const removeWait = 5 * time.Second

// Group is the cgroup of one redis-server. A nil *Group stands for none: its
// methods do nothing and report nothing.
type Group struct {
	v2 bool
	id string
	// dirs: one on v2; the memory then the cpu hierarchy's on v1.
	dirs []string
	// tree is the Tree the group belongs to, for its spares.
	tree *Tree

	mu   sync.Mutex
	held *spare // a spare taken over by Create, until StartHeld uses it
}

// Limits are what the kernel enforces on a Group.
type Limits struct {
	// Memory is the most memory, in bytes, the group's processes may use
	// together (RSS and the page cache they cause, and on v2 their kernel
	// memory) before the kernel kills one; swap is not allowed on top.
	Memory int64
	// CPU is the group's cpu.weight (v2) or cpu.shares (v1).
	CPU int64
}

// Dirs are the group's directories, for logs.
func (g *Group) Dirs() []string {
	if g == nil {
		return nil
	}
	return slices.Clone(g.dirs)
}

// Create makes the group, when it does not exist, and sets its memory
// ceiling to memory bytes and its CPU weight to the one every server gets.
// An existing group (one whose server outlived the agent) takes the new
// ceiling in place.
func (g *Group) Create(memory int64) error {
	if g == nil {
		return nil
	}
	g.takeSpare()
	for _, d := range g.dirs {
		if err := mkdir(d); err != nil {
			return err
		}
	}
	if g.v2 {
		d := g.dirs[0]
		if err := writeFile(filepath.Join(d, "memory.max"), strconv.FormatInt(memory, 10)); err != nil {
			return err
		}
		// No swap: a ceiling that could spill into swap would slow the
		// whole VM down instead of stopping the one server.
		if err := writeFile(filepath.Join(d, "memory.swap.max"), "0"); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		// Kill the server and its snapshot child together: a server left
		// without its child, or a child without its server, serves no one.
		if err := writeFile(filepath.Join(d, "memory.oom.group"), "1"); err != nil {
			return err
		}
		return writeFile(filepath.Join(d, "cpu.weight"), strconv.Itoa(CPUWeight))
	}
	if err := g.setV1Memory(memory); err != nil {
		return err
	}
	return writeFile(filepath.Join(g.dirs[1], "cpu.shares"), strconv.Itoa(CPUShares))
}

// setV1Memory sets memory.limit_in_bytes and, where swap is accounted,
// memory.memsw.limit_in_bytes (memory plus swap) to the same value, so that
// no swap is used on top. The kernel wants limit <= memsw at every moment:
// raising goes memsw first, lowering limit first.
func (g *Group) setV1Memory(memory int64) error {
	d := g.dirs[0]
	limit := filepath.Join(d, "memory.limit_in_bytes")
	memsw := filepath.Join(d, "memory.memsw.limit_in_bytes")
	v := strconv.FormatInt(memory, 10)
	if _, err := os.Stat(memsw); err != nil {
		return writeFile(limit, v)
	}
	if err := writeFile(limit, v); err != nil {
		if werr := writeFile(memsw, v); werr != nil {
			return errors.Join(err, werr)
		}
		return writeFile(limit, v)
	}
	return writeFile(memsw, v)
}

// Limits reads back what the kernel enforces on the group.
func (g *Group) Limits() (Limits, error) {
	if g == nil {
		return Limits{}, nil
	}
	var memFile, cpuFile string
	if g.v2 {
		memFile, cpuFile = filepath.Join(g.dirs[0], "memory.max"), filepath.Join(g.dirs[0], "cpu.weight")
	} else {
		memFile, cpuFile = filepath.Join(g.dirs[0], "memory.limit_in_bytes"), filepath.Join(g.dirs[1], "cpu.shares")
	}
	mem, err := readInt(memFile)
	if err != nil {
		return Limits{}, err
	}
	cpu, err := readInt(cpuFile)
	if err != nil {
		return Limits{}, err
	}
	return Limits{Memory: mem, CPU: cpu}, nil
}

// takeSpare makes a ready spare of the tree this group, when the group does
// not exist yet: its cgroups are renamed to the group's, and the group holds
// its shell for StartHeld.
func (g *Group) takeSpare() {
	if g.tree == nil {
		return
	}
	for _, d := range g.dirs {
		if exists(d) {
			return
		}
	}
	sp := g.tree.sp.take()
	if sp == nil {
		return
	}
	if err := sp.moveTo(g.dirs); err != nil {
		sp.discard()
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.held != nil {
		g.held.discard()
	}
	g.held = sp
}

// StartHeld runs cmd, not started yet, in the shell the group holds, if
// Create took over a spare for it (see KeepSpares): the shell has waited in
// the group's cgroups since before they had the group's name and limits, so
// the program runs in them from its first instruction, without the move
// Place's gate waits for. It returns the started command to wait on (its
// process is the program's: the shell runs it in its place), or nil when the
// group holds no spare or cmd asks for what the shell cannot do (see
// spare.run); start cmd with Place then. Either way the group holds no spare
// afterwards.
func (g *Group) StartHeld(cmd *exec.Cmd) (*exec.Cmd, error) {
	if g == nil {
		return nil, nil
	}
	g.mu.Lock()
	sp := g.held
	g.held = nil
	g.mu.Unlock()
	if sp == nil {
		return nil, nil
	}
	if !sp.alive() || !g.Contains(sp.cmd.Process.Pid) {
		sp.discardProcess()
		return nil, nil
	}
	ok, err := sp.run(cmd)
	if !ok {
		sp.discardProcess()
		return nil, err
	}
	return sp.cmd, nil
}

// Started tells the group's tree that a start in the group is over
// (whether or not it took a spare, and whether or not it succeeded): the
// tree then makes spares to replace those taken (see spares).
func (g *Group) Started() {
	if g != nil && g.tree != nil {
		g.tree.sp.refill()
	}
}

// dropHeld kills the shell the group holds, if any.
func (g *Group) dropHeld() {
	g.mu.Lock()
	sp := g.held
	g.held = nil
	g.mu.Unlock()
	if sp != nil {
		sp.discardProcess()
	}
}

// Place arranges for cmd, not started yet, to run in the group from its
// first instruction. On v2 the kernel clones it into the cgroup
// (CLONE_INTO_CGROUP). On v1, which cannot, cmd first runs /bin/sh waiting
// on a pipe: the function Place returns, called right after cmd.Start with
// the child's pid, moves the child in and only then lets the shell exec the
// program (same pid), so nothing of the program runs, or forks, outside the
// group. Called with 0, when the start failed, it only cleans up.
func (g *Group) Place(cmd *exec.Cmd) (after func(pid int) error, err error) {
	if g == nil {
		return func(int) error { return nil }, nil
	}
	if !g.v2 {
		return g.gate(cmd)
	}
	f, err := os.Open(g.dirs[0])
	if err != nil {
		return nil, fmt.Errorf("opening cgroup %s: %w", g.dirs[0], err)
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.UseCgroupFD = true
	cmd.SysProcAttr.CgroupFD = int(f.Fd())
	return func(int) error { return f.Close() }, nil
}

// gateScript waits until fd 3 closes, then runs the program in its place.
const gateScript = `read -r _ <&3; exec "$0" "$@" 3<&-`

// gate makes cmd wait, before it runs its program, until the returned
// function moved it into the v1 group.
func (g *Group) gate(cmd *exec.Cmd) (func(pid int) error, error) {
	if len(cmd.ExtraFiles) > 0 {
		return nil, errors.New("cgroup: cannot gate a command with extra files")
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	cmd.Args = append([]string{"/bin/sh", "-c", gateScript, cmd.Path}, cmd.Args[1:]...)
	cmd.Path = "/bin/sh"
	cmd.ExtraFiles = []*os.File{r}
	return func(pid int) error {
		r.Close()
		defer w.Close() // lets the shell exec the program
		if pid == 0 {
			return nil
		}
		if err := g.Join(pid); err != nil {
			// Not outside the group either: the shell dies before it
			// reads EOF.
			_ = unix.Kill(pid, unix.SIGKILL)
			return err
		}
		return nil
	}, nil
}

// Join moves the process pid, with all its threads, into the group.
func (g *Group) Join(pid int) error {
	if g == nil {
		return nil
	}
	for _, d := range g.dirs {
		if err := writeFile(filepath.Join(d, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
			return fmt.Errorf("moving pid %d into its cgroup: %w", pid, err)
		}
	}
	return nil
}

// Contains reports whether process pid is in the group (on v1, in both its
// memory and its cpu cgroup).
func (g *Group) Contains(pid int) bool {
	if g == nil {
		return false
	}
	for _, d := range g.dirs {
		if !slices.Contains(procs(d), pid) {
			return false
		}
	}
	return true
}

// Kill sends SIGKILL to every process in the group. It returns once the
// signals are sent; the processes vanish soon after.
func (g *Group) Kill() error {
	if g == nil {
		return nil
	}
	g.dropHeld()
	if g.v2 {
		// cgroup.kill (Linux 5.14) kills atomically, forks included.
		err := writeFile(filepath.Join(g.dirs[0], "cgroup.kill"), "1")
		if err == nil || errors.Is(err, fs.ErrNotExist) && !exists(g.dirs[0]) {
			return nil
		}
	}
	// Without cgroup.kill a process may fork while we read the list:
	// read and kill again until no new pid shows up.
	killed := map[int]bool{}
	for range 10 {
		fresh := 0
		for _, pid := range procs(g.dirs[0]) {
			if !killed[pid] {
				killed[pid] = true
				fresh++
				if err := unix.Kill(pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
					return fmt.Errorf("killing pid %d of cgroup %s: %w", pid, g.dirs[0], err)
				}
			}
		}
		if fresh == 0 {
			return nil
		}
	}
	return nil
}

// OOMKills counts the processes the kernel killed in the group for
// exceeding its memory ceiling (v2 memory.events, v1 memory.oom_control);
// 0 when it cannot tell.
func (g *Group) OOMKills() int64 {
	if g == nil {
		return 0
	}
	file := "memory.oom_control"
	if g.v2 {
		file = "memory.events"
	}
	f, err := os.Open(filepath.Join(g.dirs[0], file))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), " "); ok && k == "oom_kill" {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// Remove removes the group. Its processes must be gone or going: it waits a
// few seconds for killed ones to leave. A group that does not exist is not
// an error.
func (g *Group) Remove() error {
	if g == nil {
		return nil
	}
	g.dropHeld()
	var errs []error
	for _, d := range g.dirs {
		deadline := time.Now().Add(removeWait)
		for {
			err := rmdir(d)
			if err == nil || !errors.Is(err, errNotEmpty) || time.Now().After(deadline) {
				errs = append(errs, err)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return errors.Join(errs...)
}

// procs lists the pids in the cgroup dir; none when it cannot be read.
func procs(dir string) []int {
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func readInt(path string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", path, err)
	}
	s := strings.TrimSpace(string(data))
	if s == "max" {
		return -1, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("reading %s: %q is not a number", path, s)
	}
	return n, nil
}

// writeFile writes a cgroup control file, which must exist.
func writeFile(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("cgroup: %w", err)
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("cgroup: writing %q to %s: %w", value, path, err)
	}
	return nil
}

func mkdir(dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("cgroup: %w", err)
	}
	return nil
}

// errNotEmpty stands for a cgroup that still holds processes or children.
var errNotEmpty = errors.New("cgroup still in use")

// rmdir removes a cgroup; a missing one is not an error.
func rmdir(dir string) error {
	err := unix.Rmdir(dir)
	switch {
	case err == nil, errors.Is(err, unix.ENOENT):
		return nil
	case errors.Is(err, unix.EBUSY), errors.Is(err, unix.ENOTEMPTY):
		return fmt.Errorf("cgroup: removing %s: %w", dir, errNotEmpty)
	}
	return fmt.Errorf("cgroup: removing %s: %w", dir, err)
}
