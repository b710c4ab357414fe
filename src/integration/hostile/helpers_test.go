package hostile_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/instance"
	"github.com/cf-redis/redis-for-cf/src/internal/jsonhttp"
	"github.com/cf-redis/redis-for-cf/src/internal/portalloc"
	"github.com/cf-redis/redis-for-cf/src/internal/redisconf"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemspec"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

var ctx = context.Background()

// redisPorts is where this suite's agents put redis-servers: outside the
// kernel's ephemeral range (32768-60999), so a port the harness picked for a
// broker or agent, free but not yet bound, is never handed to a redis-server
// meanwhile; and apart from the range the sharedvm suite uses, as suites
// run side by side.
var redisPorts = portalloc.Range{Min: 25000, Max: 25999}

// plan is one of the two plans an attack runs against.
type plan struct {
	name string
	id   string
}

var (
	sharedPlan    = plan{name: "shared-vm", id: systemtest.PlanID}
	dedicatedPlan = plan{name: "dedicated-vm", id: systemtest.DedicatedPlanID}
	plans         = []plan{sharedPlan, dedicatedPlan}
)

// memoryCeiling is the most resident memory one instance's redis-server may
// reach, whatever its tenant does: the product's ceiling (its memory
// cgroup's limit), plus 16 MiB for the pages of the redis-server binary
// and libraries that VmHWM counts but the kernel charges to whichever
// cgroup first read them.
func memoryCeiling(maxmemory int64) int64 { return redisconf.MemoryCeiling(maxmemory) + 16<<20 }

// system is a running broker with its agents and nodes, with the calls a
// spec plays Cloud Controller and a tenant with.
type system struct {
	*systemtest.System
}

// startSystem starts a system (systemspec.Start) whose agents put
// redis-servers in redisPorts; it ends with the current container.
func startSystem(opts systemtest.Options) *system {
	GinkgoHelper()
	if opts.PortRange == (portalloc.Range{}) {
		opts.PortRange = redisPorts
	}
	return &system{System: systemspec.Start(bins, opts)}
}

func newID(kind string) string { return kind + "-" + uuid.NewString()[:8] }

// tryOSB sends one OSB request as Cloud Controller would (systemtest's
// OSB) and returns the status and decoded body, or the error of a request
// that got no answer.
func (s *system) tryOSB(method, path string, body any) (int, map[string]any, error) {
	return s.OSB(method, path, body)
}

// osb is tryOSB for a broker that is expected to answer.
func (s *system) osb(method, path string, body any) (int, map[string]any) {
	GinkgoHelper()
	code, out, err := s.tryOSB(method, path, body)
	Expect(err).NotTo(HaveOccurred(), "%s %s", method, path)
	return code, out
}

func instancePath(id string) string { return "/v2/service_instances/" + url.PathEscape(id) }

func bindingPath(id, bindingID string) string {
	return instancePath(id) + "/service_bindings/" + url.PathEscape(bindingID)
}

// provisionRaw asks for an instance of p and returns the broker's first
// answer.
func (s *system) provisionRaw(p plan, id string) (int, map[string]any) {
	GinkgoHelper()
	return s.osb(http.MethodPut, instancePath(id)+"?accepts_incomplete=true", map[string]any{
		"service_id": systemtest.ServiceID, "plan_id": p.id,
		"organization_guid": "org-1", "space_guid": "space-1",
	})
}

// provision creates an instance of p, waiting for an asynchronous create to
// succeed.
func (s *system) provision(p plan, id string) {
	GinkgoHelper()
	code, body := s.provisionRaw(p, id)
	Expect(code).To(BeElementOf(http.StatusCreated, http.StatusAccepted), "provision of %s (%s): %v", id, p.name, body)
	if code == http.StatusAccepted {
		Eventually(func() any {
			_, b := s.osb(http.MethodGet, instancePath(id)+"/last_operation?operation=provision", nil)
			Expect(b["state"]).NotTo(Equal("failed"), "the provision of %s failed: %v", id, b)
			return b["state"]
		}).WithTimeout(time.Minute).Should(Equal("succeeded"))
	}
}

// provisionForSpec provisions an instance of p that is deleted when the
// spec ends, so a dedicated node is free for the next spec. That delete is
// best effort: an attack that got through may have left the instance
// undeletable, and that is the attack's spec's failure, not the cleanup's.
func (s *system) provisionForSpec(p plan, id string) {
	GinkgoHelper()
	s.provision(p, id)
	DeferCleanup(func() {
		path := fmt.Sprintf("%s?service_id=%s&plan_id=%s&accepts_incomplete=true", instancePath(id), systemtest.ServiceID, p.id)
		code, _, err := s.tryOSB(http.MethodDelete, path, nil)
		if err != nil || code != http.StatusAccepted {
			return
		}
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			code, body, err := s.tryOSB(http.MethodGet, instancePath(id)+"/last_operation?operation=delete", nil)
			if err != nil || code == http.StatusGone || body["state"] == "failed" {
				return
			}
		}
	})
}

