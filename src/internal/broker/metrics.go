package broker

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cf-redis/redis-for-cf/src/internal/metrics"
)

// The broker's Prometheus metrics (the names are the contract the alert
// rules and the dashboard are written against). The gauges are computed at
// scrape time from the broker's state, which is in memory, and from what
// the background gathering (Run) last heard from the shared VMs' agents: a
// scrape never waits on the network.
var (
	instancesDesc = prometheus.NewDesc("redis_broker_instances",
		"Service instances the broker records, by plan and state: creating (a provision under way, or cut short and waiting for Cloud Controller's retry or delete), "+
			"ready (serving), deleting (a deprovision under way, or one that failed and waits for a retry; last_operation says which).",
		[]string{"plan", "state"}, nil)
	bindingsDesc = prometheus.NewDesc("redis_broker_bindings",
		"Bindings whose credentials the broker handed out (binding users the agents made), by plan.",
		[]string{"plan"}, nil)
	capacityDesc = prometheus.NewDesc("redis_broker_plan_capacity_instances",
		"How many instances the plan can hold now, in total. shared-vm: the plan's max_instances, or less when the shared VMs the broker last reached "+
			"(memory budget over the plan's maxmemory, ports, each VM's instance cap) hold fewer; a VM the last gathering could not reach counts 0. "+
			"dedicated-vm: the pool's nodes that are not quarantined; dedicated-ha: those nodes over 3 (a group takes three), from the same pool.",
		[]string{"plan"}, nil)
	capacityLeftDesc = prometheus.NewDesc("redis_broker_plan_capacity_left_instances",
		"How many more instances of the plan fit now. shared-vm: what the reachable shared VMs have room for, within max_instances less the plan's records; "+
			"dedicated-vm: the free nodes of the pool; dedicated-ha: the free nodes over 3, from the same pool.",
		[]string{"plan"}, nil)
	poolDesc = prometheus.NewDesc("redis_broker_pool_nodes",
		"Dedicated nodes by state: free (reset and verified empty, can be claimed), claimed (holds an instance), "+
			"resetting (its instance is being deleted: reset under way or waiting to be retried), "+
			"quarantined (a reset did not verify the node empty, or the node was not what the pool expected: out of the pool until a later reset passes; GET /admin/v1/pool says why).",
		[]string{"state"}, nil)
)

// The instance states and pool states every scrape reports, zero or not, so
// that alerts and dashboards always find the series.
var (
	instanceStates = []string{stateCreating, stateReady, stateDeleting}
	poolStates     = []string{poolFree, poolClaimed, poolResetting, poolQuarantined}
)

// Results of redis_broker_restores_total.
const (
	restoreResultSuccess = "success"
	restoreResultFailure = "failure"
)

// gatherPeriod is how often Run asks the shared VMs' agents for their
// capacity, for the capacity metrics; a create or delete on a shared VM
// asks again at once.
const gatherPeriod = 15 * time.Second

// brokerMetrics are the broker's counters and histograms; the gauges are
// collected from its state (Broker.Describe, Broker.Collect).
type brokerMetrics struct {
	requests *metrics.Requests
	restores *prometheus.CounterVec
}

func newBrokerMetrics() *brokerMetrics {
	m := &brokerMetrics{
		requests: metrics.NewRequests(metrics.RequestsOpts{
			Total:        "redis_broker_osb_requests_total",
			TotalHelp:    "Requests to the broker's API by verb (the OSB operation the route names; admin_pool for GET /admin/v1/pool, other for anything else) and HTTP status code.",
			Duration:     "redis_broker_osb_request_duration_seconds",
			DurationHelp: "Time the broker took to answer a request, by verb (as redis_broker_osb_requests_total).",
			Label:        "verb",
			// Synchronous provisions, claims and restores take seconds to
			// minutes; catalog and last_operation milliseconds.
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}),
		restores: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "redis_broker_restores_total",
			Help: "Restores of an instance's backup the broker ran, by result: success (the instance holds the backup) or failure (it kept its data).",
		}, []string{"result"}),
	}
	m.restores.WithLabelValues(restoreResultSuccess)
	m.restores.WithLabelValues(restoreResultFailure)
	return m
}

// RegisterMetrics registers the broker's metrics with reg.
func (b *Broker) RegisterMetrics(reg prometheus.Registerer) error {
	for _, c := range append(b.metrics.requests.Collectors(), b.metrics.restores, stateCollector{b}) {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// stateCollector collects the gauges computed from the broker's state.
type stateCollector struct{ b *Broker }

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{instancesDesc, bindingsDesc, capacityDesc, capacityLeftDesc, poolDesc} {
		ch <- d
	}
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	b := c.b
	// Sent once the state is let go: the registry may take its time.
	var out []prometheus.Metric
	defer func() {
		for _, m := range out {
			ch <- m
		}
	}()
	gauge := func(d *prometheus.Desc, v int, labels ...string) {
		out = append(out, prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...))
	}
	b.state.Peek(func(s state) {
		instances := map[[2]string]int{}
		bindings := map[string]int{}
		for _, p := range b.order {
			for _, st := range instanceStates {
				instances[[2]string{p.label(), st}] = 0
			}
			bindings[p.label()] = 0
		}
		for _, inst := range s.Instances.All() {
			plan := b.planLabel(inst.PlanID)
			instances[[2]string{plan, inst.State}]++
			for _, bnd := range inst.Bindings {
				if bnd.State == stateReady {
					bindings[plan]++
				}
			}
		}
		for k, n := range instances {
			gauge(instancesDesc, n, k[0], k[1])
		}
		for plan, n := range bindings {
			gauge(bindingsDesc, n, plan)
		}
		for _, p := range b.order {
			total, left := p.capacity(s)
			gauge(capacityDesc, total, p.label())
			gauge(capacityLeftDesc, left, p.label())
		}
		if b.cfg.DedicatedVM != nil || len(s.Pool) > 0 {
			nodes := map[string]int{}
			for _, st := range poolStates {
				nodes[st] = 0
			}
			for _, pn := range s.Pool {
				nodes[pn.State]++
			}
			for st, n := range nodes {
				gauge(poolDesc, n, st)
			}
		}
	})
}

// planLabel is the plan label of an instance of planID (plan.label); the
// id of a plan the config no longer has.
func (b *Broker) planLabel(planID string) string {
	if p := b.plans[planID]; p != nil {
		return p.label()
	}
	return planID
}

// instrument counts and times every request to h by verb and status.
func (b *Broker) instrument(h http.Handler) http.Handler {
	return b.metrics.requests.Instrument(h, verbOf)
}

type verbRoute struct {
	kind   routeKind
	method string
}

// verbs names the operation each method and route ask for: never an id,
// so that the labels stay few.
var verbs = map[verbRoute]string{
	{routeCatalog, http.MethodGet}:        "catalog",
	{routeInstance, http.MethodPut}:       "provision",
	{routeInstance, http.MethodPatch}:     "update",
	{routeInstance, http.MethodDelete}:    "deprovision",
	{routeInstance, http.MethodGet}:       "get_instance",
	{routeInstanceLastOp, http.MethodGet}: "last_operation",
	{routeBinding, http.MethodPut}:        "bind",
	{routeBinding, http.MethodDelete}:     "unbind",
	{routeBinding, http.MethodGet}:        "get_binding",
	{routeBindingLastOp, http.MethodGet}:  "binding_last_operation",
}

func verbOf(r *http.Request) string {
	if r.URL.Path == poolPath {
		return "admin_pool"
	}
	if v, ok := verbs[verbRoute{parseRoute(r.URL).kind, r.Method}]; ok {
		return v
	}
	return "other"
}
