package agentmetrics_test

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os/exec"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/metrics"
	"github.com/cf-redis/redis-for-cf/src/internal/params"
	"github.com/cf-redis/redis-for-cf/src/internal/sharedagent"
)

var benchInstances = flag.Int("agentmetrics.instances", 1000, "instances BenchmarkAgentMetrics gives its shared agent")

// BenchmarkAgentMetrics measures a shared agent holding
// -agentmetrics.instances real redis-servers (1 MB each), in one run:
//   - sweep_ms: one background sweep of every instance's INFO (4 workers);
//   - scrape_ms: a scrape over HTTPS with the client certificate (Go
//     client, in process), served from the last sweep;
//   - cpu_ms/scrape: the agent's CPU per scrape, with curl scraping from
//     another process: this process's CPU over the scrapes less its CPU
//     over as long idle (no background sweep runs: sweeps are explicit);
//   - cpu_ms/sweep: this process's CPU over a sweep (the agent's, plus
//     its idle background, which is small);
//   - get_ms: GET /v1/instances/{id} (INFO of that instance) through the
//     agent API, 300 of them 10 ms apart, alone and while curl scrapes
//     back to back from another process.
//
// go test -run '^$' -bench BenchmarkAgentMetrics -benchtime 1x -timeout 30m ./src/internal/agentmetrics/
func BenchmarkAgentMetrics(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	n := *benchInstances
	m := sharedAgent(b, dir, func(c *sharedagent.Config) { c.MemoryBudgetMB = int64(n) * 2 })
	start := time.Now()
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			_, _, err := m.Create(ctx, fmt.Sprintf("bench-%04d", i), agentapi.InstanceRequest{MaxMemoryBytes: 1 * mb, Parameters: params.Defaults()})
			if err != nil {
				failed.Add(1)
				b.Log(err)
			}
		})
	}
	wg.Wait()
	if failed.Load() > 0 {
		b.Fatalf("%d creates failed", failed.Load())
	}
	b.Logf("%d instances created in %s", n, time.Since(start).Round(time.Second))

	h := serve(b, m.Metrics(), 10*time.Second)
	api := httptest.NewServer(agentapi.NewHandler(m, agentapi.Credentials{Username: "u", Password: "p"}, slog.New(slog.DiscardHandler)))
	defer api.Close()
	client, err := agentapi.NewClient(agentapi.ClientConfig{URL: api.URL, Credentials: agentapi.Credentials{Username: "u", Password: "p"}})
	if err != nil {
		b.Fatal(err)
	}

	b.ResetTimer()
	var sweeps []float64
	sweepCPU := cpuTime()
	for range 5 {
		s := time.Now()
		h.collector.Sweep(ctx)
		sweeps = append(sweeps, ms(time.Since(s)))
	}
	cpuPerSweep := ms(cpuTime()-sweepCPU) / 5
	fams, err := metrics.Scrape(ctx, h.url, h.scraper)
	if err != nil {
		b.Fatal(err)
	}
	if up := fams["redis_up"]; up == nil || len(up.Metric) != n {
		b.Fatalf("redis_up has %v series, want %d", up, n)
	}
	for _, s := range fams["redis_up"].Metric {
		if s.GetGauge().GetValue() != 1 {
			b.Fatalf("an instance is down: %v", s)
		}
	}
	var scrapes []float64
	for range 30 {
		s := time.Now()
		if _, err := metrics.Scrape(ctx, h.url, h.scraper); err != nil {
			b.Fatal(err)
		}
		scrapes = append(scrapes, ms(time.Since(s)))
	}

	// CPU per scrape, the scraper in another process.
	cert := h.files
	curl := func() {
		out, err := exec.Command("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", cert[0], "--cert", cert[1], "--key", cert[2], h.url).Output()
		if err != nil || string(out) != "200" {
			b.Fatalf("curl: %s %v", out, err)
		}
	}
	const curls = 20
	cpu0, wall0 := cpuTime(), time.Now()
	for range curls {
		curl()
	}
	busy, wall := cpuTime()-cpu0, time.Since(wall0)
	cpu1 := cpuTime()
	time.Sleep(wall)
	idle := cpuTime() - cpu1
	cpuPerScrape := ms(busy-idle) / curls

	// 300 GETs 10 ms apart: a few seconds, over which many scrapes run.
	get := func(k int) []float64 {
		var out []float64
		for i := range k {
			s := time.Now()
			if _, err := client.Get(ctx, fmt.Sprintf("bench-%04d", (i*37)%n)); err != nil {
				b.Fatal(err)
			}
			out = append(out, ms(time.Since(s)))
			time.Sleep(10 * time.Millisecond)
		}
		return out
	}
	alone := get(300)
	stop := make(chan struct{})
	var during atomic.Int64
	var scrapers sync.WaitGroup
	// The scraper in another process, as a colocated prom scraper is.
	scrapers.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			curl()
			during.Add(1)
		}
	})
	withScrapes := get(300)
	close(stop)
	scrapers.Wait()
	b.StopTimer()

	sw, sc, ga, gs := summarize(sweeps), summarize(scrapes), summarize(alone), summarize(withScrapes)
	b.ReportMetric(sw.median, "sweep_ms")
	b.ReportMetric(cpuPerSweep, "cpu_ms/sweep")
	b.ReportMetric(sc.median, "scrape_ms")
	b.ReportMetric(cpuPerScrape, "cpu_ms/scrape")
	b.ReportMetric(ga.median, "get_ms")
	b.ReportMetric(gs.median, "get_during_scrapes_ms")
	b.Logf("%d instances, %d series per scrape", n, series(fams))
	b.Logf("sweep: median %.0f ms, min %.0f, max %.0f (5 sweeps); the agent's CPU per sweep %.0f ms", sw.median, sw.min, sw.max, cpuPerSweep)
	b.Logf("scrape: median %.1f ms, p90 %.1f, min %.1f, max %.1f (30 scrapes)", sc.median, sc.p90, sc.min, sc.max)
	b.Logf("agent CPU per scrape: %.1f ms (%d curl scrapes: %.0f ms CPU in %s; idle over as long: %.0f ms)", cpuPerScrape, curls, ms(busy), wall.Round(time.Millisecond), ms(idle))
	b.Logf("GET instance alone: median %.2f ms, p90 %.2f, max %.2f (300)", ga.median, ga.p90, ga.max)
	b.Logf("GET instance during back-to-back curl scrapes: median %.2f ms, p90 %.2f, max %.2f (300; %d scrapes meanwhile)", gs.median, gs.p90, gs.max, during.Load())
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

type summary struct{ median, p90, min, max float64 }

func summarize(xs []float64) summary {
	s := slices.Clone(xs)
	slices.Sort(s)
	q := func(p float64) float64 { return s[min(len(s)-1, int(p*float64(len(s))))] }
	return summary{median: q(0.5), p90: q(0.9), min: s[0], max: s[len(s)-1]}
}

func series(fams map[string]*dto.MetricFamily) int {
	n := 0
	for _, f := range fams {
		n += len(f.Metric)
	}
	return n
}
