package cgroup

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// On cgroup v1 the first move of a process into a memory cgroup after an
// idle spell takes the kernel 7-20 ms (measured on this kernel; creating
// the cgroup beforehand does not help), and that move sat on every start's
// path: Place's gate shell waited for it. A Tree that keeps spares has that
// move done ahead of time: each spare is a shell already waiting in a
// cgroup of its own (named sparePrefix-N, which no instance id can be). A
// Group created while a spare is ready takes it over by renaming the
// spare's cgroups to its own names (v1 allows a rename within a
// hierarchy: the process stays in them), then gets its limits, and only
// then does the shell run the program (StartHeld). So the program still
// runs in its group, with its limits, from its first instruction.

// sparePrefix starts the names of the spares' cgroups; instance ids start
// with a letter or a digit.
const sparePrefix = ".spare-"

// spareScript waits for its orders on fd 3: the working directory, the log
// file, the number of arguments, the arguments (program first), one a line,
// and "go". It then runs the program in its place (same pid), its output
// appended to the log. Anything else, or fd 3 closing early (the agent
// died), makes it exit without running anything.
const spareScript = `IFS= read -r d <&3 && IFS= read -r l <&3 && IFS= read -r n <&3 || exit 1
set --
while [ "$n" -gt 0 ]; do IFS= read -r a <&3 || exit 1; set -- "$@" "$a"; n=$((n-1)); done
IFS= read -r e <&3; [ "$e" = go ] || exit 1
exec 3<&-
if [ -n "$d" ]; then cd "$d" || exit 1; fi
exec "$@" >>"$l" 2>&1`

// spare is a shell waiting in cgroups of its own for its orders.
type spare struct {
	cmd  *exec.Cmd
	w    *os.File // the write end of the shell's fd 3
	dirs []string // its cgroups, one per hierarchy
}

// spares keeps up to n spares ready, making new ones in the background
// once a start that took one is over (Group.Started): moving a process into
// a v1 memory cgroup holds back every fork, thread creation and exec on the
// machine until the kernel is done with the move, so a spare made while a
// server starts would slow that start down by as much as it saves.
type spares struct {
	t    *Tree
	n    int
	log  *slog.Logger
	wake chan struct{} // a start that may have taken a spare is over
	stop chan struct{} // closed by close
	done chan struct{} // closed when the filler returned

	mu     sync.Mutex
	ready  []*spare
	seq    int
	closed bool
}

// KeepSpares has the tree keep n shells waiting in cgroups of their own, for
// new Groups to take over (see sparePrefix). Only cgroup v1 needs them (v2
// clones a process straight into its cgroup); on v2, on a nil Tree or with
// n < 1 it does nothing. Spares left by an earlier agent are removed first.
// Remove and Destroy stop them.
func (t *Tree) KeepSpares(n int, logger *slog.Logger) {
	if t == nil || t.v2 || n < 1 || t.sp != nil {
		return
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	t.removeSpares()
	s := &spares{t: t, n: n, log: logger, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	t.sp = s
	go s.fill()
}

// removeSpares kills and removes every spare cgroup in the tree, such as
// those a killed agent left (their shells exit when it dies).
func (t *Tree) removeSpares() {
	seen := map[string]bool{}
	for _, d := range t.dirs {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			if e.IsDir() && strings.HasPrefix(e.Name(), sparePrefix) && !seen[e.Name()] {
				seen[e.Name()] = true
				g := t.Group(e.Name())
				_ = g.Kill()
				_ = g.Remove()
			}
		}
	}
}

// fill makes spares until n are ready, then waits for refill.
func (s *spares) fill() {
	defer close(s.done)
	for {
		s.mu.Lock()
		short := !s.closed && len(s.ready) < s.n
		s.seq++
		seq := s.seq
		s.mu.Unlock()
		if short {
			sp, err := s.t.newSpare(seq)
			if err != nil {
				// Starts still work, by Place's gate: only slower.
				s.log.Warn("no spare cgroups: each start moves its server into its cgroup itself", "error", err)
				return
			}
			s.mu.Lock()
			if s.closed {
				s.mu.Unlock()
				sp.discard()
				return
			}
			s.ready = append(s.ready, sp)
			s.mu.Unlock()
			continue
		}
		select {
		case <-s.stop:
			return
		case <-s.wake:
		}
	}
}

// take returns a ready spare, or nil.
func (s *spares) take() *spare {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ready) == 0 {
		return nil
	}
	sp := s.ready[0]
	s.ready = s.ready[1:]
	return sp
}

