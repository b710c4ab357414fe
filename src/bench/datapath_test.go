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
// a certificate of the same CA), each run alternating between the two
// servers and which goes first. Metrics are requests per second; x-bare is
// the ratio of medians (goal: at least 0.97), x-bare-paired the median of
// the runs' own ratios (binding / bare of one run's pair, back to back), and
// x-bare-min and -max the lowest and highest of those.
func BenchmarkDataPath(b *testing.B) {
	bench, err := redistest.Program("redis-benchmark")
	if err != nil {
		b.Fatal(err)
	}
	sys, c := startSystem(b, systemtest.Options{MaxMemoryMB: 256, RedisTLS: true})
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

	dir := b.TempDir()
	certFile, keyFile, caFile, err := sys.RedisCA.RedisFiles(dir, "127.0.0.1")
	if err != nil {
		b.Fatal(err)
	}
	bareTLSPort, err := redistest.FreePort()
	if err != nil {
		b.Fatal(err)
	}
	// The same persistence and TLS settings as an instance, so the ratio is
	// that of the users, limits and the rest of the instance's config.
	bare, _, err := startBare(dir, "appendonly yes", "appendfsync everysec",
		"tls-port "+strconv.Itoa(bareTLSPort), "tls-cert-file "+certFile, "tls-key-file "+keyFile,
		"tls-ca-cert-file "+caFile, "tls-auth-clients no", "tls-protocols \"TLSv1.2 TLSv1.3\"")
	if err != nil {
		b.Fatal(err)
	}
	defer bare.stop()
	// In a cgroup like an instance's, beside the agent's: on a machine
	// with other work, a server alone in the root cgroup would get more CPU
	// than one in the agent's subtree, whose servers share one weight.
	if err := likeAnInstance(b, dir, 256<<20, bare.pid()); err != nil {
		b.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(bare.addr)
	auth := []string{"--user", u.User.Username(), "-a", pw}
	type target struct {
		name string
		args []string
	}
	transports := []struct {
		name    string
		targets [2]target
	}{
		{"plain", [2]target{
			{"bare", []string{"-h", host, "-p", port}},
			{"binding", append([]string{"-h", u.Hostname(), "-p", u.Port()}, auth...)},
		}},
		{"tls", [2]target{
			{"bare", []string{"-h", host, "-p", strconv.Itoa(bareTLSPort), "--tls", "--cacert", caFile}},
			{"binding", append([]string{"-h", u.Hostname(), "-p", strconv.Itoa(int(tlsPort)), "--tls", "--cacert", sys.RedisCAFile}, auth...)},
		}},
	}
	rps := map[string][]float64{}
	ratios := map[string][]float64{}
	for range b.N {
		for run := range *dataRuns {
			for _, pipeline := range []int{1, 16} {
				for _, tr := range transports {
					pair := map[string]map[string]float64{}
					order := tr.targets
					if run%2 == 1 {
						order[0], order[1] = order[1], order[0]
					}
					for _, tg := range order {
						args := append([]string{"-t", "set,get", "-n", strconv.Itoa(*dataRequests), "-c", "50",
							"-P", strconv.Itoa(pipeline), "-r", "100000", "-d", "64", "--csv"}, tg.args...)
						// redis-benchmark takes a password only on its command line
						// (-a): this is a throwaway binding on a test machine.
						out, err := exec.Command(bench, args...).Output()
						if err != nil {
							b.Fatalf("redis-benchmark against the %s server (%s): %v", tg.name, tr.name, err)
						}
						rows, err := csv.NewReader(strings.NewReader(string(out))).ReadAll()
						if err != nil {
							b.Fatalf("reading redis-benchmark's CSV: %v", err)
						}
						pair[tg.name] = map[string]float64{}
						for _, row := range rows[1:] {
							v, err := strconv.ParseFloat(row[1], 64)
							if err != nil {
								b.Fatalf("redis-benchmark row %v: %v", row, err)
							}
							test := strings.ToLower(row[0])
							pair[tg.name][test] = v
							key := dataKey(tr.name, test, pipeline)
							rps[tg.name+"-"+key] = append(rps[tg.name+"-"+key], v)
						}
					}
					for test, v := range pair["binding"] {
						ratios[dataKey(tr.name, test, pipeline)] = append(ratios[dataKey(tr.name, test, pipeline)], v/pair["bare"][test])
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
				// The median of each run's own pair: the two servers of a
				// pair ran back to back, so load that drifts over the
				// benchmark cancels out of it, where it does not out of
				// the ratio of medians.
				b.ReportMetric(r.p50, name+"-x-bare-paired")
				b.ReportMetric(r.min, name+"-x-bare-min")
				b.ReportMetric(r.max, name+"-x-bare-max")
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
