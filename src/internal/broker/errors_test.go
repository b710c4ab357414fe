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
		Entry("a full plan", (&Broker{cfg: Config{SharedVM: &SharedVMPlan{Name: "shared-vm", MaxInstances: 5, MaxMemoryMB: 64}}}).planFull(), http.StatusUnprocessableEntity, "plan is full"),
		Entry("a conflict", &userError{status: http.StatusConflict, msg: "exists"}, http.StatusConflict, "exists"),
		Entry("an unreachable agent", fmt.Errorf("x: %w", agentapi.ErrUnavailable), http.StatusServiceUnavailable, "req-42"),
		Entry("no agent at all", errNoAgent, http.StatusServiceUnavailable, "Try again"),
		Entry("no reachable node for a claim", fmt.Errorf("%w: %w", errNoAgent, fmt.Errorf("x: %w", agentapi.ErrUnavailable)), http.StatusServiceUnavailable, "any VM that could hold a new instance"),
		Entry("an unreachable node", fmt.Errorf("x: %w", agentapi.ErrUnavailable), http.StatusServiceUnavailable, "could not reach the VM holding the instance"),
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
		Expect(status(b.respond(ctx, "provision", b.planFull()))).To(BeNumerically("<", 500))
		Expect(errors.Is(b.planFull(), ErrPlanFull)).To(BeTrue())
	})
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
