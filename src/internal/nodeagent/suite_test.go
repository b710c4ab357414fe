package nodeagent_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/nodeagent"
	"github.com/cf-redis/redis-for-cf/src/internal/params"
	"github.com/cf-redis/redis-for-cf/src/internal/secret"
	"github.com/cf-redis/redis-for-cf/src/internal/serve"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemspec"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
	"github.com/cf-redis/redis-for-cf/src/testkit/tlstest"
)

func TestNodeagent(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "nodeagent")
}

// ca signs every node's certificate; the clients trust it.
var ca *tlstest.CA

var _ = BeforeSuite(func() {
	systemspec.QuietRedisLog()
	var err error
	ca, err = tlstest.NewCA("nodes-ca")
	Expect(err).NotTo(HaveOccurred())
})

// node is a real Node behind the real handler, served over real TLS by
// serve.Server and driven through the real client, with a real redis-server.
type node struct {
	cfg    nodeagent.Config
	n      *nodeagent.Node
	url    string
	client *agentapi.Client
	cancel context.CancelFunc
	done   chan error
	// clients are every client made for the node; stopping the node closes
	// their idle connections, or the server would wait a second for each
	// HTTP/2 connection to go away.
	clients []*agentapi.Client
}

// nodeConfig is the config of a node whose files live in dir and whose
// redis-server and API listen on host (a loopback address), each on a free
// port.
func nodeConfig(dir, host string) nodeagent.Config {
	certFile, keyFile, err := ca.Issue(dir, host)
	Expect(err).NotTo(HaveOccurred())
	return nodeagent.Config{
		Listen:      net.JoinHostPort(host, "0"),
		Credentials: agentapi.Credentials{Username: "broker", Password: secret.New()},
		TLS:         nodeagent.TLS{CertFile: certFile, KeyFile: keyFile},
		NodeID:      "node-" + strings.ReplaceAll(host, ".", "-"),
		Host:        host,
		Port:        freePort(host),
		DataDir:     filepath.Join(dir, "node"),
		MaxMemoryMB: 64,
	}
}

func freePort(host string) int {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	Expect(err).NotTo(HaveOccurred())
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// testLogger logs to the spec's output, shown when it fails.
func testLogger() *slog.Logger { return slog.New(slog.NewTextHandler(GinkgoWriter, nil)) }

// startNode starts a Node on cfg and its API, and stops both when the spec
// ends (unless the spec crashed it first).
func startNode(cfg nodeagent.Config) *node { return startNodeLogging(cfg, GinkgoWriter) }

// startNodeLogging is startNode with the node's log written to w.
func startNodeLogging(cfg nodeagent.Config, w io.Writer) *node {
	Expect(cfg.Validate()).To(Succeed())
	logger := slog.New(slog.NewTextHandler(w, nil))
	n, err := nodeagent.New(cfg, logger)
	Expect(err).NotTo(HaveOccurred())
	n.Start(context.Background())

	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan net.Addr, 1)
	done := make(chan error, 1)
	srv := serve.Server{Addr: cfg.Listen, Handler: agentapi.NewHandler(n, cfg.Credentials, logger), CertFile: cfg.TLS.CertFile, KeyFile: cfg.TLS.KeyFile, Logger: logger}
	go func() { done <- srv.Run(ctx, func(a net.Addr) { addr <- a }) }()
	var a net.Addr
	select {
	case a = <-addr:
	case err := <-done:
		Fail(fmt.Sprintf("serving the node API: %v", err))
	}
	nd := &node{cfg: cfg, n: n, url: "https://" + a.String(), cancel: cancel, done: done}
	nd.client = nd.clientWith(cfg.Credentials, ca.PEM)
	DeferCleanup(nd.stop)
	return nd
}

func (nd *node) clientWith(creds agentapi.Credentials, caPEM string) *agentapi.Client {
	c, err := agentapi.NewNodeClient(agentapi.ClientConfig{URL: nd.url, Credentials: creds, CACert: caPEM})
	Expect(err).NotTo(HaveOccurred())
	nd.clients = append(nd.clients, c)
	return c
}

func (nd *node) closeClients() {
	for _, c := range nd.clients {
		c.CloseIdleConnections()
	}
}

// stop shuts the API and the node down gracefully; a second call does nothing.
func (nd *node) stop() {
	if nd.cancel == nil {
		return
	}
	nd.closeClients()
	nd.cancel()
	Expect(<-nd.done).To(Succeed())
	nd.n.Shutdown(context.Background())
	nd.cancel = nil
}

