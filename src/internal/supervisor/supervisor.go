// Package supervisor keeps one long-running process, such as an instance's
// redis-server, alive: it starts the process or adopts one left running by an
// earlier agent, restarts it with exponential backoff whenever it dies, and
// stops it gracefully.
//
// An agent may run hundreds of Supervisors, so an idle one costs one goroutine
// parked in Go's netpoller on a pidfd (no OS thread, no polling) and no
// goroutines copying output: the child writes straight to its log file.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Defaults for the zero values of Config's durations.
const (
	// DefaultReadyTimeout is the ReadyTimeout of a Config that sets none.
	DefaultReadyTimeout = 10 * time.Second
	// DefaultMinBackoff is the MinBackoff of a Config that sets none.
	DefaultMinBackoff = 100 * time.Millisecond
	// DefaultMaxBackoff is the MaxBackoff of a Config that sets none.
	DefaultMaxBackoff = 30 * time.Second
	// DefaultStableAfter is the StableAfter of a Config that sets none.
	DefaultStableAfter = 60 * time.Second
	// DefaultStopTimeout is the StopTimeout of a Config that sets none.
	DefaultStopTimeout = 30 * time.Second
)

const (
	// readyInterval is the pause between two calls of Config.Ready while
	// the start is young (readyFast); after that the pause grows by a
	// quarter per call up to readyMaxInterval. A server that starts alone
	// answers within readyFast and is seen within 1ms of listening (a
	// redis-server starts in 5-7 ms: polling every 2ms left 1 ms of it
	// unseen on average); twenty starting at once on two cores take
	// hundreds of ms, and polling each every 2ms for all of it cost the
	// agent as much CPU as the servers' own starts, hence the growth.
	readyInterval    = 1 * time.Millisecond
	readyFast        = 30 * time.Millisecond
	readyMaxInterval = 20 * time.Millisecond
	// killTimeout bounds the wait for a SIGKILLed process to vanish.
	killTimeout = 10 * time.Second
	// logTailLines is how much of the log a start failure quotes.
	logTailLines = 5
)

var (
	// ErrStarted is returned by Start on a Supervisor that is already supervising.
	ErrStarted = errors.New("supervisor: already started")
	// ErrNotStarted is returned by Restart on a Supervisor that is not supervising.
	ErrNotStarted = errors.New("supervisor: not started")
)

// Config describes the process a Supervisor keeps running. Only Path is
// required; the zero value of every other field is documented with it.
type Config struct {
	// Name identifies the process in logs, e.g. the instance id; empty
	// leaves it out.
	Name string
	// Path is the binary to run, e.g. /usr/bin/redis-server.
	Path string
	// Args are the arguments after the program name, e.g. the redis.conf path.
	Args []string
	// Dir is the child's working directory; empty means the agent's.
	Dir string
	// PidFile is where the child's pid is recorded, atomically, for a later
	// Supervisor to adopt the process. Empty means no pid file and no
	// adoption.
	PidFile string
	// LogFile receives the child's stdout and stderr, appended; empty
	// discards them.
	LogFile string
	// Ready reports nil once the started process pid serves. It is called
	// every 2ms for the first 30ms after the start, then less and less often
	// (up to every 20ms), until it succeeds or ReadyTimeout passes, so
	// it must fail fast (a refused connection). Checking that the server
	// answering is pid (INFO server's process_id) guards against a stale
	// server still holding the port. Nil means a process is ready as soon as
	// it runs. Adopted processes are not asked: Owns vouched for them.
	Ready func(ctx context.Context, pid int) error
	// Owns reports whether the live process pid, found in PidFile and
	// running Path, is really this instance's server (e.g. by comparing
	// INFO server's process_id and config_file). It is only used for
	// adoption; nil means never adopt.
	Owns func(ctx context.Context, pid int) bool
	// Find names the pid of a running process to consider for adoption when
	// PidFile names none: an agent killed between starting a process and
	// recording its pid leaves one running that only the process itself can
	// name (redis-server's INFO process_id). The result still has to pass
	// the executable check and Owns. Nil means rely on PidFile alone.
	Find func(ctx context.Context) (pid int, ok bool)
	// ReadyTimeout bounds the wait for Ready after each start, and each
	// call of Owns; zero means DefaultReadyTimeout.
	ReadyTimeout time.Duration
	// MinBackoff is the pause before restarting a process that died after
	// running stably; it doubles with each consecutive failed run up to
	// MaxBackoff. Zero means DefaultMinBackoff.
	MinBackoff time.Duration
	// MaxBackoff caps the pause between restarts; zero means DefaultMaxBackoff.
	MaxBackoff time.Duration
	// StableAfter is how long a process must run for its death to count as
	// a fresh failure, resetting the backoff to MinBackoff; zero means
	// DefaultStableAfter.
	StableAfter time.Duration
	// StopTimeout is how long a stopping process gets after SIGTERM (redis
	// flushes its AOF) before SIGKILL; zero means DefaultStopTimeout.
	StopTimeout time.Duration
	// Logger receives the Supervisor's logs; nil discards them.
	Logger *slog.Logger
	// Cgroup, if not nil, is the control group the process runs in: the
	// kernel bounds its memory and CPU, a kill reaches every process in it
	// (a redis-server's snapshot child too), and a death by its memory
	// ceiling is reported as such. Nil runs the process in the agent's.
	Cgroup Cgroup
	// Prepare, if not nil, is called before each new process is started
	// (the first and every restart, not an adoption), e.g. to render the
	// config file it will read. An error fails that start: Start returns
	// it, and a restart is tried again after the backoff.
	Prepare func(ctx context.Context) error
	// OnExit, if not nil, is called on the supervising goroutine with the
	// reason each time the process dies unexpectedly or a restart fails.
	// Supervision waits for it to return, so it must not call Stop,
	// Restart or Detach (Status is fine).
	OnExit func(err error)
}

