package hostile_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// expectPauseRefused: a binding cannot pause the server (which would lock
// the platform out of bind, unbind and backups), and the platform still
// binds and unbinds; the binding's data commands answer.
func expectPauseRefused(sys *system, p plan) {
	id := newID("pause")
	sys.provisionForSpec(p, id)
	creds := sys.bind(p, id, newID("app"))
	app := client(creds)
	pl := sys.locate(p, id)
	err := app.Do(ctx, "CLIENT", "PAUSE", "600000", "ALL").Err()
	if err == nil {
		// A paused server blocks even the admin's CLIENT UNPAUSE: killing
		// it is the way to free the rest of the system from this attack.
		DeferCleanup(pl.killRedis)
	}
	Expect(err).To(MatchError(ContainSubstring("NOPERM")), "CLIENT PAUSE 600000 ALL as a binding")

	other := newID("app")
	sys.bind(p, id, other)
	code, body := sys.unbind(p, id, other)
	Expect(code).To(Equal(http.StatusOK), "unbind after CLIENT PAUSE: %v", body)
	Expect(app.Set(ctx, "after-pause", "1", 0).Err()).To(Succeed())
	Expect(app.Get(ctx, "after-pause").Val()).To(Equal("1"))
}

// expectClientKillRefused: a binding cannot close another binding's
// connections.
func expectClientKillRefused(sys *system, p plan) {
	id := newID("kill")
	sys.provisionForSpec(p, id)
	attacker := client(sys.bind(p, id, newID("app")))
	victimCreds := sys.bind(p, id, newID("app"))
	victim := client(victimCreds)
	Expect(victim.Ping(ctx).Err()).To(Succeed())

	err := attacker.Do(ctx, "CLIENT", "KILL", "USER", victimCreds["username"].(string)).Err()
	Expect(err).To(MatchError(ContainSubstring("NOPERM")), "CLIENT KILL USER <another binding> as a binding")
	Expect(victim.Ping(ctx).Err()).To(Succeed(), "the other binding's open connection still answers")
}

// floodLimit is how many unauthenticated connections the flood opens at
// most: Redis's default maxclients.
const floodLimit = 10000

// flood opens TCP connections to address that never authenticate, until
// the server answers "max number of clients reached" or floodLimit are open,
// and closes them when the spec ends. It returns how many it opened.
func flood(address string) int {
	GinkgoHelper()
	var lim syscall.Rlimit
	Expect(syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)).To(Succeed())
	if want := uint64(floodLimit + 2000); lim.Cur < want {
		old := lim
		lim.Cur, lim.Max = want, max(lim.Max, want)
		Expect(syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)).To(Succeed(), "RLIMIT_NOFILE for %d connections", floodLimit)
		DeferCleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
	}
	var conns []net.Conn
	DeferCleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	full := func() bool {
		c, err := net.DialTimeout("tcp", address, 2*time.Second)
		if err != nil {
			return true
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte("PING\r\n")); err != nil {
			return true
		}
		line, _ := bufio.NewReader(c).ReadString('\n')
		return strings.Contains(line, "max number of clients")
	}
	for len(conns) < floodLimit {
		c, err := net.DialTimeout("tcp", address, 2*time.Second)
		if err != nil {
			break
		}
		conns = append(conns, c)
		if len(conns)%500 == 0 && full() {
			break
		}
	}
	fmt.Fprintf(GinkgoWriter, "the flood holds %d unauthenticated connections to %s\n", len(conns), address)
	return len(conns)
}

// expectFloodSurvived: connections that never authenticate fill the
// server's slots; bind, unbind and delete through the broker still work, and
// the new binding gets in once the agent has closed idle unauthenticated
// connections.
func expectFloodSurvived(sys *system, p plan) {
	id := newID("flood")
	sys.provisionForSpec(p, id)
	creds := sys.bind(p, id, newID("app"))
	Expect(flood(addr(creds))).To(BeNumerically(">", 0))

	binding := newID("app")
	code, body := sys.bindRaw(p, id, binding)
	Expect(code).To(Equal(http.StatusCreated), "bind during the flood: %v", body)
	newCreds, _ := body["credentials"].(map[string]any)
	Eventually(func() error { return ping(newCreds) }).WithTimeout(time.Minute).WithPolling(500*time.Millisecond).
		Should(Succeed(), "the new binding connects and PINGs")
	code, body = sys.unbind(p, id, binding)
	Expect(code).To(Equal(http.StatusOK), "unbind during the flood: %v", body)
	sys.deprovision(p, id)
}
