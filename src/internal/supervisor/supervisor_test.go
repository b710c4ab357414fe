package supervisor_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/supervisor"
	"github.com/cf-redis/redis-for-cf/src/testkit/redistest"
)

// redisServer is the tests' Redis build's redis-server (redistest.Program).
var redisServer string

var _ = BeforeEach(func() {
	redisServer = redistest.MustProgram(GinkgoT(), "redis-server")
})

// instance is one redis-server's files, port and admin connection.
type instance struct {
	dir, conf, pidFile, logFile string
	port                        int
	client                      *redis.Client
}

// newInstance prepares a redis.conf on a free port in a fresh directory.
// Whatever runs in that directory is killed, and the directory removed, when
// the spec ends.
func newInstance() *instance {
	dir, err := os.MkdirTemp("", "supervisor-test-")
	Expect(err).NotTo(HaveOccurred())
	dir, err = filepath.EvalSymlinks(dir)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.RemoveAll, dir)
	DeferCleanup(killProcessesIn, dir)

	port, err := redistest.FreePort()
	Expect(err).NotTo(HaveOccurred())
	in := &instance{
		dir:     dir,
		conf:    filepath.Join(dir, "redis.conf"),
		pidFile: filepath.Join(dir, "redis.pid"),
		logFile: filepath.Join(dir, "redis.log"),
		port:    port,
	}
	conf := fmt.Sprintf("port %d\nbind 127.0.0.1\ndaemonize no\ndir %s\nsave \"\"\nappendonly no\n", port, dir)
	Expect(os.WriteFile(in.conf, []byte(conf), 0o600)).To(Succeed())
	in.client = redis.NewClient(&redis.Options{
		Addr:         fmt.Sprintf("127.0.0.1:%d", port),
		DialTimeout:  200 * time.Millisecond,
		ReadTimeout:  time.Second,
		WriteTimeout: time.Second,
		MaxRetries:   -1,
		PoolSize:     2,
	})
	DeferCleanup(in.client.Close)
	return in
}

// serverInfo returns the process_id and config_file INFO reports, through a
// fresh connection: after PoolSize refused dials a go-redis pool refuses to
// dial again for a second, which would slow every start down by that much.
func (in *instance) serverInfo(ctx context.Context) (int, string, error) {
	c := redis.NewClient(&redis.Options{
		Addr:          in.client.Options().Addr,
		DialTimeout:   200 * time.Millisecond,
		ReadTimeout:   time.Second,
		WriteTimeout:  time.Second,
		MaxRetries:    -1,
		PoolSize:      1,
		DialerRetries: 1, // by default go-redis dials 5 times, 100ms apart
	})
	defer c.Close()
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		return 0, "", err
	}
	var pid int
	var conf string
	for line := range strings.SplitSeq(info, "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
		switch k {
		case "process_id":
			pid, _ = strconv.Atoi(v)
		case "config_file":
			conf = v
		}
	}
	return pid, conf, nil
}