// deprovisionRaw sends one delete and returns the broker's first answer.
func (s *system) deprovisionRaw(p plan, id string) (int, map[string]any) {
	GinkgoHelper()
	return s.osb(http.MethodDelete, fmt.Sprintf("%s?service_id=%s&plan_id=%s&accepts_incomplete=true",
		instancePath(id), systemtest.ServiceID, p.id), nil)
}

// deprovision deletes an instance with one request, which must succeed:
// 200, or 202 and then last_operation until the instance is gone, never
// "failed".
func (s *system) deprovision(p plan, id string) {
	GinkgoHelper()
	code, body := s.deprovisionRaw(p, id)
	Expect(code).To(BeElementOf(http.StatusOK, http.StatusAccepted), "the first delete of %s (%s): %v", id, p.name, body)
	if code == http.StatusAccepted {
		s.waitDeleted(id, time.Minute)
	}
}

// waitDeleted polls last_operation of a delete until the broker says the
// instance is gone (410) or the delete succeeded; a failed delete fails the
// spec.
func (s *system) waitDeleted(id string, timeout time.Duration) {
	GinkgoHelper()
	Eventually(func() bool {
		code, b := s.osb(http.MethodGet, instancePath(id)+"/last_operation?operation=delete", nil)
		Expect(b["state"]).NotTo(Equal("failed"), "the delete of %s failed: %v", id, b)
		return code == http.StatusGone || (code == http.StatusOK && b["state"] == "succeeded")
	}).WithTimeout(timeout).Should(BeTrue(), "the delete of %s did not finish", id)
}

// bindRaw asks for a binding and returns the broker's answer.
func (s *system) bindRaw(p plan, id, bindingID string) (int, map[string]any) {
	GinkgoHelper()
	return s.osb(http.MethodPut, bindingPath(id, bindingID)+"?accepts_incomplete=true", map[string]any{
		"service_id": systemtest.ServiceID, "plan_id": p.id, "app_guid": "app-" + bindingID,
		"bind_resource": map[string]any{"app_guid": "app-" + bindingID},
	})
}

// bind creates a binding and returns its credentials.
func (s *system) bind(p plan, id, bindingID string) map[string]any {
	GinkgoHelper()
	code, body := s.bindRaw(p, id, bindingID)
	Expect(code).To(Equal(http.StatusCreated), "bind %s to %s (%s): %v", bindingID, id, p.name, body)
	creds, ok := body["credentials"].(map[string]any)
	Expect(ok).To(BeTrue(), "no credentials in %v", body)
	return creds
}

// unbind deletes a binding and returns the broker's status.
func (s *system) unbind(p plan, id, bindingID string) (int, map[string]any) {
	GinkgoHelper()
	return s.osb(http.MethodDelete, fmt.Sprintf("%s?service_id=%s&plan_id=%s&accepts_incomplete=true",
		bindingPath(id, bindingID), systemtest.ServiceID, p.id), nil)
}

// update changes an instance's parameters.
func (s *system) update(id string, params map[string]any) (int, map[string]any) {
	GinkgoHelper()
	return s.osb(http.MethodPatch, instancePath(id)+"?accepts_incomplete=true", map[string]any{
		"service_id": systemtest.ServiceID, "parameters": params,
	})
}

// attributes returns GET instance's metadata attributes.
func (s *system) attributes(id string) map[string]any {
	GinkgoHelper()
	code, body := s.osb(http.MethodGet, instancePath(id), nil)
	Expect(code).To(Equal(http.StatusOK), "GET instance %s: %v", id, body)
	md, _ := body["metadata"].(map[string]any)
	attrs, _ := md["attributes"].(map[string]any)
	return attrs
}

// client is an app's go-redis client for a binding's credentials, without
// retries, so that a failure shows at once.
func client(creds map[string]any) *redis.Client {
	GinkgoHelper()
	opt, err := redis.ParseURL(creds["uri"].(string))
	Expect(err).NotTo(HaveOccurred())
	opt.MaxRetries = -1
	opt.DialTimeout = 2 * time.Second
	opt.ReadTimeout = 5 * time.Second
	opt.PoolSize = 4
	c := redis.NewClient(opt)
	DeferCleanup(c.Close)
	return c
}

// addr is where a binding's credentials say the instance listens.
func addr(creds map[string]any) string {
	return net.JoinHostPort(creds["host"].(string), strconv.Itoa(int(creds["port"].(float64))))
}

