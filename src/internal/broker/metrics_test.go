package broker

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/metrics"
	"github.com/cf-redis/redis-for-cf/src/testkit/tlstest"
)

// scraper is the fixture's broker served on a real metrics endpoint (HTTPS,
// client certificates of a metrics CA), and a scraper holding such a
// certificate.
type scraper struct {
	url    string
	client *tls.Config
	// anon trusts the server but presents no client certificate.
	anon *tls.Config
}

// serveMetrics serves f's broker's metrics as the redis-broker program
// does, until the test ends.
func serveMetrics(f *fixture) *scraper {
	GinkgoHelper()
	ca, err := tlstest.NewCA("metrics")
	Expect(err).NotTo(HaveOccurred())
	dir := GinkgoT().TempDir()
	cert, key, caFile, err := ca.RedisFiles(dir, "127.0.0.1")
	Expect(err).NotTo(HaveOccurred())
	reg := metrics.NewRegistry()
	Expect(f.b.RegisterMetrics(reg)).To(Succeed())
	cfg := metrics.Config{Listen: "127.0.0.1:0", CertFile: cert, KeyFile: key, CAFile: caFile}
	Expect(cfg.Validate()).To(Succeed())
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() { done <- cfg.Serve(ctx, reg, slog.New(slog.DiscardHandler), func(a net.Addr) { addr <- a }) }()
	DeferCleanup(func() {
		cancel()
		Expect(<-done).To(Succeed())
	})
	var url string
	select {
	case a := <-addr:
		url = "https://" + a.String() + metrics.Path
	case err := <-done:
		Fail(fmt.Sprintf("metrics server: %v", err))
	}
	return &scraper{url: url, client: ca.ClientTLS(GinkgoT(), dir, "scraper"), anon: ca.ClientTLS(GinkgoT(), dir, "")}
}

// scrape fetches every family.
func (s *scraper) scrape() map[string]*dto.MetricFamily {
	GinkgoHelper()
	fams, err := metrics.Scrape(context.Background(), s.url, s.client)
	Expect(err).NotTo(HaveOccurred())
	return fams
}

// value is the value of the series of family name with exactly labels
// (name=value pairs); it fails when there is no such series.
func (s *scraper) value(name string, labels ...string) float64 {
	GinkgoHelper()
	v, ok := find(s.scrape(), name, labels...)
	Expect(ok).To(BeTrue(), "no series %s%v in the scrape", name, labels)
	return v
}

