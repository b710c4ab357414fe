package dedicatedvm_test

import (
	"context"
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/metrics"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemspec"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
	"github.com/cf-redis/redis-for-cf/src/testkit/tlstest"
)

// The node program serves its metrics when its config has a metrics
// object: its state, and its instance's values labelled with the instance
// holding it, while it is claimed.
var _ = Describe("a node's metrics", func() {
	It("follow the node from free to claimed, with the claimed instance's values, and refuse a scraper without a certificate", func() {
		ca, err := tlstest.NewCA("metrics")
		Expect(err).NotTo(HaveOccurred())
		dir := GinkgoT().TempDir()
		sys := startSystemWith(systemtest.Options{Nodes: 1, MetricsCA: ca})
		url := sys.Nodes[0].MetricsURL
		scraper := ca.ClientTLS(GinkgoT(), dir, "scraper")
		find := func(name string, labels ...string) func() (float64, error) {
			return func() (float64, error) { return metrics.Value(context.Background(), url, scraper, name, labels...) }
		}
		Eventually(find("redis_for_cf_node_state", "state", "free")).WithTimeout(time.Minute).Should(Equal(1.0))
		Expect(find("redis_for_cf_agent_instances")()).To(Equal(0.0))

		id := "metrics-node"
		code, body := systemspec.Provision(sys, id, systemtest.DedicatedPlanID, nil)
		Expect(code).To(Equal(http.StatusCreated), "%v", body)
		code, body = systemspec.Bind(sys, id, "metrics-binding", systemtest.DedicatedPlanID)
		Expect(code).To(Equal(http.StatusCreated), "%v", body)
		rc := client(systemspec.Credentials(body))
		Expect(rc.Get(context.Background(), "missing").Err()).To(Equal(redis.Nil))
		label := []string{"service_instance_id", id, "plan", "dedicated-vm"}
		// The next background sweep (every 15 s) sees the claim.
		Eventually(find("redis_keyspace_misses_total", label...)).WithTimeout(time.Minute).Should(Equal(1.0))
		Expect(find("redis_for_cf_node_state", "state", "claimed")()).To(Equal(1.0))
		Expect(find("redis_for_cf_node_state", "state", "free")()).To(Equal(0.0))
		Expect(find("redis_up", label...)()).To(Equal(1.0))
		Expect(find("redis_memory_max_bytes", label...)()).To(Equal(64.0 * (1 << 20)))
		Expect(find("redis_for_cf_agent_api_requests_total", "route", "PUT /v1/instances/{id}", "code", "201")()).To(Equal(1.0))

		code, data, err := metrics.Get(context.Background(), url, ca.ClientTLS(GinkgoT(), dir, ""))
		Expect(err).NotTo(HaveOccurred())
		Expect(code).To(Equal(http.StatusForbidden))
		Expect(string(data)).NotTo(ContainSubstring("redis_"))

		Expect(systemspec.Deprovision(sys, id, systemtest.DedicatedPlanID)).To(Equal(http.StatusOK))
		Eventually(find("redis_for_cf_node_state", "state", "free")).WithTimeout(time.Minute).Should(Equal(1.0))
		Expect(find("redis_up", label...)()).Error().To(HaveOccurred(), "no series of an instance the node no longer holds")
	})
})