// ping opens a fresh connection with a binding's credentials and sends
// PING: a pooled connection could hide a server that refuses new ones.
func ping(creds map[string]any) error {
	opt, err := redis.ParseURL(creds["uri"].(string))
	if err != nil {
		return err
	}
	opt.MaxRetries, opt.PoolSize = -1, 1
	opt.DialTimeout, opt.ReadTimeout = 2*time.Second, 2*time.Second
	c := redis.NewClient(opt)
	defer c.Close()
	return c.Ping(ctx).Err()
}

// pingWithoutAuth sends PING on a connection that never authenticated and
// returns the server's answer.
func pingWithoutAuth(address string) error {
	c := redis.NewClient(&redis.Options{Addr: address, MaxRetries: -1, PoolSize: 1, DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second, DisableIdentity: true, Protocol: 2})
	defer c.Close()
	return c.Ping(ctx).Err()
}

// place is where an instance's agent or node keeps it and how to reach
// that agent's API.
type place struct {
	plan plan
	id   string
	// agent is the agent or node process serving the instance.
	agent *systemtest.Process
	// api calls the agent's API as the broker does (trusting the node CA
	// for a node).
	api *jsonhttp.Client
	// dir is the instance's directory (instance.PathsIn's Dir); stateDir
	// the agent's data dir with its state file; log the server's log.
	dir, stateDir, log string
}

// locate finds the agent or node holding an instance: shared instances
// live on agent 0 (the suite's systems have one shared agent), dedicated
// ones on the node the broker names.
func (s *system) locate(p plan, id string) place {
	GinkgoHelper()
	pl := place{plan: p, id: id}
	caCert := ""
	if p == sharedPlan {
		pl.agent = s.Agents[0]
		pl.stateDir = filepath.Join(s.Dir, "agent-0")
		pl.dir = filepath.Join(pl.stateDir, "instances", id)
		pl.log = filepath.Join(pl.stateDir, "logs", "redis-"+id+".log")
	} else {
		node, _ := s.attributes(id)["node"].(string)
		for i, n := range s.Nodes {
			if n.Name == node {
				pl.agent = n
				pl.stateDir = s.NodeDirs[i]
			}
		}
		Expect(pl.agent).NotTo(BeNil(), "instance %s is on node %q, not a node of the system", id, node)
		pl.dir = pl.stateDir
		pl.log = filepath.Join(pl.stateDir, "logs", "redis-server.log")
		caCert = s.CA.PEM
	}
	data, err := os.ReadFile(pl.agent.Config)
	Expect(err).NotTo(HaveOccurred())
	var cfg struct {
		Listen      string `json:"listen"`
		Credentials struct {
			Username string `json:"username"`
			Password string `json:"password"`
		} `json:"credentials"`
	}
	Expect(json.Unmarshal(data, &cfg)).To(Succeed())
	base := &url.URL{Scheme: "http", Host: cfg.Listen}
	if caCert != "" {
		base.Scheme = "https"
	}
	pl.api, err = jsonhttp.New(jsonhttp.Config{
		Noun: pl.agent.Name, Base: base, Username: cfg.Credentials.Username, Password: cfg.Credentials.Password,
		CACert: caCert, Timeout: time.Minute, Unavailable: errors.New("agent unavailable"),
	})
	Expect(err).NotTo(HaveOccurred())
	return pl
}

// agentCall sends one request to the instance's agent API, as the broker
// would, and decodes a 2xx answer into out (when not nil).
func (pl place) agentCall(method, path string, in, out any) error {
	return pl.api.Do(ctx, method, path, in, out)
}

// agentInstance is GET /v1/instances/{id} on the instance's agent.
func (pl place) agentInstance() map[string]any {
	GinkgoHelper()
	out := map[string]any{}
	Expect(pl.agentCall(http.MethodGet, "/v1/instances/"+url.PathEscape(pl.id), nil, &out)).To(Succeed(), "GET instance %s on %s", pl.id, pl.agent.Name)
	return out
}

// record reads the instance's record from its agent's state file (written
// atomically, so never half): a shared agent keeps records by id, a node
// keeps its one record at the top level.
func (pl place) record() instance.Record {
	GinkgoHelper()
	data, err := os.ReadFile(filepath.Join(pl.stateDir, "state.json"))
	Expect(err).NotTo(HaveOccurred())
	var rec instance.Record
	if pl.plan == sharedPlan {
		var st struct {
			Instances map[string]instance.Record `json:"instances"`
		}
		Expect(json.Unmarshal(data, &st)).To(Succeed())
		r, ok := st.Instances[pl.id]
		Expect(ok).To(BeTrue(), "no record of %s in %s's state", pl.id, pl.agent.Name)
		rec = r
	} else {
		Expect(json.Unmarshal(data, &rec)).To(Succeed())
		Expect(rec.ID).To(Equal(pl.id), "the record of node %s", pl.agent.Name)
	}
	return rec
}

