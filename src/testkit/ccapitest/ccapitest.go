// Package ccapitest runs a fake Cloud Controller v3 API and the UAA that
// issues its tokens, in-process, over HTTPS, for tests of the broker
// registrar and deregistrar.
//
// It is a fake because Cloud Controller (a Rails app with a database, a
// blobstore and UAA beside it) cannot run on this machine. It implements only
// the endpoints package ccapi calls, with the shapes, statuses and error
// bodies of the real API: the root document's links, UAA's client-credentials
// and password grants, tokens checked on every request, paginated lists,
// service brokers whose create, update and delete are asynchronous jobs, plan
// visibility, and service instances with purge. Like Cloud Controller, a
// broker's catalog is read from the broker itself (GET /v2/catalog with the
// registered credentials) when the broker is created or updated, so a test
// registers a real broker and sees Cloud Controller's error text when the
// broker cannot be read.
package ccapitest

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cf-redis/redis-for-cf/src/testkit/tlstest"
)

// Options shape a server. Zero values take the defaults on each field.
type Options struct {
	// Clients are UAA clients, id to secret, that may get tokens with the
	// client-credentials grant.
	Clients map[string]string
	// Users are UAA users, name to password, that may get tokens with the
	// password grant through the "cf" client (secret "").
	Users map[string]string
	// PerPage is the size of a page of every list; zero means 50.
	PerPage int
	// JobDelay is how long a job stays PROCESSING before it runs; zero means
	// 50ms.
	JobDelay time.Duration
	// TokenTTL is the life of a token; zero means an hour.
	TokenTTL time.Duration
}

// Server is a running fake Cloud Controller and UAA. Its exported fields
// must not be changed.
type Server struct {
	// URL is Cloud Controller's API URL.
	URL string
	// UAAURL is UAA's URL, as Cloud Controller's root document gives it.
	UAAURL string
	// CA is the PEM CA that signed both servers' certificates.
	CA string

	cc, uaa *httptest.Server
	opts    Options
	jobs    sync.WaitGroup

	mu       sync.Mutex
	tokens   map[string]time.Time
	brokers  map[string]*Broker
	plans    map[string]*Plan
	orgs     map[string]string // guid to name
	instance map[string]*ServiceInstance
	jobState map[string]*job
	requests []string
}

// Broker is a registered service broker as the fake holds it.
type Broker struct {
	GUID, Name, URL    string
	Username, Password string
	// State is "available", "synchronizing", "synchronization failed" or
	// "delete in progress".
	State string
}

// Plan is a plan read from a broker's catalog.
type Plan struct {
	GUID, Name, CatalogID string
	BrokerGUID            string
	ServiceName           string
	ServiceGUID           string
	// Visibility is "admin" (only admins see it, the state of a new plan),
	// "public" or "organization".
	Visibility string
	// Orgs are the names of the orgs of an "organization" visibility.
	Orgs []string
}

// ServiceInstance is an instance of a plan, as Cloud Controller records it.
type ServiceInstance struct {
	GUID, Name, PlanGUID string
}

type job struct {
	guid, operation, state string
	errors                 []apiError
}

type apiError struct {
	Code   int    `json:"code"`
	Title  string `json:"title"`
	Detail string `json:"detail"`
}

// Start runs the fake Cloud Controller and UAA on loopback ports, each with
// a certificate for 127.0.0.1 from a CA of its own.
func Start(opts Options) (*Server, error) {
	if opts.PerPage == 0 {
		opts.PerPage = 50
	}
	if opts.JobDelay == 0 {
		opts.JobDelay = 50 * time.Millisecond
	}
	if opts.TokenTTL == 0 {
		opts.TokenTTL = time.Hour
	}
	ca, err := tlstest.NewCA("ccapitest")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "ccapitest-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	certFile, keyFile, err := ca.Issue(dir, "127.0.0.1")
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	s := &Server{
		CA: ca.PEM, opts: opts,
		tokens: map[string]time.Time{}, brokers: map[string]*Broker{}, plans: map[string]*Plan{},
		orgs: map[string]string{}, instance: map[string]*ServiceInstance{}, jobState: map[string]*job{},
	}
	start := func(h http.Handler) *httptest.Server {
		srv := httptest.NewUnstartedServer(s.record(h))
		// Tests that present a wrong CA make the handshake fail on purpose.
		srv.Config.ErrorLog = log.New(io.Discard, "", 0)
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		srv.StartTLS()
		return srv
	}
	s.uaa = start(http.HandlerFunc(s.token))
	s.UAAURL = s.uaa.URL
	s.cc = start(s.ccRoutes())
	s.URL = s.cc.URL
	return s, nil
}

// Close stops both servers after the jobs in flight end.
func (s *Server) Close() {
	s.cc.Close()
	s.uaa.Close()
	s.jobs.Wait()
}

// record notes every request, for tests that check what was called.
func (s *Server) record(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests = append(s.requests, r.Method+" "+r.URL.RequestURI())
		s.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

// Requests lists the requests both servers got so far, as "METHOD PATH?QUERY".
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// AddOrg creates an org and returns its guid.
func (s *Server) AddOrg(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	guid := newGUID()
	s.orgs[guid] = name
	return guid
}

// AddServiceInstance records an instance of a plan, as if a user had created
// one, and returns its guid.
func (s *Server) AddServiceInstance(name, planGUID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	guid := newGUID()
	s.instance[guid] = &ServiceInstance{GUID: guid, Name: name, PlanGUID: planGUID}
	return guid
}

// Brokers returns the registered brokers.
func (s *Server) Brokers() []Broker {
	s.mu.Lock()
	defer s.mu.Unlock()
	return copies(s.brokers)
}

// Plans returns every broker's plans, sorted by name.
func (s *Server) Plans() []Plan {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Plan
	for _, p := range s.plans {
		c := *p
		c.Orgs = slices.Sorted(slices.Values(p.Orgs))
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Plan) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// ServiceInstances returns the recorded instances.
func (s *Server) ServiceInstances() []ServiceInstance {
	s.mu.Lock()
	defer s.mu.Unlock()
	return copies(s.instance)
}

// RevokeTokens makes every token issued so far invalid, as if it had
// expired.
func (s *Server) RevokeTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.tokens)
}

// copies returns a copy of each value of m; nil when m is empty.
func copies[T any](m map[string]*T) []T {
	var out []T
	for _, v := range m {
		out = append(out, *v)
	}
	return out
}

func newGUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return fmt.Sprintf("%s-%s-%s-%s-%s", h[0:8], h[8:12], h[12:16], h[16:20], h[20:32])
}
