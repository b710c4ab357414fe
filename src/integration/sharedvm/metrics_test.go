package sharedvm_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/metrics"
	"github.com/cf-redis/redis-for-cf/src/testkit/redistest"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
	"github.com/cf-redis/redis-for-cf/src/testkit/tlstest"
)

// The broker program serves its metrics when its config has a metrics
// object: over HTTPS, to scrapers with a client certificate of the metrics
// CA, beside the OSB API and stopping with it.
var _ = Describe("the broker's metrics", Ordered, func() {
	var (
		s      *system
		url    string
		client *tls.Config
		anon   *tls.Config
	)
	BeforeAll(func() {
		ca, err := tlstest.NewCA("metrics")
		Expect(err).NotTo(HaveOccurred())
		dir := GinkgoT().TempDir()
		cert, key, caFile, err := ca.RedisFiles(dir, "127.0.0.1")
		Expect(err).NotTo(HaveOccurred())
		port, err := redistest.FreePort()
		Expect(err).NotTo(HaveOccurred())
		listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		s = startSystem(systemtest.Options{BrokerConfig: map[string]any{"metrics": metrics.Config{
			Listen: listen, CertFile: cert, KeyFile: key, CAFile: caFile}}})
		url = "https://" + listen + metrics.Path
		client, anon = ca.ClientTLS(GinkgoT(), dir, "scraper"), ca.ClientTLS(GinkgoT(), dir, "")
	})

	scrape := func() map[string]*dto.MetricFamily {
		GinkgoHelper()
		fams, err := metrics.Scrape(context.Background(), url, client)
		Expect(err).NotTo(HaveOccurred())
		return fams
	}
	// value is the one series of name whose labels include the pairs given.
	value := func(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
		GinkgoHelper()
		v, ok := metrics.Find(fams, name, labels...)
		Expect(ok).To(BeTrue(), "exactly one series %s%v", name, labels)
		return v
	}

	It("refuses a scraper without a client certificate: 403 and no data", func() {
		code, body, err := metrics.Get(context.Background(), url, anon)
		Expect(err).NotTo(HaveOccurred())
		Expect(code).To(Equal(http.StatusForbidden))
		Expect(string(body)).NotTo(ContainSubstring("redis_broker"))
	})

	It("count a provision and a binding on a real agent, with the plan's capacity as that agent reports it", func() {
		id := newID("metrics")
		s.provision(id, nil)
		s.bind(id, newID("binding"))
		fams := scrape()
		Expect(value(fams, "redis_broker_instances", "plan", "shared-vm", "state", "ready")).To(Equal(1.0))
		Expect(value(fams, "redis_broker_bindings", "plan", "shared-vm")).To(Equal(1.0))
		Expect(value(fams, "redis_broker_osb_requests_total", "verb", "provision", "code", "201")).To(Equal(1.0))
		Expect(value(fams, "redis_broker_osb_requests_total", "verb", "bind", "code", "201")).To(Equal(1.0))
		Expect(fams).To(HaveKey("go_goroutines"))
		// The agent's 8 GB budget holds 512 instances of 16 MB, more than the
		// plan's 100: 100 in all, 99 left once the agent has answered after
		// the create.
		Eventually(func() [2]float64 {
			f := scrape()
			return [2]float64{value(f, "redis_broker_plan_capacity_instances", "plan", "shared-vm"),
				value(f, "redis_broker_plan_capacity_left_instances", "plan", "shared-vm")}
		}).Should(Equal([2]float64{100, 99}))
	})

	It("stops with the broker and comes back with it, from the broker's records", func() {
		Expect(s.Broker.Stop()).To(Succeed())
		_, err := metrics.Scrape(context.Background(), url, client)
		Expect(err).To(HaveOccurred(), "metrics still served after the broker stopped")
		Expect(s.Broker.Start()).To(Succeed())
		Eventually(func() error { _, err := metrics.Scrape(context.Background(), url, client); return err }).Should(Succeed())
		Expect(value(scrape(), "redis_broker_instances", "plan", "shared-vm", "state", "ready")).To(Equal(1.0))
		Expect(value(scrape(), "redis_broker_restores_total", "result", "failure")).To(BeZero())
	})
})

// The shared agent program serves its metrics when its config has a
// metrics object: every instance's values against its own INFO, the API's
// requests by route, 403 without a client certificate.
var _ = Describe("the shared agent's metrics", Ordered, func() {
	var (
		s      *system
		url    string
		client *tls.Config
		anon   *tls.Config
	)
	BeforeAll(func() {
		ca, err := tlstest.NewCA("metrics")
		Expect(err).NotTo(HaveOccurred())
		dir := GinkgoT().TempDir()
		s = startSystem(systemtest.Options{MetricsCA: ca})
		url = s.Agents[0].MetricsURL
		client, anon = ca.ClientTLS(GinkgoT(), dir, "scraper"), ca.ClientTLS(GinkgoT(), dir, "")
	})

	find := func(name string, labels ...string) func() (float64, error) {
		return func() (float64, error) { return metrics.Value(context.Background(), url, client, name, labels...) }
	}

	It("serves each instance's values and the agent's API requests by route", func() {
		id := newID("metrics")
		s.provision(id, nil)
		cr := s.bind(id, newID("binding"))
		rc := redis.NewClient(&redis.Options{Addr: net.JoinHostPort(cr.Host, strconv.Itoa(cr.Port)), Username: cr.Username, Password: cr.Password})
		defer rc.Close()
		Expect(rc.Get(context.Background(), "missing").Err()).To(Equal(redis.Nil))
		label := []string{"service_instance_id", id, "plan", "shared-vm"}
		// The next background sweep (every 15 s) sees the instance.
		Eventually(find("redis_keyspace_misses_total", label...)).WithTimeout(time.Minute).Should(Equal(1.0))
		Expect(find("redis_up", label...)()).To(Equal(1.0))
		Expect(find("redis_memory_max_bytes", label...)()).To(Equal(16.0 * (1 << 20)))
		Expect(find("redis_for_cf_agent_instances")()).To(Equal(1.0))
		Expect(find("redis_for_cf_agent_api_requests_total", "route", "PUT /v1/instances/{id}", "code", "201")()).To(Equal(1.0))
		Expect(find("redis_for_cf_agent_api_request_duration_seconds", "route", "PUT /v1/instances/{id}/bindings/{binding}")()).To(Equal(1.0))
		fams, err := metrics.Scrape(context.Background(), url, client)
		Expect(err).NotTo(HaveOccurred())
		for _, m := range fams["redis_for_cf_agent_api_requests_total"].Metric {
			for _, l := range m.Label {
				Expect(l.GetValue()).NotTo(ContainSubstring(id), "a raw path as a route")
			}
		}
	})

	It("refuses a scraper without a client certificate: 403 and no data", func() {
		code, body, err := metrics.Get(context.Background(), url, anon)
		Expect(err).NotTo(HaveOccurred())
		Expect(code).To(Equal(http.StatusForbidden))
		Expect(string(body)).NotTo(ContainSubstring("redis_"))
	})

	It("stops with the agent", func() {
		Expect(s.Agents[0].Stop()).To(Succeed())
		_, err := metrics.Scrape(context.Background(), url, client)
		Expect(err).To(HaveOccurred(), "metrics still served after the agent stopped")
		Expect(s.Agents[0].Start()).To(Succeed())
		Eventually(find("redis_for_cf_agent_instances")).WithTimeout(time.Minute).Should(Equal(1.0))
	})
})
