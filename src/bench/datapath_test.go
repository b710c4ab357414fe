package bench

import (
	"context"
	"encoding/csv"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

var (
	dataRuns     = flag.Int("data.runs", 5, "redis-benchmark runs against each server in the data-path benchmark")
	dataRequests = flag.Int("data.requests", 200000, "requests per redis-benchmark run")
)

// BenchmarkDataPath is what a tenant's commands cost through a binding
// (an ACL user with its denied commands, the client limits the plan sets,
// AOF everysec) against a bare redis-server with the same persistence and
// no users or limits, measured in the same run: redis-benchmark SET and
// GET with 50 clients, one command at a time and 16 pipelined, runs
// alternating between the two servers. Metrics are requests per second;
// x-bare is the ratio of medians (goal: at least 0.97).
func BenchmarkDataPath(b *testing.B) {
	bench, err := exec.LookPath(filepath.Join(filepath.Dir(redisServerPath()), "redis-benchmark"))
	if err != nil {
		if bench, err = exec.LookPath("redis-benchmark"); err != nil {
			b.Fatal("redis-benchmark is needed: ", err)
		}
	}
	_, c := startSystem(b, systemtest.Options{MaxMemoryMB: 256})
	ctx := context.Background()
	t, _, err := provisionBindPing(ctx, c)
	if err != nil {
		b.Fatal(err)
	}
	u, err := url.Parse(t.uri)
	if err != nil {
		b.Fatal(err)
	}
	pw, _ := u.User.Password()
	bare, _, err := startBare(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer bare.stop()
	// The same persistence as an instance, so the ratio is that of the
	// users and limits alone.
	if err := exec.Command(filepath.Join(filepath.Dir(bench), "redis-cli"), "-u", "redis://"+bare.addr,
		"CONFIG", "SET", "appendonly", "yes", "appendfsync", "everysec").Run(); err != nil {
		b.Fatal("turning AOF on for the bare server: ", err)
	}
	host, port, _ := net.SplitHostPort(bare.addr)
	type target struct {
		name string
		args []string
	}
	targets := []target{
		{"bare", []string{"-h", host, "-p", port}},
		{"binding", []string{"-h", u.Hostname(), "-p", u.Port(), "--user", u.User.Username(), "-a", pw}},
	}
	rps := map[string][]float64{}
	for range b.N {
		for range *dataRuns {
			for _, pipeline := range []int{1, 16} {
				for _, tg := range targets {
					args := append([]string{"-t", "set,get", "-n", strconv.Itoa(*dataRequests), "-c", "50",
						"-P", strconv.Itoa(pipeline), "-r", "100000", "-d", "64", "--csv"}, tg.args...)
					// redis-benchmark takes a password only on its command line
					// (-a): this is a throwaway binding on a test machine.
					out, err := exec.Command(bench, args...).Output()
					if err != nil {
						b.Fatalf("redis-benchmark against the %s server: %v", tg.name, err)
					}
					rows, err := csv.NewReader(strings.NewReader(string(out))).ReadAll()
					if err != nil {
						b.Fatalf("reading redis-benchmark's CSV: %v", err)
					}
					for _, row := range rows[1:] {
						v, err := strconv.ParseFloat(row[1], 64)
						if err != nil {
							b.Fatalf("redis-benchmark row %v: %v", row, err)
						}
						key := fmt.Sprintf("%s-%s-P%d", tg.name, strings.ToLower(row[0]), pipeline)
						rps[key] = append(rps[key], v)
					}
				}
			}
		}
	}
	for _, test := range []string{"set", "get"} {
		for _, p := range []int{1, 16} {
			bareS := summarize(rps[fmt.Sprintf("bare-%s-P%d", test, p)])
			inst := summarize(rps[fmt.Sprintf("binding-%s-P%d", test, p)])
			name := fmt.Sprintf("%s-P%d", test, p)
			b.ReportMetric(bareS.p50, name+"-bare-rps")
			b.ReportMetric(inst.p50, name+"-rps")
			b.ReportMetric(inst.min, name+"-rps-min")
			b.ReportMetric(inst.max, name+"-rps-max")
			b.ReportMetric(inst.p50/bareS.p50, name+"-x-bare")
		}
	}
	b.ReportMetric(float64(*dataRuns), "samples")
}
