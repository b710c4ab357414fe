// Package systemtest runs the real product on this machine for integration
// tests and benchmarks: the redis-broker and redis-shared-agent binaries,
// built from this tree, with configs in a temporary directory, as separate
// processes that a test can kill -9 and start again.
//
// Cloud Controller is the one part that cannot run here; tests play its role
// with a real OSB client.
package systemtest

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	osb "sigs.k8s.io/go-open-service-broker-client/v2"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/backup"
	"github.com/cf-redis/redis-for-cf/src/internal/broker"
	"github.com/cf-redis/redis-for-cf/src/internal/cgroup"
	"github.com/cf-redis/redis-for-cf/src/internal/instance"
	"github.com/cf-redis/redis-for-cf/src/internal/metrics"
	"github.com/cf-redis/redis-for-cf/src/internal/nodeagent"
	"github.com/cf-redis/redis-for-cf/src/internal/portalloc"
	"github.com/cf-redis/redis-for-cf/src/internal/sharedagent"
	"github.com/cf-redis/redis-for-cf/src/testkit/redistest"
	"github.com/cf-redis/redis-for-cf/src/testkit/tlstest"
)

// Fixed catalog ids of the systems this package starts.
const (
	ServiceID = "6e1d2e3f-6b5a-4b8e-9a61-2f0c9d1e7a10"
	PlanID    = "a3c1b7e2-0d4f-4c59-8e2b-61f5d0c9b342"
	// DedicatedPlanID is the dedicated-vm plan's id, present when
	// Options.Nodes is positive.
	DedicatedPlanID = "c2f7a9d4-1e3b-4f6a-8d5c-7b9e0a1f2c33"
	// HAPlanID is the dedicated-ha plan's id (Options.HA, three nodes or
	// more).
	HAPlanID = "5e8b1c2d-9a7f-4e3b-b6d1-2f0c8a9e7d44"
)

// Binaries are the paths of the built programs.
type Binaries struct {
	Broker, SharedAgent, NodeAgent, Backup string
}

// Build compiles the programs into dir; race adds the race detector.
func Build(dir string, race bool) (Binaries, error) {
	root, err := moduleRoot()
	if err != nil {
		return Binaries{}, err
	}
	args := []string{"build", "-o", dir + "/"}
	if race {
		args = append(args, "-race")
	}
	args = append(args, "./src/cmd/redis-broker", "./src/cmd/redis-shared-agent", "./src/cmd/redis-node-agent", "./src/cmd/redis-backup")
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return Binaries{}, fmt.Errorf("go build: %v\n%s", err, out)
	}
	return Binaries{
		Broker:      filepath.Join(dir, "redis-broker"),
		SharedAgent: filepath.Join(dir, "redis-shared-agent"),
		NodeAgent:   filepath.Join(dir, "redis-node-agent"),
		Backup:      filepath.Join(dir, "redis-backup"),
	}, nil
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("finding the module root: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the module")
	}
	return filepath.Dir(gomod), nil
}

// Options shape a system. Zero values take the defaults on each field.
type Options struct {
	// Agents is the number of shared agents; zero means 1.
	Agents int
	// MaxInstances is the plan's instance limit; zero means 100.
	MaxInstances int
	// MaxMemoryMB is each instance's limit; zero means 16.
	MaxMemoryMB int64
	// AgentMemoryMB is each agent's budget; zero means 8192.
	AgentMemoryMB int64
	// PortRange is the agents' port range; the zero value means the
	// product default.
	PortRange portalloc.Range
	// Nodes is the number of dedicated nodes; zero leaves the dedicated-vm
	// plan out. Node i listens on its own loopback address, 127.0.1.(i+1),
	// with its agent and redis-server on free ports.
	Nodes int
	// HA gives every node a Sentinel (the node config's ha section), all
	// on one port free on every node's address, as a deployment's nodes
	// share the redis-node job's ha.sentinel_port; with three nodes or
	// more the broker offers the dedicated-ha plan (HAPlanID) too.
	HA bool
	// NodeMemoryMB is each node's maxmemory; zero means 64.
	NodeMemoryMB int64
	// BrokerNodeCA, when set, is the PEM CA the broker's config trusts for
	// the nodes' certificates in place of the CA that signed them: a broker
	// that must refuse to talk to its nodes. Empty means the right CA.
	BrokerNodeCA string
	// Backups, when set, is the broker's backup destination, from which app
	// developers restore.
	Backups *backup.Destination
	// AgentBackups, when set, makes every agent and node back up its
	// instances on this schedule.
	AgentBackups *backup.Schedule
	// RedisTLS turns TLS on for the Redis ports of every agent and node
	// (redis_tls), with certificates a CA of its own (System.RedisCA)
	// signed.
	RedisTLS bool
	// BrokerConfig holds extra top-level keys merged into the broker's
	// config file, replacing a key the system sets; nil adds none. It lets
	// a test set what Options has no field for (and a broker that rejects
	// unknown keys refuse to start).
	BrokerConfig map[string]any
	// AgentConfig holds extra top-level keys merged into the config file of
	// every shared agent and every dedicated node, as BrokerConfig does for
	// the broker; nil adds none.
	AgentConfig map[string]any
	// MetricsCA, when set, makes every shared agent and dedicated node
	// serve its metrics on its own host and a free port, with a
	// certificate this CA issued for that host and this CA for the
	// scrapers' certificates (Process.MetricsURL).
	MetricsCA *tlstest.CA
}

