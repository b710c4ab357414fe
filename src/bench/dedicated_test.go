package bench

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	osb "sigs.k8s.io/go-open-service-broker-client/v2"

	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

// Sizes of the dedicated-vm benchmarks; the claim benchmark takes -runs.
var (
	resetRuns = flag.Int("reset.runs", 3, "resets of a full node the dedicated reset benchmark times")
	resetMB   = flag.Int("reset.mb", 1024, "MB of data the node holds before each timed reset")
)

// valueSize is the size of each value the reset benchmark writes: 1 MiB less
// 64 bytes, so that a value and its header fill one 1 MiB allocation of
// redis-server's jemalloc rather than spilling into the 1.25 MiB class, and
// N values are N MiB of memory.
const valueSize = 1<<20 - 64

// BenchmarkDedicatedClaim times what a tenant of the dedicated-vm plan waits
// for: the provision (a free node checked and claimed), the bind and the first
// PONG with the binding's credentials, -runs times one after the other on a
// pool of one node. Each sample alternates with the baseline, a restart of a
// bare redis-server on an empty directory (SIGTERM to the first PONG of the
// new process): x-restart is the ratio of the medians. After each sample the
// instance is unbound and deleted outside the clock (the delete waits for the
// node's reset), so every claim finds the node just reset.
func BenchmarkDedicatedClaim(b *testing.B) {
	sys, c := startSystem(b, systemtest.Options{Nodes: 1})
	ctx := context.Background()
	bare, _, err := startBare(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer bare.stop()
	claimOne := func() (tenant, timing, error) {
		return provisionBindPingPlan(ctx, c, systemtest.DedicatedPlanID)
	}
	if t, _, err := claimOne(); err != nil {
		b.Fatal(err)
	} else if _, err := removeDedicated(ctx, c, t); err != nil {
		b.Fatal(err)
	}
	var restarts, total, prov, bind, ping []float64
	var failed failures
	retries := 0
	for range b.N {
		for range *runs {
			d, err := bare.restart()
			if err != nil {
				b.Fatal(err)
			}
			restarts = append(restarts, ms(d))
			t, tm, err := claimOne()
			if err != nil {
				failed.record(b, sys, c, t, err)
				if err := waitPoolFree(ctx, c); err != nil {
					b.Fatal(err)
				}
				continue
			}
			total = append(total, ms(tm.total))
			prov = append(prov, ms(tm.provision))
			bind = append(bind, ms(tm.bind))
			ping = append(ping, ms(tm.ping))
			retries += tm.retries
			if _, err := removeDedicated(ctx, c, t); err != nil {
				b.Fatal(err)
			}
		}
	}
	s := report(b, "ms", total)
	base := report(b, "restart-ms", restarts)
	b.ReportMetric(float64(len(total)), "samples")
	b.ReportMetric(float64(failed.n), "errors")
	b.ReportMetric(s.p50/base.p50, "x-restart")
	b.ReportMetric(summarize(prov).p50, "provision-ms-p50")
	b.ReportMetric(summarize(bind).p50, "bind-ms-p50")
	b.ReportMetric(summarize(ping).p50, "ping-ms-p50")
	b.ReportMetric(float64(retries), "ping-retries")
}

// BenchmarkDedicatedReset times the reset of a node holding -reset.mb MB, as
// the delete of its instance: from the DELETE request (synchronous, so the
// broker answers once the node agent stopped redis-server, wiped its data,
// started it and verified it empty) to the answer, -reset.runs times. The
// tenant fills the node through its binding with pipelined SETs of random
// values (valueSize each, incompressible, so the AOF on disk is as large as
// the data); the clock starts once redis-server has no rewrite or snapshot in
// flight and the machine's dirty pages are written back, so neither the fill
// nor its write-back is counted. The baseline, measured in the same run on
// the same file system under the same conditions, is rm -rf of a set of 1 MiB
// files of the same total size: x-rm is the ratio of the medians. redis-server
// keeps its data in two or three large AOF files, so rm -rf of one file of
// that size is measured too (x-rm1).
func BenchmarkDedicatedReset(b *testing.B) {
	sys, c := startSystem(b, systemtest.Options{Nodes: 1, NodeMemoryMB: int64(*resetMB) * 2})
	ctx := context.Background()
	value := make([]byte, valueSize)
	if _, err := rand.Read(value); err != nil {
		b.Fatal(err)
	}
	data := filepath.Join(sys.NodeDirs[0], "data")
	var resets, rms, rmOnes, fills, dataMB []float64
	for range b.N {
		for range *resetRuns {
			d, err := rmFiles(b.TempDir(), *resetMB, value, false)
			if err != nil {
				b.Fatal(err)
			}
			rms = append(rms, ms(d))
			d, err = rmFiles(b.TempDir(), *resetMB, value, true)
			if err != nil {
				b.Fatal(err)
			}
			rmOnes = append(rmOnes, ms(d))

			t, _, err := provisionBindPingPlan(ctx, c, systemtest.DedicatedPlanID)
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			if err := fill(ctx, t.uri, *resetMB, value); err != nil {
				b.Fatal(err)
			}
			fills = append(fills, time.Since(start).Seconds())
			size, err := duMB(data)
			if err != nil {
				b.Fatal(err)
			}
			dataMB = append(dataMB, size)
			if len(dataMB) == 1 {
				b.Logf("the node's data directory before the reset: %s", listing(data))
			}
			syscall.Sync()
			d, err = removeDedicated(ctx, c, t)
			if err != nil {
				b.Fatal(err)
			}
			resets = append(resets, ms(d))
			if left, err := duMB(data); err != nil || left > 1 {
				b.Fatalf("after the reset the node's data directory holds %.1f MB (%v)", left, err)
			}
		}
	}
	// The node agent's own account of each timed reset's steps (the first
	// reset of the log is the one the node made at its start).
	steps := map[string][]float64{}
	var logged []string
	for _, line := range strings.Split(sys.Nodes[0].Log(), "\n") {
		if strings.Contains(line, "reset verified") {
			logged = append(logged, line)
		}
	}
	for _, line := range logged[max(0, len(logged)-len(resets)):] {
		b.Log(line)
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			continue
		}
		for _, k := range []string{"killed_s", "started_s", "verified_s", "removed_s", "total_s"} {
			if v, ok := rec[k].(float64); ok {
				steps[k] = append(steps[k], v*1000)
			}
		}
	}
	for _, k := range []string{"killed", "started", "verified", "removed", "total"} {
		if xs := steps[k+"_s"]; len(xs) > 0 {
			b.ReportMetric(summarize(xs).p50, "agent-"+k+"-ms-p50")
		}
	}
	s := report(b, "ms", resets)
	base := report(b, "rm-ms", rms)
	one := report(b, "rm1-ms", rmOnes)
	b.ReportMetric(float64(len(resets)), "samples")
	b.ReportMetric(s.p50/base.p50, "x-rm")
	b.ReportMetric(s.p50/one.p50, "x-rm1")
	b.ReportMetric(float64(*resetMB), "MB")
	b.ReportMetric(summarize(dataMB).p50, "data-dir-MB-p50")
	b.ReportMetric(summarize(fills).p50, "fill-s-p50")
}

