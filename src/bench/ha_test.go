package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/params"
	"github.com/cf-redis/redis-for-cf/src/internal/secret"
	"github.com/cf-redis/redis-for-cf/src/internal/sentinel"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

var haRuns = flag.Int("ha.runs", 10, "failovers the HA benchmark times; every second one writes with WAIT 1 0")

// haTimeout bounds every wait of the HA benchmark; a run that hits it fails
// the benchmark rather than hangs.
const haTimeout = time.Minute

// BenchmarkHAFailover times a failover of an HA group of three real node
// agents (built binaries, each with its redis-server and Sentinel on its own
// loopback address), -ha.runs times, and counts the writes it loses:
//
//   - form: claiming the three nodes for a fresh instance, joining them into a
//     group and binding an app on each, until both followers are in sync,
//     against three bare redis-server starts one after the other in the same
//     run (bare3-ms, x-bare3).
//   - failover: from kill -9 of the leader's redis-server to the first write a
//     go-redis FailoverClient, writing one key after another without pause,
//     gets acknowledged again.
//   - lost: writes the client had acknowledged that the group no longer holds
//     once the old leader is back as a follower; runs alternate between plain
//     SETs and SET followed by WAIT 1 0 (a write counts as acknowledged only
//     when WAIT said a follower has it).
func BenchmarkHAFailover(b *testing.B) {
	sys, _ := startSystem(b, systemtest.Options{Nodes: 3, HA: true})
	ctx := context.Background()
	var nodes []*agentapi.Client
	for _, cc := range sys.NodeClients {
		c, err := agentapi.NewNodeClient(cc)
		if err != nil {
			b.Fatal(err)
		}
		nodes = append(nodes, c)
	}
	var forms, bares, plain, waited []float64
	var lostPlain, lostWait, ackPlain, ackWait int
	for range b.N {
		for run := range *haRuns {
			bare := 0.0
			for _, d := range bareStarts(b, 3) {
				bare += d
			}
			bares = append(bares, bare)
			withWait := run%2 == 1
			r, err := failoverRun(ctx, sys, nodes, fmt.Sprintf("ha-bench-%d", run), withWait)
			if err != nil {
				b.Fatal(err)
			}
			forms = append(forms, ms(r.form))
			if withWait {
				waited = append(waited, ms(r.failover))
				lostWait, ackWait = lostWait+r.lost, ackWait+r.acked
			} else {
				plain = append(plain, ms(r.failover))
				lostPlain, ackPlain = lostPlain+r.lost, ackPlain+r.acked
			}
			b.Logf("run %d (WAIT %v): form %.0f ms, failover %.0f ms, %d of %d acknowledged writes lost", run, withWait, ms(r.form), ms(r.failover), r.lost, r.acked)
		}
	}
	all := append(append([]float64{}, plain...), waited...)
	s := report(b, "failover-ms", all)
	b.ReportMetric(summarize(plain).p50, "failover-plain-ms-p50")
	b.ReportMetric(summarize(waited).p50, "failover-wait-ms-p50")
	f := summarize(forms)
	b.ReportMetric(f.p50, "form-ms-p50")
	b.ReportMetric(f.min, "form-ms-min")
	b.ReportMetric(f.max, "form-ms-max")
	b.ReportMetric(summarize(bares).p50, "bare3-ms-p50")
	b.ReportMetric(f.p50/summarize(bares).p50, "x-bare3")
	b.ReportMetric(float64(lostPlain), "lost-plain")
	b.ReportMetric(float64(ackPlain), "acked-plain")
	b.ReportMetric(float64(lostWait), "lost-wait")
	b.ReportMetric(float64(ackWait), "acked-wait")
	b.ReportMetric(float64(s.n), "samples")
}

// BenchmarkHAProvision times what a tenant of the dedicated-ha plan waits
// for, through the real broker on three real node agents (each with its
// Sentinel): the provision (three nodes checked, claimed and joined into a
// group, answered once a follower is in sync and the leader takes
// writes), the bind (a user on each member, the leader asked of the
// Sentinels) and the first PONG through the binding's uri, -runs times.
// The baseline, in the same run, is three bare redis-server starts one
// after the other (bare3-ms; x-bare3 is the ratio of the medians). Each
// instance is unbound and deleted outside the clock; the delete's time,
// resetting the three nodes, is reported as delete-ms.
func BenchmarkHAProvision(b *testing.B) {
	_, c := startSystem(b, systemtest.Options{Nodes: 3, HA: true})
	ctx := context.Background()
	var total, prov, bind, bares, deletes []float64
	for range b.N {
		for range *runs {
			bare := 0.0
			for _, d := range bareStarts(b, 3) {
				bare += d
			}
			bares = append(bares, bare)
			t, tm, err := provisionBindPingPlan(ctx, c, systemtest.HAPlanID)
			if err != nil {
				b.Fatal(err)
			}
			total = append(total, ms(tm.total))
			prov = append(prov, ms(tm.provision))
			bind = append(bind, ms(tm.bind))
			d, err := removeOfPlan(ctx, c, t, systemtest.HAPlanID)
			if err != nil {
				b.Fatal(err)
			}
			deletes = append(deletes, ms(d))
		}
	}
	s := report(b, "ms", total)
	base := report(b, "bare3-ms", bares)
	b.ReportMetric(s.p50/base.p50, "x-bare3")
	b.ReportMetric(summarize(prov).p50, "provision-ms-p50")
	b.ReportMetric(summarize(bind).p50, "bind-ms-p50")
	b.ReportMetric(summarize(deletes).p50, "delete-ms-p50")
	b.ReportMetric(float64(s.n), "samples")
}