// refill has the filler make spares up to n again.
func (s *spares) refill() {
	if s == nil {
		return
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// close stops the filler and discards the ready spares.
func (s *spares) close() {
	if s == nil {
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	ready := s.ready
	s.ready = nil
	close(s.stop)
	s.mu.Unlock()
	<-s.done
	for _, sp := range ready {
		sp.discard()
	}
}

// newSpare starts a shell and moves it into new cgroups named after seq.
func (t *Tree) newSpare(seq int) (*spare, error) {
	sp := &spare{}
	for _, d := range t.dirs {
		dir := filepath.Join(d, sparePrefix+strconv.Itoa(seq))
		if err := mkdir(dir); err != nil {
			sp.discard()
			return nil, err
		}
		sp.dirs = append(sp.dirs, dir)
	}
	r, w, err := os.Pipe()
	if err != nil {
		sp.discard()
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	cmd := exec.Command("/bin/sh", "-c", spareScript)
	cmd.ExtraFiles = []*os.File{r}
	// As the supervisor starts its servers: a process group of their own,
	// so that a Ctrl-C meant for the agent does not reach them.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	r.Close()
	if err != nil {
		w.Close()
		sp.discard()
		return nil, fmt.Errorf("cgroup: starting a spare shell: %w", err)
	}
	sp.cmd, sp.w = cmd, w
	for _, dir := range sp.dirs {
		if err := writeFile(filepath.Join(dir, "cgroup.procs"), strconv.Itoa(cmd.Process.Pid)); err != nil {
			sp.discard()
			return nil, err
		}
	}
	return sp, nil
}

// moveTo renames the spare's cgroups to dirs (one per hierarchy, in the
// same order), which must not exist.
func (sp *spare) moveTo(dirs []string) error {
	for i, d := range dirs {
		if err := os.Rename(sp.dirs[i], d); err != nil {
			return fmt.Errorf("cgroup: taking over a spare cgroup: %w", err)
		}
		sp.dirs[i] = d
	}
	return nil
}

// discard kills the spare's shell, reaps it and removes its cgroups.
func (sp *spare) discard() {
	if sp.w != nil {
		sp.w.Close()
	}
	if sp.cmd != nil {
		_ = sp.cmd.Process.Kill()
		_ = sp.cmd.Wait()
	}
	for _, d := range sp.dirs {
		_ = rmdir(d)
	}
}

// discardProcess kills the spare's shell and reaps it, leaving its cgroups:
// they are a Group's now.
func (sp *spare) discardProcess() {
	if sp.w != nil {
		sp.w.Close()
	}
	_ = sp.cmd.Process.Kill()
	_ = sp.cmd.Wait()
}

// run gives the spare's shell its orders: run cmd's program, with its
// arguments, in its directory, with its output appended to its log file.
// ok is false, and nothing sent, when cmd asks for what the shell cannot do:
// another environment, extra files or process attributes, an input, an
// output that is not a file, or an argument with a line break.
func (sp *spare) run(cmd *exec.Cmd) (ok bool, err error) {
	if cmd.Env != nil || len(cmd.ExtraFiles) > 0 || cmd.Stdin != nil || cmd.Stdout != cmd.Stderr ||
		cmd.SysProcAttr != nil && !reflect.DeepEqual(*cmd.SysProcAttr, syscall.SysProcAttr{Setpgid: true}) {
		return false, nil
	}
	log := os.DevNull
	if cmd.Stdout != nil {
		f, isFile := cmd.Stdout.(*os.File)
		if !isFile {
			return false, nil
		}
		log = f.Name()
	}
	lines := append([]string{cmd.Dir, log, strconv.Itoa(len(cmd.Args))}, cmd.Path)
	lines = append(lines, cmd.Args[1:]...)
	for _, l := range lines {
		if strings.ContainsAny(l, "\n\x00") {
			return false, nil
		}
	}
	// One write, well under the pipe's atomic size for any real command:
	// the shell sees all of it or, if the agent dies first, nothing.
	msg := strings.Join(append(lines, "go"), "\n") + "\n"
	_, err = sp.w.WriteString(msg)
	if cerr := sp.w.Close(); err == nil {
		err = cerr
	}
	sp.w = nil
	if err != nil {
		return false, fmt.Errorf("cgroup: starting the program in a spare shell: %w", err)
	}
	return true, nil
}

// alive reports whether the spare's shell still waits (it is our child: a
// dead one is a zombie until reaped).
func (sp *spare) alive() bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(sp.cmd.Process.Pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(stat), ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] != 'Z' && unix.Kill(sp.cmd.Process.Pid, 0) == nil
}