func find(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, m := range f.Metric {
		got := map[string]string{}
		for _, l := range m.Label {
			got[l.GetName()] = l.GetValue()
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			continue
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

var _ = Describe("metrics", func() {
	var (
		f *fixture
		s *scraper
	)
	BeforeEach(func() {
		f = newFixture()
		s = serveMetrics(f)
	})

	It("are served only to a scraper with a client certificate of the metrics CA: 403 and no data without one", func() {
		code, body, err := metrics.Get(context.Background(), s.url, s.anon)
		Expect(err).NotTo(HaveOccurred())
		Expect(code).To(Equal(http.StatusForbidden))
		Expect(string(body)).NotTo(ContainSubstring("redis_broker"))
		Expect(string(body)).NotTo(ContainSubstring("go_"))

		fams := s.scrape()
		for _, name := range []string{"redis_broker_instances", "redis_broker_bindings", "redis_broker_plan_capacity_instances",
			"redis_broker_plan_capacity_left_instances", "redis_broker_pool_nodes", "redis_broker_restores_total",
			"go_goroutines", "process_resident_memory_bytes"} {
			Expect(fams).To(HaveKey(name))
		}
	})

	It("count instances by plan and state and bindings by plan through provision, bind, unbind and deprovision", func() {
		for _, st := range []string{"creating", "ready", "deleting"} {
			Expect(s.value("redis_broker_instances", "plan", "shared-vm", "state", st)).To(BeZero())
			Expect(s.value("redis_broker_instances", "plan", "dedicated-vm", "state", st)).To(BeZero())
		}
		f.mustProvision("i1", sharedPlanID)
		f.mustProvision("i2", sharedPlanID)
		f.mustProvision("d1", dedicPlanID)
		// A provision the agent failed stays "creating" until Cloud
		// Controller retries or deletes it.
		f.agents["a0"].failNext("create", fmt.Errorf("%w: boom", agentapi.ErrUnavailable))
		f.agents["a1"].failNext("create", fmt.Errorf("%w: boom", agentapi.ErrUnavailable))
		code, _ := f.provision("i3", sharedPlanID)
		Expect(code).To(BeNumerically(">=", 500))
		Expect(s.value("redis_broker_instances", "plan", "shared-vm", "state", "ready")).To(Equal(2.0))
		Expect(s.value("redis_broker_instances", "plan", "shared-vm", "state", "creating")).To(Equal(1.0))
		Expect(s.value("redis_broker_instances", "plan", "dedicated-vm", "state", "ready")).To(Equal(1.0))
		Expect(s.value("redis_broker_bindings", "plan", "shared-vm")).To(BeZero())

		for _, b := range []string{"b1", "b2"} {
			code, body := f.bind("i1", b, "app")
			Expect(code).To(Equal(http.StatusCreated), "%v", body)
		}
		code, body := f.bind("d1", "b3", "app")
		Expect(code).To(Equal(http.StatusCreated), "%v", body)
		Expect(s.value("redis_broker_bindings", "plan", "shared-vm")).To(Equal(2.0))
		Expect(s.value("redis_broker_bindings", "plan", "dedicated-vm")).To(Equal(1.0))

		code, _ = f.unbind("i1", "b1")
		Expect(code).To(Equal(http.StatusOK))
		Expect(s.value("redis_broker_bindings", "plan", "shared-vm")).To(Equal(1.0))

		code, _ = f.deprovision("i2", sharedPlanID, false)
		Expect(code).To(Equal(http.StatusOK))
		Expect(s.value("redis_broker_instances", "plan", "shared-vm", "state", "ready")).To(Equal(1.0))
		// A node that cannot be reached keeps its instance "deleting".
		f.agents["n0"].set(func(m *memAgent) { m.down = true })
		code, _ = f.deprovision("d1", dedicPlanID, false)
		Expect(code).To(BeNumerically(">=", 500))
		Expect(s.value("redis_broker_instances", "plan", "dedicated-vm", "state", "deleting")).To(Equal(1.0))
		Expect(s.value("redis_broker_instances", "plan", "dedicated-vm", "state", "ready")).To(BeZero())
	})

	It("label the plans shared-vm and dedicated-vm whatever the catalog names them, as the agents label their instances", func() {
		f.cfg.SharedVM.Name, f.cfg.DedicatedVM.Name = "small", "large"
		f.open()
		s = serveMetrics(f)
		f.mustProvision("i1", sharedPlanID)
		f.mustProvision("d1", dedicPlanID)
		Expect(s.value("redis_broker_instances", "plan", "shared-vm", "state", "ready")).To(Equal(1.0))
		Expect(s.value("redis_broker_instances", "plan", "dedicated-vm", "state", "ready")).To(Equal(1.0))
		for _, m := range s.scrape()["redis_broker_instances"].Metric {
			for _, l := range m.Label {
				Expect(l.GetValue()).NotTo(BeElementOf("small", "large"))
			}
		}
	})

	It("count OSB requests by verb and status code and time them by verb, never labelling an id", func() {
		code, _ := f.call(http.MethodGet, "/v2/catalog", nil)
		Expect(code).To(Equal(http.StatusOK))
		f.mustProvision("i1", sharedPlanID)
		f.lastOperation("i1")

		// A body that is not JSON: 400, counted under its verb.
		req, err := http.NewRequest(http.MethodPut, instancePath("i2"), strings.NewReader("{not json"))
		Expect(err).NotTo(HaveOccurred())
		req.SetBasicAuth(brokerUser, brokerPass)
		req.Header.Set("X-Broker-API-Version", apiVersion)
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		f.h.ServeHTTP(w, req)
		Expect(w.Code).To(Equal(http.StatusBadRequest))
		// Without credentials: 401.
		req, err = http.NewRequest(http.MethodGet, "/v2/catalog", nil)
		Expect(err).NotTo(HaveOccurred())
		w = httptest.NewRecorder()
		f.h.ServeHTTP(w, req)
		Expect(w.Code).To(Equal(http.StatusUnauthorized))
		// A path that is no route.
		code, _ = f.call(http.MethodGet, "/v2/service_instances/i1/nothing/here", nil)
		Expect(code).To(Equal(http.StatusNotFound))

		fams := s.scrape()
		for _, c := range []struct {
			verb, code string
			n          float64
		}{
			{"catalog", "200", 1}, {"catalog", "401", 1}, {"provision", "201", 1}, {"provision", "400", 1},
			{"last_operation", "200", 1}, {"other", "404", 1},
		} {
			v, ok := find(fams, "redis_broker_osb_requests_total", "verb", c.verb, "code", c.code)
			Expect(ok).To(BeTrue(), "no requests_total{verb=%q,code=%q}", c.verb, c.code)
			Expect(v).To(Equal(c.n), "requests_total{verb=%q,code=%q}", c.verb, c.code)
		}
		n, ok := find(fams, "redis_broker_osb_request_duration_seconds", "verb", "provision")
		Expect(ok).To(BeTrue())
		Expect(n).To(Equal(2.0))
		n, _ = find(fams, "redis_broker_osb_request_duration_seconds", "verb", "catalog")
		Expect(n).To(Equal(2.0))
		for _, name := range []string{"redis_broker_osb_requests_total", "redis_broker_osb_request_duration_seconds"} {
			for _, m := range fams[name].Metric {
				for _, l := range m.Label {
					Expect(l.GetValue()).NotTo(ContainSubstring("i1"))
					Expect(l.GetValue()).NotTo(ContainSubstring("i2"))
				}
			}
		}
	})

	It("count pool nodes by state and the dedicated plan's capacity: a node whose reset fails is quarantined and leaves the capacity", func() {
		pool := func(state string) float64 { return s.value("redis_broker_pool_nodes", "state", state) }
		Expect(pool("free")).To(Equal(2.0))
		Expect(pool("claimed")).To(BeZero())
		Expect(s.value("redis_broker_plan_capacity_instances", "plan", "dedicated-vm")).To(Equal(2.0))
		Expect(s.value("redis_broker_plan_capacity_left_instances", "plan", "dedicated-vm")).To(Equal(2.0))

		f.mustProvision("d1", dedicPlanID)
		f.mustProvision("d2", dedicPlanID)
		Expect(pool("claimed")).To(Equal(2.0))
		Expect(pool("free")).To(BeZero())
		Expect(s.value("redis_broker_plan_capacity_left_instances", "plan", "dedicated-vm")).To(BeZero())

		// n0's reset does not verify: quarantined, out of the capacity.
		f.agents["n0"].set(func(m *memAgent) { m.dirty = true })
		code, _ := f.deprovision("d1", dedicPlanID, false)
		Expect(code).To(Equal(http.StatusOK))
		Expect(f.pool("n0").State).To(Equal(poolQuarantined))
		Expect(pool("quarantined")).To(Equal(1.0))
		Expect(s.value("redis_broker_plan_capacity_instances", "plan", "dedicated-vm")).To(Equal(1.0))

		// n1 cannot be reached: its reset waits, the node "resetting".
		f.agents["n1"].set(func(m *memAgent) { m.down = true })
		code, _ = f.deprovision("d2", dedicPlanID, true)
		Expect(code).To(Equal(http.StatusAccepted))
		Eventually(func() map[string]any { _, b := f.lastOperation("d2"); return b }).Should(HaveKeyWithValue("state", "failed"))
		Expect(pool("resetting")).To(Equal(1.0))
		Expect(pool("claimed")).To(BeZero())
		Expect(s.value("redis_broker_plan_capacity_instances", "plan", "dedicated-vm")).To(Equal(1.0))
		Expect(s.value("redis_broker_plan_capacity_left_instances", "plan", "dedicated-vm")).To(BeZero())

		// Both come back once their resets pass.
		f.agents["n0"].set(func(m *memAgent) { m.dirty = false })
		f.agents["n1"].set(func(m *memAgent) { m.down = false })
		f.b.plans[dedicPlanID].round(context.Background())
		Expect(pool("free")).To(Equal(2.0))
		Expect(s.value("redis_broker_plan_capacity_left_instances", "plan", "dedicated-vm")).To(Equal(2.0))
	})

	It("give the shared plan's capacity as the agents last reported it, gathered in the background, going down as instances are created", func() {
		left := func() float64 { return s.value("redis_broker_plan_capacity_left_instances", "plan", "shared-vm") }
		total := func() float64 { return s.value("redis_broker_plan_capacity_instances", "plan", "shared-vm") }
		// Nothing gathered yet: no agent counts.
		Expect(total()).To(BeZero())
		Expect(left()).To(BeZero())

		// Room for 16 + 8 instances of 64 MB (a0: 1 GB, a1: 512 MB).
		f.cfg.SharedVM.MaxInstances = 100
		f.open()
		s = serveMetrics(f)
		ctx, cancel := context.WithCancel(context.Background())
		f.b.Run(ctx)
		DeferCleanup(cancel)
		Eventually(total).Should(Equal(24.0))
		Expect(left()).To(Equal(24.0))

		f.mustProvision("i1", sharedPlanID)
		f.mustProvision("i2", sharedPlanID)
		Eventually(left).Should(Equal(22.0))
		Expect(total()).To(Equal(24.0))

		// An agent that stops answering counts nothing once gathered
		// again: placement skips it too.
		f.agents["a0"].set(func(m *memAgent) { m.down = true })
		f.b.askGather()
		Eventually(total).Should(Equal(8.0))
		Expect(left()).To(Equal(8.0))
		f.agents["a0"].set(func(m *memAgent) { m.down = false })
		f.b.askGather()
		Eventually(total).Should(Equal(24.0))

		// The plan's own limit caps both: 3 instances, 2 made.
		f.cfg.SharedVM.MaxInstances = 3
		f.open()
		s = serveMetrics(f)
		ctx, cancel = context.WithCancel(context.Background())
		f.b.Run(ctx)
		DeferCleanup(cancel)
		Eventually(total).Should(Equal(3.0))
		Expect(left()).To(Equal(1.0))
		f.mustProvision("i3", sharedPlanID)
		Eventually(left).Should(BeZero())
	})

	It("count restores by result", func() {
		f.mustProvision("i1", sharedPlanID)
		storeBackup(f, "i1", "archive")
		Expect(s.value("redis_broker_restores_total", "result", "success")).To(BeZero())
		Expect(s.value("redis_broker_restores_total", "result", "failure")).To(BeZero())
		restore := func() int {
			code, _ := f.update("i1", map[string]any{"parameters": map[string]any{"restore": "latest"}})
			return code
		}
		Expect(restore()).To(Equal(http.StatusOK))
		f.agents["a0"].failNext("restore", fmt.Errorf("%w: checksum", agentapi.ErrInvalid))
		Expect(restore()).To(Equal(http.StatusUnprocessableEntity))
		Expect(restore()).To(Equal(http.StatusOK))
		Expect(s.value("redis_broker_restores_total", "result", "success")).To(Equal(2.0))
		Expect(s.value("redis_broker_restores_total", "result", "failure")).To(Equal(1.0))
		// A restore refused before it ran (no such backup) is a request
		// error, not a restore.
		code, _ := f.update("i1", map[string]any{"parameters": map[string]any{"restore": "19990101"}})
		Expect(code).To(Equal(http.StatusBadRequest))
		Expect(s.value("redis_broker_restores_total", "result", "failure")).To(Equal(1.0))
	})
})
