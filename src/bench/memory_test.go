package bench

import (
	"context"
	"testing"
	"time"

	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

// idleSamples is how many redis-servers of each kind the memory benchmark
// reads the RSS of, per run.
const idleSamples = 5

// settle is how long the memory benchmark lets the agent be idle before it
// reads its RSS, so requests in flight and their goroutines are gone.
const settle = 2 * time.Second

// BenchmarkMemory measures, on -mem.runs fresh systems, the agent's RSS
// growth per instance over -mem.instances instances (provisioned, bound and
// PINGed one after the other, all left running; a failed one is counted in
// errors and not in the divisor), and the idle RSS of some of
// those instances' redis-servers beside that of bare ones started by hand.
// VmRSS counts the pages a server shares with the others (its binary and
// libraries); RssAnon only its own.
func BenchmarkMemory(b *testing.B) {
	ctx := context.Background()
	var agentPer, agentBefore, redisRSS, redisAnon, bareRSS, bareAnon []float64
	var failed failures
	for range b.N {
		for range *memRuns {
			sys, c := startSystem(b, systemtest.Options{MaxInstances: *memInstances + 10})
			warmUp(b, c)
			agent := sys.Agents[0].Pid()
			time.Sleep(settle)
			before, err := statusKB(agent, "VmRSS")
			if err != nil {
				b.Fatal(err)
			}
			var ts []tenant
			for range *memInstances {
				t, _, err := provisionBindPing(ctx, c)
				if err != nil {
					failed.record(b, sys, c, t, err)
					continue
				}
				ts = append(ts, t)
			}
			if len(ts) < idleSamples {
				b.Fatalf("only %d of %d instances were provisioned", len(ts), *memInstances)
			}
			time.Sleep(settle)
			after, err := statusKB(agent, "VmRSS")
			if err != nil {
				b.Fatal(err)
			}
			agentBefore = append(agentBefore, float64(before))
			agentPer = append(agentPer, float64(after-before)/float64(len(ts)))

			for i := range idleSamples {
				t := ts[i*len(ts)/idleSamples]
				pid, err := instancePid(sys, 0, t.instanceID)
				if err != nil {
					b.Fatal(err)
				}
				rss, err1 := statusKB(pid, "VmRSS")
				anon, err2 := statusKB(pid, "RssAnon")
				if err1 != nil || err2 != nil {
					b.Fatal(err1, err2)
				}
				redisRSS = append(redisRSS, float64(rss))
				redisAnon = append(redisAnon, float64(anon))
			}
			sys.Stop()
			systemtest.KillStrays(sys.Dir)

			parent := b.TempDir()
			var bare []*bareServer
			for range idleSamples {
				s, _, err := startBare(parent)
				if err != nil {
					b.Fatal(err)
				}
				bare = append(bare, s)
			}
			time.Sleep(settle / 2)
			for _, s := range bare {
				rss, err1 := statusKB(s.pid(), "VmRSS")
				anon, err2 := statusKB(s.pid(), "RssAnon")
				s.stop()
				if err1 != nil || err2 != nil {
					b.Fatal(err1, err2)
				}
				bareRSS = append(bareRSS, float64(rss))
				bareAnon = append(bareAnon, float64(anon))
			}
		}
	}
	report(b, "agent-KB/instance", agentPer)
	r := summarize(redisRSS)
	bs := summarize(bareRSS)
	b.ReportMetric(float64(len(agentPer)), "samples")
	b.ReportMetric(float64(failed.n), "errors")
	b.ReportMetric(summarize(agentBefore).p50, "agent-KB-before-p50")
	b.ReportMetric(r.p50, "redis-KB-p50")
	b.ReportMetric(r.min, "redis-KB-min")
	b.ReportMetric(r.max, "redis-KB-max")
	b.ReportMetric(bs.p50, "bare-KB-p50")
	b.ReportMetric(bs.min, "bare-KB-min")
	b.ReportMetric(bs.max, "bare-KB-max")
	b.ReportMetric(r.p50/bs.p50, "x-bare")
	b.ReportMetric(summarize(redisAnon).p50, "redis-anon-KB-p50")
	b.ReportMetric(summarize(bareAnon).p50, "bare-anon-KB-p50")
	b.ReportMetric(float64(len(redisRSS)), "servers")
}
