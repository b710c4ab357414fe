package bench

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

// BenchmarkBareStart is the baseline: exec of redis-server with a minimal
// config, to its first PONG. Metrics are in ms.
func BenchmarkBareStart(b *testing.B) {
	var xs []float64
	for range b.N {
		xs = append(xs, bareStarts(b, *runs)...)
	}
	report(b, "ms", xs)
	b.ReportMetric(float64(len(xs)), "samples")
}

// BenchmarkProvisionSequential times provision, bind and the first PONG with
// the binding's credentials, one tenant at a time, each alternating with a
// bare start so that both see the same machine. Each instance is unbound and
// deleted after its sample, outside the clock, so every sample provisions
// onto an agent holding no other instance. Failed tenants are counted
// (errors), explained in the log and left out of the figures. The CPU the
// agent and the broker used is reported per tenant (cpuUse).
func BenchmarkProvisionSequential(b *testing.B) {
	sys, c := startSystem(b, systemtest.Options{})
	ctx := context.Background()
	warmUp(b, c)
	cpu := startCPU(b, sys)
	var bare, total, prov, bind, ping []float64
	var failed failures
	retries := 0
	for range b.N {
		for range *runs {
			bare = append(bare, bareStarts(b, 1)...)
			t, tm, err := provisionBindPing(ctx, c)
			if err != nil {
				failed.record(b, sys, c, t, err)
				continue
			}
			total = append(total, ms(tm.total))
			prov = append(prov, ms(tm.provision))
			bind = append(bind, ms(tm.bind))
			ping = append(ping, ms(tm.ping))
			retries += tm.retries
			if err := remove(c, t); err != nil {
				b.Fatal(err)
			}
		}
	}
	cpu.report(b, len(total)+failed.n)
	s := report(b, "ms", total)
	base := summarize(bare)
	b.ReportMetric(float64(len(total)), "samples")
	b.ReportMetric(float64(failed.n), "errors")
	b.ReportMetric(base.p50, "bare-ms-p50")
	b.ReportMetric(s.p50/base.p50, "x-bare")
	b.ReportMetric(summarize(prov).p50, "provision-ms-p50")
	b.ReportMetric(summarize(bind).p50, "bind-ms-p50")
	b.ReportMetric(summarize(ping).p50, "ping-ms-p50")
	b.ReportMetric(float64(retries), "ping-retries")
}

// BenchmarkProvisionConcurrent starts -batch tenants at the same moment, each
// timing its own provision, bind and first PONG, in -batches batches; the
// instances of a batch are deleted before the next one. Before each batch it
// times bare starts one at a time (the baseline of the ratio x-bare) and
// -batch bare starts at once (x-bare-at-once: what starting that many
// servers together costs on this machine anyway). The CPU the agent and the
// broker used is reported per tenant (cpuUse).
func BenchmarkProvisionConcurrent(b *testing.B) {
	sys, c := startSystem(b, systemtest.Options{})
	ctx := context.Background()
	warmUp(b, c)
	cpu := startCPU(b, sys)
	perBatch := max(1, *runs / *batches)
	var bare, bareAtOnce, total, wall []float64
	var failed failures
	retries := 0
	for range b.N {
		for range *batches {
			bare = append(bare, bareStarts(b, perBatch)...)
			bareAtOnce = append(bareAtOnce, bareStartsAtOnce(b, *batchSize)...)

			n := *batchSize
			tenants := make([]tenant, n)
			timings := make([]timing, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			gate := make(chan struct{})
			for i := range n {
				wg.Go(func() {
					<-gate
					tenants[i], timings[i], errs[i] = provisionBindPing(ctx, c)
				})
			}
			start := time.Now()
			close(gate)
			wg.Wait()
			wall = append(wall, ms(time.Since(start)))
			var made []tenant
			for i, t := range tenants {
				if errs[i] != nil {
					failed.record(b, sys, c, t, errs[i])
					continue
				}
				made = append(made, t)
				total = append(total, ms(timings[i].total))
				retries += timings[i].retries
			}
			if err := removeAll(c, made); err != nil {
				b.Fatal(err)
			}
		}
	}
	cpu.report(b, len(total)+failed.n)
	s := report(b, "ms", total)
	base := summarize(bare)
	atOnce := summarize(bareAtOnce)
	b.ReportMetric(float64(len(total)), "samples")
	b.ReportMetric(float64(failed.n), "errors")
	b.ReportMetric(base.p50, "bare-ms-p50")
	b.ReportMetric(s.p50/base.p50, "x-bare")
	b.ReportMetric(atOnce.p50, "bare-at-once-ms-p50")
	b.ReportMetric(s.p50/atOnce.p50, "x-bare-at-once")
	b.ReportMetric(summarize(wall).p50, "batch-ms-p50")
	b.ReportMetric(float64(retries), "ping-retries")
}

// cpuUse is the CPU time the agent and the broker used from startCPU on: a
// figure of the work each provision costs them that, unlike latency, the
// other work on a shared machine hardly skews.
type cpuUse struct {
	agent, broker     int
	agentAt, brokerAt int64
}

func startCPU(b *testing.B, sys *systemtest.System) cpuUse {
	b.Helper()
	u := cpuUse{agent: sys.Agents[0].Pid(), broker: sys.Broker.Pid()}
	var err1, err2 error
	u.agentAt, err1 = cpuTicks(u.agent)
	u.brokerAt, err2 = cpuTicks(u.broker)
	if err := errors.Join(err1, err2); err != nil {
		b.Fatal(err)
	}
	return u
}

// report puts the CPU ms used per tenant (provision, bind, PING, unbind and
// delete, failed ones included) into the benchmark's output: agent-cpu-ms
// and broker-cpu-ms.
func (u cpuUse) report(b *testing.B, tenants int) {
	b.Helper()
	a, err1 := cpuTicks(u.agent)
	br, err2 := cpuTicks(u.broker)
	if err := errors.Join(err1, err2); err != nil {
		b.Fatal(err)
	}
	perTenant := func(ticks int64) float64 { return float64(ticks) / clockTicks() * 1000 / float64(max(1, tenants)) }
	b.ReportMetric(perTenant(a-u.agentAt), "agent-cpu-ms")
	b.ReportMetric(perTenant(br-u.brokerAt), "broker-cpu-ms")
}

// warmUp provisions and deletes one tenant, so the first sample does not pay
// for the broker's and agent's first connections and page faults.
func warmUp(b *testing.B, c *broker) {
	b.Helper()
	t, _, err := provisionBindPing(context.Background(), c)
	if err != nil {
		b.Fatal(err)
	}
	if err := remove(c, t); err != nil {
		b.Fatal(err)
	}
}