// crash ends the API and abandons redis-server running, as kill -9 of the
// agent would.
func (nd *node) crash() {
	nd.closeClients()
	nd.cancel()
	Expect(<-nd.done).To(Succeed())
	nd.n.Abandon()
	nd.cancel = nil
}

func (nd *node) addr() string {
	return net.JoinHostPort(nd.cfg.Host, strconv.Itoa(nd.cfg.Port))
}

func (nd *node) pid() int {
	data, err := os.ReadFile(filepath.Join(nd.cfg.DataDir, "redis.pid"))
	Expect(err).NotTo(HaveOccurred())
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	Expect(err).NotTo(HaveOccurred())
	return pid
}

// tenant is a client of the node's redis-server as user.
func (nd *node) tenant(user, password string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: nd.addr(), Username: user, Password: password, MaxRetries: -1})
	DeferCleanup(c.Close)
	return c
}

// bind creates a tenant binding user and returns a client logged in as it.
func (nd *node) bind(ctx context.Context, instanceID, bindingID string) (*redis.Client, string) {
	pw := secret.New()
	b, err := nd.client.Bind(ctx, instanceID, bindingID, agentapi.BindingRequest{Password: pw})
	Expect(err).NotTo(HaveOccurred())
	Expect(b).To(Equal(agentapi.Binding{Username: bindingID, Host: nd.cfg.Host, Port: nd.cfg.Port}))
	return nd.tenant(bindingID, pw), pw
}

func (nd *node) claim(ctx context.Context, instanceID string) agentapi.Instance {
	st, err := nd.client.Create(ctx, instanceID, agentapi.InstanceRequest{Parameters: params.Defaults()})
	Expect(err).NotTo(HaveOccurred())
	return st
}

// node asks the node for its place in the pool.
func (nd *node) node(ctx context.Context) agentapi.Node {
	n, err := nd.client.Node(ctx)
	Expect(err).NotTo(HaveOccurred())
	return n
}

// get describes the instance holding the node, with its server's figures.
func (nd *node) get(ctx context.Context, id string) agentapi.Instance {
	inst, err := nd.client.Get(ctx, id)
	Expect(err).NotTo(HaveOccurred())
	Expect(inst.Live).NotTo(BeNil(), "the server answers")
	return inst
}

// admin is a client of the node's redis-server as the platform's admin,
// with password: only someone with root on the VM could.
func (nd *node) admin(password string) *redis.Client { return nd.tenant(adminUser, password) }

// adminUser is the platform's ACL user (instance.AdminUser), by the name
// operators see in ACL LIST.
const adminUser = "platform-admin"

// adminPassword reads the admin password from the node's state file, as only
// someone with root on the VM could.
func (nd *node) adminPassword() string {
	var st struct {
		AdminPassword string `json:"admin_password"`
	}
	data, err := os.ReadFile(filepath.Join(nd.cfg.DataDir, "state.json"))
	Expect(err).NotTo(HaveOccurred())
	Expect(json.Unmarshal(data, &st)).To(Succeed())
	return st.AdminPassword
}

// tempDir is a directory for one spec; processes started from it are killed
// when the spec ends, even if it failed before stopping them.
func tempDir() string {
	dir := GinkgoT().TempDir()
	DeferCleanup(systemtest.KillStrays, dir)
	return dir
}

func processAlive(pid int) error { return syscall.Kill(pid, 0) }

type rawResponse struct {
	status      int
	contentType string
	body        agentapi.ErrorBody
}

// rawRequest sends a request the client would never send, over TLS that
// trusts the suite's CA.
func rawRequest(nd *node, method, path, contentType, body string, auth bool) rawResponse {
	pool := x509.NewCertPool()
	Expect(pool.AppendCertsFromPEM([]byte(ca.PEM))).To(BeTrue())
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer c.CloseIdleConnections()
	req, err := http.NewRequest(method, nd.url+path, strings.NewReader(body))
	Expect(err).NotTo(HaveOccurred())
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if auth {
		req.SetBasicAuth(nd.cfg.Credentials.Username, nd.cfg.Credentials.Password)
	}
	resp, err := c.Do(req)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	out := rawResponse{status: resp.StatusCode, contentType: resp.Header.Get("Content-Type")}
	Expect(json.NewDecoder(resp.Body).Decode(&out.body)).To(Succeed())
	return out
}
