package hostile_test

import (
	"fmt"
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/testkit/systemspec"
)

// busyScript loops forever after a write, so SCRIPT KILL cannot end it
// (UNKILLABLE) and the server answers BUSY to everyone else.
const busyScript = `redis.call('SET','busy','1') while true do end`

// startBusyScript runs busyScript as the binding in the background and
// waits until the server answers BUSY. The returned channel yields the
// script's answer once it ends. Cleanup kills a server still busy, the one
// way left to stop it, so the spec's system can stop.
func startBusyScript(creds map[string]any, pl place) <-chan error {
	GinkgoHelper()
	opt, err := redis.ParseURL(creds["uri"].(string))
	Expect(err).NotTo(HaveOccurred())
	opt.MaxRetries, opt.PoolSize = -1, 1
	opt.ReadTimeout = 5 * time.Minute
	c := redis.NewClient(opt)
	done := make(chan error, 1)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		done <- c.Eval(ctx, busyScript, nil).Err()
	}()
	DeferCleanup(func() {
		select {
		case <-finished:
		case <-time.After(100 * time.Millisecond):
			pl.killRedis()
			<-finished
		}
		c.Close()
	})
	Eventually(func() error { return ping(creds) }).Should(MatchError(ContainSubstring("BUSY")), "the server is busy with the script")
	return done
}

// expectBusyInstanceDeleted: a delete of an instance whose server is busy
// in an unkillable script succeeds on the first request; a dedicated node
// is reset and free for the next instance.
func expectBusyInstanceDeleted(sys *system, p plan) {
	id := newID("busy")
	sys.provision(p, id)
	creds := sys.bind(p, id, newID("app"))
	pl := sys.locate(p, id)
	done := startBusyScript(creds, pl)

	code, body := sys.deprovisionRaw(p, id)
	Expect(code).To(BeElementOf(http.StatusOK, http.StatusAccepted), "the first delete of a busy instance: %v", body)
	if code == http.StatusAccepted {
		sys.waitDeleted(id, time.Minute)
	}
	Eventually(done).WithTimeout(time.Minute).Should(Receive(HaveOccurred()), "the script ended with its server")
	if p == dedicatedPlan {
		next := newID("next")
		Eventually(func() int { c, _ := sys.provisionRaw(p, next); return c }).WithTimeout(time.Minute).
			Should(Equal(http.StatusCreated), "a new instance gets the reset node")
		Expect(sys.locate(p, next).agent).To(Equal(pl.agent), "the new instance is on the node the busy one held")
		sys.deprovision(p, next)
	}
}

// expectBusyScriptEnded: with max_script_seconds 3 the agent ends a busy
// script; the instance serves its binding again with the data written
// before the script.
func expectBusyScriptEnded(sys *system, p plan) {
	id := newID("busy")
	sys.provision(p, id)
	creds := sys.bind(p, id, newID("app"))
	app := client(creds)
	systemspec.WriteKeys(ctx, app, "before", 100)
	systemspec.WaitForAOF()
	pl := sys.locate(p, id)
	done := startBusyScript(creds, pl)

	Eventually(func() error { return ping(creds) }).WithTimeout(30*time.Second).WithPolling(200*time.Millisecond).
		Should(Succeed(), "the agent ended the script and the instance answers PING")
	Eventually(done).Should(Receive(HaveOccurred()), "the script's client was told it ended")
	systemspec.ExpectKeys(ctx, client(creds), "before", 100)
	fmt.Fprintf(GinkgoWriter, "instance %s serves again after its busy script\n", id)
}
