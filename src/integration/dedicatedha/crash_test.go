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
		if s := systemspec.NodeAgentState(sys, i); s.State == "claimed" && s.InstanceID == id {
			claimed++
		}
	}
	return fmt.Sprintf("claim recorded, %d of 3 nodes claimed by their agents", claimed)
}

var _ = Describe("kill -9 of the broker in the middle of a three-node claim", func() {
	It("leaves no node claimed by nobody, and the instance either ready and working or deleted with every node free", func() {
		sys := startSystem(3, systemtest.Options{})

		start := time.Now()
		code, body := systemspec.Provision(sys, "timed", systemtest.HAPlanID, nil)
		span := time.Since(start)
		Expect(code).To(Equal(http.StatusCreated), "%v", body)
		Expect(systemspec.Deprovision(sys, "timed", systemtest.HAPlanID)).To(Equal(http.StatusOK))
		By(fmt.Sprintf("a provision takes %v: the kills fall within it", span))

		// The kills fall at fractions of that time, each provision then
		// resumed by Cloud Controller's retry or undone by its delete, in
		// turn.
		fractions := []float64{0.003, 0.01, 0.02, 0.04, 0.07, 0.15, 0.3, 0.5, 0.7, 0.9, 1.2}
		steps := map[string]int{}
		for round, fr := range fractions {
			id := fmt.Sprintf("k%d", round)
			a := systemspec.KillDuring(sys.Broker, time.Duration(fr*float64(span)), func() (int, map[string]any, error) {
				return sys.OSB("PUT", systemspec.ProvisionPath(id), systemspec.ProvisionBody(systemtest.HAPlanID, nil))
			})
			step := claimStep(sys, id)
			steps[step]++
			Expect(sys.Broker.Start()).To(Succeed())
			resume := round%2 == 0
			By(fmt.Sprintf("round %d: killed at %.0f%% of a provision, at: %s (answer %d %v); then %s", round, 100*fr, step, a.Code, a.Err,
				map[bool]string{true: "the retry", false: "the delete"}[resume]))
			if a.Err == nil && a.Code < 500 {
				Expect(a.Code).To(Equal(http.StatusCreated), "%v", a.Body)
			}

			if resume {
				systemspec.ProvisionUntilDone(sys, id, systemtest.HAPlanID)
				Expect(expectPoolConsistent(sys)).To(Equal([]string{id}))
				code, body := systemspec.Bind(sys, id, "b-"+id, systemtest.HAPlanID)
				Expect(code).To(Equal(http.StatusCreated), "%v", body)
				fc := failoverClient(systemspec.Credentials(body))
				Expect(fc.DBSize(ctx).Val()).To(BeZero(), "instance %s was handed nodes holding keys", id)
				systemspec.WriteKeys(ctx, fc, id, 50)
				expectBothFollowers(fc)
			}
			systemspec.DeleteUntilGone(sys, id, systemtest.HAPlanID)
			expectAllFreeAndClean(sys)
		}
		// Reported, not asserted: where a kill falls depends on the machine.
		By(fmt.Sprintf("the kills fell at: %v", steps))
	})
})