// System is a running broker and its agents.
type System struct {
	Dir       string
	BrokerURL string
	Username  string
	Password  string
	Broker    *Process
	Agents    []*Process
	// Nodes are the dedicated nodes' agents; NodeDirs their data dirs.
	Nodes    []*Process
	NodeDirs []string
	// NodeClients reach the nodes' APIs as the broker does; NodeHosts and
	// NodePorts are their redis-servers' addresses, SentinelPorts their
	// Sentinels' ports (Options.HA).
	NodeClients   []agentapi.ClientConfig
	NodeHosts     []string
	NodePorts     []int
	SentinelPorts []int
	// CA signed the nodes' certificates.
	CA *tlstest.CA
	// RedisCA signed the redis-servers' certificates when Options.RedisTLS
	// is set; RedisCAFile holds it.
	RedisCA     *tlstest.CA
	RedisCAFile string
}

// redisTLS issues a redis-server certificate for host into dir/name and
// returns the redis_tls config naming it.
func (s *System) redisTLS(name, host string) (*instance.RedisTLS, error) {
	dir := filepath.Join(s.Dir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	certFile, keyFile, err := s.RedisCA.Issue(dir, host)
	if err != nil {
		return nil, err
	}
	return &instance.RedisTLS{CertFile: certFile, KeyFile: keyFile, CAFile: s.RedisCAFile}, nil
}

// Start starts the agents, then the broker, each with a fresh config in dir,
// and waits until they answer. The agents run the tests' Redis build
// (redistest.Program).
func Start(bins Binaries, dir string, opts Options) (*System, error) {
	redisServer, err := redistest.Program("redis-server")
	if err != nil {
		return nil, err
	}
	if opts.Agents == 0 {
		opts.Agents = 1
	}
	if opts.MaxInstances == 0 {
		opts.MaxInstances = 100
	}
	if opts.MaxMemoryMB == 0 {
		opts.MaxMemoryMB = 16
	}
	if opts.AgentMemoryMB == 0 {
		opts.AgentMemoryMB = 8192
	}
	s := &System{Dir: dir, Username: "osb-user", Password: "osb-" + strconv.FormatInt(time.Now().UnixNano(), 36)}
	if opts.RedisTLS {
		ca, err := tlstest.NewCA("systemtest-redis")
		if err != nil {
			return nil, err
		}
		s.RedisCA, s.RedisCAFile = ca, filepath.Join(dir, "redis-ca.pem")
		if err := os.WriteFile(s.RedisCAFile, []byte(ca.PEM), 0o600); err != nil {
			return nil, err
		}
	}
	var agents []broker.AgentConfig
	for i := range opts.Agents {
		port, err := redistest.FreePort()
		if err != nil {
			return nil, err
		}
		cfg := sharedagent.Config{
			Listen:         net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
			Credentials:    agentapi.Credentials{Username: "broker", Password: fmt.Sprintf("agent-secret-%d-%d", i, time.Now().UnixNano())},
			Host:           "127.0.0.1",
			DataDir:        filepath.Join(dir, fmt.Sprintf("agent-%d", i)),
			RedisServer:    redisServer,
			Ports:          opts.PortRange,
			MemoryBudgetMB: opts.AgentMemoryMB,
			Backups:        opts.AgentBackups,
		}
		if opts.RedisTLS {
			if cfg.RedisTLS, err = s.redisTLS(fmt.Sprintf("agent-%d-redis-tls", i), cfg.Host); err != nil {
				return nil, err
			}
		}
		p := &Process{Name: fmt.Sprintf("agent-%d", i), Path: bins.SharedAgent, Addr: cfg.Listen, Config: filepath.Join(dir, fmt.Sprintf("agent-%d.json", i))}
		if cfg.Metrics, p.MetricsURL, err = metricsConfig(opts.MetricsCA, filepath.Join(dir, p.Name+"-metrics"), cfg.Host); err != nil {
			return nil, err
		}
		if err := writeConfig(p.Config, cfg, opts.AgentConfig); err != nil {
			return nil, err
		}
		s.Agents = append(s.Agents, p)
		agents = append(agents, broker.AgentConfig{ID: fmt.Sprintf("shared-%d", i), ClientConfig: agentapi.ClientConfig{URL: "http://" + cfg.Listen, Credentials: cfg.Credentials}})
	}
	var nodes []broker.NodeConfig
	if opts.Nodes > 0 {
		ca, err := tlstest.NewCA("systemtest-nodes")
		if err != nil {
			return nil, err
		}
		s.CA = ca
		if opts.NodeMemoryMB == 0 {
			opts.NodeMemoryMB = 64
		}
	}
	sentinelPort := 0
	if opts.HA {
		if sentinelPort, err = freePortOnAll(nodeHosts(opts.Nodes)); err != nil {
			return nil, err
		}
	}
	for i := range opts.Nodes {
		host := nodeHosts(opts.Nodes)[i]
		apiPort, err := freePortBut(host, sentinelPort)
		if err != nil {
			return nil, err
		}
		redisPort, err := freePortBut(host, sentinelPort, apiPort)
		if err != nil {
			return nil, err
		}
		nodeDir := filepath.Join(dir, fmt.Sprintf("node-%d", i))
		if err := os.MkdirAll(nodeDir, 0o700); err != nil {
			return nil, err
		}
		certFile, keyFile, err := s.CA.Issue(nodeDir, host)
		if err != nil {
			return nil, err
		}
		id := fmt.Sprintf("node-%d", i)
		cfg := nodeagent.Config{
			Listen:      net.JoinHostPort(host, strconv.Itoa(apiPort)),
			Credentials: agentapi.Credentials{Username: "broker", Password: fmt.Sprintf("node-secret-%d-%d", i, time.Now().UnixNano())},
			TLS:         nodeagent.TLS{CertFile: certFile, KeyFile: keyFile},
			NodeID:      id,
			Host:        host,
			Port:        redisPort,
			DataDir:     filepath.Join(nodeDir, "data"),
			RedisServer: redisServer,
			MaxMemoryMB: opts.NodeMemoryMB,
			Backups:     opts.AgentBackups,
		}
		if opts.RedisTLS {
			if cfg.RedisTLS, err = s.redisTLS(id+"-redis-tls", host); err != nil {
				return nil, err
			}
			if cfg.TLSPort, err = freePortBut(host, sentinelPort, apiPort, redisPort); err != nil {
				return nil, err
			}
		}
		if opts.HA {
			cfg.HA = &nodeagent.HAConfig{SentinelPort: sentinelPort}
			s.SentinelPorts = append(s.SentinelPorts, sentinelPort)
		}
		p := &Process{Name: id, Path: bins.NodeAgent, Addr: cfg.Listen, Config: filepath.Join(dir, id+".json")}
		if cfg.Metrics, p.MetricsURL, err = metricsConfig(opts.MetricsCA, filepath.Join(nodeDir, "metrics"), host); err != nil {
			return nil, err
		}
		if err := writeConfig(p.Config, cfg, opts.AgentConfig); err != nil {
			return nil, err
		}
		s.Nodes = append(s.Nodes, p)
		s.NodeDirs = append(s.NodeDirs, cfg.DataDir)
		nodes = append(nodes, broker.NodeConfig{ID: id, ClientConfig: agentapi.ClientConfig{
			URL: "https://" + cfg.Listen, Credentials: cfg.Credentials, CACert: cmp.Or(opts.BrokerNodeCA, s.CA.PEM),
		}})
		s.NodeClients = append(s.NodeClients, agentapi.ClientConfig{URL: "https://" + cfg.Listen, Credentials: cfg.Credentials, CACert: s.CA.PEM, Noun: "node"})
		s.NodeHosts, s.NodePorts = append(s.NodeHosts, host), append(s.NodePorts, redisPort)
	}
	port, err := redistest.FreePort()
	if err != nil {
		return nil, err
	}
	bcfg := broker.Config{
		Listen:      net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		Credentials: agentapi.Credentials{Username: s.Username, Password: s.Password},
		StateDir:    filepath.Join(dir, "broker"),
		Catalog:     broker.Catalog{ServiceID: ServiceID},
		SharedVM: &broker.SharedVMPlan{
			PlanID:       PlanID,
			MaxInstances: opts.MaxInstances,
			MaxMemoryMB:  opts.MaxMemoryMB,
			Agents:       agents,
		},
	}
	if len(nodes) > 0 {
		bcfg.DedicatedVM = &broker.DedicatedVMPlan{PlanID: DedicatedPlanID, Nodes: nodes}
		if opts.HA && len(nodes) >= 3 {
			bcfg.DedicatedHA = &broker.DedicatedHAPlan{PlanID: HAPlanID, SentinelPort: sentinelPort}
		}
	}
	bcfg.Backups = opts.Backups
	s.BrokerURL = "http://" + bcfg.Listen
	s.Broker = &Process{Name: "broker", Path: bins.Broker, Addr: bcfg.Listen, Config: filepath.Join(dir, "broker.json")}
	if err := writeConfig(s.Broker.Config, bcfg, opts.BrokerConfig); err != nil {
		return nil, err
	}
	for _, p := range append(append(append([]*Process{}, s.Agents...), s.Nodes...), s.Broker) {
		if err := p.Start(); err != nil {
			s.Stop()
			return nil, err
		}
	}
	return s, nil
}

// nodeHosts are the loopback addresses of n dedicated nodes.
func nodeHosts(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("127.0.1.%d", i+1)
	}
	return out
}

