package broker

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/metrics"
)

// BenchmarkGather measures what a scrape of the broker costs it: the
// gauges computed from a state of 2,000 instances with two bindings each
// and a pool of 200 nodes, and the counters, gathered by the registry as
// the metrics endpoint does (without TLS and HTTP).
//
//	go test -run '^$' -bench Gather -benchtime 200x ./src/internal/broker/
func BenchmarkGather(b *testing.B) {
	dir := b.TempDir()
	clients := map[string]Agent{"a0": newMemAgent("10.0.0.10")}
	cfg := Config{
		Listen: "127.0.0.1:0", StateDir: filepath.Join(dir, "state"), Catalog: Catalog{ServiceID: serviceID},
		Credentials: agentapi.Credentials{Username: "u", Password: "p"},
		SharedVM: &SharedVMPlan{PlanID: sharedPlanID, MaxInstances: 5000, MaxMemoryMB: 64,
			Agents: []AgentConfig{{ID: "a0", ClientConfig: agentapi.ClientConfig{URL: "http://a0", Credentials: agentapi.Credentials{Username: "u", Password: "p"}}}}},
		DedicatedVM: &DedicatedVMPlan{PlanID: dedicPlanID},
	}
	for i := range 200 {
		id := fmt.Sprintf("n%d", i)
		clients[id] = newMemNode(id, "10.0.1.1")
		cfg.DedicatedVM.Nodes = append(cfg.DedicatedVM.Nodes, NodeConfig{ID: id, ClientConfig: agentapi.ClientConfig{URL: "https://" + id,
			Credentials: agentapi.Credentials{Username: "u", Password: "p"}, CACert: "CA"}})
	}
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		b.Fatal(err)
	}
	br, err := New(cfg, clients, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	err = br.state.Update(func(s *state) error {
		for i := range 2000 {
			id := fmt.Sprintf("i%d", i)
			inst := &instance{ID: id, PlanID: sharedPlanID, State: stateReady, Bindings: map[string]*binding{}}
			if i%10 == 0 {
				inst.PlanID = dedicPlanID
			}
			for j := range 2 {
				inst.Bindings[fmt.Sprint(j)] = &binding{ID: fmt.Sprint(j), State: stateReady}
			}
			s.Instances.Put(id, inst)
		}
		for i, pn := range s.Pool {
			if len(i)%2 == 0 {
				pn.State = poolClaimed
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	reg := metrics.NewRegistry()
	if err := br.RegisterMetrics(reg); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}