func (in *instance) config() supervisor.Config {
	return supervisor.Config{
		Name:    filepath.Base(in.dir),
		Path:    redisServer,
		Args:    []string{in.conf},
		Dir:     in.dir,
		PidFile: in.pidFile,
		LogFile: in.logFile,
		Ready: func(ctx context.Context, pid int) error {
			got, _, err := in.serverInfo(ctx)
			if err == nil && got != pid {
				err = fmt.Errorf("port %d is served by pid %d", in.port, got)
			}
			return err
		},
		Owns: func(ctx context.Context, pid int) bool {
			got, conf, err := in.serverInfo(ctx)
			return err == nil && got == pid && conf == in.conf
		},
		MinBackoff:  10 * time.Millisecond,
		MaxBackoff:  100 * time.Millisecond,
		StopTimeout: 10 * time.Second,
		Logger:      slog.New(slog.NewTextHandler(GinkgoWriter, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// start starts a Supervisor for cfg and stops it when the spec ends.
func start(ctx context.Context, cfg supervisor.Config) *supervisor.Supervisor {
	s := supervisor.New(cfg)
	DeferCleanup(stop, s)
	Expect(s.Start(ctx)).To(Succeed())
	return s
}

func stop(s *supervisor.Supervisor) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return s.Stop(ctx)
}

// processesIn returns the live processes whose working directory is dir.
func processesIn(dir string) []int {
	var pids []int
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		if cwd, err := os.Readlink(p + "/cwd"); err == nil && cwd == dir {
			if pid, err := strconv.Atoi(filepath.Base(p)); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// killProcessesIn SIGKILLs every process whose working directory is dir: a
// safety net behind Stop for specs that fail half-way or detach.
func killProcessesIn(dir string) {
	for _, pid := range processesIn(dir) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

func gone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func pidInFile(path string) int {
	b, err := os.ReadFile(path)
	Expect(err).NotTo(HaveOccurred())
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	Expect(err).NotTo(HaveOccurred())
	return pid
}

// exits collects the errors passed to OnExit, with their times.
type exits struct {
	mu    sync.Mutex
	errs  []error
	times []time.Time
}

func (e *exits) record(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.errs = append(e.errs, err)
	e.times = append(e.times, time.Now())
}

func (e *exits) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.errs)
}

func (e *exits) snapshot() ([]error, []time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]error(nil), e.errs...), append([]time.Time(nil), e.times...)
}

var _ = Describe("Supervisor", func() { supervisorSpecs(false) })

// Under bpm's seccomp profile pidfd_open is refused: every behaviour must
// hold with the fallback too (a waiting goroutine per child, polling of
// adopted processes).
var _ = Describe("Supervisor without pidfds", Serial, func() {
	BeforeEach(func() { DeferCleanup(supervisor.RefusePidfds()) })
	supervisorSpecs(true)
})

func supervisorSpecs(fallback bool) {
	var in *instance

	BeforeEach(func() {
		in = newInstance()
	})

	It("starts a server that answers, and stops it", func(ctx SpecContext) {
		s := start(ctx, in.config())

		st := s.Status()
		Expect(st.Supervising).To(BeTrue())
		Expect(st.Running).To(BeTrue())
		Expect(st.Adopted).To(BeFalse())
		Expect(st.Restarts).To(BeZero())
		Expect(in.client.Ping(ctx).Err()).To(Succeed())
		pid, conf, err := in.serverInfo(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(st.Pid).To(Equal(pid))
		Expect(conf).To(Equal(in.conf))
		Expect(pidInFile(in.pidFile)).To(Equal(pid))
		Expect(os.ReadFile(in.logFile)).To(ContainSubstring("Ready to accept connections"))

		Expect(s.Stop(ctx)).To(Succeed())
		Expect(gone(pid)).To(BeTrue())
		Expect(in.pidFile).NotTo(BeAnExistingFile())
		Expect(os.ReadFile(in.logFile)).To(ContainSubstring("ready to exit, bye bye"), "stopped with SIGTERM")
		st = s.Status()
		Expect(st.Supervising).To(BeFalse())
		Expect(st.Running).To(BeFalse())
		Expect(st.Pid).To(BeZero())

		Expect(s.Stop(ctx)).To(Succeed())
		Expect(supervisor.New(in.config()).Stop(ctx)).To(Succeed(), "never started")
	})

	It("refuses to start twice and to restart what it does not supervise", func(ctx SpecContext) {
		s := supervisor.New(in.config())
		Expect(s.Restart(ctx)).To(MatchError(supervisor.ErrNotStarted))
		DeferCleanup(stop, s)
		Expect(s.Start(ctx)).To(Succeed())
		Expect(s.Start(ctx)).To(MatchError(supervisor.ErrStarted))
	})

	It("restarts a server killed with SIGKILL", func(ctx SpecContext) {
		var ex exits
		cfg := in.config()
		cfg.OnExit = ex.record
		s := start(ctx, cfg)
		old := s.Status().Pid

		Expect(syscall.Kill(old, syscall.SIGKILL)).To(Succeed())

		Eventually(s.Status).WithTimeout(5 * time.Second).Should(And(
			HaveField("Running", BeTrue()),
			HaveField("Pid", Not(Or(Equal(old), BeZero()))),
		))
		st := s.Status()
		Expect(st.Restarts).To(Equal(1))
		Expect(st.LastExit).To(Equal("signal: killed"))
		Expect(ex.count()).To(Equal(1))
		Expect(gone(old)).To(BeTrue(), "the killed child was reaped")
		Expect(pidInFile(in.pidFile)).To(Equal(st.Pid))
		Expect(in.client.Ping(ctx).Err()).To(Succeed())
	})

	It("prepares every start of a new process, and a failed preparation fails the start", func(ctx SpecContext) {
		var mu sync.Mutex
		prepared := 0
		fail := errors.New("the config cannot be rendered")
		cfg := in.config()
		cfg.Prepare = func(context.Context) error {
			mu.Lock()
			defer mu.Unlock()
			prepared++
			if prepared == 1 {
				return fail
			}
			return nil
		}
		count := func() int {
			mu.Lock()
			defer mu.Unlock()
			return prepared
		}
		s := supervisor.New(cfg)
		Expect(s.Start(ctx)).To(MatchError(fail))
		Expect(s.Status().Supervising).To(BeFalse())
		s = start(ctx, cfg)
		Expect(count()).To(Equal(2))
		old := s.Status().Pid
		Expect(syscall.Kill(old, syscall.SIGKILL)).To(Succeed())
		Eventually(s.Status).WithTimeout(5 * time.Second).Should(HaveField("Pid", Not(Or(Equal(old), BeZero()))))
		Expect(count()).To(Equal(3), "the restart was prepared too")
	})

	It("restarts on request with a new process", func(ctx SpecContext) {
		s := start(ctx, in.config())
		old := s.Status().Pid

		Expect(s.Restart(ctx)).To(Succeed())

		st := s.Status()
		Expect(st.Running).To(BeTrue())
		Expect(st.Pid).NotTo(Equal(old))
		Expect(st.Restarts).To(BeZero())
		Expect(gone(old)).To(BeTrue())
		pid, _, err := in.serverInfo(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(pid).To(Equal(st.Pid))
		Expect(pidInFile(in.pidFile)).To(Equal(st.Pid))
	})

	It("fails to start, quoting the log, when the port is taken, and does not retry", func(ctx SpecContext) {
		other, err := redistest.Start(GinkgoT().TempDir())
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(other.Stop)
		conf, err := os.ReadFile(in.conf)
		Expect(err).NotTo(HaveOccurred())
		conf = []byte(strings.Replace(string(conf), "port "+strconv.Itoa(in.port), "port "+strconv.Itoa(other.Port), 1))
		Expect(os.WriteFile(in.conf, conf, 0o600)).To(Succeed())

		var ex exits
		cfg := in.config()
		cfg.OnExit = ex.record
		s := supervisor.New(cfg)
		DeferCleanup(stop, s)
		err = s.Start(ctx)

		Expect(err).To(MatchError(ContainSubstring("exit status 1")))
		Expect(err).To(MatchError(ContainSubstring("Address already in use")))
		_, tail, found := strings.Cut(err.Error(), "end of "+in.logFile+":\n")
		Expect(found).To(BeTrue())
		Expect(strings.Split(tail, "\n")).To(HaveLen(5))
		Expect(s.Status()).To(Equal(supervisor.Status{}))
		Expect(in.pidFile).NotTo(BeAnExistingFile())

		logSize := func() int64 {
			fi, err := os.Stat(in.logFile)
			Expect(err).NotTo(HaveOccurred())
			return fi.Size()
		}
		size := logSize()
		Consistently(logSize).WithTimeout(300 * time.Millisecond).Should(Equal(size))
		Expect(ex.count()).To(BeZero())
	})

	It("gives up on a Start that Stop interrupts, leaving no process", func(ctx SpecContext) {
		cfg := in.config()
		cfg.Ready = func(context.Context, int) error { return errors.New("never ready") }
		cfg.ReadyTimeout = time.Minute
		s := supervisor.New(cfg)
		DeferCleanup(stop, s)
		started := make(chan error, 1)
		go func() {
			defer GinkgoRecover()
			started <- s.Start(ctx)
		}()
		Eventually(in.pidFile).Should(BeAnExistingFile())
		pid := pidInFile(in.pidFile)

		Expect(s.Stop(ctx)).To(Succeed())

		Eventually(started).WithTimeout(15 * time.Second).Should(Receive(MatchError(context.Canceled)))
		Expect(gone(pid)).To(BeTrue())
		Expect(s.Status().Supervising).To(BeFalse())
		Expect(in.pidFile).NotTo(BeAnExistingFile())
	})

	Context("with a process that crashes at once after its first run", func() {
		// The first run records its pid, which makes it ready, and sleeps;
		// once it is killed, every later run exits at once.
		crashLoop := func() supervisor.Config {
			cfg := in.config()
			cfg.Path = "/bin/sh"
			cfg.Args = []string{"-c", `if [ -e first ]; then echo "crashing $$"; exit 3; fi; echo $$ >first.tmp; mv first.tmp first; exec sleep 600`}
			cfg.Ready = func(_ context.Context, pid int) error {
				b, err := os.ReadFile(filepath.Join(in.dir, "first"))
				if err == nil && strings.TrimSpace(string(b)) != strconv.Itoa(pid) {
					err = errors.New("not the first run")
				}
				return err
			}
			cfg.Owns = nil
			return cfg
		}

		It("backs off exponentially up to MaxBackoff", func(ctx SpecContext) {
			var ex exits
			cfg := crashLoop()
			cfg.MinBackoff = 20 * time.Millisecond
			cfg.MaxBackoff = 160 * time.Millisecond
			cfg.OnExit = ex.record
			s := start(ctx, cfg)

			Expect(syscall.Kill(s.Status().Pid, syscall.SIGKILL)).To(Succeed())

			Eventually(ex.count).WithTimeout(10 * time.Second).Should(BeNumerically(">=", 9))
			errs, times := ex.snapshot()
			Expect(errs[0]).To(MatchError("signal: killed"))
			for i := 1; i < len(errs); i++ {
				Expect(errs[i]).To(MatchError(ContainSubstring("exit status 3")))
				Expect(errs[i]).To(MatchError(ContainSubstring("crashing")))
				want := supervisor.Backoff(i-1, cfg.MinBackoff, cfg.MaxBackoff)
				Expect(times[i].Sub(times[i-1])).To(BeNumerically(">=", want), "pause %d", i)
			}
			for i := 6; i < len(errs); i++ {
				Expect(times[i].Sub(times[i-1])).To(BeNumerically("<", cfg.MaxBackoff+time.Second), "pause %d is capped", i)
			}
			st := s.Status()
			Expect(st.Supervising).To(BeTrue())
			Expect(st.Restarts).To(BeNumerically(">=", len(errs)-1))
			Expect(st.LastExit).To(ContainSubstring("exit status 3"))

			Expect(s.Stop(ctx)).To(Succeed())
			n := ex.count()
			Consistently(ex.count).WithTimeout(2 * cfg.MaxBackoff).Should(Equal(n))
		})

		It("stops at once during a backoff pause", func(ctx SpecContext) {
			var ex exits
			cfg := crashLoop()
			cfg.MinBackoff = time.Hour
			cfg.OnExit = ex.record
			s := start(ctx, cfg)

			Expect(syscall.Kill(s.Status().Pid, syscall.SIGKILL)).To(Succeed())
			Eventually(ex.count).Should(Equal(1))
			Expect(s.Status()).To(And(HaveField("Supervising", BeTrue()), HaveField("Running", BeFalse())))

			stopCtx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			Expect(s.Stop(stopCtx)).To(Succeed())
			Expect(s.Status().Supervising).To(BeFalse())
			Expect(s.Status().Restarts).To(BeZero())
		})
	})

	Context("with a process that never becomes ready", func() {
		var cfg supervisor.Config

		BeforeEach(func() {
			cfg = in.config()
			cfg.Path = "/bin/sleep"
			cfg.Args = []string{"600"}
			cfg.Ready = func(context.Context, int) error { return errors.New("not yet") }
			cfg.Owns = nil
		})

		It("fails to start once ReadyTimeout passes, leaving no process", func(ctx SpecContext) {
			cfg.ReadyTimeout = 200 * time.Millisecond
			s := supervisor.New(cfg)
			DeferCleanup(stop, s)

			Expect(s.Start(ctx)).To(MatchError(And(ContainSubstring("not ready within 200ms"), ContainSubstring("not yet"))))
			Expect(s.Status().Supervising).To(BeFalse())
			Expect(processesIn(in.dir)).To(BeEmpty())
			Expect(in.pidFile).NotTo(BeAnExistingFile())
		})

		It("stops at once while waiting for a replacement to become ready", func(ctx SpecContext) {
			// Ready for the first process only.
			first := 0
			cfg.Ready = func(_ context.Context, pid int) error {
				if first == 0 {
					first = pid
				}
				if pid != first {
					return errors.New("not yet")
				}
				return nil
			}
			cfg.ReadyTimeout = time.Minute
			s := start(ctx, cfg)
			Expect(syscall.Kill(s.Status().Pid, syscall.SIGKILL)).To(Succeed())
			Eventually(s.Status).Should(HaveField("Restarts", 1))
			Eventually(pidInFile).WithArguments(in.pidFile).ShouldNot(Equal(first))

			stopCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			Expect(s.Stop(stopCtx)).To(Succeed())
			Expect(processesIn(in.dir)).To(BeEmpty())
			Expect(s.Status().Supervising).To(BeFalse())
		})
	})

	// The fallback holds a thread per child in Wait: a cost accepted only
	// where pidfds are refused.
	if !fallback {
		It("costs no OS thread per idle supervisor", func(ctx SpecContext) {
			threads := func() int {
				b, err := os.ReadFile("/proc/self/status")
				Expect(err).NotTo(HaveOccurred())
				for line := range strings.SplitSeq(string(b), "\n") {
					if v, ok := strings.CutPrefix(line, "Threads:"); ok {
						n, err := strconv.Atoi(strings.TrimSpace(v))
						Expect(err).NotTo(HaveOccurred())
						return n
					}
				}
				Fail("no Threads line in /proc/self/status")
				return 0
			}
			cfg := in.config()
			cfg.Path = "/bin/sleep"
			cfg.Args = []string{"600"}
			cfg.Ready = nil
			cfg.Owns = nil
			cfg.PidFile = ""
			before := threads()
			for range 50 {
				start(ctx, cfg)
			}
			Expect(processesIn(in.dir)).To(HaveLen(50))
			Expect(threads()).To(BeNumerically("<", before+10))
		})
	}

	Context("with a process left running by an earlier supervisor", func() {
		var pid int

		BeforeEach(func(ctx SpecContext) {
			a := start(ctx, in.config())
			pid = a.Status().Pid
			a.Detach()
			Expect(a.Status().Supervising).To(BeFalse())
			Expect(gone(pid)).To(BeFalse())
			Expect(pidInFile(in.pidFile)).To(Equal(pid))
		})

		It("finds it through Find when its pid was never recorded, and adopts it", func(ctx SpecContext) {
			// An agent killed between starting the server and writing the
			// pid file leaves exactly this behind.
			Expect(os.Remove(in.pidFile)).To(Succeed())
			cfg := in.config()
			cfg.Find = func(ctx context.Context) (int, bool) {
				got, _, err := in.serverInfo(ctx)
				return got, err == nil
			}
			b := start(ctx, cfg)
			Expect(b.Status()).To(And(HaveField("Pid", pid), HaveField("Adopted", BeTrue())))
		})

		It("without Find, cannot adopt a server whose pid was never recorded", func(ctx SpecContext) {
			Expect(os.Remove(in.pidFile)).To(Succeed())
			b := supervisor.New(in.config())
			DeferCleanup(stop, b)
			Expect(b.Start(ctx)).To(MatchError(ContainSubstring("Address already in use")))
		})

		It("adopts it, and restarts it as its own child once it dies", func(ctx SpecContext) {
			var ex exits
			cfg := in.config()
			cfg.OnExit = ex.record
			b := start(ctx, cfg)
			Expect(b.Status()).To(And(HaveField("Pid", pid), HaveField("Adopted", BeTrue()), HaveField("Running", BeTrue())))

			Expect(syscall.Kill(pid, syscall.SIGKILL)).To(Succeed())

			Eventually(b.Status).WithTimeout(5 * time.Second).Should(And(
				HaveField("Running", BeTrue()),
				HaveField("Pid", Not(Or(Equal(pid), BeZero()))),
			))
			st := b.Status()
			Expect(st.Adopted).To(BeFalse())
			Expect(st.Restarts).To(Equal(1))
			Expect(st.LastExit).To(ContainSubstring("adopted process exited"))
			got, _, err := in.serverInfo(ctx)
			Expect(err).NotTo(HaveOccurred())
			Expect(got).To(Equal(st.Pid))
		})

		It("stops it gracefully", func(ctx SpecContext) {
			b := start(ctx, in.config())
			Expect(b.Status().Pid).To(Equal(pid))

			Expect(b.Stop(ctx)).To(Succeed())

			Eventually(gone).WithArguments(pid).Should(BeTrue())
			Expect(os.ReadFile(in.logFile)).To(ContainSubstring("ready to exit, bye bye"))
			Expect(in.pidFile).NotTo(BeAnExistingFile())
		})

		It("does not adopt it when Owns disowns it, and leaves it alone", func(ctx SpecContext) {
			other := newInstance()
			pidFile, err := os.ReadFile(in.pidFile)
			Expect(err).NotTo(HaveOccurred())
			Expect(os.WriteFile(other.pidFile, pidFile, 0o600)).To(Succeed())

			var asked []int
			cfg := other.config()
			owns := cfg.Owns
			cfg.Owns = func(ctx context.Context, pid int) bool {
				asked = append(asked, pid)
				return owns(ctx, pid)
			}
			b := start(ctx, cfg)

			Expect(asked).To(Equal([]int{pid}))
			Expect(b.Status()).To(And(HaveField("Pid", Not(Equal(pid))), HaveField("Adopted", BeFalse())))
			Expect(gone(pid)).To(BeFalse())
			Expect(in.client.Ping(ctx).Err()).To(Succeed())
			Expect(other.client.Ping(ctx).Err()).To(Succeed())
		})
	})

	It("does not adopt a recorded pid that runs another program", func(ctx SpecContext) {
		Expect(os.WriteFile(in.pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600)).To(Succeed())
		cfg := in.config()
		cfg.Owns = func(context.Context, int) bool {
			defer GinkgoRecover()
			Fail("Owns must not be asked about a process running another binary")
			return false
		}
		s := start(ctx, cfg)
		Expect(s.Status().Pid).NotTo(Equal(os.Getpid()))
		Expect(s.Status().Adopted).To(BeFalse())
	})
}

var _ = Describe("Backoff", func() {
	It("doubles per failure from the minimum up to the maximum", func() {
		lo, hi := 100*time.Millisecond, time.Second
		Expect([]time.Duration{
			supervisor.Backoff(0, lo, hi),
			supervisor.Backoff(1, lo, hi),
			supervisor.Backoff(3, lo, hi),
			supervisor.Backoff(4, lo, hi),
			supervisor.Backoff(1000, lo, hi),
		}).To(Equal([]time.Duration{lo, 200 * time.Millisecond, 800 * time.Millisecond, hi, hi}))
	})
})

var _ = Describe("the pause between readiness checks", func() {
	It("is 1ms for the first 30ms of a start, then grows by a quarter per check up to 20ms", func() {
		ms := time.Millisecond
		Expect(supervisor.ReadyPause(0, 1*ms)).To(Equal(1 * ms))
		Expect(supervisor.ReadyPause(29*ms, 1*ms)).To(Equal(1 * ms))
		Expect(supervisor.ReadyPause(30*ms, 1*ms)).To(Equal(1*ms + 250*time.Microsecond))
		Expect(supervisor.ReadyPause(40*ms, 8*ms)).To(Equal(10 * ms))
		Expect(supervisor.ReadyPause(time.Second, 18*ms)).To(Equal(20 * ms))
		Expect(supervisor.ReadyPause(time.Second, 20*ms)).To(Equal(20 * ms))
	})
})
