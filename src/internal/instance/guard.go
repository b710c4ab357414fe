package instance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultMaxScriptSeconds is how long a server may answer BUSY (a Lua
// script or function running) before the agent ends the script, unless an
// agent's config says otherwise (max_script_seconds).
const DefaultMaxScriptSeconds = 60

// MaxScriptSecondsLimit is the largest max_script_seconds an agent accepts.
const MaxScriptSecondsLimit = 3600

// Intervals of the guard: every follower is checked for drift every
// FollowerInterval; every server's CPU and connections every SlowInterval.
const (
	FollowerInterval = time.Second
	SlowInterval     = 10 * time.Second
	// checkTimeout bounds one server's check, so a server that does not
	// answer holds up no other.
	checkTimeout = 2 * time.Second
	// guardWorkers is how many servers are checked at once.
	guardWorkers = 4
)

// CheckMaxScriptSeconds checks an agent's max_script_seconds and makes
// zero (left out) DefaultMaxScriptSeconds.
func CheckMaxScriptSeconds(n *int) error {
	if *n == 0 {
		*n = DefaultMaxScriptSeconds
	}
	if *n < 1 || *n > MaxScriptSecondsLimit {
		return fmt.Errorf("max_script_seconds: %d is outside 1-%d", *n, MaxScriptSecondsLimit)
	}
	return nil
}

// GuardConfig configures a Guard.
type GuardConfig struct {
	// Servers returns the servers to watch now; a server that does not run
	// is skipped.
	Servers func() []*Server
	// MaxScriptSeconds is how long a server may answer BUSY before the
	// agent ends its script; zero means DefaultMaxScriptSeconds.
	MaxScriptSeconds int
	// Logger receives the guard's logs; nil discards them.
	Logger *slog.Logger
}

// Guard is an agent's one loop that keeps its running servers in the
// platform's hands: it ends scripts that run longer than MaxScriptSeconds,
// closes connections that hold a slot without logging in while the server
// is nearly full, and puts back on a follower what its leader's
// replication stream (which runs as an admin) changed of the platform's
// settings and users, cutting the link to a leader that keeps doing it.
// One loop for all servers: a goroutine and a timer per server would cost
// more than the checks, on an agent with 2,000 instances.
type Guard struct {
	cfg    GuardConfig
	logger *slog.Logger

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// NewGuard returns a Guard of cfg; it checks nothing until Start.
func NewGuard(cfg GuardConfig) *Guard {
	if cfg.MaxScriptSeconds == 0 {
		cfg.MaxScriptSeconds = DefaultMaxScriptSeconds
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Guard{cfg: cfg, logger: logger}
}

// Start starts the loop; a second Start does nothing.
func (g *Guard) Start() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel, g.done = cancel, make(chan struct{})
	go g.run(ctx, g.done)
}

// Stop stops the loop and waits until it ended.
func (g *Guard) Stop() {
	g.mu.Lock()
	cancel, done := g.cancel, g.done
	g.cancel, g.done = nil, nil
	g.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

func (g *Guard) run(ctx context.Context, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(FollowerInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			g.tick(ctx, now)
		}
	}
}

// tick checks every server that is due, a few at a time.
func (g *Guard) tick(ctx context.Context, now time.Time) {
	sem := make(chan struct{}, guardWorkers)
	var wg sync.WaitGroup
	for _, s := range g.cfg.Servers() {
		if ctx.Err() != nil {
			break
		}
		if !s.due(now) {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			cctx, cancel := context.WithTimeout(ctx, checkTimeout)
			defer cancel()
			s.check(cctx, g, now)
		})
	}
	wg.Wait()
}

// guardState is what the guard keeps of one server between its checks;
// only the guard's loop touches it, one check of a server at a time.
type guardState struct {
	// pid is the process the state is of: a new one starts afresh.
	pid int
	// cpuTicks is the process's CPU time at cpuAt; nextSlow is when its CPU
	// and connections are checked next.
	cpuTicks uint64
	cpuAt    time.Time
	nextSlow time.Time
	// busySince is when the server first answered BUSY to the guard; zero
	// while it does not.
	busySince time.Time
}

// due reports whether s is checked in the round of now: a follower in
// every round, a server running a script until it ended, the others every
// SlowInterval. A server that does not run is not checked (a new process
// starts afresh).
func (s *Server) due(now time.Time) bool {
	gs := &s.guard
	if !s.sup.Status().Running {
		gs.pid = 0
		return false
	}
	return gs.pid == 0 || !now.Before(gs.nextSlow) || !gs.busySince.IsZero() || s.follows.Load()
}

// check is one round of the guard on s.
func (s *Server) check(ctx context.Context, g *Guard, now time.Time) {
	st := s.sup.Status()
	gs := &s.guard
	if !st.Running || st.Pid == 0 {
		gs.pid, gs.busySince = 0, time.Time{}
		return
	}
	if st.Pid != gs.pid {
		// Spread the servers' slow checks over the interval.
		*gs = guardState{pid: st.Pid, nextSlow: now.Add(time.Duration(st.Pid) % SlowInterval.Truncate(time.Second))}
		if ticks, err := cpuTicks(st.Pid); err == nil {
			gs.cpuTicks, gs.cpuAt = ticks, now
		}
	}
	slow := !now.Before(gs.nextSlow)
	if slow {
		gs.nextSlow = now.Add(SlowInterval)
	}
	if s.checkBusy(ctx, g, now, slow) {
		return
	}
	if s.follows.Load() {
		s.checkFollower(ctx, g)
	}
	if slow {
		s.reapUnauthenticated(ctx, g)
	}
}

// checkBusy ends a script that keeps the server busy for longer than
// MaxScriptSeconds, and reports whether the server is busy. Cheap while
// idle: the server is asked (PING) only when its process burned a tenth
// of the time since the last slow check or more, or answered BUSY before.
func (s *Server) checkBusy(ctx context.Context, g *Guard, now time.Time, slow bool) bool {
	gs := &s.guard
	if gs.busySince.IsZero() {
		if !slow {
			return false
		}
		ticks, err := cpuTicks(gs.pid)
		if err != nil {
			return false
		}
		prevTicks, prevAt := gs.cpuTicks, gs.cpuAt
		gs.cpuTicks, gs.cpuAt = ticks, now
		if prevAt.IsZero() {
			return false
		}
		// An idle server burns well under 1% (its cron); a script
		// loops on a core, but on a loaded VM gets only its share of it.
		burned := time.Duration(ticks-prevTicks) * time.Second / clockTicks
		if burned < now.Sub(prevAt)/busyShare {
			return false
		}
	}
	err := s.Admin().Ping(ctx).Err()
	if !isBusy(err) {
		gs.busySince = time.Time{}
		return false
	}
	if gs.busySince.IsZero() {
		gs.busySince = now
	}
	if now.Sub(gs.busySince) >= time.Duration(g.cfg.MaxScriptSeconds)*time.Second {
		s.endScript(ctx, g, err)
		gs.busySince = time.Time{}
	}
	return true
}

// endScript ends the script that keeps the server busy: SCRIPT KILL (or
// FUNCTION KILL), and when the script wrote already, which Redis will not
// undo, SHUTDOWN NOSAVE: the append-only file holds everything before the
// script and none of its writes, so the restarted server (the supervisor
// restarts it) has the data as if it never ran.
func (s *Server) endScript(ctx context.Context, g *Guard, busy error) {
	kill := "SCRIPT"
	if strings.Contains(busy.Error(), "FUNCTION KILL") {
		kill = "FUNCTION"
	}
	err := s.Admin().Do(ctx, kill, "KILL").Err()
	restart := false
	switch {
	case err == nil:
	case redisError(err, "NOTBUSY"):
		return // it ended meanwhile
	case redisError(err, "UNKILLABLE"):
		restart = true
		err = s.Admin().Do(ctx, "SHUTDOWN", "NOSAVE").Err()
		if err != nil && !redisError(err, "ERR") {
			err = nil // the connection closed as the server exited
		}
	}
	if err != nil {
		s.logger.Error("a script ran longer than max_script_seconds and could not be ended", "instance", s.cfg.Name, "max_script_seconds", g.cfg.MaxScriptSeconds, "error", err)
		return
	}
	note := fmt.Sprintf("a script ran longer than max_script_seconds (%d s) and was ended by the agent", g.cfg.MaxScriptSeconds)
	if restart {
		note += "; it had written, so the server was restarted without the script's writes"
	}
	s.logger.Warn(note, "instance", s.cfg.Name)
	s.setNote(note, restart)
}

// setNote keeps what the guard did for Describe's last_error, until the
// server dies of something else.
func (s *Server) setNote(note string, restart bool) {
	st := s.sup.Status()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.note, s.noteRestarts = note, st.Restarts
	if restart {
		s.noteRestarts++
	}
}

// busyShare: a server that burned more than 1/busyShare of the time since
// its last slow check is asked whether it runs a script.
const busyShare = 10

// clockTicks is the kernel's USER_HZ, the unit of /proc/PID/stat's CPU
// times: 100 on every Linux Go supports.
const clockTicks = 100

// cpuTicks is the CPU time (user and system) process pid used so far, in
// clock ticks.
func cpuTicks(pid int) (uint64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces and parentheses: fields count from
	// after its closing one. utime and stime are fields 14 and 15.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return 0, errors.New("unexpected /proc stat format")
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("unexpected /proc stat format")
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	k, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return u + k, nil
}