// freePortBut is a free port on host other than those given.
func freePortBut(host string, taken ...int) (int, error) {
	for {
		port, err := redistest.FreePortOn(host)
		if err != nil || !slices.Contains(taken, port) {
			return port, err
		}
	}
}

// freePortOnAll is a port free on every one of hosts.
func freePortOnAll(hosts []string) (int, error) {
	if len(hosts) == 0 {
		return 0, errors.New("no hosts")
	}
	for range 100 {
		port, err := redistest.FreePortOn(hosts[0])
		if err != nil {
			return 0, err
		}
		free := true
		for _, h := range hosts[1:] {
			l, err := net.Listen("tcp", net.JoinHostPort(h, strconv.Itoa(port)))
			if err != nil {
				free = false
				break
			}
			_ = l.Close()
		}
		if free {
			return port, nil
		}
	}
	return 0, fmt.Errorf("no port free on all of %v", hosts)
}

// metricsConfig is the metrics object of a process serving on host, its
// files in dir, and its URL; none without a CA.
func metricsConfig(ca *tlstest.CA, dir, host string) (metrics.Config, string, error) {
	if ca == nil {
		return metrics.Config{}, "", nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return metrics.Config{}, "", err
	}
	cert, key, caFile, err := ca.RedisFiles(dir, host)
	if err != nil {
		return metrics.Config{}, "", err
	}
	port, err := redistest.FreePortOn(host)
	if err != nil {
		return metrics.Config{}, "", err
	}
	listen := net.JoinHostPort(host, strconv.Itoa(port))
	return metrics.Config{Listen: listen, CertFile: cert, KeyFile: key, CAFile: caFile}, "https://" + listen + metrics.Path, nil
}