// Cgroup is a control group a process runs in (*cgroup.Group).
type Cgroup interface {
	// Place prepares cmd to start in the cgroup and returns what to call
	// right after cmd.Start with the child's pid (0 if the start failed).
	Place(cmd *exec.Cmd) (after func(pid int) error, err error)
	// Kill sends SIGKILL to every process in the cgroup.
	Kill() error
	// OOMKills counts the processes the kernel killed in the cgroup for
	// exceeding its memory ceiling.
	OOMKills() int64
}

// HeldStarter is a Cgroup that may hold a process already waiting in it to
// run the program (*cgroup.Group taking over a spare of its Tree: see
// cgroup.Tree.KeepSpares), which saves the move into the cgroup that Place
// makes each start wait for on cgroup v1.
type HeldStarter interface {
	// StartHeld runs cmd's program, with its arguments, directory and
	// output, in the held process (same pid, in the cgroup with its limits
	// from the program's first instruction) and returns that process's
	// command, to wait on; nil when it holds none or cannot run cmd, and
	// cmd is then started with Place.
	StartHeld(cmd *exec.Cmd) (*exec.Cmd, error)
}

// ErrMemoryCeiling is the cause of a process's death when the kernel killed
// it for exceeding its cgroup's memory ceiling.
var ErrMemoryCeiling = errors.New("killed by the kernel for exceeding its memory ceiling")

// Status is a snapshot of a Supervisor; the zero value describes one that
// never started.
type Status struct {
	// Supervising is true from a successful Start until Stop or Detach,
	// including while the process is down and waiting to be restarted.
	Supervising bool
	// Running is true while a process is up and passed Ready (or was adopted).
	Running bool
	// Pid is the running process's pid, or 0.
	Pid int
	// Adopted is true when the running process was found running by Start
	// rather than started by this Supervisor.
	Adopted bool
	// Restarts counts the processes started to replace one that died
	// unexpectedly; Restart does not count.
	Restarts int
	// LastExit says how the last process died unexpectedly, or why the last
	// restart failed; empty if that never happened.
	LastExit string
	// Since is when Running last changed; zero if it never did.
	Since time.Time
}

// Supervisor keeps the process described by a Config running. Create it with
// New; the zero value is not usable. Its methods are safe for concurrent use.
type Supervisor struct {
	cfg Config
	log *slog.Logger

	op  sync.Mutex // serializes Start, Stop, Restart and Detach
	run *run       // the current supervision; guarded by op

	mu          sync.Mutex // guards the fields below
	status      Status
	cancelStart context.CancelFunc // cancels the launch of an ongoing Start or Restart
}

