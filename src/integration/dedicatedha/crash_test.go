package dedicatedha_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/testkit/systemspec"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

// deleteUntilGone plays Cloud Controller and its user deleting an instance
// through failures: a delete without an answer, a 5xx or a failed
// last_operation is sent again, until the broker says the instance is gone.
func deleteUntilGone(sys *systemtest.System, id string) {
	GinkgoHelper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		Expect(time.Now()).To(BeTemporally("<", deadline), "instance %s is still not deleted", id)
		code, body, err := sys.OSB("DELETE", deletePath(id, systemtest.HAPlanID), nil)
		switch {
		case err != nil || code >= 500:
			time.Sleep(200 * time.Millisecond)
			continue
		case code == http.StatusOK || code == http.StatusGone:
			return
		}
		Expect(code).To(Equal(http.StatusAccepted), "delete of %s: %v", id, body)
		for {
			code, body, err := sys.OSB("GET", "/v2/service_instances/"+id+"/last_operation?operation=delete", nil)
			if err == nil && code == http.StatusGone {
				return
			}
			if err == nil && code == http.StatusOK && body["state"] == "failed" {
				break
			}
			Expect(time.Now()).To(BeTemporally("<", deadline), "instance %s is still being deleted: %d %v %v", id, code, body, err)
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// provisionUntilDone sends a provision again until the broker says the
// instance exists, as Cloud Controller's retry of a request that got no
// answer does.
func provisionUntilDone(sys *systemtest.System, id string) {
	GinkgoHelper()
	Eventually(func(g Gomega) int {
		code, body, err := sys.OSB("PUT", provisionPath(id), provisionBody(systemtest.HAPlanID))
		g.Expect(err).NotTo(HaveOccurred())
		if code < 500 && code != http.StatusCreated && code != http.StatusOK {
			StopTrying(fmt.Sprintf("a provision retry answered %d: %v", code, body)).Now()
		}
		return code
	}).WithTimeout(2 * time.Minute).WithPolling(200 * time.Millisecond).Should(BeElementOf(http.StatusCreated, http.StatusOK))
}

// claimStep says how far a claim of instance id got, from the broker's
// state file and the node agents' own: no record; the claim recorded and
// n nodes claimed by their agents; the members' addresses recorded (every
// node claimed, joins under way); ready.
func claimStep(sys *systemtest.System, id string) string {
	GinkgoHelper()
	data, err := os.ReadFile(filepath.Join(sys.Dir, "broker", "broker-state.json"))
	Expect(err).NotTo(HaveOccurred())
	var st struct {
		Instances map[string]struct {
			State string `json:"state"`
			HA    *struct {
				Group struct {
					Members []any `json:"members"`
				} `json:"group"`
			} `json:"ha"`
		} `json:"instances"`
	}
	Expect(json.Unmarshal(data, &st)).To(Succeed())
	r, ok := st.Instances[id]
	switch {
	case !ok:
		return "no record"
	case r.State == "ready":
		return "ready"
	case r.HA == nil:
		return "recorded, no nodes yet"
	case len(r.HA.Group.Members) > 0:
		return "every node claimed and the members recorded: joining"
	}
	claimed := 0
	for i := range sys.Nodes {
		if s := nodeAgentState(sys, i); s.State == "claimed" && s.InstanceID == id {
			claimed++
		}
	}
	return fmt.Sprintf("claim recorded, %d of 3 nodes claimed by their agents", claimed)
}

var _ = Describe("kill -9 of the broker in the middle of a three-node claim", func() {
	It("leaves no node claimed by nobody, and the instance either ready and working or deleted with every node free", func() {
		sys := startSystem(3, systemtest.Options{})

		start := time.Now()
		code, body := provision(sys, "timed", systemtest.HAPlanID)
		span := time.Since(start)
		Expect(code).To(Equal(http.StatusCreated), "%v", body)
		Expect(deprovision(sys, "timed", systemtest.HAPlanID)).To(Equal(http.StatusOK))
		By(fmt.Sprintf("a provision takes %v: the kills fall within it", span))

		// The kills fall at fractions of that time, each provision then
		// resumed by Cloud Controller's retry or undone by its delete, in
		// turn.
		fractions := []float64{0.003, 0.01, 0.02, 0.04, 0.07, 0.15, 0.3, 0.5, 0.7, 0.9, 1.2}
		steps := map[string]int{}
		for round, fr := range fractions {
			id := fmt.Sprintf("k%d", round)
			type answer struct {
				code int
				body map[string]any
				err  error
			}
			answered := make(chan answer, 1)
			go func() {
				var a answer
				a.code, a.body, a.err = sys.OSB("PUT", provisionPath(id), provisionBody(systemtest.HAPlanID))
				answered <- a
			}()
			time.Sleep(time.Duration(fr * float64(span)))
			sys.Broker.Kill9()
			var a answer
			Eventually(answered).WithTimeout(time.Minute).Should(Receive(&a))
			step := claimStep(sys, id)
			steps[step]++
			Expect(sys.Broker.Start()).To(Succeed())
			resume := round%2 == 0
			By(fmt.Sprintf("round %d: killed at %.0f%% of a provision, at: %s (answer %d %v); then %s", round, 100*fr, step, a.code, a.err,
				map[bool]string{true: "the retry", false: "the delete"}[resume]))
			if a.err == nil && a.code < 500 {
				Expect(a.code).To(Equal(http.StatusCreated), "%v", a.body)
			}

			if resume {
				provisionUntilDone(sys, id)
				Expect(expectPoolConsistent(sys)).To(Equal([]string{id}))
				code, body := bind(sys, id, "b-"+id)
				Expect(code).To(Equal(http.StatusCreated), "%v", body)
				fc := failoverClient(credentials(body))
				Expect(fc.DBSize(ctx).Val()).To(BeZero(), "instance %s was handed nodes holding keys", id)
				systemspec.WriteKeys(ctx, fc, id, 50)
				expectBothFollowers(fc)
			}
			deleteUntilGone(sys, id)
			expectAllFreeAndClean(sys)
		}
		// Reported, not asserted: where a kill falls depends on the machine.
		By(fmt.Sprintf("the kills fell at: %v", steps))
	})
})
