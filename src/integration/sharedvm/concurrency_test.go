package sharedvm_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"
	osb "sigs.k8s.io/go-open-service-broker-client/v2"

	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

var _ = Describe("Fifty concurrent provisions", Ordered, ContinueOnFailure, func() {
	const n = 50
	var sys *system
	var ids []string

	BeforeAll(func() {
		sys = startSystem(systemtest.Options{})
		for range n {
			ids = append(ids, newID("inst"))
		}
	})

	It("all succeed, on 50 distinct ports, each bound and serving its own data with its own credentials", func(ctx SpecContext) {
		type result struct {
			creds creds
			err   error
		}
		results := make([]result, n)
		var wg sync.WaitGroup
		for i, id := range ids {
			wg.Go(func() {
				defer GinkgoRecover()
				resp, err := sys.osb.ProvisionInstance(provisionRequest(id, nil))
				if err == nil && resp.Async {
					err = errors.New("answered asynchronously")
				}
				if err != nil {
					results[i].err = fmt.Errorf("provisioning %s: %w", id, err)
					return
				}
				c := sys.bind(id, newID("bind"))
				results[i].creds = c
				opts, err := redis.ParseURL(c.URI)
				if err != nil {
					results[i].err = err
					return
				}
				rc := redis.NewClient(opts)
				defer rc.Close()
				if err := rc.Set(ctx, "owner", id, 0).Err(); err != nil {
					results[i].err = fmt.Errorf("SET on %s: %w", id, err)
					return
				}
				if got, err := rc.Get(ctx, "owner").Result(); err != nil || got != id {
					results[i].err = fmt.Errorf("GET on %s: %q, %v", id, got, err)
				}
			})
		}
		wg.Wait()

		ports := map[int]string{}
		for i, r := range results {
			Expect(r.err).NotTo(HaveOccurred())
			Expect(ports).NotTo(HaveKey(r.creds.Port), "port of %s and %s", ids[i], ports[r.creds.Port])
			ports[r.creds.Port] = ids[i]
		}
		Expect(ports).To(HaveLen(n))

		// Each instance still holds its own key: none answered for another.
		for i, r := range results {
			Expect(connect(r.creds).Get(ctx, "owner").Val()).To(Equal(ids[i]))
		}
	})

	It("all delete concurrently, leaving no instance, file or process", func() {
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i, id := range ids {
			wg.Go(func() {
				_, errs[i] = sys.osb.DeprovisionInstance(&osb.DeprovisionRequest{
					InstanceID: id, AcceptsIncomplete: true, ServiceID: systemtest.ServiceID, PlanID: systemtest.PlanID,
				})
			})
		}
		wg.Wait()
		for i, err := range errs {
			Expect(err).NotTo(HaveOccurred(), ids[i])
		}
		Expect(sys.brokerRecords()).To(BeEmpty())
		left, err := os.ReadDir(filepath.Join(sys.agentDir(0), "instances"))
		Expect(err).NotTo(HaveOccurred())
		Expect(left).To(BeEmpty())
		Expect(systemtest.Strays(filepath.Join(sys.agentDir(0), "instances"))).To(BeEmpty())
	})
})
