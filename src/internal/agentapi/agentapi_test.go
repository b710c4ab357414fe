package agentapi_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/secret"
	"github.com/cf-redis/redis-for-cf/src/internal/serve"
	"github.com/cf-redis/redis-for-cf/src/internal/sharedagent"
	"github.com/cf-redis/redis-for-cf/src/testkit/tlstest"
)

func TestAgentapi(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "agentapi")
}

// The API is served by the real shared agent over real TLS.
var _ = Describe("the agent API over TLS", func() {
	var (
		ca    *tlstest.CA
		url   string
		creds agentapi.Credentials
	)

	BeforeEach(func() {
		dir := GinkgoT().TempDir()
		var err error
		ca, err = tlstest.NewCA("agents-ca")
		Expect(err).NotTo(HaveOccurred())
		certFile, keyFile, err := ca.Issue(dir, "127.0.0.1")
		Expect(err).NotTo(HaveOccurred())
		creds = agentapi.Credentials{Username: "broker", Password: secret.New()}
		cfg := sharedagent.Config{Listen: "127.0.0.1:0", Credentials: creds, Host: "127.0.0.1", DataDir: dir, MemoryBudgetMB: 64}
		Expect(cfg.Validate()).To(Succeed())
		logger := slog.New(slog.NewTextHandler(GinkgoWriter, nil))
		mgr, err := sharedagent.New(cfg, logger)
		Expect(err).NotTo(HaveOccurred())
		ctx, cancel := context.WithCancel(context.Background())
		addr := make(chan net.Addr, 1)
		done := make(chan error, 1)
		srv := serve.Server{Addr: cfg.Listen, Handler: agentapi.NewHandler(mgr, creds, logger), CertFile: certFile, KeyFile: keyFile, Logger: logger}
		go func() { done <- srv.Run(ctx, func(a net.Addr) { addr <- a }) }()
		url = "https://" + (<-addr).String()
		DeferCleanup(func() {
			cancel()
			Expect(<-done).To(Succeed())
			mgr.Shutdown(context.Background())
		})
	})

	It("serves a client that trusts the agent's CA", func(ctx SpecContext) {
		c, err := agentapi.NewClient(agentapi.ClientConfig{URL: url, Credentials: creds, CACert: ca.PEM})
		Expect(err).NotTo(HaveOccurred())
		capacity, err := c.Capacity(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(capacity.MemoryBytes).To(Equal(int64(64 << 20)))
	})

	It("fails, never skips verification, when the CA does not match", func(ctx SpecContext) {
		other, err := tlstest.NewCA("other-ca")
		Expect(err).NotTo(HaveOccurred())
		c, err := agentapi.NewClient(agentapi.ClientConfig{URL: url, Credentials: creds, CACert: other.PEM})
		Expect(err).NotTo(HaveOccurred())
		_, err = c.Capacity(ctx)
		Expect(err).To(MatchError(agentapi.ErrUnavailable))
		Expect(err.Error()).To(ContainSubstring("certificate"))
		Expect(err.Error()).NotTo(ContainSubstring(creds.Password))
	})

	It("refuses a CA that is not PEM, and URLs that are not http(s)", func() {
		_, err := agentapi.NewClient(agentapi.ClientConfig{URL: url, CACert: "junk"})
		Expect(err).To(HaveOccurred())
		_, err = agentapi.NewClient(agentapi.ClientConfig{URL: "ftp://x"})
		Expect(err).To(HaveOccurred())
	})

	DescribeTable("answers bad requests with a JSON error and stays up",
		func(method, path, contentType string, body []byte, auth bool, want int) {
			c := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsTrusting(ca)}}
			req, err := http.NewRequest(method, url+path, bytes.NewReader(body))
			Expect(err).NotTo(HaveOccurred())
			if contentType != "" {
				req.Header.Set("Content-Type", contentType)
			}
			if auth {
				req.SetBasicAuth(creds.Username, creds.Password)
			}
			resp, err := c.Do(req)
			Expect(err).NotTo(HaveOccurred())
			defer resp.Body.Close()
			Expect(resp.StatusCode).To(Equal(want))
			Expect(resp.Header.Get("Content-Type")).To(Equal("application/json"))
			ok, err := c.Do(mustAuthed(http.NewRequest("GET", url+"/v1/capacity", nil))(creds))
			Expect(err).NotTo(HaveOccurred())
			ok.Body.Close()
			Expect(ok.StatusCode).To(Equal(http.StatusOK))
		},
		Entry("no credentials", "GET", "/v1/instances", "", nil, false, http.StatusUnauthorized),
		Entry("malformed JSON", "PUT", "/v1/instances/i1", "application/json", []byte(`{"maxmemory_bytes":`), true, http.StatusBadRequest),
		Entry("unknown field", "PUT", "/v1/instances/i1", "application/json", []byte(`{"maxmemory":1}`), true, http.StatusBadRequest),
		Entry("wrong content type", "PUT", "/v1/instances/i1", "text/plain", []byte(`{}`), true, http.StatusUnsupportedMediaType),
		Entry("huge body", "PUT", "/v1/instances/i1", "application/json", []byte(`{"x":"`+strings.Repeat("a", 1<<20)+`"}`), true, http.StatusRequestEntityTooLarge),
		Entry("bad id", "PUT", "/v1/instances/.x", "application/json", []byte(`{"maxmemory_bytes":1048576,"parameters":{"maxmemory-policy":"noeviction"}}`), true, http.StatusBadRequest),
		Entry("unknown instance", "GET", "/v1/instances/nope", "", nil, true, http.StatusNotFound),
	)
})
