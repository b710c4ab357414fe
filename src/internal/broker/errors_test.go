package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"code.cloudfoundry.org/brokerapi/v13/domain/apiresponses"
	"code.cloudfoundry.org/brokerapi/v13/middlewares"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/params"
)

func TestBroker(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "broker")
}

var _ = Describe("respond", func() {
	var (
		b   *Broker
		log strings.Builder
		ctx context.Context
	)
	BeforeEach(func() {
		log.Reset()
		b = &Broker{cfg: Config{SharedVM: &SharedVMPlan{Name: "shared-vm", MaxInstances: 5, MaxMemoryMB: 64}},
			logger: slog.New(slog.NewTextHandler(&log, nil))}
		ctx = context.WithValue(context.Background(), middlewares.CorrelationIDKey, "req-42")
	})

	status := func(err error) int {
		var fr *apiresponses.FailureResponse
		Expect(errors.As(err, &fr)).To(BeTrue())
		return fr.ValidatedStatusCode(nil)
	}

	It("passes nil through", func() {
		Expect(b.respond(ctx, "op", nil)).To(Succeed())
	})

	DescribeTable("maps domain errors to OSB statuses with a message for the user",
		func(err error, code int, says string) {
			out := b.respond(ctx, "provision", err)
			Expect(status(out)).To(Equal(code))
			Expect(out.Error()).To(ContainSubstring(says))
		},
		Entry("bad parameters", fmt.Errorf("%w: parameter \"timeout\" must be…", params.ErrInvalid), http.StatusBadRequest, `"timeout"`),
		Entry("a full plan", (&sharedPlan{cfg: &SharedVMPlan{Name: "shared-vm", MaxInstances: 5, MaxMemoryMB: 64}}).full(), http.StatusUnprocessableEntity, "plan is full"),
		Entry("a conflict", &userError{status: http.StatusConflict, msg: "exists"}, http.StatusConflict, "exists"),
		Entry("an unreachable agent", fmt.Errorf("x: %w", agentapi.ErrUnavailable), http.StatusServiceUnavailable, "could not reach the VM holding the instance"),
		Entry("no agent at all", errNoAgent, http.StatusServiceUnavailable, "Try again"),
		Entry("no reachable node for a claim", fmt.Errorf("%w: %w", errNoAgent, fmt.Errorf("x: %w", agentapi.ErrUnavailable)), http.StatusServiceUnavailable, "any VM that could hold a new instance"),
		Entry("an agent's not found", fmt.Errorf("x: %w", agentapi.ErrNotFound), http.StatusInternalServerError, "req-42"),
		Entry("an agent's conflict", fmt.Errorf("x: %w", agentapi.ErrConflict), http.StatusInternalServerError, "req-42"),
		Entry("an agent's full", fmt.Errorf("x: %w", agentapi.ErrFull), http.StatusInternalServerError, "req-42"),
		Entry("an agent's invalid", fmt.Errorf("x: %w", agentapi.ErrInvalid), http.StatusInternalServerError, "req-42"),
		Entry("a busy node", fmt.Errorf("x: %w", agentapi.ErrBusy), http.StatusInternalServerError, "req-42"),
		Entry("a dirty node", fmt.Errorf("x: %w", agentapi.ErrDirty), http.StatusInternalServerError, "req-42"),
		Entry("a dedicated plan full", (&dedicatedPlan{cfg: &DedicatedVMPlan{Name: "dedicated-vm", Nodes: make([]NodeConfig, 2)}}).full(), http.StatusUnprocessableEntity, "all 2 dedicated VMs are in use"),
		Entry("a concurrent operation", apiresponses.ErrConcurrentInstanceAccess, http.StatusUnprocessableEntity, ""),
		Entry("anything else", errors.New("disk on fire at /var/vcap/store"), http.StatusInternalServerError, "req-42"),
		Entry("a brokerapi response", apiresponses.ErrInstanceDoesNotExist, http.StatusGone, ""),
	)

	It("keeps internal causes out of the user's message and in the log", func() {
		out := b.respond(ctx, "bind", errors.New("open /var/vcap/store/broker: permission denied"))
		Expect(out.Error()).NotTo(ContainSubstring("/var/vcap"))
		Expect(log.String()).To(ContainSubstring("/var/vcap/store/broker"))
		Expect(log.String()).To(ContainSubstring("req-42"))
	})

	It("answers the plan-full error as a 4xx, never a 500", func() {
		full := (&sharedPlan{cfg: b.cfg.SharedVM}).full
		Expect(status(b.respond(ctx, "provision", full()))).To(BeNumerically("<", 500))
		Expect(errors.Is(full(), ErrPlanFull)).To(BeTrue())
	})
})

var _ = Describe("restoreFailure", func() {
	DescribeTable("says in words what a failed restore means, by the agent's error",
		func(cause error, code int, says string) {
			err := restoreFailure(fmt.Errorf("restoring: %w", cause), "20260101T000000.000Z", "req-7")
			var ue *userError
			Expect(errors.As(err, &ue)).To(BeTrue())
			Expect(ue.status).To(Equal(code))
			Expect(err.Error()).To(ContainSubstring(says))
			Expect(errors.Is(err, cause)).To(BeTrue(), "the cause stays for the log")
		},
		Entry("a damaged backup", agentapi.ErrInvalid, http.StatusUnprocessableEntity, "damaged or its data did not verify"),
		Entry("a backup or restore running", agentapi.ErrConflict, http.StatusConflict, "a backup or restore of the instance is running"),
		Entry("no disk space", agentapi.ErrFull, http.StatusUnprocessableEntity, "no disk space left"),
		Entry("an instance gone", agentapi.ErrNotFound, http.StatusNotFound, "no longer exists"),
		Entry("an unreachable VM", agentapi.ErrUnavailable, http.StatusServiceUnavailable, "Try again in a few minutes"),
		Entry("a busy node", agentapi.ErrBusy, http.StatusServiceUnavailable, "req-7"),
		Entry("a dirty node", agentapi.ErrDirty, http.StatusServiceUnavailable, "req-7"),
	)
})

var _ = Describe("RedactAttr", func() {
	It("hides request details and secrets from logs", func() {
		var out strings.Builder
		l := slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{ReplaceAttr: RedactAttr}))
		l.Info("x", "instance-details", map[string]any{"parameters": map[string]string{"password": "hunter2"}}, "password", "hunter2", "instance", "i1")
		Expect(out.String()).NotTo(ContainSubstring("hunter2"))
		Expect(out.String()).To(ContainSubstring("i1"))
	})
})
