package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

var (
	scalePorts      = flag.String("scale.ports", "", "port range MIN-MAX of the scale benchmark's agent; empty means the product default")
	scaleInstanceMB = flag.Int64("scale.instance-mb", 8, "maxmemory of each instance the scale benchmark provisions (the plan's), in MB")
	scaleBudgetMB   = flag.Int64("scale.budget-mb", 0, "the scale benchmark's agent memory budget in MB; 0 means instances x instance-mb, enough for all of them")
)

// cpuWindow is how long the scale benchmark watches idle instances' CPU use.
const cpuWindow = 5 * time.Second

// BenchmarkScale provisions and binds -scale.instances instances on one agent
// (-scale.workers at a time), then checks that every one answers PING with
// its own binding's credentials and refuses the next instance's, and reads
// what they all cost: the agent's RSS, the redis-servers' RSS summed, the
// machine's available memory, and the CPU they use while idle. It takes
// minutes, so it runs only when -bench names it (-bench Scale). A failed
// provision is counted in errors, explained in the log, and left out.
func BenchmarkScale(b *testing.B) {
	if f := flag.Lookup("test.bench"); f == nil || !strings.Contains(f.Value.String(), "Scale") {
		b.Skip("opt-in: run with -bench Scale (scripts/bench --scale)")
	}
	for range b.N {
		scaleOnce(b, *scaleN, *scaleWorkers)
	}
}

