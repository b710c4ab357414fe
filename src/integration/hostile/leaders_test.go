package hostile_test

import (
	"fmt"
	"net"
	"net/http"
	"strconv"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// leaderAddress is a replica_of object's host and port, and what it is.
type leaderAddress struct {
	what string
	host string
	port int
}

// platformLeaders are the platform's own addresses and the spellings of
// loopback and "any" a tenant could offer as a leader: none may ever be
// one, whatever the operator allowed.
func platformLeaders(sys *system) []leaderAddress {
	GinkgoHelper()
	hostPort := func(what, hp string) leaderAddress {
		h, p, err := net.SplitHostPort(hp)
		Expect(err).NotTo(HaveOccurred())
		port, err := strconv.Atoi(p)
		Expect(err).NotTo(HaveOccurred())
		return leaderAddress{what, h, port}
	}
	out := []leaderAddress{
		hostPort("the shared agent's API", sys.Agents[0].Addr),
		hostPort("the broker", sys.Broker.Addr),
		{"the cloud metadata service", "169.254.169.254", 80},
		{"localhost", "localhost", 6379},
		{"IPv6 loopback", "::1", 6379},
		{"any address", "0.0.0.0", 6379},
		{"IPv4-mapped loopback", "::ffff:127.0.0.1", 6379},
		{"loopback as a decimal number", "2130706433", 6379},
	}
	for _, n := range sys.Nodes {
		out = append(out, hostPort("node "+n.Name+"'s API", n.Addr))
	}
	return out
}

// expectLeaderRefused asks for replica_of {host, port} and expects a 400
// with a description that mentions want.
func expectLeaderRefused(sys *system, id string, l leaderAddress, want string) {
	GinkgoHelper()
	code, body := sys.update(id, map[string]any{"replica_of": map[string]any{"host": l.host, "port": l.port}})
	Expect(code).To(Equal(http.StatusBadRequest), "replica_of %s (%s): %v", net.JoinHostPort(l.host, strconv.Itoa(l.port)), l.what, body)
	Expect(body["description"]).To(And(BeAssignableToTypeOf(""), Not(BeEmpty())), "replica_of %s: %v", l.what, body)
	if want != "" {
		Expect(body["description"]).To(ContainSubstring(want), "replica_of %s", l.what)
	}
}

// expectPlatformLeadersRefused checks every platform address on an
// instance of p.
func expectPlatformLeadersRefused(sys *system, p plan) {
	id := newID("follower")
	sys.provisionForSpec(p, id)
	var accepted []string
	for _, l := range platformLeaders(sys) {
		code, body := sys.update(id, map[string]any{"replica_of": map[string]any{"host": l.host, "port": l.port}})
		if desc, _ := body["description"].(string); code != http.StatusBadRequest || desc == "" {
			accepted = append(accepted, fmt.Sprintf("%s (%s): %d %v", net.JoinHostPort(l.host, strconv.Itoa(l.port)), l.what, code, body))
		}
	}
	Expect(accepted).To(BeEmpty(), "platform addresses not refused with a 400 and a description")
	Expect(sys.attributes(id)["replication"]).To(HaveKeyWithValue("role", "leader"), "the instance follows nobody")
}

// expectListedLeaderAccepted: a leader in external_leaders (TEST-NET-1,
// which nothing answers) is accepted; the follower's link is down.
func expectListedLeaderAccepted(sys *system) {
	id := newID("follower")
	sys.provision(sharedPlan, id)
	code, body := sys.update(id, map[string]any{"replica_of": map[string]any{"host": "192.0.2.10", "port": 6379}})
	Expect(code).To(Equal(http.StatusOK), "replica_of 192.0.2.10:6379, in external_leaders: %v", body)
	Eventually(func() any { return sys.attributes(id)["replication"] }).
		Should(And(HaveKeyWithValue("role", "follower"), HaveKeyWithValue("link", "down")))
}