// run is one stretch of supervision: the goroutine that waits for the process
// to die and replaces it.
type run struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when the goroutine has returned
	proc   *proc         // the process alive when it returned; read only after done
}

// New returns a Supervisor for cfg, with zero durations replaced by their
// defaults. It starts nothing.
func New(cfg Config) *Supervisor {
	cfg.ReadyTimeout = orDefault(cfg.ReadyTimeout, DefaultReadyTimeout)
	cfg.MinBackoff = orDefault(cfg.MinBackoff, DefaultMinBackoff)
	cfg.MaxBackoff = max(orDefault(cfg.MaxBackoff, DefaultMaxBackoff), cfg.MinBackoff)
	cfg.StableAfter = orDefault(cfg.StableAfter, DefaultStableAfter)
	cfg.StopTimeout = orDefault(cfg.StopTimeout, DefaultStopTimeout)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Name != "" {
		log = log.With("instance", cfg.Name)
	}
	return &Supervisor{cfg: cfg, log: log}
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Status returns a snapshot of the supervised process's state.
func (s *Supervisor) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

// Start adopts the process recorded in PidFile if it is alive, runs Path and
// Owns says it is this instance's; otherwise it starts a new process. It
// returns once the process is ready, after which the Supervisor restarts it
// whenever it dies, until Stop or Detach. If the new process exits or is not
// ready within ReadyTimeout, Start stops it and returns an error with its
// exit status and the end of its log, and supervises nothing. A Stop called
// meanwhile makes Start fail at once.
func (s *Supervisor) Start(ctx context.Context) error {
	s.op.Lock()
	defer s.op.Unlock()
	if s.run != nil {
		return ErrStarted
	}
	if s.cfg.Path == "" {
		return errors.New("supervisor: Config.Path is empty")
	}
	ctx, done := s.cancelableByStop(ctx)
	defer done()

	if p := s.adopt(ctx); p != nil {
		s.log.Info("adopted running process", "pid", p.pid)
		s.supervise(p, true)
		return nil
	}
	prevPid, prevErr := readPidFile(s.cfg.PidFile)
	p, err := s.launch(ctx)
	if err != nil {
		// Keep a pid file naming a process that Owns rejected, perhaps only
		// because it was too busy to answer: a later Start may adopt it.
		if s.cfg.PidFile != "" && prevErr == nil && !errors.Is(syscall.Kill(prevPid, 0), syscall.ESRCH) {
			err = errors.Join(err, writePidFile(s.cfg.PidFile, prevPid))
		} else {
			err = errors.Join(err, removePidFile(s.cfg.PidFile))
		}
		return fmt.Errorf("supervisor: starting %s: %w", s.cfg.Path, err)
	}
	s.log.Info("started process", "pid", p.pid)
	s.supervise(p, false)
	return nil
}

// Stop ends supervision and terminates the process: SIGTERM, then SIGKILL if
// it is still running after StopTimeout or when ctx is done. It returns once
// the process is gone, and removes PidFile. Calling Stop on a Supervisor that
// is not supervising does nothing.
func (s *Supervisor) Stop(ctx context.Context) error {
	s.mu.Lock()
	if s.cancelStart != nil {
		s.cancelStart()
	}
	s.mu.Unlock()

	s.op.Lock()
	defer s.op.Unlock()
	p, ok := s.endRun()
	if !ok {
		return nil
	}
	if p != nil {
		if err := s.terminate(ctx, p); err != nil {
			s.setStopped()
			return fmt.Errorf("supervisor: stopping: %w", err) // keep the pid file: the process lives
		}
		s.log.Info("stopped process", "pid", p.pid)
	}
	s.setStopped()
	if err := removePidFile(s.cfg.PidFile); err != nil {
		return fmt.Errorf("supervisor: %w", err)
	}
	return nil
}

// Kill ends supervision and kills the process at once with SIGKILL (with
// its process group and its cgroup), without the grace Stop gives it: for a
// process whose data is being discarded, which has nothing to save and may
// be too busy to stop by itself (a redis-server running an endless script
// ignores SIGTERM). It returns once the process is gone, and removes
// PidFile. Kill on a Supervisor that is not supervising does nothing.
func (s *Supervisor) Kill(ctx context.Context) error {
	s.mu.Lock()
	if s.cancelStart != nil {
		s.cancelStart()
	}
	s.mu.Unlock()

	s.op.Lock()
	defer s.op.Unlock()
	p, ok := s.endRun()
	if !ok {
		return nil
	}
	if p != nil {
		if err := s.terminateWithin(ctx, p, 0); err != nil {
			s.setStopped()
			return fmt.Errorf("supervisor: killing: %w", err) // keep the pid file: the process lives
		}
		s.log.Info("killed process", "pid", p.pid)
	}
	s.setStopped()
	if err := removePidFile(s.cfg.PidFile); err != nil {
		return fmt.Errorf("supervisor: %w", err)
	}
	return nil
}

// Restart stops the process gracefully, as Stop does, and starts a new one,
// e.g. to apply a changed configuration, returning once it is ready. If the
// new process fails to start, Restart returns the error and the Supervisor
// stops supervising, as after a failed Start. It returns ErrNotStarted if the
// Supervisor is not supervising.
func (s *Supervisor) Restart(ctx context.Context) error {
	s.op.Lock()
	defer s.op.Unlock()
	p, ok := s.endRun()
	if !ok {
		return ErrNotStarted
	}
	if p != nil {
		if err := s.terminate(ctx, p); err != nil {
			s.setStopped()
			return fmt.Errorf("supervisor: restarting: %w", err)
		}
	}
	s.setStopped()

	ctx, done := s.cancelableByStop(ctx)
	defer done()
	np, err := s.launch(ctx)
	if err != nil {
		err = errors.Join(err, removePidFile(s.cfg.PidFile))
		return fmt.Errorf("supervisor: restarting %s: %w", s.cfg.Path, err)
	}
	s.log.Info("restarted process", "old_pid", pidOf(p), "pid", np.pid)
	s.supervise(np, false)
	return nil
}

// Detach ends supervision but leaves the process running and PidFile in
// place, to hand the process over to another Supervisor (typically that of
// the agent's next incarnation, which adopts it in Start). If the process was
// being restarted at that moment, the half-started replacement is stopped
// instead. Detach on a Supervisor that is not supervising does nothing.
func (s *Supervisor) Detach() {
	s.op.Lock()
	defer s.op.Unlock()
	p, ok := s.endRun()
	if !ok {
		return
	}
	if p != nil {
		s.log.Info("detached from process", "pid", p.pid)
		p.release()
	}
	s.setStopped()
}

// cancelableByStop derives a context that Stop cancels, for the launch in
// Start or Restart; done must be called when that launch is over.
func (s *Supervisor) cancelableByStop(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	s.mu.Lock()
	s.cancelStart = cancel
	s.mu.Unlock()
	return ctx, func() {
		s.mu.Lock()
		s.cancelStart = nil
		s.mu.Unlock()
		cancel()
	}
}

// adopt returns the process recorded in PidFile if it qualifies for
// adoption, or nil. It never signals the process it finds.
func (s *Supervisor) adopt(ctx context.Context) *proc {
	if s.cfg.PidFile == "" || s.cfg.Owns == nil {
		return nil
	}
	pid, err := readPidFile(s.cfg.PidFile)
	if err != nil && s.cfg.Find != nil {
		fctx, cancel := context.WithTimeout(ctx, s.cfg.ReadyTimeout)
		found, ok := s.cfg.Find(fctx)
		cancel()
		if ok {
			pid, err = found, nil
		}
	}
	if err != nil {
		s.log.Debug("nothing to adopt", "error", err)
		return nil
	}
	log := s.log.With("pid", pid)
	// The pidfd pins the process: the checks below cannot be fooled by the
	// pid being reused meanwhile.
	p, err := watchAdopted(pid)
	if err != nil {
		log.Info("recorded process is gone", "error", err)
		return nil
	}
	ok, err := s.ownsExecutable(pid)
	if err != nil || !ok {
		log.Info("recorded process runs another program; not adopting", "error", err)
		p.release()
		return nil
	}
	octx, cancel := context.WithTimeout(ctx, s.cfg.ReadyTimeout)
	owned := s.cfg.Owns(octx, pid)
	cancel()
	if !owned || p.exited() {
		log.Info("recorded process is not this instance's server; not adopting", "owned", owned)
		p.release()
		return nil
	}
	p.started = time.Now()
	p.inCgroup(s.cfg.Cgroup)
	return p
}

// launch starts a new process and waits until it is ready. On failure,
// including ctx ending, it leaves no process behind.
func (s *Supervisor) launch(ctx context.Context) (*proc, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.cfg.Prepare != nil {
		if err := s.cfg.Prepare(ctx); err != nil {
			return nil, fmt.Errorf("supervisor: preparing the start: %w", err)
		}
	}
	p, err := s.spawn()
	if err != nil {
		return nil, err
	}
	err = s.waitReady(ctx, p)
	if err == nil {
		return p, nil
	}
	// Not ready yet or gone: either way it must not linger.
	if terr := s.terminate(context.WithoutCancel(ctx), p); terr != nil {
		err = errors.Join(err, terr)
	}
	return nil, err
}

// waitReady calls Ready until it succeeds, the process exits, ReadyTimeout
// passes or ctx ends.
func (s *Supervisor) waitReady(ctx context.Context, p *proc) error {
	rctx, cancel := context.WithTimeout(ctx, s.cfg.ReadyTimeout)
	defer cancel()
	var notReady error
	start, pause := time.Now(), readyInterval
	for {
		if s.cfg.Ready == nil {
			notReady = nil
		} else {
			notReady = s.cfg.Ready(rctx, p.pid)
		}
		if notReady == nil {
			if p.exited() {
				return s.exitedEarly(p)
			}
			return nil
		}
		pause = readyPause(time.Since(start), pause)
		exited, err := p.wait(rctx, time.Now().Add(pause))
		switch {
		case exited:
			return s.exitedEarly(p)
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil && rctx.Err() != nil:
			return fmt.Errorf("pid %d not ready within %v: %w", p.pid, s.cfg.ReadyTimeout, notReady)
		case err != nil:
			return err
		}
	}
}

// readyPause is the pause before the next call of Ready, age into the
// start, after a pause of last.
func readyPause(age, last time.Duration) time.Duration {
	if age < readyFast {
		return readyInterval
	}
	return min(last+last/4, readyMaxInterval)
}

// exitedEarly reaps a process that exited before it was ready and describes
// how it died, quoting the end of its log.
func (s *Supervisor) exitedEarly(p *proc) error {
	exitErr := p.reap()
	if p.oomKilled() {
		exitErr = fmt.Errorf("%w (%v)", ErrMemoryCeiling, exitErr)
	}
	err := fmt.Errorf("pid %d exited before it was ready: %w", p.pid, exitErr)
	if tail := logTail(s.cfg.LogFile, logTailLines); tail != "" {
		err = fmt.Errorf("%w; end of %s:\n%s", err, s.cfg.LogFile, tail)
	}
	return err
}

// terminate sends SIGTERM, waits up to StopTimeout (or until ctx ends), then
// sends SIGKILL and waits for the process to vanish. It releases p unless the
// process survives even SIGKILL.
func (s *Supervisor) terminate(ctx context.Context, p *proc) error {
	return s.terminateWithin(ctx, p, s.cfg.StopTimeout)
}

// terminateWithin is terminate with grace as the time between SIGTERM and
// SIGKILL; no grace sends SIGKILL at once.
func (s *Supervisor) terminateWithin(ctx context.Context, p *proc, grace time.Duration) error {
	log := s.log.With("pid", p.pid)
	if !p.exited() {
		exited := false
		if grace > 0 {
			if err := p.signal(syscall.SIGTERM); err != nil {
				log.Warn("could not send SIGTERM", "error", err)
			}
			tctx, cancel := context.WithTimeout(ctx, grace)
			exited, _ = p.wait(tctx, time.Time{})
			cancel()
			if !exited {
				log.Warn("process did not exit after SIGTERM; sending SIGKILL", "stop_timeout", grace)
			}
		}
		if !exited {
			if err := p.kill(); err != nil {
				log.Warn("could not send SIGKILL", "error", err)
			}
			kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), killTimeout)
			exited, err := p.wait(kctx, time.Time{})
			cancel()
			if !exited {
				p.release()
				return fmt.Errorf("pid %d still running %v after SIGKILL: %w", p.pid, killTimeout, err)
			}
		}
	}
	_ = p.reap()
	p.release()
	return nil
}