// fill writes mb values through a tenant's uri in pipelines of 16, then
// waits until redis-server has written all of it to its AOF and has no
// rewrite or snapshot in flight.
func fill(ctx context.Context, uri string, mb int, value []byte) error {
	opts, err := redis.ParseURL(uri)
	if err != nil {
		return err
	}
	opts.ReadTimeout = time.Minute
	opts.WriteTimeout = time.Minute
	rc := redis.NewClient(opts)
	defer rc.Close()
	for i := 0; i < mb; i += 16 {
		_, err := rc.Pipelined(ctx, func(p redis.Pipeliner) error {
			for j := i; j < min(i+16, mb); j++ {
				p.Set(ctx, fmt.Sprintf("fill:%d", j), value, 0)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("writing value %d: %w", i, err)
		}
	}
	if n, err := rc.DBSize(ctx).Result(); err != nil || n != int64(mb) {
		return fmt.Errorf("the node holds %d keys, not %d (%v)", n, mb, err)
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		info, err := rc.InfoMap(ctx, "persistence").Result()
		if err != nil {
			return err
		}
		p := info["Persistence"]
		// With appendfsync everysec, redis-server postpones its write to the
		// AOF while a background fsync runs: wait for its buffer too.
		if p["aof_rewrite_in_progress"] == "0" && p["aof_rewrite_scheduled"] == "0" && p["rdb_bgsave_in_progress"] == "0" &&
			p["aof_buffer_length"] == "0" && p["aof_pending_bio_fsync"] == "0" {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("redis-server is still rewriting its AOF after 5 minutes")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// rmFiles writes mb copies of value into a new directory under parent, as
// that many files or (oneFile) as one, writes back every dirty page, and
// times rm -rf of the directory.
func rmFiles(parent string, mb int, value []byte, oneFile bool) (time.Duration, error) {
	dir, err := os.MkdirTemp(parent, "files-")
	if err != nil {
		return 0, err
	}
	if oneFile {
		f, err := os.Create(filepath.Join(dir, "one"))
		if err != nil {
			return 0, err
		}
		for range mb {
			if _, err := f.Write(value); err != nil {
				f.Close()
				return 0, err
			}
		}
		if err := f.Close(); err != nil {
			return 0, err
		}
	} else {
		for i := range mb {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%04d", i)), value, 0o600); err != nil {
				return 0, err
			}
		}
	}
	syscall.Sync()
	start := time.Now()
	if out, err := exec.Command("rm", "-rf", dir).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("rm -rf: %v: %s", err, out)
	}
	return time.Since(start), nil
}

// duMB sums the sizes of the files under dir, in MB.
func duMB(dir string) (float64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			n += info.Size()
		}
		return nil
	})
	return float64(n) / (1 << 20), err
}

