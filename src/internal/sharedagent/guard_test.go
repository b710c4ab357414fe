package sharedagent_test

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/secret"
)

var _ = Describe("the agent's guard", func() {
	It("ends a script that keeps an instance busy longer than max_script_seconds, and GET says so", func(ctx SpecContext) {
		cfg := config(tempDir())
		cfg.MaxScriptSeconds = 1
		a := startAgent(cfg)
		DeferCleanup(a.stop)
		inst, err := a.client.Create(ctx, "i1", request(16))
		Expect(err).NotTo(HaveOccurred())
		pw := secret.New()
		_, err = a.client.Bind(ctx, "i1", "b1", agentapi.BindingRequest{Password: pw})
		Expect(err).NotTo(HaveOccurred())
		c := tenant(inst, "b1", pw)
		slow := redis.NewClient(&redis.Options{Addr: c.Options().Addr, Username: "b1", Password: pw, MaxRetries: -1, ReadTimeout: time.Minute})
		DeferCleanup(slow.Close)
		// Redis answers BUSY after 5 s (busy-reply-threshold); the agent
		// ends the script within seconds after that.
		Expect(slow.Eval(ctx, "while true do end", nil).Err()).To(MatchError(ContainSubstring("Script killed")))
		Eventually(func() (string, error) {
			got, err := a.client.Get(ctx, "i1")
			return got.LastError, err
		}).Should(Equal("a script ran longer than max_script_seconds (1 s) and was ended by the agent"))
		Expect(c.Ping(ctx).Err()).To(Succeed())
	})

	It("checks max_script_seconds", func() {
		cfg := config(tempDir())
		Expect(cfg.Validate()).To(Succeed())
		Expect(cfg.MaxScriptSeconds).To(Equal(60))
		for _, bad := range []int{-1, 3601} {
			cfg.MaxScriptSeconds = bad
			Expect(cfg.Validate()).To(MatchError(ContainSubstring("max_script_seconds")))
		}
		cfg.MaxScriptSeconds = 3600
		Expect(cfg.Validate()).To(Succeed())
	})
})