// admin is a client of the platform's admin user of the instance at
// address, with the password from the agent's record: a test may read the
// live configuration this way, never a tenant. The password is never
// printed.
func (pl place) admin(address string) *redis.Client {
	GinkgoHelper()
	c := redis.NewClient(&redis.Options{
		Addr: address, Username: instance.AdminUser, Password: pl.record().AdminPassword,
		MaxRetries: -1, PoolSize: 1, DialTimeout: 2 * time.Second, ReadTimeout: 5 * time.Second,
		DisableIdentity: true, Protocol: 2,
	})
	DeferCleanup(c.Close)
	return c
}

// liveConfig is CONFIG GET name on the instance, as its admin.
func (pl place) liveConfig(address, name string) (string, error) {
	c := redis.NewClient(&redis.Options{
		Addr: address, Username: instance.AdminUser, Password: pl.record().AdminPassword,
		MaxRetries: -1, PoolSize: 1, DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second,
		DisableIdentity: true, Protocol: 2,
	})
	defer c.Close()
	m, err := c.ConfigGet(ctx, name).Result()
	if err != nil {
		return "", err
	}
	return m[name], nil
}

// redisPid is the pid of the instance's redis-server, from the pid file
// its agent keeps beside it (the agent writes it for every start), checked
// against /proc to be a redis-server working in this system; 0 when there
// is none now.
func (pl place) redisPid() int {
	data, err := os.ReadFile(filepath.Join(pl.dir, "redis.pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil || !strings.HasPrefix(string(comm), "redis-server") {
		return 0
	}
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil || !strings.HasPrefix(cwd, pl.dir) {
		return 0
	}
	return pid
}

// killRedis kills the instance's redis-server with SIGKILL, if it runs: the
// cleanup of an attack that left it unable to stop by itself.
func (pl place) killRedis() {
	if pid := pl.redisPid(); pid != 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// vmHWM is a process's peak resident set size in bytes (VmHWM of
// /proc/PID/status), or 0 when it is gone.
func vmHWM(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// peakRSS watches the peak RSS of an instance's redis-server, whichever
// process it is (a server the kernel killed is restarted by its agent as
// a new one): VmHWM only grows while a process lives, so sampling it often
// misses at most the last moments of a process killed for its size.
type peakRSS struct {
	mu    sync.Mutex
	peak  int64
	pids  map[int]bool
	stop  chan struct{}
	done  chan struct{}
	place place
}

// watchPeakRSS starts watching pl's redis-server until the spec ends.
func watchPeakRSS(pl place) *peakRSS {
	GinkgoHelper()
	w := &peakRSS{pids: map[int]bool{}, stop: make(chan struct{}), done: make(chan struct{}), place: pl}
	Expect(pl.redisPid()).NotTo(BeZero(), "the redis-server of %s", pl.id)
	w.sample()
	go func() {
		defer close(w.done)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
				w.sample()
			}
		}
	}()
	DeferCleanup(w.Stop)
	return w
}

func (w *peakRSS) sample() {
	pid := w.place.redisPid()
	if pid == 0 {
		return
	}
	hwm := vmHWM(pid)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pids[pid] = true
	w.peak = max(w.peak, hwm)
}

// Peak is the highest VmHWM seen.
func (w *peakRSS) Peak() int64 {
	w.sample()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.peak
}

// Pids counts the redis-server processes seen.
func (w *peakRSS) Pids() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.pids)
}

// Stop ends the watch.
func (w *peakRSS) Stop() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// authedConn opens a raw TCP connection to a binding's instance and
// authenticates with its credentials, for attacks go-redis would not send.
func authedConn(creds map[string]any) net.Conn {
	GinkgoHelper()
	c, err := net.DialTimeout("tcp", addr(creds), 2*time.Second)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(c.Close)
	user, pass := creds["username"].(string), creds["password"].(string)
	_, err = fmt.Fprintf(c, "*3\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(user), user, len(pass), pass)
	Expect(err).NotTo(HaveOccurred())
	Expect(c.SetReadDeadline(time.Now().Add(5 * time.Second))).To(Succeed())
	line, err := bufio.NewReader(c).ReadString('\n')
	Expect(err).NotTo(HaveOccurred())
	Expect(line).To(Equal("+OK\r\n"), "AUTH as the binding user")
	Expect(c.SetReadDeadline(time.Time{})).To(Succeed())
	return c
}

// resp encodes a command as a RESP array of bulk strings.
func resp(args ...string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b.Bytes()
}