// haResult is one run of the HA benchmark.
type haResult struct {
	form, failover time.Duration
	acked, lost    int
}

// failoverRun forms a group of the three nodes for instance id, writes
// through a FailoverClient, kills the leader's redis-server, and once the
// group is whole again counts the acknowledged writes it lost; then it
// deletes the instance (resetting the nodes).
func failoverRun(ctx context.Context, sys *systemtest.System, nodes []*agentapi.Client, id string, withWait bool) (res haResult, err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*haTimeout)
	defer cancel()
	defer func() {
		for _, n := range nodes {
			if derr := n.Delete(context.WithoutCancel(ctx), id); derr != nil {
				err = errors.Join(err, derr)
			}
		}
	}()
	start := time.Now()
	g := sentinel.Group{MasterName: "redis-" + id, ReplicationPassword: secret.New(), SentinelPassword: secret.New()}
	for i := range nodes {
		g.Members = append(g.Members, sentinel.Member{Host: sys.NodeHosts[i], Port: sys.NodePorts[i], SentinelPort: sys.SentinelPorts[i]})
	}
	var sentinels []string
	for _, m := range g.Members {
		sentinels = append(sentinels, net.JoinHostPort(m.Host, strconv.Itoa(m.SentinelPort)))
	}
	pw := secret.New()
	for _, n := range nodes {
		if _, err := n.Create(ctx, id, agentapi.InstanceRequest{Parameters: params.Defaults()}); err != nil {
			return res, err
		}
	}
	for _, n := range nodes {
		if _, err := n.JoinHA(ctx, id, g); err != nil {
			return res, err
		}
		if _, err := n.Bind(ctx, id, "app", agentapi.BindingRequest{Password: pw}); err != nil {
			return res, err
		}
	}
	fc := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName: g.MasterName, SentinelAddrs: sentinels,
		SentinelUsername: "app", SentinelPassword: pw, Username: "app", Password: pw,
	})
	defer fc.Close()
	if err := inSync(ctx, fc); err != nil {
		return res, fmt.Errorf("forming the group: %w", err)
	}
	res.form = time.Since(start)

	var mu sync.Mutex
	var acked []int
	// sentAt and ackedAt are when each acknowledged write was sent and
	// acknowledged: the failover ends with the first one sent after the
	// kill (one the old leader answered just before it does not count).
	var sentAt, ackedAt []time.Time
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; wctx.Err() == nil; i++ {
			sent := time.Now()
			if err := fc.Set(wctx, "k:"+strconv.Itoa(i), i, 0).Err(); err != nil {
				continue
			}
			if withWait {
				if n, err := fc.Do(wctx, "WAIT", 1, 0).Int(); err != nil || n < 1 {
					continue
				}
			}
			mu.Lock()
			acked, sentAt, ackedAt = append(acked, i), append(sentAt, sent), append(ackedAt, time.Now())
			mu.Unlock()
		}
	}()
	time.Sleep(time.Second)
	pid, err := pidIn(filepath.Join(sys.NodeDirs[0], "redis.pid"))
	if err != nil {
		stop()
		<-done
		return res, err
	}
	killed := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		stop()
		<-done
		return res, err
	}
	for res.failover == 0 && time.Since(killed) < haTimeout {
		time.Sleep(10 * time.Millisecond)
		mu.Lock()
		for i, t := range sentAt {
			if t.After(killed) {
				res.failover = ackedAt[i].Sub(killed)
				break
			}
		}
		mu.Unlock()
	}
	time.Sleep(time.Second)
	stop()
	<-done
	if res.failover == 0 {
		return res, errors.New("no write was acknowledged within a minute of the leader's kill")
	}
	if err := inSync(ctx, fc); err != nil {
		return res, fmt.Errorf("waiting for the old leader to follow: %w", err)
	}
	res.acked = len(acked)
	for from := 0; from < len(acked); from += 1000 {
		keys := make([]string, 0, 1000)
		for _, i := range acked[from:min(from+1000, len(acked))] {
			keys = append(keys, "k:"+strconv.Itoa(i))
		}
		vals, err := fc.MGet(ctx, keys...).Result()
		if err != nil {
			return res, err
		}
		for _, v := range vals {
			if v == nil {
				res.lost++
			}
		}
	}
	return res, nil
}

// inSync waits until the leader fc reaches has two followers online.
func inSync(ctx context.Context, fc *redis.Client) error {
	deadline := time.Now().Add(haTimeout)
	var last string
	for time.Now().Before(deadline) {
		info, err := fc.Info(ctx, "replication").Result()
		if err == nil && strings.Contains(info, "role:master") && strings.Count(info, "state=online") == 2 {
			return nil
		}
		last = fmt.Sprint(info, err)
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("the leader has not two followers in sync: %s", last)
}

// pidIn reads a pid file.
func pidIn(path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(data)))
}