// writeConfig writes cfg as a JSON config file with the keys of extra added
// at the top level (replacing cfg's own of the same name).
func writeConfig(path string, cfg any, extra map[string]any) error {
	if len(extra) == 0 {
		return writeJSON(path, cfg)
	}
	data, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	merged := map[string]any{}
	if err := json.Unmarshal(data, &merged); err != nil {
		return err
	}
	maps.Copy(merged, extra)
	return writeJSON(path, merged)
}

func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o600)
}

// Client returns a real OSB client for the broker, speaking API 2.14 with
// the alpha features (GET instance and binding) on.
func (s *System) Client() (osb.Client, error) {
	cfg := osb.DefaultClientConfiguration()
	cfg.Name = "systemtest"
	cfg.URL = s.BrokerURL
	cfg.APIVersion = osb.Version2_14()
	cfg.EnableAlphaFeatures = true
	cfg.TimeoutSeconds = 60
	cfg.AuthConfig = &osb.AuthConfig{BasicAuthConfig: &osb.BasicAuthConfig{Username: s.Username, Password: s.Password}}
	return osb.NewClient(cfg)
}

// Stop stops the broker and agents gracefully (agents stop their
// redis-servers), then kills anything started from dir that is still alive,
// so a failed test leaves no process behind.
func (s *System) Stop() {
	if s.Broker != nil {
		_ = s.Broker.Stop()
	}
	for _, a := range append(append([]*Process{}, s.Agents...), s.Nodes...) {
		_ = a.Stop()
	}
	KillStrays(s.Dir)
}

