package bench

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cf-redis/redis-for-cf/src/internal/params"
	"github.com/cf-redis/redis-for-cf/src/internal/redisconf"
	"github.com/cf-redis/redis-for-cf/src/internal/secret"
	"github.com/cf-redis/redis-for-cf/src/testkit/redistest"
)

var (
	idleServers = flag.Int("idle.servers", 200, "idle redis-servers of each rate the idle-CPU benchmark runs at once")
	idleRuns    = flag.Int("idle.runs", 3, "runs of the idle-CPU benchmark, each measuring both rates")
)

// Windows of the idle-CPU benchmark: servers settle after their start, then
// their CPU time is read across the window.
const (
	idleSettle = 3 * time.Second
	idleWindow = 10 * time.Second
)

// BenchmarkIdleCPU measures what idle redis-servers cost in CPU at Redis's
// default hz (redisconf.DefaultHz, what every instance ran before) and at
// shared VMs' (redisconf.SharedHz), in the same run: -idle.servers servers
// started from the redis.conf an agent renders for an 8 MB instance (AOF,
// RDB saves, limits, an ACL file), each in a cgroup like an instance's,
// left alone for idleSettle, then their CPU time (all threads, from
// /proc/PID/task/*/schedstat) read across idleWindow. -idle.runs runs,
// alternating which rate goes first. Metrics: cores (1 = one core busy)
// of all servers together at each rate, per server in microseconds of
// CPU per second, and x-default, the ratio of medians.
func BenchmarkIdleCPU(b *testing.B) {
	cores := map[int][]float64{}
	for range b.N {
		for run := range *idleRuns {
			order := []int{redisconf.DefaultHz, redisconf.SharedHz}
			if run%2 == 1 {
				order[0], order[1] = order[1], order[0]
			}
			for _, hz := range order {
				c, err := idleCores(b, *idleServers, hz)
				if err != nil {
					b.Fatal(err)
				}
				cores[hz] = append(cores[hz], c)
			}
		}
	}
	def, shared := summarize(cores[redisconf.DefaultHz]), summarize(cores[redisconf.SharedHz])
	report(b, "shared-cores", cores[redisconf.SharedHz])
	b.ReportMetric(def.p50, "default-cores-p50")
	b.ReportMetric(def.min, "default-cores-min")
	b.ReportMetric(def.max, "default-cores-max")
	b.ReportMetric(shared.p50/def.p50, "x-default")
	b.ReportMetric(shared.p50/float64(*idleServers)*1e6, "shared-us/s-per-server")
	b.ReportMetric(def.p50/float64(*idleServers)*1e6, "default-us/s-per-server")
	b.ReportMetric(float64(*idleServers), "servers")
	b.ReportMetric(float64(redisconf.SharedHz), "shared-hz")
	b.ReportMetric(float64(len(cores[redisconf.SharedHz])), "samples")
}

// idleCores starts n idle servers at hz, and returns the CPU they use
// together, in cores, across idleWindow after idleSettle.
func idleCores(b *testing.B, n, hz int) (float64, error) {
	server, err := redisServerPath()
	if err != nil {
		return 0, err
	}
	parent, err := os.MkdirTemp(b.TempDir(), fmt.Sprintf("idle-hz%d-", hz))
	if err != nil {
		return 0, err
	}
	var cmds []*exec.Cmd
	var exits []<-chan struct{}
	defer func() {
		for i, c := range cmds {
			_ = c.Process.Kill()
			<-exits[i]
		}
	}()
	var pids []int
	for i := range n {
		dir := filepath.Join(parent, strconv.Itoa(i))
		if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
			return 0, err
		}
		cmd, exited, err := startIdle(server, dir, hz)
		if err != nil {
			return 0, err
		}
		cmds, exits = append(cmds, cmd), append(exits, exited)
		pids = append(pids, cmd.Process.Pid)
	}
	if err := likeAnInstance(b, parent, 8<<20, pids...); err != nil {
		return 0, err
	}
	time.Sleep(idleSettle)
	before, err := cpuNanos(pids)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	time.Sleep(idleWindow)
	after, err := cpuNanos(pids)
	if err != nil {
		return 0, err
	}
	return float64(after-before) / float64(time.Since(start)), nil
}

// startIdle starts a redis-server from the redis.conf an agent renders for
// an 8 MB instance at hz, in dir, and waits until it listens. A port taken
// between picking and binding it (other work on the machine) is picked
// again.
func startIdle(server, dir string, hz int) (*exec.Cmd, <-chan struct{}, error) {
	acl := filepath.Join(dir, "users.acl")
	if err := redisconf.WriteACLFile(acl, []redisconf.User{{Name: "admin", PasswordHash: secret.Hash(secret.New()), Admin: true}}); err != nil {
		return nil, nil, err
	}
	var last error
	for range 5 {
		port, err := redistest.FreePort()
		if err != nil {
			return nil, nil, err
		}
		conf := filepath.Join(dir, "redis.conf")
		if err := redisconf.WriteFile(conf, redisconf.Config{
			InstanceID: "idle", Bind: "127.0.0.1", Port: port, Dir: filepath.Join(dir, "data"), ACLFile: acl,
			MaxMemoryBytes: 8 << 20, Params: params.Defaults(), Hz: hz,
		}); err != nil {
			return nil, nil, err
		}
		logf, err := os.Create(filepath.Join(dir, "redis.log"))
		if err != nil {
			return nil, nil, err
		}
		cmd := exec.Command(server, conf)
		cmd.Dir = dir
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		err = cmd.Start()
		logf.Close()
		if err != nil {
			return nil, nil, err
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		if last = waitListening(net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), exited); last == nil {
			return cmd, exited, nil
		}
		_ = cmd.Process.Kill()
		<-exited
		log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
		last = fmt.Errorf("%w; its log: %s", last, log)
		if !strings.Contains(string(log), "Address already in use") {
			break
		}
	}
	return nil, nil, last
}

// waitListening waits until addr accepts connections, or the server exited.
func waitListening(addr string, exited <-chan struct{}) error {
	deadline := time.Now().Add(readyTimeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			return c.Close()
		}
		select {
		case <-exited:
			return fmt.Errorf("redis-server for %s exited", addr)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s after %v: %w", addr, readyTimeout, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// cpuNanos is the CPU time of every thread of pids together, in ns
// (the first field of /proc/PID/task/TID/schedstat).
func cpuNanos(pids []int) (int64, error) {
	var sum int64
	for _, pid := range pids {
		tasks, err := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", "schedstat"))
		if err != nil || len(tasks) == 0 {
			return 0, errors.Join(fmt.Errorf("process %d is gone", pid), err)
		}
		for _, t := range tasks {
			data, err := os.ReadFile(t)
			if err != nil {
				continue // a thread that ended
			}
			f := strings.Fields(string(data))
			if len(f) == 0 {
				continue
			}
			ns, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, err
			}
			sum += ns
		}
	}
	return sum, nil
}