func scaleOnce(b *testing.B, n, workers int) {
	ctx := context.Background()
	// The budget is a number the agent hands out, not memory it takes: idle
	// instances hold a few MB each whatever their maxmemory.
	budget := *scaleBudgetMB
	if budget == 0 {
		budget = int64(n) * *scaleInstanceMB
	}
	opts := systemtest.Options{MaxInstances: n + 100, MaxMemoryMB: *scaleInstanceMB, AgentMemoryMB: budget}
	if *scalePorts != "" {
		lo, hi, _ := strings.Cut(*scalePorts, "-")
		var err1, err2 error
		opts.PortRange.Min, err1 = strconv.Atoi(lo)
		opts.PortRange.Max, err2 = strconv.Atoi(hi)
		if err1 != nil || err2 != nil {
			b.Fatalf("-scale.ports %q is not MIN-MAX", *scalePorts)
		}
		b.Logf("agent port range %d-%d", opts.PortRange.Min, opts.PortRange.Max)
	}
	sys, c := startSystem(b, opts)
	agent := sys.Agents[0].Pid()
	b.Logf("agent pid %d: soft open-files limit %s; this process's %s", agent, openFilesLimit(agent), openFilesLimit(os.Getpid()))
	warmUp(b, c)
	availBefore, err1 := meminfoKB("MemAvailable")
	agentBefore, err2 := statusKB(agent, "VmRSS")
	if err := errors.Join(err1, err2); err != nil {
		b.Fatal(err)
	}

	tenants := make([]tenant, n)
	lat := make([]float64, n)
	errs := make([]error, n)
	next := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for i := range next {
				var tm timing
				tenants[i], tm, errs[i] = provisionBindPing(ctx, c)
				lat[i] = ms(tm.total)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	took := time.Since(start)
	var ok []tenant
	var okLat []float64
	var failed failures
	for i, err := range errs {
		if err != nil {
			failed.record(b, sys, c, tenants[i], err)
			continue
		}
		ok = append(ok, tenants[i])
		okLat = append(okLat, lat[i])
	}
	requested := n
	tenants, lat, n = ok, okLat, len(ok)
	if n < 2 {
		b.Fatalf("only %d of the instances were provisioned", n)
	}

	// Every instance answers its own binding and refuses its neighbour's.
	pinged, refused := make([]bool, n), make([]bool, n)
	verr := make([]error, n)
	idx := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range idx {
				t, other := tenants[i], tenants[(i+1)%n]
				addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(t.port))
				if err := pingAs(ctx, t.uri, addr); err != nil {
					verr[i] = fmt.Errorf("instance %s refused its own binding: %w", t.instanceID, err)
					continue
				}
				pinged[i] = true
				err := pingAs(ctx, other.uri, addr)
				switch {
				case err == nil:
					verr[i] = fmt.Errorf("instance %s answered the binding of %s", t.instanceID, other.instanceID)
				case strings.Contains(err.Error(), "WRONGPASS"):
					refused[i] = true
				default:
					verr[i] = fmt.Errorf("instance %s, neighbour's binding: %w", t.instanceID, err)
				}
			}
		})
	}
	for i := range n {
		idx <- i
	}
	close(idx)
	wg.Wait()

	time.Sleep(settle)
	var pids []int
	var redisRSS, redisAnon int64
	for _, t := range tenants {
		pid, err := instancePid(sys, 0, t.instanceID)
		if err != nil {
			b.Fatal(err)
		}
		rss, err1 := statusKB(pid, "VmRSS")
		anon, err2 := statusKB(pid, "RssAnon")
		if err := errors.Join(err1, err2); err != nil {
			b.Fatal(err)
		}
		pids = append(pids, pid)
		redisRSS += rss
		redisAnon += anon
	}
	agentAfter, err1 := statusKB(agent, "VmRSS")
	availAfter, err2 := meminfoKB("MemAvailable")
	freeAfter, err3 := meminfoKB("MemFree")
	if err := errors.Join(err1, err2, err3); err != nil {
		b.Fatal(err)
	}
	redisCPU, agentCPU := idleCPU(b, pids, agent)
	fds := countFDs(agent)

	stopStart := time.Now()
	sys.Stop()
	stopTook := time.Since(stopStart)
	systemtest.KillStrays(sys.Dir)

	count := func(xs []bool) (k int) {
		for _, x := range xs {
			if x {
				k++
			}
		}
		return k
	}
	// Counted in own-pong and other-refused; the first few explained.
	logged := 0
	for _, err := range verr {
		if err != nil && logged < maxExplained {
			b.Log(err)
			logged++
		}
	}
	first, last := lat[:min(50, n)], lat[max(0, n-50):]
	s := report(b, "ms", lat)
	b.ReportMetric(float64(n), "instances")
	b.ReportMetric(float64(failed.n), "errors")
	b.ReportMetric(float64(requested), "requested")
	b.ReportMetric(float64(opts.MaxMemoryMB), "instance-MB")
	b.ReportMetric(float64(opts.AgentMemoryMB), "budget-MB")
	b.ReportMetric(took.Seconds(), "s-total")
	b.ReportMetric(summarize(first).p50, "first50-ms-p50")
	b.ReportMetric(summarize(last).p50, "last50-ms-p50")
	b.ReportMetric(float64(count(pinged)), "own-pong")
	b.ReportMetric(float64(count(refused)), "other-refused")
	b.ReportMetric(float64(agentAfter)/1024, "agent-MB")
	b.ReportMetric(float64(agentAfter-agentBefore)/float64(n), "agent-KB/instance")
	b.ReportMetric(float64(redisRSS)/1024, "redis-rss-MB")
	b.ReportMetric(float64(redisAnon)/1024, "redis-anon-MB")
	b.ReportMetric(float64(availBefore-availAfter)/1024, "avail-drop-MB")
	b.ReportMetric(float64(availAfter)/1024, "avail-MB")
	b.ReportMetric(float64(freeAfter)/1024, "free-MB")
	b.ReportMetric(redisCPU, "idle-redis-cpu-%")
	b.ReportMetric(agentCPU, "idle-agent-cpu-%")
	b.ReportMetric(float64(fds), "agent-fds")
	b.ReportMetric(stopTook.Seconds(), "s-stop")
	b.Logf("%d instances (and %d failed) in %.1fs (%d in flight): per request p50 %.0f ms, p90 %.0f ms, max %.0f ms; first 50 p50 %.0f ms, last 50 p50 %.0f ms",
		n, failed.n, took.Seconds(), workers, s.p50, s.p90, s.max, summarize(first).p50, summarize(last).p50)
}

// idleCPU returns the CPU the redis-servers together and the agent used over
// cpuWindow, in percent of one core.
func idleCPU(b *testing.B, pids []int, agent int) (redisPct, agentPct float64) {
	b.Helper()
	sum := func() (r, a int64) {
		for _, pid := range pids {
			t, err := cpuTicks(pid)
			if err != nil {
				b.Fatal(err)
			}
			r += t
		}
		a, err := cpuTicks(agent)
		if err != nil {
			b.Fatal(err)
		}
		return r, a
	}
	r0, a0 := sum()
	time.Sleep(cpuWindow)
	r1, a1 := sum()
	hz := clockTicks()
	pct := func(d int64) float64 { return float64(d) / hz / cpuWindow.Seconds() * 100 }
	return pct(r1 - r0), pct(a1 - a0)
}

// clockTicks is USER_HZ, the unit of /proc/pid/stat's CPU times.
func clockTicks() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if v, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64); err == nil && v > 0 {
			return v
		}
	}
	return 100
}
