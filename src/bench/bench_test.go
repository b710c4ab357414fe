package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	osb "sigs.k8s.io/go-open-service-broker-client/v2"

	"github.com/cf-redis/redis-for-cf/src/testkit/redistest"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

// Sizes of the experiments; scripts/bench passes them after -args.
var (
	runs         = flag.Int("runs", 20, "sequential samples of the bare start, of provision+bind+PING and of the dedicated claim")
	batches      = flag.Int("batches", 3, "batches of the concurrent provision benchmark")
	batchSize    = flag.Int("batch", 20, "provisions started at once in each batch")
	memInstances = flag.Int("mem.instances", 100, "instances created to measure the agent's RSS growth")
	memRuns      = flag.Int("mem.runs", 3, "fresh systems the memory benchmark measures")
	scaleN       = flag.Int("scale.instances", 500, "instances the scale benchmark provisions")
	scaleWorkers = flag.Int("scale.workers", 8, "provisions the scale benchmark keeps in flight")
)

// readyTimeout bounds every wait for a server to answer; a benchmark that
// hits it fails rather than hangs.
const readyTimeout = 30 * time.Second

var (
	buildOnce sync.Once
	bins      systemtest.Binaries
	binDir    string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binaries builds the broker and agent once per test binary, without the
// race detector, which would slow exactly what is measured.
func binaries(b *testing.B) systemtest.Binaries {
	b.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "redis-for-cf-bench-bin-")
		if buildErr == nil {
			bins, buildErr = systemtest.Build(binDir, false)
		}
	})
	if buildErr != nil {
		b.Fatal(buildErr)
	}
	return bins
}

// broker is what the benchmarks speak to the broker with: the real OSB client
// for every call but bind, which is sent by hand because the client decodes
// the response's endpoints[].ports as numbers, where the OSB spec (and
// brokerapi) has strings such as "32768", so its Bind fails on every answer.
type broker struct {
	osb.Client
	url, username, password string
	http                    *http.Client
}

// startSystem starts a broker and its agents in a fresh directory and stops
// them, and every process started under that directory, when b ends.
func startSystem(b *testing.B, opts systemtest.Options) (*systemtest.System, *broker) {
	b.Helper()
	bs := binaries(b)
	dir := b.TempDir()
	// Registered before Start, so whatever Start got running is killed
	// even when Start fails half way.
	var sys *systemtest.System
	b.Cleanup(func() {
		if sys != nil {
			sys.Stop()
		}
		systemtest.KillStrays(dir)
	})
	var err error
	sys, err = systemtest.Start(bs, dir, opts)
	if err != nil {
		b.Fatal(err)
	}
	c, err := sys.Client()
	if err != nil {
		b.Fatal(err)
	}
	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.Cleanup(hc.CloseIdleConnections)
	return sys, &broker{Client: c, url: sys.BrokerURL, username: sys.Username, password: sys.Password, http: hc}
}

// bind creates a binding of a shared-vm instance as Cloud Controller does and
// returns its credentials.
func (c *broker) bind(ctx context.Context, instanceID, bindingID, appGUID string) (map[string]any, error) {
	return c.bindPlan(ctx, systemtest.PlanID, instanceID, bindingID, appGUID)
}

// bindPlan is bind for an instance of the given plan.
func (c *broker) bindPlan(ctx context.Context, planID, instanceID, bindingID, appGUID string) (map[string]any, error) {
	body, err := json.Marshal(map[string]any{
		"service_id":    systemtest.ServiceID,
		"plan_id":       planID,
		"app_guid":      appGUID,
		"bind_resource": map[string]string{"app_guid": appGUID},
	})
	if err != nil {
		return nil, err
	}
	u := fmt.Sprintf("%s/v2/service_instances/%s/service_bindings/%s?accepts_incomplete=true", c.url, url.PathEscape(instanceID), url.PathEscape(bindingID))
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(c.username, c.password)
	req.Header.Set("X-Broker-API-Version", "2.14")
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, data)
	}
	var out struct {
		Credentials map[string]any `json:"credentials"`
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("decoding the bind response: %w", err)
	}
	return out.Credentials, nil
}

var ids atomic.Int64

// tenant is one provisioned and bound instance, as an app would see it.
type tenant struct {
	instanceID, bindingID string
	uri                   string
	port                  int
}

// timing is one tenant's wait, whole and in parts.
type timing struct {
	total, provision, bind, ping time.Duration
	// retries counts PINGs that failed before one was answered: the broker
	// answers only once the server serves, so anything but 0 is worth a look.
	retries int
}

