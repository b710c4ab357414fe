package agentmetrics_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/agentmetrics"
	"github.com/cf-redis/redis-for-cf/src/internal/backup"
	"github.com/cf-redis/redis-for-cf/src/internal/metrics"
	"github.com/cf-redis/redis-for-cf/src/internal/nodeagent"
	"github.com/cf-redis/redis-for-cf/src/internal/params"
	"github.com/cf-redis/redis-for-cf/src/internal/replication"
	"github.com/cf-redis/redis-for-cf/src/internal/secret"
	"github.com/cf-redis/redis-for-cf/src/internal/sharedagent"
	"github.com/cf-redis/redis-for-cf/src/testkit/redistest"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
	"github.com/cf-redis/redis-for-cf/src/testkit/tlstest"
)

const mb = 1 << 20

// harness is a collector of a real agent's metrics, served over the real
// metrics endpoint with a metrics CA's certificates.
type harness struct {
	t         testing.TB
	collector *agentmetrics.Collector
	url       string
	scraper   *tls.Config
	anon      *tls.Config
	// files are the CA's, a scraper's certificate's and its key's files,
	// for a scraper in another process.
	files [3]string
}

// serve makes the collector of src (its INFO timeout given) and serves it.
func serve(t testing.TB, src agentmetrics.Source, timeout time.Duration) *harness {
	t.Helper()
	ca, err := tlstest.NewCA("metrics")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, key, caFile, err := ca.RedisFiles(dir, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	c := agentmetrics.New(agentmetrics.Config{Source: src, Timeout: timeout})
	reg := metrics.NewRegistry()
	reg.MustRegister(c)
	cfg := metrics.Config{Listen: "127.0.0.1:0", CertFile: cert, KeyFile: key, CAFile: caFile}
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() { done <- cfg.Serve(ctx, reg, slog.New(slog.DiscardHandler), func(a net.Addr) { addr <- a }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	h := &harness{t: t, collector: c, scraper: ca.ClientTLS(t, dir, "scraper"), anon: ca.ClientTLS(t, dir, "")}
	h.files[0] = caFile
	if h.files[1], h.files[2], err = ca.Issue(t.TempDir(), "other-scraper"); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-addr:
		h.url = "https://" + a.String() + metrics.Path
	case err := <-done:
		t.Fatal(err)
	}
	return h
}

func (h *harness) scrape() map[string]*dto.MetricFamily {
	h.t.Helper()
	fams, err := metrics.Scrape(context.Background(), h.url, h.scraper)
	if err != nil {
		h.t.Fatal(err)
	}
	return fams
}

// sweepAndScrape gathers now and scrapes what was gathered.
func (h *harness) sweepAndScrape() map[string]*dto.MetricFamily {
	h.t.Helper()
	h.collector.Sweep(context.Background())
	return h.scrape()
}

func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	v, ok := metrics.Find(fams, name, labels...)
	if !ok {
		t.Fatalf("no single series %s%v in the scrape", name, labels)
	}
	return v
}

func absent(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) {
	t.Helper()
	if v, ok := metrics.Find(fams, name, labels...); ok {
		t.Errorf("%s%v = %v, want no series", name, labels, v)
	}
}

// info is a server's INFO fields, as a tenant reads them.
func info(t *testing.T, c *redis.Client, section string) map[string]string {
	t.Helper()
	m, err := c.InfoMap(context.Background(), section).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, fields := range m {
		return fields
	}
	t.Fatalf("INFO %s: empty", section)
	return nil
}

func num(t *testing.T, s string) float64 {
	t.Helper()
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// sharedAgent is a real shared agent on dir with real redis-servers; it
// shuts down when the test ends.
func sharedAgent(t testing.TB, dir string, change func(*sharedagent.Config)) *sharedagent.Manager {
	t.Helper()
	t.Cleanup(func() { systemtest.KillStrays(dir) })
	cfg := sharedagent.Config{
		Listen:         "127.0.0.1:0",
		Credentials:    agentapi.Credentials{Username: "broker", Password: secret.New()},
		Host:           "127.0.0.1",
		DataDir:        dir,
		RedisServer:    redistest.MustProgram(t, "redis-server"),
		MemoryBudgetMB: 256,
	}
	if change != nil {
		change(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	m, err := sharedagent.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	m.Start(context.Background())
	t.Cleanup(func() { m.Shutdown(context.Background()) })
	return m
}

// create makes an instance and a tenant client of it.
func create(t *testing.T, svc agentapi.Service, id string, memMB int64, policy string) (agentapi.Instance, *redis.Client) {
	t.Helper()
	ctx := context.Background()
	p := params.Defaults()
	if policy != "" {
		p.MaxMemoryPolicy = policy
	}
	inst, _, err := svc.Create(ctx, id, agentapi.InstanceRequest{MaxMemoryBytes: memMB * mb, Parameters: p})
	if err != nil {
		t.Fatal(err)
	}
	pw := secret.New()
	b, _, err := svc.Bind(ctx, id, "app", agentapi.BindingRequest{Password: pw})
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: net.JoinHostPort(b.Host, strconv.Itoa(b.Port)), Username: b.Username, Password: pw, PoolSize: 1})
	t.Cleanup(func() { c.Close() })
	return inst, c
}

func pidOf(t *testing.T, dir, id string) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "instances", id, "redis.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func TestSharedAgentInstancesAgainstTheirINFO(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m := sharedAgent(t, dir, nil)
	h := serve(t, m.Metrics(), 5*time.Second)
	_, plain := create(t, m, "plain", 32, "")
	_, lru := create(t, m, "lru", 4, "allkeys-lru")
	leader, _ := create(t, m, "leader", 16, "")
	_, _ = create(t, m, "follower", 16, "")

	// Known lookups on "plain": 3 hits, 2 misses.
	if err := plain.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := plain.Get(ctx, "k").Err(); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if err := plain.Get(ctx, "missing").Err(); err != redis.Nil {
			t.Fatalf("GET missing: %v", err)
		}
	}
	// "lru" holds 4 MB: 10 MB of values evict.
	value100k := strings.Repeat("x", 100<<10)
	for i := range 100 {
		if err := lru.Set(ctx, fmt.Sprint("k", i), value100k, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// "follower" follows "leader".
	replPw := secret.New()
	if _, _, err := m.Bind(ctx, "leader", "repl", agentapi.BindingRequest{Password: replPw, Role: agentapi.RoleReplication}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.SetReplication(ctx, "follower", agentapi.ReplicationRequest{Leader: &replication.Leader{
		Host: leader.Host, Port: leader.Port, Username: "repl", Password: replPw}}); err != nil {
		t.Fatal(err)
	}
	for linkUp := false; !linkUp; {
		inst, err := m.Get(ctx, "follower")
		if err != nil {
			t.Fatal(err)
		}
		linkUp = inst.Live != nil && inst.Live.Replication.Link == "up"
		time.Sleep(50 * time.Millisecond)
	}

	fams := h.sweepAndScrape()
	label := func(id string) []string { return []string{"service_instance_id", id, "plan", "shared-vm"} }
	v := func(name, id string, extra ...string) float64 {
		t.Helper()
		return value(t, fams, name, append(label(id), extra...)...)
	}
	// INFO read after the sweep, on the tenant's one connection: the
	// lookups and clients it counts have not changed since.
	stats, clients, mem := info(t, plain, "stats"), info(t, plain, "clients"), info(t, plain, "memory")
	for _, c := range []struct {
		metric, field string
		want          float64
	}{
		{"redis_keyspace_hits_total", "keyspace_hits", 3},
		{"redis_keyspace_misses_total", "keyspace_misses", 2},
	} {
		if got, inINFO := v(c.metric, "plain"), num(t, stats[c.field]); got != c.want || got != inINFO {
			t.Errorf("%s = %v, INFO %s = %v, want %v", c.metric, got, c.field, inINFO, c.want)
		}
	}
	if got, want := v("redis_connected_clients", "plain"), num(t, clients["connected_clients"]); got != want || got < 2 {
		t.Errorf("redis_connected_clients = %v, INFO says %v (the tenant and the agent's admin connection at least)", got, want)
	}
	if got, want := v("redis_memory_used_bytes", "plain"), num(t, mem["used_memory"]); got < want*0.8 || got > want*1.2 {
		t.Errorf("redis_memory_used_bytes = %v, INFO used_memory = %v: more than 20%% apart", got, want)
	}
	if got := v("redis_memory_max_bytes", "plain"); got != 32*mb {
		t.Errorf("redis_memory_max_bytes = %v, want 32 MB", got)
	}
	if got := v("redis_up", "plain"); got != 1 {
		t.Errorf("redis_up = %v", got)
	}
	if got := v("redis_instance_info", "plain", "role", "master", "maxmemory_policy", "noeviction", "redis_version", info(t, plain, "server")["redis_version"]); got != 1 {
		t.Errorf("redis_instance_info = %v", got)
	}
	if got := v("redis_commands_processed_total", "plain"); got < 6 {
		t.Errorf("redis_commands_processed_total = %v, want at least the 6 commands sent", got)
	}
	for _, name := range []string{"redis_rdb_last_bgsave_status", "redis_aof_last_write_status", "redis_aof_last_bgrewrite_status"} {
		if got := v(name, "plain"); got != 1 {
			t.Errorf("%s = %v, want 1 (ok)", name, got)
		}
	}
	if got := v("redis_uptime_in_seconds", "plain"); got < 0 {
		t.Errorf("redis_uptime_in_seconds = %v", got)
	}

	lruStats := info(t, lru, "stats")
	if got, want := v("redis_evicted_keys_total", "lru"), num(t, lruStats["evicted_keys"]); got == 0 || got != want {
		t.Errorf("redis_evicted_keys_total = %v, INFO evicted_keys = %v, want equal and above 0", got, want)
	}
	if got := v("redis_evicted_keys_total", "plain"); got != 0 {
		t.Errorf("plain: redis_evicted_keys_total = %v", got)
	}

	if got := v("redis_master_link_up", "follower"); got != 1 {
		t.Errorf("follower: redis_master_link_up = %v, want 1", got)
	}
	if got := v("redis_replication_lag_bytes", "follower"); got < 0 {
		t.Errorf("follower: redis_replication_lag_bytes = %v", got)
	}
	if got := v("redis_instance_info", "follower", "role", "slave"); got != 1 {
		t.Errorf("follower: redis_instance_info{role=slave} = %v", got)
	}
	if got := v("redis_connected_slaves", "leader"); got != 1 {
		t.Errorf("leader: redis_connected_slaves = %v, want 1", got)
	}
	absent(t, fams, "redis_master_link_up", label("leader")...)
	// No backups configured: no backup series.
	absent(t, fams, "redis_for_cf_backups_total", append(label("plain"), "result", "success")...)
	absent(t, fams, "redis_for_cf_backup_interval_seconds")

	capacity, err := m.Capacity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		want float64
	}{
		{"redis_for_cf_agent_instances", 4},
		{"redis_for_cf_agent_memory_budget_bytes", 256 * mb},
		{"redis_for_cf_agent_memory_allocated_bytes", (32 + 4 + 16 + 16) * mb},
		{"redis_for_cf_agent_memory_free_bytes", (256 - 32 - 4 - 16 - 16) * mb},
		{"redis_for_cf_agent_ports_free", float64(capacity.FreePorts)},
		{"redis_for_cf_agent_supervision_restarts_total", 0},
	} {
		if got := value(t, fams, c.name); got != c.want {
			t.Errorf("%s = %v, want %v", c.name, got, c.want)
		}
	}
	swept := value(t, fams, "redis_for_cf_metrics_gather_timestamp_seconds")
	if value(t, fams, "redis_for_cf_metrics_gather_duration_seconds") <= 0 {
		t.Error("redis_for_cf_metrics_gather_duration_seconds is not positive")
	}

	// A scrape without the client certificate gets 403 and no data.
	code, body, err := metrics.Get(context.Background(), h.url, h.anon)
	if err != nil {
		t.Fatal(err)
	}
	if code != http.StatusForbidden || strings.Contains(string(body), "redis_") {
		t.Errorf("without a client certificate: %d %q, want 403 and no data", code, body)
	}

	// A kill -9 of "plain": the supervisor restarts it, and both restart
	// counters say so.
	if err := syscall.Kill(pidOf(t, dir, "plain"), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for restarted := false; !restarted; {
		inst, err := m.Get(ctx, "plain")
		if err != nil {
			t.Fatal(err)
		}
		restarted = inst.Restarts == 1 && inst.State == agentapi.StateRunning
		time.Sleep(50 * time.Millisecond)
	}
	fams = h.sweepAndScrape()
	if got := v("redis_for_cf_instance_restarts_total", "plain"); got != 1 {
		t.Errorf("redis_for_cf_instance_restarts_total = %v, want 1", got)
	}
	if got := value(t, fams, "redis_for_cf_agent_supervision_restarts_total"); got != 1 {
		t.Errorf("redis_for_cf_agent_supervision_restarts_total = %v, want 1", got)
	}
	if got := value(t, fams, "redis_for_cf_metrics_gather_timestamp_seconds"); got <= swept {
		t.Errorf("the second sweep's timestamp %v is not after the first's %v", got, swept)
	}

	// A deleted instance's series go; the agent's restarts stay counted.
	if err := m.Delete(ctx, "plain"); err != nil {
		t.Fatal(err)
	}
	fams = h.sweepAndScrape()
	absent(t, fams, "redis_up", label("plain")...)
	if got := value(t, fams, "redis_for_cf_agent_supervision_restarts_total"); got != 1 {
		t.Errorf("after the delete: redis_for_cf_agent_supervision_restarts_total = %v, want 1", got)
	}
	if got := value(t, fams, "redis_for_cf_agent_instances"); got != 3 {
		t.Errorf("after the delete: redis_for_cf_agent_instances = %v, want 3", got)
	}
}

// A frozen redis-server (SIGSTOP) holds neither the scrape nor the sweep
// past its timeout: it reports redis_up 0 and the others fresh values.
func TestFrozenInstance(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m := sharedAgent(t, dir, nil)
	var clients []*redis.Client
	for i := range 3 {
		_, c := create(t, m, fmt.Sprint("i", i), 8, "")
		clients = append(clients, c)
	}
	frozen := pidOf(t, dir, "i1")

	// A collector waiting up to a minute per instance: the scrape must
	// answer while its sweep waits on the frozen server.
	slow := serve(t, m.Metrics(), time.Minute)
	before := slow.sweepAndScrape()
	if err := syscall.Kill(frozen, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	thawed := false
	thaw := func() {
		if !thawed {
			thawed = true
			if err := syscall.Kill(frozen, syscall.SIGCONT); err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(thaw)
	swept := make(chan struct{})
	go func() {
		slow.collector.Sweep(ctx)
		close(swept)
	}()
	during := slow.scrape()
	select {
	case <-swept:
		t.Fatal("the sweep ended while an instance was frozen and its timeout a minute away: the test proves nothing")
	default:
	}
	if got, want := value(t, during, "redis_for_cf_metrics_gather_timestamp_seconds"), value(t, before, "redis_for_cf_metrics_gather_timestamp_seconds"); got != want {
		t.Errorf("the scrape during the sweep served timestamp %v, want the last sweep's %v", got, want)
	}
	thaw()
	<-swept

	// A collector with a short timeout: the sweep ends without the frozen
	// server, which reports redis_up 0, and fresh values of the others.
	if err := syscall.Kill(frozen, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	thawed = false
	fast := serve(t, m.Metrics(), 500*time.Millisecond)
	if err := clients[0].Set(ctx, "fresh", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := clients[0].Get(ctx, "fresh").Err(); err != nil {
		t.Fatal(err)
	}
	fams := fast.sweepAndScrape()
	label := func(id string) []string { return []string{"service_instance_id", id, "plan", "shared-vm"} }
	if got := value(t, fams, "redis_up", label("i1")...); got != 0 {
		t.Errorf("frozen: redis_up = %v, want 0", got)
	}
	absent(t, fams, "redis_memory_used_bytes", label("i1")...)
	for _, id := range []string{"i0", "i2"} {
		if got := value(t, fams, "redis_up", label(id)...); got != 1 {
			t.Errorf("%s: redis_up = %v, want 1", id, got)
		}
	}
	if got := value(t, fams, "redis_keyspace_hits_total", label("i0")...); got != 1 {
		t.Errorf("i0: redis_keyspace_hits_total = %v, want the 1 hit made after the frozen sweep", got)
	}
	thaw()
	// Thawed, it answers again at the next sweep.
	if got := value(t, fast.sweepAndScrape(), "redis_up", label("i1")...); got != 1 {
		t.Errorf("thawed: redis_up = %v, want 1", got)
	}
}

// Scheduled backups to a local folder: each instance's last backup's time,
// size and result, and the counts by result.
func TestScheduledBackups(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store := filepath.Join(t.TempDir(), "backups")
	sched := &backup.Schedule{Schedule: "@every 1s", Destination: backup.Destination{Local: &backup.Local{Path: store}}, Retention: backup.Retention{KeepNewest: 100}}
	m := sharedAgent(t, dir, func(c *sharedagent.Config) { c.Backups = sched })
	_, c := create(t, m, "b1", 8, "")
	if err := c.Set(ctx, "k", strings.Repeat("v", 10000), 0).Err(); err != nil {
		t.Fatal(err)
	}
	h := serve(t, m.Metrics(), 5*time.Second)
	label := []string{"service_instance_id", "b1", "plan", "shared-vm"}
	fams := h.sweepAndScrape()
	if got := value(t, fams, "redis_for_cf_backups_total", append(label, "result", "success")...); got != 0 {
		t.Errorf("before any backup: success = %v", got)
	}
	absent(t, fams, "redis_for_cf_last_backup_timestamp_seconds", label...)
	if got := value(t, fams, "redis_for_cf_backup_interval_seconds"); got != 1 {
		t.Errorf("redis_for_cf_backup_interval_seconds = %v, want 1", got)
	}

	start := time.Now()
	bctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.RunBackups(bctx) }()
	for {
		if n, _ := metrics.Find(h.sweepAndScrape(), "redis_for_cf_backups_total", append(label, "result", "success")...); n >= 1 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Stopped (a backup under way finishes first), so the newest file is
	// the last backup recorded.
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	end := time.Now()
	fams = h.sweepAndScrape()
	var newest os.FileInfo
	files, err := os.ReadDir(filepath.Join(store, "b1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		fi, err := f.Info()
		if err != nil {
			t.Fatal(err)
		}
		if newest == nil || fi.Name() > newest.Name() {
			newest = fi
		}
	}
	if n := value(t, fams, "redis_for_cf_backups_total", append(label, "result", "success")...); int(n) != len(files) {
		t.Errorf("redis_for_cf_backups_total{success} = %v, the folder holds %d backups", n, len(files))
	}
	if got := value(t, fams, "redis_for_cf_backups_total", append(label, "result", "failure")...); got != 0 {
		t.Errorf("failures = %v", got)
	}
	if got := value(t, fams, "redis_for_cf_last_backup_success", label...); got != 1 {
		t.Errorf("redis_for_cf_last_backup_success = %v", got)
	}
	if got := value(t, fams, "redis_for_cf_last_backup_size_bytes", label...); got != float64(newest.Size()) {
		t.Errorf("redis_for_cf_last_backup_size_bytes = %v, the newest backup %s is %d bytes", got, newest.Name(), newest.Size())
	}
	ts := value(t, fams, "redis_for_cf_last_backup_timestamp_seconds", label...)
	if ts < float64(start.Unix()) || ts > float64(end.UnixNano())/1e9 {
		t.Errorf("redis_for_cf_last_backup_timestamp_seconds = %v, not within the run (%v to %v)", ts, start.Unix(), end.Unix())
	}
}

// Backups already in the destination (the errand's, or made before the
// agent restarted) give each instance its last backup's time and size at
// once, without counting as this agent's attempts; an instance without one
// has none.
func TestFoundBackups(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store := filepath.Join(t.TempDir(), "backups")
	older, newer := time.Date(2026, 11, 30, 3, 0, 0, 0, time.UTC), time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	for i, at := range []time.Time{older, newer} {
		name := filepath.Join(store, filepath.FromSlash(backup.ObjectName("", "b1", at)))
		if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, []byte(strings.Repeat("x", 100*(i+1))), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sched := &backup.Schedule{Schedule: "@every 1h", Destination: backup.Destination{Local: &backup.Local{Path: store}}, Retention: backup.Retention{KeepNewest: 100}}
	m := sharedAgent(t, dir, func(c *sharedagent.Config) { c.Backups = sched })
	create(t, m, "b1", 8, "")
	create(t, m, "b2", 8, "")
	h := serve(t, m.Metrics(), 5*time.Second)
	b1 := []string{"service_instance_id", "b1", "plan", "shared-vm"}
	b2 := []string{"service_instance_id", "b2", "plan", "shared-vm"}
	absent(t, h.sweepAndScrape(), "redis_for_cf_last_backup_timestamp_seconds", b1...)

	bctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.RunBackups(bctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	var fams map[string]*dto.MetricFamily
	for deadline := time.Now().Add(time.Minute); ; {
		fams = h.sweepAndScrape()
		if _, ok := metrics.Find(fams, "redis_for_cf_last_backup_timestamp_seconds", b1...); ok || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := value(t, fams, "redis_for_cf_last_backup_timestamp_seconds", b1...); got != float64(newer.Unix()) {
		t.Errorf("redis_for_cf_last_backup_timestamp_seconds = %v, want the newest backup's time %v", got, newer.Unix())
	}
	if got := value(t, fams, "redis_for_cf_last_backup_size_bytes", b1...); got != 200 {
		t.Errorf("redis_for_cf_last_backup_size_bytes = %v, want the newest backup's 200", got)
	}
	if got := value(t, fams, "redis_for_cf_backups_total", append(b1, "result", "success")...); got != 0 {
		t.Errorf("found backups counted as this agent's: success = %v", got)
	}
	absent(t, fams, "redis_for_cf_last_backup_success", b1...)
	absent(t, fams, "redis_for_cf_last_backup_timestamp_seconds", b2...)
}

// A dedicated node: its one instance labelled with the instance holding
// it, and its state.
func TestNode(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	t.Cleanup(func() { systemtest.KillStrays(dir) })
	port, err := redistest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cfg := nodeagent.Config{
		Listen:      "127.0.0.1:0",
		Credentials: agentapi.Credentials{Username: "broker", Password: secret.New()},
		TLS:         nodeagent.TLS{CertFile: "unused.pem", KeyFile: "unused.key"},
		NodeID:      "node-0",
		Host:        "127.0.0.1",
		Port:        port,
		DataDir:     dir,
		RedisServer: redistest.MustProgram(t, "redis-server"),
		MaxMemoryMB: 64,
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	n, err := nodeagent.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	n.Start(ctx)
	t.Cleanup(func() { n.Shutdown(context.Background()) })
	h := serve(t, n.Metrics(), 5*time.Second)

	state := func(fams map[string]*dto.MetricFamily, want string) {
		t.Helper()
		for _, st := range []string{agentapi.NodeFree, agentapi.NodeClaimed, agentapi.NodeResetting, agentapi.NodeResetFailed} {
			if got, w := value(t, fams, "redis_for_cf_node_state", "state", st), boolean(st == want); got != w {
				t.Errorf("redis_for_cf_node_state{state=%s} = %v, want %v", st, got, w)
			}
		}
	}
	fams := h.sweepAndScrape()
	state(fams, agentapi.NodeFree)
	if got := value(t, fams, "redis_for_cf_agent_instances"); got != 0 {
		t.Errorf("free: redis_for_cf_agent_instances = %v", got)
	}
	if f := fams["redis_up"]; f != nil {
		t.Errorf("free: redis_up series %v", f.Metric)
	}
	absent(t, fams, "redis_for_cf_agent_ports_free")

	_, c := create(t, n, "claimer", 64, "")
	if err := c.Get(ctx, "nothing").Err(); err != redis.Nil {
		t.Fatal(err)
	}
	fams = h.sweepAndScrape()
	state(fams, agentapi.NodeClaimed)
	label := []string{"service_instance_id", "claimer", "plan", "dedicated-vm"}
	if got := value(t, fams, "redis_up", label...); got != 1 {
		t.Errorf("claimed: redis_up = %v", got)
	}
	if got := value(t, fams, "redis_keyspace_misses_total", label...); got != 1 {
		t.Errorf("claimed: redis_keyspace_misses_total = %v, want 1", got)
	}
	if got := value(t, fams, "redis_memory_max_bytes", label...); got != 64*mb {
		t.Errorf("claimed: redis_memory_max_bytes = %v", got)
	}
	for name, want := range map[string]float64{
		"redis_for_cf_agent_instances":              1,
		"redis_for_cf_agent_memory_budget_bytes":    64 * mb,
		"redis_for_cf_agent_memory_allocated_bytes": 64 * mb,
		"redis_for_cf_agent_memory_free_bytes":      0,
	} {
		if got := value(t, fams, name); got != want {
			t.Errorf("claimed: %s = %v, want %v", name, got, want)
		}
	}
}

func boolean(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// go-redis logs every refused dial of the readiness probes that poll a
// starting redis-server: noise here.
func init() { redis.SetLogger(quietLogger{}) }

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}
