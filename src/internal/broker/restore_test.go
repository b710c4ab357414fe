package broker

import (
	"fmt"
	"net/http"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
)

var _ = Describe("restore through update", func() {
	var f *fixture
	store := func(id, content string) { GinkgoHelper(); storeBackup(f, id, content) }
	restore := func(id, ref string, async bool) (int, map[string]any) {
		GinkgoHelper()
		path := instancePath(id)
		if async {
			path += "?accepts_incomplete=true"
		}
		return f.call(http.MethodPatch, path, map[string]any{"service_id": serviceID, "parameters": map[string]any{"restore": ref}})
	}

	BeforeEach(func() {
		f = newFixture()
		f.mustProvision("i1", sharedPlanID)
		f.mustProvision("d1", dedicPlanID)
		store("i1", "shared archive")
		store("d1", "dedicated archive")
	})

	It("streams the instance's own backup to its agent, whatever the plan", func() {
		code, body := restore("i1", "latest", false)
		Expect(code).To(Equal(http.StatusOK), "%v", body)
		Expect(f.agents["a0"].restored).To(Equal("shared archive"))
		_, op := f.lastOperation("i1")
		Expect(op).To(HaveKeyWithValue("state", "succeeded"))
		Expect(op).To(HaveKeyWithValue("description", ContainSubstring("restored backup 20260121T030000.000Z")))

		code, _ = restore("d1", "20260121T03", true)
		Expect(code).To(Equal(http.StatusAccepted))
		Eventually(func() map[string]any { _, b := f.lastOperation("d1"); return b }).Should(HaveKeyWithValue("state", "succeeded"))
		Expect(f.agents["n0"].restored).To(Equal("dedicated archive"))
	})

	It("refuses another instance's backup (403), an unknown one (400) and restore beside other parameters (400)", func() {
		code, _ := restore("i1", "d1/20260121T030000.000Z.tar.gz", false)
		Expect(code).To(Equal(http.StatusForbidden))
		code, _ = restore("i1", "20250101", false)
		Expect(code).To(Equal(http.StatusBadRequest))
		code, _ = f.update("i1", map[string]any{"parameters": map[string]any{"restore": "latest", "timeout": 5}})
		Expect(code).To(Equal(http.StatusBadRequest))
		Expect(f.agents["a0"].restored).To(BeEmpty())
	})

	It("answers a damaged backup with 422 and records the failure", func() {
		f.agents["a0"].failNext("restore", fmt.Errorf("%w: checksum", agentapi.ErrInvalid))
		code, body := restore("i1", "latest", false)
		Expect(code).To(Equal(http.StatusUnprocessableEntity))
		Expect(description(body)).To(ContainSubstring("The instance kept its data"))
		_, op := f.lastOperation("i1")
		Expect(op).To(HaveKeyWithValue("state", "failed"))
	})

	It("refuses a follower's restore", func() {
		f.update("i1", map[string]any{"parameters": map[string]any{"replica_of": "d1"}})
		code, body := restore("i1", "latest", false)
		Expect(code).To(Equal(http.StatusUnprocessableEntity))
		Expect(description(body)).To(ContainSubstring("follows a leader"))
	})
})