// removeDedicated unbinds t and deletes it synchronously, as Cloud Controller
// does for a broker that answers deletes at once, and returns how long the
// delete (the node's reset) took; then it checks the node is back in the pool.
func removeDedicated(ctx context.Context, c *broker, t tenant) (time.Duration, error) {
	return removeOfPlan(ctx, c, t, systemtest.DedicatedPlanID)
}

// removeOfPlan is removeDedicated for an instance of a plan of the pool
// (dedicated-vm or dedicated-ha).
func removeOfPlan(ctx context.Context, c *broker, t tenant, planID string) (time.Duration, error) {
	_, err := c.Unbind(&osb.UnbindRequest{
		InstanceID: t.instanceID, BindingID: t.bindingID, AcceptsIncomplete: true,
		ServiceID: systemtest.ServiceID, PlanID: planID,
	})
	if err != nil {
		return 0, fmt.Errorf("unbind %s: %w", t.instanceID, err)
	}
	start := time.Now()
	resp, err := c.DeprovisionInstance(&osb.DeprovisionRequest{
		InstanceID: t.instanceID, AcceptsIncomplete: false,
		ServiceID: systemtest.ServiceID, PlanID: planID,
	})
	d := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("deprovision %s: %w", t.instanceID, err)
	}
	if resp.Async {
		return 0, fmt.Errorf("deprovision %s answered asynchronously to a synchronous request", t.instanceID)
	}
	return d, waitPoolFree(ctx, c)
}

// waitPoolFree waits until every dedicated node is free again.
func waitPoolFree(ctx context.Context, c *broker) error {
	deadline := time.Now().Add(readyTimeout)
	for {
		states, err := poolStates(ctx, c)
		if err != nil {
			return err
		}
		busy := ""
		for id, st := range states {
			if st != "free" {
				busy = id + " is " + st
			}
		}
		if busy == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the pool is not free after %v: %s", readyTimeout, busy)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// poolStates reads GET /admin/v1/pool: each node's state by id.
func poolStates(ctx context.Context, c *broker) (map[string]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url+"/admin/v1/pool", nil)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(c.username, c.password)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /admin/v1/pool: status %d", resp.StatusCode)
	}
	var out struct {
		Nodes []struct{ ID, State string } `json:"nodes"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, n := range out.Nodes {
		m[n.ID] = n.State
	}
	return m, nil
}

// listing names the files under dir with their sizes in MB.
func listing(dir string) string {
	var out []string
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				rel, _ := filepath.Rel(dir, path)
				out = append(out, fmt.Sprintf("%s %.1f MB", rel, float64(info.Size())/(1<<20)))
			}
		}
		return nil
	})
	return strings.Join(out, ", ")
}
