package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// errAdoptedExited stands for the exit status of an adopted process, which
// only its real parent (usually init) can learn.
var errAdoptedExited = errors.New("adopted process exited (status unknown: not our child)")

// longAgo is a read deadline in the past, used to wake a pidfd wait.
var longAgo = time.Unix(1, 0)

// proc is one running process, either our child or adopted, watched through a
// pidfd. The pidfd is registered with Go's netpoller, so a goroutine waiting
// for the process to exit is parked without holding an OS thread. A proc is
// used by one goroutine at a time.
//
// Where pidfds are not allowed (bpm's seccomp profile, which BOSH jobs run
// under, denies pidfd_open and pidfd_send_signal), a proc falls back to a
// goroutine waiting on the child (one blocked thread per child) or, for an
// adopted process, to checking every pollInterval that the pid is alive.
type proc struct {
	pid     int
	cmd     *exec.Cmd // nil when adopted
	pidfd   *os.File  // nil in the fallback
	conn    syscall.RawConn
	started time.Time // when we started or adopted it

	// The fallback's exit notice: closed when the process has exited, with
	// waitErr set (for a child) before the close.
	exitCh  chan struct{}
	waitErr error
	stop    chan struct{} // ends an adopted process's poller

	reaped  bool
	exitErr error // how the process ended; set by reap

	// cg is the process's cgroup, nil without; oomBase is its OOMKills
	// when the process was started or adopted.
	cg      Cgroup
	oomBase int64
}

// inCgroup records that p runs in cg.
func (p *proc) inCgroup(cg Cgroup) {
	if cg != nil {
		p.cg, p.oomBase = cg, cg.OOMKills()
	}
}

// oomKilled reports whether the kernel killed a process of p's cgroup for
// exceeding its memory ceiling since p started.
func (p *proc) oomKilled() bool {
	return p.cg != nil && p.cg.OOMKills() > p.oomBase
}

// pollInterval is how often the fallback checks that an adopted process lives.
const pollInterval = 200 * time.Millisecond

// pidfdRefused reports an error of pidfd_open that means pidfds cannot be
// used here at all, rather than that the process is gone.
func pidfdRefused(err error) bool {
	return errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EACCES)
}

// watchChild returns a proc for our child cmd: through a pidfd when allowed,
// else through a goroutine that waits on it.
func watchChild(cmd *exec.Cmd) (*proc, error) {
	pid := cmd.Process.Pid
	fd, conn, err := openPidfd(pid)
	if err == nil {
		return &proc{pid: pid, cmd: cmd, pidfd: fd, conn: conn, started: time.Now()}, nil
	}
	if !pidfdRefused(err) {
		return nil, err
	}
	p := &proc{pid: pid, cmd: cmd, started: time.Now(), exitCh: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exitCh)
	}()
	return p, nil
}

// watchAdopted returns a proc for a live process that is not our child, or
// an error when it is gone.
func watchAdopted(pid int) (*proc, error) {
	fd, conn, err := openPidfd(pid)
	if err == nil {
		return &proc{pid: pid, pidfd: fd, conn: conn}, nil
	}
	if !pidfdRefused(err) {
		return nil, err
	}
	if err := unix.Kill(pid, 0); err != nil {
		return nil, fmt.Errorf("pid %d: %w", pid, err)
	}
	p := &proc{pid: pid, exitCh: make(chan struct{}), stop: make(chan struct{})}
	go func() {
		t := time.NewTicker(pollInterval)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
			}
			if !alive(pid) {
				close(p.exitCh)
				return
			}
		}
	}()
	return p, nil
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	if err := unix.Kill(pid, 0); errors.Is(err, unix.ESRCH) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses.
	if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z'
	}
	return true
}

// pidfdOpen is unix.PidfdOpen; tests replace it to run as under a seccomp
// profile that refuses pidfds.
var pidfdOpen = unix.PidfdOpen

// openPidfd returns a pidfd for pid that Go's netpoller watches.
func openPidfd(pid int) (*os.File, syscall.RawConn, error) {
	fd, err := pidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return nil, nil, fmt.Errorf("pidfd_open(%d): %w", pid, err)
	}
	f := os.NewFile(uintptr(fd), "pidfd:"+strconv.Itoa(pid))
	conn, err := f.SyscallConn()
	if err == nil {
		// Fails unless the netpoller took the descriptor, without which
		// waits could not be interrupted.
		err = f.SetReadDeadline(time.Time{})
	}
	if err != nil {
		_ = f.Close()
		return nil, nil, fmt.Errorf("watching pidfd of %d: %w", pid, err)
	}
	return f, conn, nil
}

// pollExited reports whether the process behind pidfd fd has exited.
func pollExited(fd int) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return err == nil && n > 0
	}
}

