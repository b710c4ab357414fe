package agentmetrics

import (
	"context"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// InfoSections are the INFO sections a sweep asks every instance for.
var InfoSections = []string{"server", "clients", "memory", "stats", "replication", "persistence"}

// instanceLabels are the labels of every per-instance series:
// service_instance_id (not instance_id, which Loggregator's prom scraper
// sets to the VM's id, nor instance, which Prometheus sets to the target).
var instanceLabels = []string{"service_instance_id", "plan"}

func desc(name, help string, extra ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, append(append([]string{}, instanceLabels...), extra...), nil)
}

// A field of INFO served as a metric.
type infoMetric struct {
	field string
	kind  prometheus.ValueType
	desc  *prometheus.Desc
}

// infoMetrics are the INFO fields served as they are, by redis_exporter's
// names.
var infoMetrics = []infoMetric{
	{"used_memory", prometheus.GaugeValue, desc("redis_memory_used_bytes", "Memory the instance's redis-server uses (INFO used_memory).")},
	{"maxmemory", prometheus.GaugeValue, desc("redis_memory_max_bytes", "The instance's memory limit (maxmemory).")},
	{"connected_clients", prometheus.GaugeValue, desc("redis_connected_clients", "Client connections, the agent's admin connection included.")},
	{"blocked_clients", prometheus.GaugeValue, desc("redis_blocked_clients", "Clients waiting in a blocking command.")},
	{"total_commands_processed", prometheus.CounterValue, desc("redis_commands_processed_total", "Commands the server processed since it started.")},
	{"instantaneous_ops_per_sec", prometheus.GaugeValue, desc("redis_instantaneous_ops_per_sec", "Commands per second, as the server samples them.")},
	{"keyspace_hits", prometheus.CounterValue, desc("redis_keyspace_hits_total", "Key lookups that found the key.")},
	{"keyspace_misses", prometheus.CounterValue, desc("redis_keyspace_misses_total", "Key lookups that did not find the key.")},
	{"evicted_keys", prometheus.CounterValue, desc("redis_evicted_keys_total", "Keys evicted to stay within maxmemory.")},
	{"expired_keys", prometheus.CounterValue, desc("redis_expired_keys_total", "Keys removed because they expired.")},
	{"rejected_connections", prometheus.CounterValue, desc("redis_rejected_connections_total", "Connections refused because of maxclients.")},
	{"connected_slaves", prometheus.GaugeValue, desc("redis_connected_slaves", "Followers connected to the instance.")},
	{"uptime_in_seconds", prometheus.GaugeValue, desc("redis_uptime_in_seconds", "Seconds since the server's process started.")},
}

// statusMetrics are INFO's ok/err fields, served as 1 (ok) or 0.
var statusMetrics = []infoMetric{
	{"rdb_last_bgsave_status", prometheus.GaugeValue, desc("redis_rdb_last_bgsave_status", "1 when the last RDB save succeeded, 0 when it failed.")},
	{"aof_last_write_status", prometheus.GaugeValue, desc("redis_aof_last_write_status", "1 when the last AOF write succeeded, 0 when it failed.")},
	{"aof_last_bgrewrite_status", prometheus.GaugeValue, desc("redis_aof_last_bgrewrite_status", "1 when the last AOF rewrite succeeded, 0 when it failed.")},
}

var (
	upDesc       = desc("redis_up", "1 when the instance's redis-server answered INFO at the last sweep, else 0 (then its other INFO series are absent).")
	infoDesc     = desc("redis_instance_info", "1, labelled with the instance's role (master or slave, as INFO says), Redis version and maxmemory policy.", "role", "redis_version", "maxmemory_policy")
	linkUpDesc   = desc("redis_master_link_up", "Followers only: 1 while the link to the leader is up, 0 while it is down.")
	lagDesc      = desc("redis_replication_lag_bytes", "Followers only: bytes of the leader's replication stream the follower has not applied (the leader's offset less the follower's); absent while the leader does not answer.")
	restartsDesc = desc("redis_for_cf_instance_restarts_total", "Times the agent's supervisor restarted the instance's redis-server after it died, since the agent started supervising it.")
)

// instanceValues are what a sweep read of one instance.
type instanceValues struct {
	// info is nil when the server did not answer.
	info     map[string]string
	lag      int64
	restarts int
}

// gather reads one instance, its INFO bounded by the config's timeout.
func (c *Collector) gather(ctx context.Context, t Target) instanceValues {
	v := instanceValues{restarts: t.Server.Restarts()}
	ictx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	info, err := t.Server.Info(ictx, InfoSections...)
	if err != nil {
		c.cfg.Logger.Debug("metrics: the instance did not answer INFO", "instance", t.ID, "error", err)
		return v
	}
	v.info = info
	v.lag = t.Server.FollowerLag(ictx, info)
	return v
}

// metrics appends the instance's series.
func (v instanceValues) metrics(out []prometheus.Metric, id, plan string) []prometheus.Metric {
	add := func(d *prometheus.Desc, kind prometheus.ValueType, val float64, extra ...string) {
		out = append(out, prometheus.MustNewConstMetric(d, kind, val, append([]string{id, plan}, extra...)...))
	}
	add(restartsDesc, prometheus.CounterValue, float64(v.restarts))
	if v.info == nil {
		add(upDesc, prometheus.GaugeValue, 0)
		return out
	}
	add(upDesc, prometheus.GaugeValue, 1)
	for _, m := range infoMetrics {
		if f, ok := number(v.info[m.field]); ok {
			add(m.desc, m.kind, f)
		}
	}
	for _, m := range statusMetrics {
		if s, ok := v.info[m.field]; ok {
			add(m.desc, m.kind, boolean(s == "ok"))
		}
	}
	add(infoDesc, prometheus.GaugeValue, 1, v.info["role"], v.info["redis_version"], v.info["maxmemory_policy"])
	if v.info["role"] == "slave" {
		add(linkUpDesc, prometheus.GaugeValue, boolean(v.info["master_link_status"] == "up"))
		if v.lag >= 0 {
			add(lagDesc, prometheus.GaugeValue, float64(v.lag))
		}
	}
	return out
}

func number(s string) (float64, bool) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	return f, err == nil
}

func boolean(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
