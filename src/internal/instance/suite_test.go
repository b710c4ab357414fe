package instance_test

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/instance"
	"github.com/cf-redis/redis-for-cf/src/internal/keylock"
	"github.com/cf-redis/redis-for-cf/src/internal/params"
	"github.com/cf-redis/redis-for-cf/src/internal/secret"
	"github.com/cf-redis/redis-for-cf/src/testkit/redistest"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

func TestInstance(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "instance")
}

var _ = BeforeSuite(func() {
	// go-redis logs every refused dial, and readiness probes dial before
	// redis-server listens: show those logs only with a failing spec.
	redis.SetLogger(ginkgoLogger{})
})

type ginkgoLogger struct{}

func (ginkgoLogger) Printf(_ context.Context, format string, v ...any) {
	fmt.Fprintf(GinkgoWriter, "go-redis: "+format+"\n", v...)
}

// memStore keeps one record in memory, as an agent's state file would; gone
// makes it answer as an agent whose instance was deleted.
type memStore struct {
	mu   sync.Mutex
	r    instance.Record
	gone bool
}

func (m *memStore) Current() (instance.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return clone(m.r), nil
}

func (m *memStore) Held(id string) (instance.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.gone || id != m.r.ID {
		return instance.Record{}, fmt.Errorf("%w: no instance %s", agentapi.ErrNotFound, id)
	}
	return clone(m.r), nil
}

func (m *memStore) Update(id string, change func(*instance.Record) error) (instance.Record, error) {
	if _, err := m.Held(id); err != nil {
		return instance.Record{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	r := clone(m.r)
	if err := change(&r); err != nil {
		return instance.Record{}, err
	}
	m.r = r
	return clone(r), nil
}

func (m *memStore) setGone(gone bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gone = gone
}

func clone(r instance.Record) instance.Record {
	r.Users = maps.Clone(r.Users)
	return r
}

var _ instance.Store = (*memStore)(nil)

// server is an instance.Server on a real redis-server, with its store.
type server struct {
	*instance.Server
	store   *memStore
	env     *instance.Env
	paths   instance.Paths
	locks   *keylock.Map
	started *atomic.Bool
}

// newServer is a Server of a new record in dir; it starts nothing and
// shuts its redis-server down when the spec ends.
func newServer(dir, id string, tls *instance.RedisTLS) *server {
	port, err := redistest.FreePort()
	Expect(err).NotTo(HaveOccurred())
	r := instance.Record{
		ID: id, Port: port, MaxMemoryBytes: 64 << 20, Parameters: params.Defaults(),
		AdminPassword: secret.New(), CreatedAt: time.Now().UTC(),
	}
	if tls != nil {
		r.TLSPort, err = redistest.FreePort()
		Expect(err).NotTo(HaveOccurred())
	}
	path, err := instance.Setup(tls, redistest.MustProgram(GinkgoT(), "redis-server"), dir)
	Expect(err).NotTo(HaveOccurred())
	started := &atomic.Bool{}
	started.Store(true)
	env := &instance.Env{
		Host: "127.0.0.1", Bind: "127.0.0.1", RedisServer: path, TLS: tls, Plan: "test",
		Logger: slog.New(slog.NewTextHandler(GinkgoWriter, nil)), Started: started.Load,
	}
	s := &server{store: &memStore{r: r}, env: env, paths: instance.PathsIn(filepath.Join(dir, id), filepath.Join(dir, id+".log")), locks: &keylock.Map{}, started: started}
	s.Server = s.again()
	DeferCleanup(func() { s.Shutdown(context.Background()) })
	return s
}

// again is another Server of the same record and files, as a restarted
// agent makes.
func (s *server) again() *instance.Server {
	return instance.New(instance.Config{
		Env: s.env, Name: s.store.r.ID, Paths: s.paths, Store: s.store,
		Lock: func(ctx context.Context) (func(), error) { return s.locks.LockContext(ctx, "x") },
	})
}

func (s *server) record() instance.Record {
	r, err := s.store.Current()
	Expect(err).NotTo(HaveOccurred())
	return r
}

func (s *server) id() string { return s.record().ID }

// start starts the server and checks it runs.
func (s *server) start(ctx context.Context) {
	Expect(s.Start(ctx)).To(Succeed())
	Expect(s.Describe(s.record()).State).To(Equal(agentapi.StateRunning))
}

func (s *server) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.record().Port)) }

// tenant is a client of the server as user.
func (s *server) tenant(user, password string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.addr(), Username: user, Password: password, MaxRetries: -1})
	DeferCleanup(c.Close)
	return c
}

// admin is a client of the server as the platform's admin user.
func (s *server) admin() *redis.Client {
	return s.tenant(instance.AdminUser, s.record().AdminPassword)
}

// bind creates a tenant binding and returns a client logged in as it.
func (s *server) bind(ctx context.Context, bindingID string) (*redis.Client, string) {
	pw := secret.New()
	b, created, err := s.Bind(ctx, s.id(), bindingID, agentapi.BindingRequest{Password: pw})
	Expect(err).NotTo(HaveOccurred())
	Expect(created).To(BeTrue())
	want := agentapi.Binding{Username: bindingID, Host: "127.0.0.1", Port: s.record().Port}
	if s.env.TLS != nil {
		want.TLSPort, want.TLSCA = s.record().TLSPort, s.env.TLS.CA()
	}
	Expect(b).To(Equal(want))
	return s.tenant(bindingID, pw), pw
}

func (s *server) pid() int {
	data, err := os.ReadFile(s.paths.Pid)
	Expect(err).NotTo(HaveOccurred())
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	Expect(err).NotTo(HaveOccurred())
	return pid
}

func (s *server) file(path string) string {
	data, err := os.ReadFile(path)
	Expect(err).NotTo(HaveOccurred())
	return string(data)
}

func itoa(i int) string { return strconv.Itoa(i) }

// tempDir is a directory for one spec; processes started from it are killed
// when the spec ends, even if it failed before stopping them.
func tempDir() string {
	dir := GinkgoT().TempDir()
	DeferCleanup(systemtest.KillStrays, dir)
	return dir
}