// exited reports whether the process has exited, without blocking.
func (p *proc) exited() bool {
	if p.pidfd == nil {
		select {
		case <-p.exitCh:
			return true
		default:
			return false
		}
	}
	var done bool
	if err := p.conn.Control(func(fd uintptr) { done = pollExited(int(fd)) }); err != nil {
		return false
	}
	return done
}

// wait blocks until the process exits (true, nil), deadline passes (false,
// nil; a zero deadline never passes) or ctx is done (false, ctx.Err()).
func (p *proc) wait(ctx context.Context, deadline time.Time) (bool, error) {
	if p.pidfd == nil {
		return p.waitFallback(ctx, deadline)
	}
	for {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		if err := p.pidfd.SetReadDeadline(deadline); err != nil {
			return false, fmt.Errorf("setting pidfd deadline: %w", err)
		}
		stop := context.AfterFunc(ctx, func() { _ = p.pidfd.SetReadDeadline(longAgo) })
		var done bool
		err := p.conn.Read(func(fd uintptr) bool {
			done = pollExited(int(fd))
			return done
		})
		stop()
		switch {
		case done:
			return true, nil
		case !errors.Is(err, os.ErrDeadlineExceeded):
			return false, fmt.Errorf("waiting on pidfd of %d: %w", p.pid, err)
		case ctx.Err() != nil:
			return false, ctx.Err()
		case !deadline.IsZero() && !time.Now().Before(deadline):
			// RawConn.Read gives up without asking when the deadline
			// passed before it began, so ask once.
			return p.exited(), nil
		}
		// Woken by the AfterFunc of an earlier wait whose context ended
		// after that wait returned: wait again.
	}
}

func (p *proc) waitFallback(ctx context.Context, deadline time.Time) (bool, error) {
	var timeout <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-p.exitCh:
		return true, nil
	case <-ctx.Done():
		return false, ctx.Err()
	case <-timeout:
		return p.exited(), nil
	}
}

// signal sends sig to the process; a process that already exited is not an error.
func (p *proc) signal(sig syscall.Signal) error {
	if p.pidfd == nil {
		if p.exited() {
			return nil
		}
		if err := unix.Kill(p.pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("sending %v to pid %d: %w", sig, p.pid, err)
		}
		return nil
	}
	var err error
	if cerr := p.conn.Control(func(fd uintptr) { err = unix.PidfdSendSignal(int(fd), sig, nil, 0) }); cerr != nil {
		return fmt.Errorf("signalling pid %d: %w", p.pid, cerr)
	}
	if err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("sending %v to pid %d: %w", sig, p.pid, err)
	}
	return nil
}

// kill sends SIGKILL to the process and, when it leads its own process group
// as our children do, to the whole group, so that a redis-server's BGSAVE or
// AOF-rewrite child does not outlive it and later rename a stale file over
// its successor's.
func (p *proc) kill() error {
	if pgid, err := unix.Getpgid(p.pid); err == nil && pgid == p.pid && !p.exited() {
		_ = unix.Kill(-pgid, unix.SIGKILL)
	}
	err := p.signal(unix.SIGKILL)
	if p.cg != nil {
		// Whatever else runs in the cgroup: a child that left the group.
		err = errors.Join(err, p.cg.Kill())
	}
	return err
}

// reap collects the exit status of an exited child (it must only be called
// once the process has exited) and returns how the process ended, never nil.
func (p *proc) reap() error {
	if p.reaped {
		return p.exitErr
	}
	p.reaped = true
	if p.cmd == nil {
		p.exitErr = errAdoptedExited
		return p.exitErr
	}
	if p.pidfd == nil {
		<-p.exitCh
		p.exitErr = p.waitErr
	} else {
		p.exitErr = p.cmd.Wait()
	}
	if p.exitErr == nil {
		p.exitErr = errors.New("exit status 0")
	}
	return p.exitErr
}

// release closes the pidfd. A child that is still running is handed to a
// goroutine that reaps it whenever it exits, so it never lingers as a zombie.
func (p *proc) release() {
	if p.pidfd == nil {
		// A child's waiting goroutine reaps it; an adopted process's poller
		// has nothing left to watch for.
		p.reaped = true
		if p.stop != nil {
			close(p.stop)
		}
		return
	}
	if p.cmd != nil && !p.reaped {
		p.reaped = true
		go func(cmd *exec.Cmd) { _ = cmd.Wait() }(p.cmd)
	}
	_ = p.pidfd.Close()
}