func provisionRequest(id, planID string) *osb.ProvisionRequest {
	return &osb.ProvisionRequest{
		InstanceID:        id,
		AcceptsIncomplete: true,
		ServiceID:         systemtest.ServiceID,
		PlanID:            planID,
		OrganizationGUID:  "bench-org",
		SpaceGUID:         "bench-space",
	}
}

// provisionBindPing does what Cloud Controller and then an app do with a new
// shared-vm instance: provision, bind, and PING with the binding's uri. The
// clock starts at the provision request and stops at the first PONG.
func provisionBindPing(ctx context.Context, c *broker) (tenant, timing, error) {
	return provisionBindPingPlan(ctx, c, systemtest.PlanID)
}

// provisionBindPingPlan is provisionBindPing for an instance of the given plan.
func provisionBindPingPlan(ctx context.Context, c *broker, planID string) (tenant, timing, error) {
	n := ids.Add(1)
	t := tenant{instanceID: fmt.Sprintf("bench-%d-%d", os.Getpid(), n), bindingID: fmt.Sprintf("app-%d-%d", os.Getpid(), n)}
	var tm timing
	start := time.Now()
	resp, err := c.ProvisionInstance(provisionRequest(t.instanceID, planID))
	if err != nil {
		return t, tm, fmt.Errorf("provision %s: %w", t.instanceID, err)
	}
	if resp.Async {
		return t, tm, fmt.Errorf("provision %s: answered asynchronously; the benchmark expects both plans to answer when ready", t.instanceID)
	}
	tm.provision = time.Since(start)
	bstart := time.Now()
	creds, err := c.bindPlan(ctx, planID, t.instanceID, t.bindingID, "bench-app")
	if err != nil {
		return t, tm, fmt.Errorf("bind %s: %w", t.instanceID, err)
	}
	tm.bind = time.Since(bstart)
	uri, _ := creds["uri"].(string)
	if uri == "" {
		return t, tm, fmt.Errorf("bind %s: credentials have no uri", t.instanceID)
	}
	t.uri = uri
	if p, ok := creds["port"].(float64); ok {
		t.port = int(p)
	}
	pstart := time.Now()
	tm.retries, err = pingUntilPong(ctx, uri)
	if err != nil {
		return t, tm, fmt.Errorf("PING %s: %w", t.instanceID, err)
	}
	tm.ping = time.Since(pstart)
	tm.total = time.Since(start)
	return t, tm, nil
}

// pingUntilPong PINGs through a go-redis client made from uri, as an app's
// would be, every millisecond until PONG, and returns how many failed.
func pingUntilPong(ctx context.Context, uri string) (int, error) {
	opts, err := redis.ParseURL(uri)
	if err != nil {
		return 0, err
	}
	// The loop below does the retrying, every millisecond: go-redis would
	// retry a refused dial 5 times 100ms apart and a failed command 3 times.
	opts.MaxRetries = -1
	opts.DialerRetries = 1
	client := redis.NewClient(opts)
	defer client.Close()
	deadline := time.Now().Add(readyTimeout)
	for failed := 0; ; failed++ {
		err := client.Ping(ctx).Err()
		if err == nil {
			return failed, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return failed, fmt.Errorf("no PONG within %v after %d attempts: %w", readyTimeout, failed+1, err)
		}
		time.Sleep(time.Millisecond)
	}
}

