// Package agentmetrics is the Prometheus metrics of a shared agent and of a
// dedicated node: one series set per instance the agent holds, from its
// redis-server's INFO and the agent's own records (supervisor restarts,
// backup results), and the agent's own values (instances, memory budget,
// ports, node state). The names follow oliver006/redis_exporter where it
// has one, and are the contract the alert rules and the dashboard are
// written against (README, "Metrics").
//
// The values are gathered in the background, one sweep every Interval, by a
// few workers, each instance's INFO bounded by Timeout on the agent's admin
// connection; a scrape is served from the last sweep's values and never
// waits on a redis-server, so a frozen one can neither stall a scrape nor
// hold a sweep for longer than its timeout.
package agentmetrics

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cf-redis/redis-for-cf/src/internal/backup"
	"github.com/cf-redis/redis-for-cf/src/internal/instance"
)

// Defaults of a Config's sweep.
const (
	DefaultInterval = 15 * time.Second
	DefaultWorkers  = 4
	DefaultTimeout  = 2 * time.Second
)

// Target is one instance a sweep gathers.
type Target struct {
	// ID is the OSB instance id: the service_instance_id label.
	ID string
	// Server is the instance's redis-server.
	Server *instance.Server
}

// Agent is what the agent itself reports at a sweep.
type Agent struct {
	// Instances the agent holds (a node: 1 claimed, 0 not).
	Instances int
	// BudgetBytes is the memory the agent may hand to instances (a node:
	// its redis-server's maxmemory); AllocatedBytes what it handed out.
	BudgetBytes, AllocatedBytes int64
	// PortsFree is the shared agent's free ports of its range; nil for a
	// node, which has no range.
	PortsFree *int
	// NodeState is a node's state (agentapi.NodeFree...); empty for a
	// shared agent.
	NodeState string
}

// Source is an agent as its metrics see it.
type Source struct {
	// Plan is the plan label of every instance: shared-vm or dedicated-vm.
	Plan string
	// Targets are the instances to gather now.
	Targets func() []Target
	// Agent reports the agent's own values.
	Agent func() Agent
	// Backups is the agent's backup schedule; nil when it has none, and
	// then no instance has backup metrics.
	Backups *backup.Schedule
	// Results are the outcomes of the schedule's backups.
	Results *Backups
}

// Config is how a Collector sweeps.
type Config struct {
	Source Source
	// Interval between sweeps; zero means DefaultInterval.
	Interval time.Duration
	// Workers gather that many instances at once; zero means
	// DefaultWorkers.
	Workers int
	// Timeout bounds each instance's INFO; zero means DefaultTimeout.
	Timeout time.Duration
	Logger  *slog.Logger
}

// Collector gathers an agent's metrics in the background (Run) and
// serves the last sweep's values to scrapes (it is a
// prometheus.Collector).
type Collector struct {
	cfg Config
	// sweeping serialises sweeps: Run's and a caller's Sweep.
	sweeping sync.Mutex
	// restarts is the agent's supervision restarts counter: the sum of
	// every instance's increments seen by sweeps, so a deleted instance
	// does not take its restarts away. Touched under sweeping.
	restarts     float64
	seenRestarts map[string]int

	mu   sync.RWMutex
	last []prometheus.Metric
}

// New returns the Collector of cfg; it gathers nothing before Run or
// Sweep.
func New(cfg Config) *Collector {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Collector{cfg: cfg, seenRestarts: map[string]int{}}
}

// Run sweeps at once and then every Interval, until ctx ends.
func (c *Collector) Run(ctx context.Context) {
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		c.Sweep(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Describe sends no descriptions: the collector is unchecked, its series
// come and go with the instances.
func (c *Collector) Describe(chan<- *prometheus.Desc) {}

// Collect sends the last sweep's values.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.RLock()
	last := c.last
	c.mu.RUnlock()
	for _, m := range last {
		ch <- m
	}
}

// Sweep gathers every instance's values and the agent's, and makes them
// what scrapes get. It returns once every instance answered or timed out.
func (c *Collector) Sweep(ctx context.Context) {
	c.sweeping.Lock()
	defer c.sweeping.Unlock()
	start := time.Now()
	src := c.cfg.Source
	targets := src.Targets()
	values := make([]instanceValues, len(targets))
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range min(c.cfg.Workers, max(len(targets), 1)) {
		wg.Go(func() {
			for i := range jobs {
				values[i] = c.gather(ctx, targets[i])
			}
		})
	}
	for i := range targets {
		jobs <- i
	}
	close(jobs)
	wg.Wait()

	var backups map[string]backupRecord
	if src.Backups != nil && src.Results != nil {
		backups = src.Results.snapshot(targets)
	}
	out := make([]prometheus.Metric, 0, len(targets)*32+16)
	live := make(map[string]bool, len(targets))
	for i, t := range targets {
		live[t.ID] = true
		v := values[i]
		// A restart count that dropped belongs to a new supervision.
		prev := c.seenRestarts[t.ID]
		if v.restarts >= prev {
			c.restarts += float64(v.restarts - prev)
		} else {
			c.restarts += float64(v.restarts)
		}
		c.seenRestarts[t.ID] = v.restarts
		out = v.metrics(out, t.ID, src.Plan)
		if src.Backups != nil {
			out = backupMetrics(out, backups[t.ID], t.ID, src.Plan)
		}
	}
	for id := range c.seenRestarts {
		if !live[id] {
			delete(c.seenRestarts, id)
		}
	}
	out = c.agentMetrics(out, src, start)
	c.mu.Lock()
	c.last = out
	c.mu.Unlock()
}

// agentMetrics appends the agent's own series, the sweep's last.
func (c *Collector) agentMetrics(out []prometheus.Metric, src Source, start time.Time) []prometheus.Metric {
	a := src.Agent()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		out = append(out, prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...))
	}
	gauge(agentInstancesDesc, float64(a.Instances))
	gauge(budgetDesc, float64(a.BudgetBytes))
	gauge(allocatedDesc, float64(a.AllocatedBytes))
	gauge(freeDesc, float64(max(a.BudgetBytes-a.AllocatedBytes, 0)))
	if a.PortsFree != nil {
		gauge(portsFreeDesc, float64(*a.PortsFree))
	}
	if a.NodeState != "" {
		for _, st := range nodeStates {
			v := 0.0
			if st == a.NodeState {
				v = 1
			}
			gauge(nodeStateDesc, v, st)
		}
	}
	if src.Backups != nil {
		gauge(backupIntervalDesc, src.Backups.Interval(time.Now()).Seconds())
	}
	out = append(out, prometheus.MustNewConstMetric(supervisionRestartsDesc, prometheus.CounterValue, c.restarts))
	end := time.Now()
	gauge(gatherDurationDesc, end.Sub(start).Seconds())
	gauge(gatherTimestampDesc, float64(end.UnixNano())/1e9)
	return out
}