// KillStrays kills every process whose command line mentions dir or whose
// working directory is inside it, and removes the cgroups of the agents
// whose data dirs are inside it: the redis-servers an agent killed with -9
// left behind, for one (redis-server rewrites its command line to
// "redis-server HOST:PORT", so only its working directory, the instance's
// data directory, still names dir).
func KillStrays(dir string) {
	for _, pid := range Strays(dir) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	// And the cgroups of agents whose data dirs are in dir, which an agent
	// killed with -9 never removed.
	_ = cgroup.DestroyUnder(dir)
}

// Strays returns the pids of the processes KillStrays would kill.
func Strays(dir string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		cwd, _ := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		if strings.Contains(string(cmdline), dir) || cwd == dir || strings.HasPrefix(cwd, dir+"/") {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Process is one of the system's programs.
type Process struct {
	Name   string
	Path   string
	Config string
	// Addr is the host:port the process serves on.
	Addr string
	// MetricsURL is where an agent or node serves its metrics when
	// Options.MetricsCA is set; empty otherwise.
	MetricsURL string
	cmd        *exec.Cmd
	done       chan struct{}
}

// Start runs the process and waits until its port accepts connections.
func (p *Process) Start() error {
	log, err := os.OpenFile(p.Config+".log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.Path, "-config", p.Config)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		log.Close()
		return err
	}
	p.cmd = cmd
	p.done = make(chan struct{})
	go func() {
		_ = cmd.Wait()
		log.Close()
		close(p.done)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited at start; see %s.log", p.Name, p.Config)
		default:
		}
		if c, err := net.DialTimeout("tcp", p.Addr, 100*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("%s did not listen on %s within 30s", p.Name, p.Addr)
}

// Kill9 kills the process with SIGKILL and waits for it to be gone.
func (p *Process) Kill9() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	p.cmd = nil
}

// Stop sends SIGTERM and waits up to a minute, then kills.
func (p *Process) Stop() error {
	if p.cmd == nil {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		p.Kill9()
		return fmt.Errorf("%s did not stop within a minute of SIGTERM", p.Name)
	}
	p.cmd = nil
	return nil
}

// Pid is the running process's pid, or 0.
func (p *Process) Pid() int {
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Log returns what the process wrote to its log so far.
func (p *Process) Log() string {
	data, _ := os.ReadFile(p.Config + ".log")
	return string(data)
}

// WaitHTTP polls url until it answers any HTTP status or ctx ends.
func WaitHTTP(ctx context.Context, url string) error {
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// FreePortRange finds n consecutive ports on 127.0.0.1 that are free now.
func FreePortRange(n int) (int, error) {
	for start := 45000; start+n < 60000; start += n {
		ok := true
		for p := start; p < start+n && ok; p++ {
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			if err != nil {
				ok = false
				continue
			}
			l.Close()
		}
		if ok {
			return start, nil
		}
	}
	return 0, errors.New("no free port range")
}