// supervise records p as the running process and starts the goroutine that
// replaces it whenever it dies.
func (s *Supervisor) supervise(p *proc, adopted bool) {
	ctx, cancel := context.WithCancel(context.Background())
	r := &run{cancel: cancel, done: make(chan struct{})}
	s.run = r
	s.mu.Lock()
	s.status.Supervising = true
	s.mu.Unlock()
	s.setRunning(p, adopted)
	go s.loop(ctx, r, p)
}

// endRun stops the supervising goroutine and returns the process it was
// watching, if any; ok is false when nothing was being supervised.
func (s *Supervisor) endRun() (p *proc, ok bool) {
	r := s.run
	if r == nil {
		return nil, false
	}
	s.run = nil
	r.cancel()
	<-r.done
	return r.proc, true
}

// loop waits for p to die and replaces it, with backoff, until ctx ends; it
// then leaves the live process, if any, in r.proc.
func (s *Supervisor) loop(ctx context.Context, r *run, p *proc) {
	defer close(r.done)
	failures := 0
	for {
		exited, err := p.wait(ctx, time.Time{})
		if !exited {
			if ctx.Err() == nil {
				// The pidfd broke; nothing can watch this process any more.
				s.log.Error("lost track of process", "pid", p.pid, "error", err)
			}
			r.proc = p
			return
		}
		exitErr := p.reap()
		if p.oomKilled() {
			exitErr = fmt.Errorf("%w (%v)", ErrMemoryCeiling, exitErr)
		}
		if p.cg != nil {
			// A snapshot child left behind must not outlive its server
			// and later rename a stale file over its successor's.
			if err := p.cg.Kill(); err != nil {
				s.log.Warn("could not kill what is left in the cgroup", "error", err)
			}
		}
		if time.Since(p.started) >= s.cfg.StableAfter {
			failures = 0
		}
		p.release()
		s.log.Warn("process exited unexpectedly", "pid", p.pid, "error", exitErr)
		s.setDown(exitErr)

		for {
			delay := backoff(failures, s.cfg.MinBackoff, s.cfg.MaxBackoff)
			failures++
			if !sleep(ctx, delay) {
				return
			}
			s.mu.Lock()
			s.status.Restarts++
			s.mu.Unlock()
			np, err := s.launch(ctx)
			if err == nil {
				s.log.Info("restarted process", "pid", np.pid, "after", delay)
				p = np
				s.setRunning(p, false)
				break
			}
			if ctx.Err() != nil {
				return
			}
			s.log.Error("restarting process failed", "error", err, "next_failures", failures)
			_ = removePidFile(s.cfg.PidFile)
			s.setDown(err)
		}
	}
}

func (s *Supervisor) setRunning(p *proc, adopted bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status.Running = true
	s.status.Pid = p.pid
	s.status.Adopted = adopted
	s.status.Since = time.Now()
}

// setDown records an unexpected death or failed restart and tells OnExit.
func (s *Supervisor) setDown(err error) {
	s.mu.Lock()
	if s.status.Running {
		s.status.Since = time.Now()
	}
	s.status.Running = false
	s.status.Pid = 0
	s.status.Adopted = false
	s.status.LastExit = err.Error()
	s.mu.Unlock()
	if s.cfg.OnExit != nil {
		s.cfg.OnExit(err)
	}
}

func (s *Supervisor) setStopped() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.status.Running {
		s.status.Since = time.Now()
	}
	s.status.Supervising = false
	s.status.Running = false
	s.status.Pid = 0
	s.status.Adopted = false
}

func pidOf(p *proc) int {
	if p == nil {
		return 0
	}
	return p.pid
}
