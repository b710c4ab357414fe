package bench

import (
	"context"
	"encoding/csv"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/cf-redis/redis-for-cf/src/internal/cgroup"
	"github.com/cf-redis/redis-for-cf/src/internal/params"
	"github.com/cf-redis/redis-for-cf/src/internal/redisconf"
	"github.com/cf-redis/redis-for-cf/src/testkit/redistest"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

var (
	dataRuns     = flag.Int("data.runs", 5, "redis-benchmark runs against each server in the data-path benchmark")
	dataRequests = flag.Int("data.requests", 200000, "requests per redis-benchmark run")
)

// BenchmarkDataPath is what a tenant's commands cost through a binding
// (an ACL user with its denied commands, the client limits the plan sets,
// AOF everysec, hz 1) against a bare redis-server with the same persistence
// and no users or limits, measured in the same run: redis-benchmark SET and
// GET with 50 clients, one command at a time and 16 pipelined, over plain
// TCP and over TLS (the binding's tls_port and tls_ca; the bare server with
// a certificate of the same CA), each run alternating the order of the
// servers. Metrics are requests per second; x-bare is the ratio of medians
// (goal: at least 0.97), x-bare-paired the median of the runs' own ratios
// (binding / bare of one run's servers, back to back), and x-bare-min and
// -max the lowest and highest of those.
//
// A third server, bare-mem, is the bare server plus the memory limits every
// instance has, as redisconf renders them (maxmemory, its policy and
// maxmemory-clients): Redis 7.0 charges for those on every command (with
// maxmemory it checks the memory in use before each command; with
// maxmemory-clients it recomputes the client's memory and its eviction
// bucket after each), which no instance can go without. x-bare-mem (ratio
// of medians) and x-bare-mem-paired compare the binding with it: what the
// product adds on top of Redis's own price for the limits; mem-x-bare
// (paired) is that price, bare-mem against bare.
//
// cpu-ns and bare-cpu-ns are the binding's and the bare server's own CPU
// time per request (all their threads, /proc schedstat), and cpu-x-bare
// and mem-cpu-x-bare the medians of the runs' ratios of the binding and of
// bare-mem to bare: other work on the machine sways them less than it
// sways throughput.
func BenchmarkDataPath(b *testing.B) {
	bench, err := redistest.Program("redis-benchmark")
	if err != nil {
		b.Fatal(err)
	}
	const maxMemory = 256 << 20
	sys, c := startSystem(b, systemtest.Options{MaxMemoryMB: maxMemory >> 20, RedisTLS: true})
	ctx := context.Background()
	t, _, err := provisionBindPing(ctx, c)
	if err != nil {
		b.Fatal(err)
	}
	creds, err := c.bind(ctx, t.instanceID, t.bindingID, "bench-app")
	if err != nil {
		b.Fatal(err)
	}
	tlsPort, _ := creds["tls_port"].(float64)
	if tlsPort == 0 {
		b.Fatalf("the binding has no tls_port: %v", creds["tls_uri"])
	}
	u, err := url.Parse(t.uri)
	if err != nil {
		b.Fatal(err)
	}
	pw, _ := u.User.Password()
	instancePid, err := serverPid(ctx, t.uri)
	if err != nil {
		b.Fatal(err)
	}

	dir := b.TempDir()
	certFile, keyFile, caFile, err := sys.RedisCA.RedisFiles(dir, "127.0.0.1")
	if err != nil {
		b.Fatal(err)
	}
	// The same persistence and TLS settings as an instance, so the ratio is
	// that of the users, limits and the rest of the instance's config.
	bareConf := func(tlsPort int) []string {
		return []string{"appendonly yes", "appendfsync everysec",
			"tls-port " + strconv.Itoa(tlsPort), "tls-cert-file " + certFile, "tls-key-file " + keyFile,
			"tls-ca-cert-file " + caFile, "tls-auth-clients no", "tls-protocols \"TLSv1.2 TLSv1.3\""}
	}
	bareTLSPort, err := redistest.FreePort()
	if err != nil {
		b.Fatal(err)
	}
	bare, _, err := startBare(dir, bareConf(bareTLSPort)...)
	if err != nil {
		b.Fatal(err)
	}
	defer bare.stop()
	memTLSPort, err := redistest.FreePort()
	if err != nil {
		b.Fatal(err)
	}
	bareMem, _, err := startBare(dir, append(bareConf(memTLSPort), memoryLimits(b, maxMemory)...)...)
	if err != nil {
		b.Fatal(err)
	}
	defer bareMem.stop()
	// In a cgroup like an instance's, beside the agent's: on a machine
	// with other work, a server alone in the root cgroup would get more CPU
	// than one in the agent's subtree, whose servers share one weight.
	if err := likeAnInstance(b, dir, maxMemory, bare.pid(), bareMem.pid()); err != nil {
		b.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(bare.addr)
	memHost, memPort, _ := net.SplitHostPort(bareMem.addr)
	auth := []string{"--user", u.User.Username(), "-a", pw}
	type target struct {
		name string
		pid  int
		args []string
	}
	transports := []struct {
		name    string
		targets [3]target
	}{
		{"plain", [3]target{
			{"bare", bare.pid(), []string{"-h", host, "-p", port}},
			{"bare-mem", bareMem.pid(), []string{"-h", memHost, "-p", memPort}},
			{"binding", instancePid, append([]string{"-h", u.Hostname(), "-p", u.Port()}, auth...)},
		}},
		{"tls", [3]target{
			{"bare", bare.pid(), []string{"-h", host, "-p", strconv.Itoa(bareTLSPort), "--tls", "--cacert", caFile}},
			{"bare-mem", bareMem.pid(), []string{"-h", memHost, "-p", strconv.Itoa(memTLSPort), "--tls", "--cacert", caFile}},
			{"binding", instancePid, append([]string{"-h", u.Hostname(), "-p", strconv.Itoa(int(tlsPort)), "--tls", "--cacert", sys.RedisCAFile}, auth...)},
		}},
	}
	// Every order of the three servers in turn, so that each runs first,
	// second and last equally often over six runs; the first two orders
	// are the bare server first and the binding first.
	orders := [][3]int{{0, 1, 2}, {2, 1, 0}, {1, 2, 0}, {0, 2, 1}, {2, 0, 1}, {1, 0, 2}}
	rps := map[string][]float64{}
	ratios := map[string][]float64{}
	memRatios := map[string][]float64{}
	memPrice := map[string][]float64{}
	// The servers' own CPU time per request (ns), and its ratios: less
	// swayed than throughput by what else the machine runs, as a server
	// that waits for the CPU uses none meanwhile.
	cpuNs := map[string][]float64{}
	cpuRatios := map[string][]float64{}
	memCPU := map[string][]float64{}
	for range b.N {
		for run := range *dataRuns {
			for _, pipeline := range []int{1, 16} {
				for _, tr := range transports {
					got := map[string]map[string]float64{}
					cpu := map[string]map[string]float64{}
					for _, i := range orders[run%len(orders)] {
						tg := tr.targets[i]
						got[tg.name], cpu[tg.name] = map[string]float64{}, map[string]float64{}
						for _, test := range []string{"set", "get"} {
							before, err := cpuNanos([]int{tg.pid})
							if err != nil {
								b.Fatalf("the %s server's CPU time: %v", tg.name, err)
							}
							args := append([]string{"-t", test, "-n", strconv.Itoa(*dataRequests), "-c", "50",
								"-P", strconv.Itoa(pipeline), "-r", "100000", "-d", "64", "--csv"}, tg.args...)
							// redis-benchmark takes a password only on its command line
							// (-a): this is a throwaway binding on a test machine.
							out, err := exec.Command(bench, args...).Output()
							if err != nil {
								b.Fatalf("redis-benchmark %s against the %s server (%s): %v", test, tg.name, tr.name, err)
							}
							after, err := cpuNanos([]int{tg.pid})
							if err != nil {
								b.Fatalf("the %s server's CPU time: %v", tg.name, err)
							}
							rows, err := csv.NewReader(strings.NewReader(string(out))).ReadAll()
							if err != nil || len(rows) != 2 || len(rows[1]) < 2 || !strings.EqualFold(rows[1][0], test) {
								b.Fatalf("reading redis-benchmark's CSV %q: %v", out, err)
							}
							v, err := strconv.ParseFloat(rows[1][1], 64)
							if err != nil {
								b.Fatalf("redis-benchmark row %v: %v", rows[1], err)
							}
							got[tg.name][test] = v
							cpu[tg.name][test] = float64(after-before) / float64(*dataRequests)
							key := dataKey(tr.name, test, pipeline)
							rps[tg.name+"-"+key] = append(rps[tg.name+"-"+key], v)
							cpuNs[tg.name+"-"+key] = append(cpuNs[tg.name+"-"+key], cpu[tg.name][test])
						}
					}
					for test, v := range got["binding"] {
						k := dataKey(tr.name, test, pipeline)
						ratios[k] = append(ratios[k], v/got["bare"][test])
						memRatios[k] = append(memRatios[k], v/got["bare-mem"][test])
						memPrice[k] = append(memPrice[k], got["bare-mem"][test]/got["bare"][test])
						cpuRatios[k] = append(cpuRatios[k], cpu["binding"][test]/cpu["bare"][test])
						memCPU[k] = append(memCPU[k], cpu["bare-mem"][test]/cpu["bare"][test])
					}
				}
			}
		}
	}
	for _, tr := range transports {
		for _, test := range []string{"set", "get"} {
			for _, p := range []int{1, 16} {
				name := dataKey(tr.name, test, p)
				bareS := summarize(rps["bare-"+name])
				inst := summarize(rps["binding-"+name])
				r := summarize(ratios[name])
				b.ReportMetric(bareS.p50, name+"-bare-rps")
				b.ReportMetric(inst.p50, name+"-rps")
				b.ReportMetric(inst.min, name+"-rps-min")
				b.ReportMetric(inst.max, name+"-rps-max")
				b.ReportMetric(inst.p50/bareS.p50, name+"-x-bare")
				// The median of each run's own ratio: the servers of a run
				// ran one after the other, so load that drifts over the
				// benchmark cancels out of it, where it does not out of
				// the ratio of medians.
				b.ReportMetric(r.p50, name+"-x-bare-paired")
				b.ReportMetric(r.min, name+"-x-bare-min")
				b.ReportMetric(r.max, name+"-x-bare-max")
				memS := summarize(rps["bare-mem-"+name])
				b.ReportMetric(memS.p50, name+"-bare-mem-rps")
				b.ReportMetric(inst.p50/memS.p50, name+"-x-bare-mem")
				b.ReportMetric(summarize(memRatios[name]).p50, name+"-x-bare-mem-paired")
				b.ReportMetric(summarize(memPrice[name]).p50, name+"-mem-x-bare")
				b.ReportMetric(summarize(cpuNs["bare-"+name]).p50, name+"-bare-cpu-ns")
				b.ReportMetric(summarize(cpuNs["binding-"+name]).p50, name+"-cpu-ns")
				b.ReportMetric(summarize(cpuRatios[name]).p50, name+"-cpu-x-bare")
				b.ReportMetric(summarize(memCPU[name]).p50, name+"-mem-cpu-x-bare")
			}
		}
	}
	b.ReportMetric(float64(*dataRuns), "samples")
}

// dataKey names one data-path measurement in the metrics: set-P1, get-P16
// over plain TCP, tls-set-P1 and the like over TLS.
func dataKey(transport, test string, pipeline int) string {
	k := fmt.Sprintf("%s-P%d", test, pipeline)
	if transport != "plain" {
		k = transport + "-" + k
	}
	return k
}

// serverPid is the process id of the redis-server at uri, as its INFO
// server section reports it.
func serverPid(ctx context.Context, uri string) (int, error) {
	v, err := infoField(ctx, uri, "server", "process_id")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(v)
}

// memoryLimits are the redis.conf lines of an instance's memory limits, as
// redisconf renders them for an instance of maxMemory bytes: maxmemory, its
// (default) policy and maxmemory-clients. It fails b if redisconf no
// longer renders all three.
func memoryLimits(b *testing.B, maxMemory int64) []string {
	var lines []string
	c := redisconf.Config{MaxMemoryBytes: maxMemory, Params: params.Defaults()}
	for _, d := range c.Settings() {
		switch d.Name {
		case "maxmemory", "maxmemory-policy", "maxmemory-clients":
			lines = append(lines, d.Name+" "+d.Value)
		}
	}
	if len(lines) != 3 {
		b.Fatalf("an instance's memory limits: redisconf rendered %q", lines)
	}
	return lines
}

// likeAnInstance moves the bare servers pids into a cgroup subtree of their
// own beside the agent's (both below this process's cgroup), each server in
// a group with an instance's weight and memory ceiling, removed when b
// ends. Where cgroups cannot be used, nothing moves, as the agent's
// servers do not either.
func likeAnInstance(b *testing.B, dir string, maxMemory int64, pids ...int) error {
	tree, err := cgroup.Open(cgroup.Auto, cgroup.Name(dir), nil)
	if err != nil {
		return err
	}
	b.Cleanup(func() { _ = tree.Destroy() })
	for i, pid := range pids {
		g := tree.Group(fmt.Sprintf("bare-%d", i))
		if err := g.Create(redisconf.MemoryCeiling(maxMemory)); err != nil {
			return err
		}
		if err := g.Join(pid); err != nil {
			return err
		}
	}
	return nil
}