// infoField is field of the INFO section (lower case: "memory") of the
// redis-server at uri, read on a connection of its own.
func infoField(ctx context.Context, uri, section, field string) (string, error) {
	opts, err := redis.ParseURL(uri)
	if err != nil {
		return "", err
	}
	c := redis.NewClient(opts)
	defer c.Close()
	info, err := c.InfoMap(ctx, section).Result()
	if err != nil {
		return "", fmt.Errorf("INFO %s: %w", section, err)
	}
	for _, fields := range info {
		if v, ok := fields[field]; ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("INFO %s has no %s", section, field)
}

// pingAs reports the error of one PING with the given uri's credentials
// against addr (host:port), or nil on PONG.
func pingAs(ctx context.Context, uri, addr string) error {
	opts, err := redis.ParseURL(uri)
	if err != nil {
		return err
	}
	opts.Addr = addr
	opts.MaxRetries = -1
	opts.DialerRetries = 1
	opts.PoolSize = 1
	client := redis.NewClient(opts)
	defer client.Close()
	return client.Ping(ctx).Err()
}

// failures counts the tenants a benchmark could not get, and explains the
// first few from the broker's and agent's logs: a failed request is a finding
// to report, not a reason to lose the other samples.
type failures struct {
	n int
}

// maxExplained is how many failures a benchmark explains in its log.
const maxExplained = 3

// record counts a failed tenant, logs why, and deletes whatever of it was
// made, as Cloud Controller's orphan mitigation would.
func (f *failures) record(b *testing.B, sys *systemtest.System, c *broker, t tenant, err error) {
	b.Helper()
	f.n++
	if f.n <= maxExplained {
		b.Logf("%v\n%s", err, logLines(sys, t.instanceID))
	}
	if t.instanceID == "" {
		return
	}
	_, _ = c.Unbind(&osb.UnbindRequest{
		InstanceID: t.instanceID, BindingID: t.bindingID, AcceptsIncomplete: true,
		ServiceID: systemtest.ServiceID, PlanID: systemtest.PlanID,
	})
	_, _ = c.DeprovisionInstance(&osb.DeprovisionRequest{
		InstanceID: t.instanceID, AcceptsIncomplete: true,
		ServiceID: systemtest.ServiceID, PlanID: systemtest.PlanID,
	})
}

// remove unbinds and deprovisions t, as Cloud Controller does on cf delete-service.
func remove(c *broker, t tenant) error {
	_, err := c.Unbind(&osb.UnbindRequest{
		InstanceID: t.instanceID, BindingID: t.bindingID, AcceptsIncomplete: true,
		ServiceID: systemtest.ServiceID, PlanID: systemtest.PlanID,
	})
	if err != nil {
		return fmt.Errorf("unbind %s: %w", t.instanceID, err)
	}
	_, err = c.DeprovisionInstance(&osb.DeprovisionRequest{
		InstanceID: t.instanceID, AcceptsIncomplete: true,
		ServiceID: systemtest.ServiceID, PlanID: systemtest.PlanID,
	})
	if err != nil {
		return fmt.Errorf("deprovision %s: %w", t.instanceID, err)
	}
	return nil
}

// removeAll removes tenants, four at a time.
func removeAll(c *broker, ts []tenant) error {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	errs := make([]error, len(ts))
	for i, t := range ts {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = remove(c, t)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// bareServer is a redis-server started by hand, the baseline.
type bareServer struct {
	cmd       *exec.Cmd
	addr      string
	dir, conf string
	exited    chan struct{}
}

// redisServerPath is the tests' Redis build's redis-server
// (redistest.Program), the one the agents run.
func redisServerPath() (string, error) {
	return redistest.Program("redis-server")
}

// startBare writes a minimal redis.conf, plus the lines extra, into a new
// directory under parent and runs redis-server on it; the clock starts at
// exec and stops at the first PONG, polled every millisecond on a fresh
// connection.
func startBare(parent string, extra ...string) (*bareServer, time.Duration, error) {
	dir, err := os.MkdirTemp(parent, "bare-")
	if err != nil {
		return nil, 0, err
	}
	port, err := redistest.FreePort()
	if err != nil {
		return nil, 0, err
	}
	conf := filepath.Join(dir, "redis.conf")
	s := &bareServer{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir, conf: conf}
	lines := []string{
		"port " + strconv.Itoa(port),
		"bind 127.0.0.1",
		"daemonize no",
		`logfile ""`,
		"dir " + dir,
		`save ""`,
		"appendonly no",
	}
	lines = append(lines, extra...)
	if err := os.WriteFile(conf, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return nil, 0, err
	}
	d, err := s.launch()
	if err != nil {
		return nil, 0, err
	}
	return s, d, nil
}

// restart stops the server gracefully (SIGTERM) and starts it again on the
// same directory and port; the clock starts at the signal and stops at the
// new process's first PONG.
func (s *bareServer) restart() (time.Duration, error) {
	start := time.Now()
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	<-s.exited
	_, err := s.launch()
	return time.Since(start), err
}

// launch runs redis-server on s.conf and waits for its first PONG, polled
// every millisecond on a fresh connection; it returns the time from exec.
func (s *bareServer) launch() (time.Duration, error) {
	logf, err := os.OpenFile(filepath.Join(s.dir, "redis.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	s.exited = make(chan struct{})
	server, err := redisServerPath()
	if err != nil {
		return 0, err
	}
	s.cmd = exec.Command(server, s.conf)
	s.cmd.Dir = s.dir
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := s.cmd.Start(); err != nil {
		return 0, err
	}
	cmd, exited := s.cmd, s.exited
	go func() { _ = cmd.Wait(); close(exited) }()
	deadline := start.Add(readyTimeout)
	for !pingRaw(s.addr) {
		select {
		case <-s.exited:
			return 0, fmt.Errorf("bare redis-server exited before answering PING; see %s", logf.Name())
		default:
		}
		if time.Now().After(deadline) {
			s.stop()
			return 0, fmt.Errorf("bare redis-server did not answer PING on %s within %v", s.addr, readyTimeout)
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(start), nil
}

func (s *bareServer) pid() int { return s.cmd.Process.Pid }

func (s *bareServer) stop() {
	_ = s.cmd.Process.Kill()
	<-s.exited
}

// pingRaw sends PING on a new connection and reports whether PONG came back.
func pingRaw(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}

// bareStarts starts n bare servers one after the other, each stopped before
// the next starts, and returns their start times in ms.
func bareStarts(b *testing.B, n int) []float64 {
	b.Helper()
	parent := b.TempDir()
	var out []float64
	for range n {
		s, d, err := startBare(parent)
		if err != nil {
			b.Fatal(err)
		}
		s.stop()
		out = append(out, ms(d))
	}
	return out
}

// bareStartsAtOnce starts n bare servers at the same moment and returns each
// one's start time in ms.
func bareStartsAtOnce(b *testing.B, n int) []float64 {
	b.Helper()
	parent := b.TempDir()
	out := make([]float64, n)
	errs := make([]error, n)
	servers := make([]*bareServer, n)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-gate
			s, d, err := startBare(parent)
			servers[i], out[i], errs[i] = s, ms(d), err
		})
	}
	close(gate)
	wg.Wait()
	for _, s := range servers {
		if s != nil {
			s.stop()
		}
	}
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// summary is the spread of a set of samples.
type summary struct {
	n                       int
	p50, p10, p90, min, max float64
}

func summarize(xs []float64) summary {
	if len(xs) == 0 {
		return summary{p50: math.NaN(), p10: math.NaN(), p90: math.NaN(), min: math.NaN(), max: math.NaN()}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return summary{n: len(s), p50: quantile(s, 0.5), p10: quantile(s, 0.1), p90: quantile(s, 0.9), min: s[0], max: s[len(s)-1]}
}

// quantile interpolates linearly between the closest ranks of sorted s.
func quantile(s []float64, q float64) float64 {
	pos := q * float64(len(s)-1)
	lo := int(math.Floor(pos))
	hi := min(lo+1, len(s)-1)
	return s[lo] + (pos-float64(lo))*(s[hi]-s[lo])
}

// report puts the spread of xs into the benchmark's output as unit-p50,
// unit-p10, unit-p90, unit-min and unit-max, and hides the meaningless ns/op
// (one op is a whole experiment).
func report(b *testing.B, unit string, xs []float64) summary {
	s := summarize(xs)
	b.ReportMetric(s.p50, unit+"-p50")
	b.ReportMetric(s.p10, unit+"-p10")
	b.ReportMetric(s.p90, unit+"-p90")
	b.ReportMetric(s.min, unit+"-min")
	b.ReportMetric(s.max, unit+"-max")
	b.ReportMetric(0, "ns/op")
	return s
}

// statusKB reads a "Field:   123 kB" line of /proc/pid/status.
func statusKB(pid int, field string) (int64, error) {
	return procKB(filepath.Join("/proc", strconv.Itoa(pid), "status"), field)
}

// meminfoKB reads a field of /proc/meminfo.
func meminfoKB(field string) (int64, error) { return procKB("/proc/meminfo", field) }

func procKB(path, field string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(data)) {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || name != field {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			break
		}
		return strconv.ParseInt(f[0], 10, 64)
	}
	return 0, fmt.Errorf("%s has no %s", path, field)
}

// logLines returns the lines of the broker's and agents' logs that mention
// id, to explain a failed request.
func logLines(sys *systemtest.System, id string) string {
	var out []string
	for _, p := range append([]*systemtest.Process{sys.Broker}, sys.Agents...) {
		for line := range strings.Lines(p.Log()) {
			if strings.Contains(line, id) {
				out = append(out, p.Name+": "+strings.TrimSpace(line))
			}
		}
	}
	return strings.Join(out, "\n")
}

// instancePid reads the pid file the agent keeps for an instance's server.
func instancePid(sys *systemtest.System, agent int, instanceID string) (int, error) {
	data, err := os.ReadFile(filepath.Join(sys.Dir, fmt.Sprintf("agent-%d", agent), "instances", instanceID, "redis.pid"))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(data)))
}

// cpuTicks returns utime+stime of pid, in clock ticks.
func cpuTicks(pid int) (int64, error) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces; fields follow it.
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	return ut + st, errors.Join(err1, err2)
}

// openFilesLimit returns the soft "Max open files" of pid.
func openFilesLimit(pid int) string {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "limits"))
	if err != nil {
		return "?"
	}
	for line := range strings.Lines(string(data)) {
		if strings.HasPrefix(line, "Max open files") {
			if f := strings.Fields(line); len(f) >= 5 {
				return f[3]
			}
		}
	}
	return "?"
}

// countFDs counts the open descriptors of pid.
func countFDs(pid int) int {
	entries, _ := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "fd"))
	return len(entries)
}
