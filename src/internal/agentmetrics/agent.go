package agentmetrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/metrics"
)

// The agent's own series: the job label (the prom scraper's source_id)
// tells a shared agent's from a node's.
var (
	agentInstancesDesc = prometheus.NewDesc("redis_for_cf_agent_instances",
		"Instances the agent holds (a dedicated node: 1 while claimed, else 0).", nil, nil)
	budgetDesc = prometheus.NewDesc("redis_for_cf_agent_memory_budget_bytes",
		"Memory the agent may hand to its instances in all (a dedicated node: its redis-server's maxmemory).", nil, nil)
	allocatedDesc = prometheus.NewDesc("redis_for_cf_agent_memory_allocated_bytes",
		"The sum of the maxmemory of the instances the agent holds.", nil, nil)
	freeDesc = prometheus.NewDesc("redis_for_cf_agent_memory_free_bytes",
		"The memory budget not handed to an instance.", nil, nil)
	portsFreeDesc = prometheus.NewDesc("redis_for_cf_agent_ports_free",
		"Ports of the shared agent's range no instance holds.", nil, nil)
	supervisionRestartsDesc = prometheus.NewDesc("redis_for_cf_agent_supervision_restarts_total",
		"Times the agent's supervisor restarted one of its redis-servers after it died, since the agent started.", nil, nil)
	nodeStateDesc = prometheus.NewDesc("redis_for_cf_node_state",
		"1 for the dedicated node's current state, 0 for the others: free, claimed, resetting, reset_failed (quarantined by the broker).", []string{"state"}, nil)
	backupIntervalDesc = prometheus.NewDesc("redis_for_cf_backup_interval_seconds",
		"The gap between the next two runs of the agent's backup schedule; absent when the agent runs no scheduled backups.", nil, nil)
	gatherDurationDesc = prometheus.NewDesc("redis_for_cf_metrics_gather_duration_seconds",
		"How long the last background sweep of the instances' values took.", nil, nil)
	gatherTimestampDesc = prometheus.NewDesc("redis_for_cf_metrics_gather_timestamp_seconds",
		"When the last background sweep ended (Unix time): the instances' values are that old.", nil, nil)
)

// nodeStates are the states redis_for_cf_node_state reports, each always.
var nodeStates = []string{agentapi.NodeFree, agentapi.NodeClaimed, agentapi.NodeResetting, agentapi.NodeResetFailed}

// NewAPIRequests are the metrics of an agent's API requests: by route, the
// pattern that served it ("PUT /v1/instances/{id}"), and status code.
func NewAPIRequests() *metrics.Requests {
	return metrics.NewRequests(metrics.RequestsOpts{
		Total:        "redis_for_cf_agent_api_requests_total",
		TotalHelp:    "Requests to the agent's API by route (the pattern, e.g. \"PUT /v1/instances/{id}\"; other for none) and HTTP status code.",
		Duration:     "redis_for_cf_agent_api_request_duration_seconds",
		DurationHelp: "Time the agent took to answer a request, by route.",
		Label:        "route",
		// Reads take milliseconds; creates, claims, resets, snapshots and
		// restores seconds to minutes.
		Buckets: []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300},
	})
}