// spawn starts the configured binary as our child, with stdout and stderr
// appended to the log file, and records its pid in the pid file.
func (s *Supervisor) spawn() (*proc, error) {
	cmd := exec.Command(s.cfg.Path, s.cfg.Args...)
	cmd.Dir = s.cfg.Dir
	// Own process group: a Ctrl-C meant for the agent must not reach the
	// servers. No Pdeathsig: servers outlive an agent killed with -9, and
	// the agent's successor adopts them.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if s.cfg.LogFile != "" {
		// An *os.File is handed to the child as is; any other writer would
		// cost a copying goroutine per process.
		f, err := os.OpenFile(s.cfg.LogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
		if err != nil {
			return nil, fmt.Errorf("opening log file: %w", err)
		}
		defer f.Close()
		// A log an earlier version created 0644 becomes 0640 too.
		if fi, err := f.Stat(); err == nil && fi.Mode().Perm()&^0o640 != 0 {
			if err := f.Chmod(fi.Mode().Perm() & 0o640); err != nil {
				return nil, fmt.Errorf("making the log file private: %w", err)
			}
		}
		cmd.Stdout, cmd.Stderr = f, f
	}
	held, err := s.startHeld(cmd)
	if err != nil {
		return nil, err
	}
	if held != nil {
		cmd = held
	} else if err := s.startPlaced(cmd); err != nil {
		return nil, err
	}
	pid := cmd.Process.Pid
	p, err := watchChild(cmd)
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, err
	}
	p.inCgroup(s.cfg.Cgroup)
	if s.cfg.PidFile != "" {
		if err := writePidFile(s.cfg.PidFile, pid); err != nil {
			_ = p.kill()
			_ = p.reap()
			p.release()
			return nil, err
		}
	}
	return p, nil
}

// startHeld runs cmd in the process the cgroup holds waiting in it, if it
// holds one (HeldStarter), and returns that process's command; nil when it
// holds none, and cmd is to be started by startPlaced.
func (s *Supervisor) startHeld(cmd *exec.Cmd) (*exec.Cmd, error) {
	h, ok := s.cfg.Cgroup.(HeldStarter)
	if !ok {
		return nil, nil
	}
	held, err := h.StartHeld(cmd)
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", s.cfg.Path, err)
	}
	return held, nil
}

// startPlaced starts cmd in the cgroup, if any, from its first instruction.
func (s *Supervisor) startPlaced(cmd *exec.Cmd) error {
	placed := func(int) error { return nil }
	if s.cfg.Cgroup != nil {
		var err error
		if placed, err = s.cfg.Cgroup.Place(cmd); err != nil {
			return err
		}
	}
	if err := cmd.Start(); err != nil {
		return errors.Join(fmt.Errorf("starting %s: %w", s.cfg.Path, err), placed(0))
	}
	if err := placed(cmd.Process.Pid); err != nil {
		// A server outside its cgroup would run unbounded.
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return err
	}
	return nil
}

// ownsExecutable reports whether the process pid runs the configured binary.
// Both sides are resolved, because a package's binary is often a symlink
// (Debian's /usr/bin/redis-server points to redis-check-rdb) while the
// kernel reports the file it really runs.
func (s *Supervisor) ownsExecutable(pid int) (bool, error) {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return false, fmt.Errorf("reading executable of pid %d: %w", pid, err)
	}
	want, err := filepath.EvalSymlinks(s.cfg.Path)
	if err != nil {
		return false, fmt.Errorf("resolving %s: %w", s.cfg.Path, err)
	}
	got, err := filepath.EvalSymlinks(exe)
	if err != nil {
		// A binary replaced since the process started reads "… (deleted)".
		return false, fmt.Errorf("resolving executable %q of pid %d: %w", exe, pid, err)
	}
	return got == want, nil
}

// writePidFile records pid in path atomically: a reader sees the old content
// or the new, and the new survives a crash once writePidFile returns.
func writePidFile(path string, pid int) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing pid file: %w", err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	// No fsync: the pid file only matters to an agent restarted after a
	// crash of its own, which the page cache survives; after a power cut the
	// process it named is gone anyway.
	_, err = tmp.WriteString(strconv.Itoa(pid) + "\n")
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("writing pid file %s: %w", path, err)
	}
	return nil
}

// readPidFile returns the pid recorded in path.
func readPidFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("reading pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s holds %q, not a pid", path, b)
	}
	return pid, nil
}

// removePidFile removes path; a missing file is not an error.
func removePidFile(path string) error {
	if path == "" {
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing pid file: %w", err)
	}
	return nil
}

// logTail returns at most the last n lines of the file at path, read from its
// last few kilobytes so that a huge log costs no more than a small one.
func logTail(path string, n int) string {
	const maxRead = 4096
	if path == "" {
		return ""
	}
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(fi.Size()-maxRead, 0)
	b, err := io.ReadAll(io.NewSectionReader(f, off, maxRead))
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if off > 0 && len(lines) > 1 {
		lines = lines[1:] // the first line is probably cut
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
