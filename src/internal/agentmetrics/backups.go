package agentmetrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cf-redis/redis-for-cf/src/internal/backup"
)

var (
	lastBackupTimeDesc = desc("redis_for_cf_last_backup_timestamp_seconds",
		"When the instance's last successful backup ended (Unix time): the agent's own, or, for one it finds in the destination (an earlier run's, the errand's), the time in its name, when it began; absent while the destination holds none.")
	lastBackupSizeDesc = desc("redis_for_cf_last_backup_size_bytes",
		"The size of the instance's last successful backup (see redis_for_cf_last_backup_timestamp_seconds); absent while the destination holds none.")
	lastBackupSuccessDesc = desc("redis_for_cf_last_backup_success",
		"1 when the instance's newest scheduled backup attempt succeeded, 0 when it failed; absent before the first since the agent started.")
	backupsDesc = desc("redis_for_cf_backups_total",
		"The instance's scheduled backups since the agent started, by result: success or failure.", "result")
)

// Backups keeps the outcome of each instance's scheduled backups since the
// agent started; backup.Schedule.Run hands it every Result. Safe for
// concurrent use; the zero value is ready.
type Backups struct {
	mu   sync.Mutex
	last map[string]backupRecord
}

type backupRecord struct {
	attempted        bool
	lastOK           bool
	okEnd            time.Time
	okBytes          int64
	success, failure int
}

// Record notes one instance's backup.
func (b *Backups) Record(r backup.Result) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.last == nil {
		b.last = map[string]backupRecord{}
	}
	rec := b.last[r.Instance]
	if r.Found {
		// The destination's newest: only moves the last success forward.
		if end := r.Started.Add(r.Duration); end.After(rec.okEnd) {
			rec.okEnd, rec.okBytes = end, r.Bytes
		}
		b.last[r.Instance] = rec
		return
	}
	rec.attempted, rec.lastOK = true, r.Err == nil
	if r.Err == nil {
		rec.success++
		rec.okEnd, rec.okBytes = r.Started.Add(r.Duration), r.Bytes
	} else {
		rec.failure++
	}
	b.last[r.Instance] = rec
}

// snapshot copies the records of targets and forgets those of instances
// that are gone.
func (b *Backups) snapshot(targets []Target) map[string]backupRecord {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]backupRecord, len(targets))
	for _, t := range targets {
		if rec, ok := b.last[t.ID]; ok {
			out[t.ID] = rec
		}
	}
	for id := range b.last {
		if _, ok := out[id]; !ok {
			delete(b.last, id)
		}
	}
	return out
}

// backupMetrics appends an instance's backup series.
func backupMetrics(out []prometheus.Metric, rec backupRecord, id, plan string) []prometheus.Metric {
	add := func(d *prometheus.Desc, kind prometheus.ValueType, v float64, extra ...string) {
		out = append(out, prometheus.MustNewConstMetric(d, kind, v, append([]string{id, plan}, extra...)...))
	}
	add(backupsDesc, prometheus.CounterValue, float64(rec.success), "success")
	add(backupsDesc, prometheus.CounterValue, float64(rec.failure), "failure")
	if rec.attempted {
		add(lastBackupSuccessDesc, prometheus.GaugeValue, boolean(rec.lastOK))
	}
	if !rec.okEnd.IsZero() {
		add(lastBackupTimeDesc, prometheus.GaugeValue, float64(rec.okEnd.UnixNano())/1e9)
		add(lastBackupSizeDesc, prometheus.GaugeValue, float64(rec.okBytes))
	}
	return out
}
