package broker

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// hostsResolver is DNS held in memory, for the broker's tests: the names a
// test gives it, nothing else. It counts the lookups, so a test can see that
// a refused leader cost no DNS query.
type hostsResolver struct {
	mu      sync.Mutex
	hosts   map[string][]string
	lookups int
}

func (r *hostsResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lookups++
	var out []netip.Addr
	for _, a := range r.hosts[strings.ToLower(strings.TrimSuffix(host, "."))] {
		out = append(out, netip.MustParseAddr(a))
	}
	if len(out) == 0 {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return out, nil
}

func (r *hostsResolver) set(host string, addrs ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hosts[host] = addrs
}

func (r *hostsResolver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lookups
}

var _ = Describe("replica_of a leader given by address", func() {
	var f *fixture
	var dns *hostsResolver
	const notListed = "is not in the operator's external_leaders list; follow an instance of this service by its id, or ask your operator to allow it"

	follow := func(leader any) (int, string) {
		GinkgoHelper()
		code, body := f.update("i1", map[string]any{"parameters": map[string]any{"replica_of": leader}})
		return code, description(body)
	}
	at := func(host string) map[string]any {
		return map[string]any{"host": host, "port": 6380, "username": "u", "password": "pw"}
	}
	// allow restarts the broker with external_leaders set.
	allow := func(entries ...string) {
		GinkgoHelper()
		f.cfg.ExternalLeaders = entries
		Expect(f.cfg.Validate()).To(Succeed())
		f.open()
	}

	BeforeEach(func() {
		f = newFixture()
		// The fixture's agents and nodes are configured by name (http://a0,
		// https://n1): BOSH DNS names, as the tile configures them.
		dns = &hostsResolver{hosts: map[string][]string{
			"a0": {"10.0.0.10"}, "a1": {"10.0.0.11"}, "n0": {"10.0.1.10"}, "n1": {"10.0.1.11"},
		}}
		f.resolver = dns
		f.open()
		f.mustProvision("i1", sharedPlanID)
	})

	It("refuses every external leader while the operator allows none, without a DNS lookup", func() {
		for _, host := range []string{"203.0.113.7", "redis.example.com", "2001:db8::7"} {
			code, msg := follow(at(host))
			Expect(code).To(Equal(http.StatusBadRequest), host)
			Expect(msg).To(Equal(`parameter "replica_of": leader ` + host + ` ` + notListed))
		}
		Expect(dns.count()).To(BeZero())
		Expect(f.agents["a0"].instance("i1").leader).To(BeNil())
		Expect(f.record("i1").ReplicaOf).To(BeNil())
	})

	It("follows an allowed leader, by address or by name, giving the agent the address it checked", func() {
		allow("203.0.113.0/24", "2001:db8::/32", "redis.example.com", "198.51.100.9")
		dns.set("redis.example.com", "198.51.100.20")
		dns.set("db.example.net", "203.0.113.8")

		code, msg := follow(at("203.0.113.7"))
		Expect(code).To(Equal(http.StatusOK), msg)
		Expect(f.agents["a0"].instance("i1").leader.Host).To(Equal("203.0.113.7"))
		Expect(f.attributes("i1")).To(HaveKeyWithValue("replica_of", "203.0.113.7:6380"))

		code, msg = follow(at("198.51.100.9"))
		Expect(code).To(Equal(http.StatusOK), msg)
		code, msg = follow(at("2001:db8::7"))
		Expect(code).To(Equal(http.StatusOK), msg)

		// Allowed by name: whatever it resolves to (outside the platform).
		code, msg = follow(at("REDIS.example.com."))
		Expect(code).To(Equal(http.StatusOK), msg)
		leader := f.agents["a0"].instance("i1").leader
		Expect(leader.Host).To(Equal("198.51.100.20"))
		Expect(leader.Port).To(Equal(6380))
		Expect(f.attributes("i1")).To(HaveKeyWithValue("replica_of", "REDIS.example.com.:6380"))

		// Allowed by address: every address the name has must be listed.
		code, msg = follow(at("db.example.net"))
		Expect(code).To(Equal(http.StatusOK), msg)
		Expect(f.agents["a0"].instance("i1").leader.Host).To(Equal("203.0.113.8"))
		dns.set("db.example.net", "203.0.113.8", "192.0.2.1")
		code, msg = follow(at("db.example.net"))
		Expect(code).To(Equal(http.StatusBadRequest))
		Expect(msg).To(Equal(`parameter "replica_of": leader db.example.net (192.0.2.1) ` + notListed))

		code, msg = follow(at("192.0.2.1"))
		Expect(code).To(Equal(http.StatusBadRequest))
		Expect(msg).To(Equal(`parameter "replica_of": leader 192.0.2.1 ` + notListed))
		// Refusals change nothing: the instance follows what it followed.
		Expect(f.agents["a0"].instance("i1").leader.Host).To(Equal("203.0.113.8"))

		code, _ = follow(nil)
		Expect(code).To(Equal(http.StatusOK))
		Expect(f.agents["a0"].instance("i1").leader).To(BeNil())
	})

	It("gives the agent the address it checked, so a name that changes its answer later (DNS rebinding) cannot lead it elsewhere", func() {
		allow("redis.example.com")
		dns.set("redis.example.com", "203.0.113.7")
		code, msg := follow(at("redis.example.com"))
		Expect(code).To(Equal(http.StatusOK), msg)
		dns.set("redis.example.com", "127.0.0.1")
		Expect(f.agents["a0"].instance("i1").leader.Host).To(Equal("203.0.113.7"))
		Expect(f.record("i1").ReplicaOf.Host).To(Equal("203.0.113.7"))
	})

	It("never follows the platform's own addresses, even when the allow-list covers them", func() {
		f.cfg.Listen = "198.18.0.5:8080"
		allow("0.0.0.0/0", "::/0", "localhost", "a0", "evil.example.com", "rebind.example.com", "mapped.example.com")
		dns.set("evil.example.com", "169.254.169.254")
		dns.set("rebind.example.com", "203.0.113.9", "10.0.0.10")
		dns.set("mapped.example.com", "::ffff:127.0.0.1")
		refused := map[string]string{
			"127.0.0.1":              "127.0.0.1 is a loopback address",
			"127.1.2.3":              "127.1.2.3 is a loopback address",
			"::1":                    "::1 is a loopback address",
			"::ffff:127.0.0.1":       "::ffff:127.0.0.1 is a loopback address",
			"localhost":              "localhost is a loopback address",
			"LocalHost.":             "LocalHost. is a loopback address",
			"x.localhost":            "x.localhost is a loopback address",
			"0.0.0.0":                "0.0.0.0 is an unspecified address",
			"0.1.2.3":                "0.1.2.3 is an unspecified address",
			"::":                     "is an unspecified address",
			"169.254.169.254":        "169.254.169.254 is a link-local address",
			"::ffff:169.254.169.254": "is a link-local address",
			"fe80::1":                "fe80::1 is a link-local address",
			"224.0.0.1":              "224.0.0.1 is a multicast address",
			"ff02::1":                "ff02::1 is a multicast address",
			"255.255.255.255":        "255.255.255.255 is a broadcast address",
			"10.0.0.10":              "10.0.0.10 is an address of the platform itself",  // agent a0 (its instances' host)
			"10.0.1.11":              "10.0.1.11 is an address of the platform itself",  // node n1, by its name in the config
			"198.18.0.5":             "198.18.0.5 is an address of the platform itself", // the broker's listen address
			"a0":                     "a0 is an address of the platform itself",
			"evil.example.com":       "evil.example.com resolves to 169.254.169.254, a link-local address",
			"rebind.example.com":     "rebind.example.com resolves to 10.0.0.10, an address of the platform itself",
			"mapped.example.com":     "mapped.example.com resolves to ::ffff:127.0.0.1, a loopback address",
		}
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range addrs {
				if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().IsGlobalUnicast() && p.Addr().Zone() == "" {
					refused[p.Addr().String()] = "is an address of the platform itself" // the broker's VM
				}
			}
		}
		for host, says := range refused {
			code, msg := follow(at(host))
			Expect(code).To(Equal(http.StatusBadRequest), host)
			Expect(msg).To(ContainSubstring(says), host)
			Expect(msg).To(HaveSuffix(", which no instance may follow; follow an instance of this service by its id, or a Redis outside the platform"), host)
		}
		Expect(f.agents["a0"].instance("i1").leader).To(BeNil())
	})

	It("still knows a platform host's addresses when its name does not resolve for a while", func() {
		allow("0.0.0.0/0")
		code, _ := follow(at("10.0.1.11"))
		Expect(code).To(Equal(http.StatusBadRequest))
		dns.set("n1")
		code, msg := follow(at("10.0.1.11"))
		Expect(code).To(Equal(http.StatusBadRequest))
		Expect(msg).To(ContainSubstring("10.0.1.11 is an address of the platform itself"))
		code, msg = follow(at("203.0.113.7"))
		Expect(code).To(Equal(http.StatusOK), msg)
	})

	It("refuses hosts that are neither an IP address in standard form nor a DNS name, and names that do not resolve (400)", func() {
		allow("0.0.0.0/0", "::/0")
		for _, host := range []string{"2130706433", "0x7f.1", "0x7f000001", "127.1", "017700000001", "fe80::1%eth0", "[::1]", "h:1", "exa_mple.com"} {
			code, msg := follow(at(host))
			Expect(code).To(Equal(http.StatusBadRequest), host)
			Expect(msg).To(ContainSubstring(`parameter "replica_of": leader.host: "`+host+`" is neither an IP address`), host)
		}
		code, msg := follow(at("nx.example.com"))
		Expect(code).To(Equal(http.StatusBadRequest))
		Expect(msg).To(Equal(`parameter "replica_of": leader.host "nx.example.com" does not resolve to an address; check the name, or follow an instance of this service by its id`))
		Expect(f.agents["a0"].instance("i1").leader).To(BeNil())
	})

	It("refuses a leader before it applies anything else of the update", func() {
		code, _ := f.update("i1", map[string]any{"parameters": map[string]any{"timeout": 7, "replica_of": at("203.0.113.7")}})
		Expect(code).To(Equal(http.StatusBadRequest))
		Expect(f.record("i1").Parameters.Timeout).To(BeZero())
	})
})

var _ = Describe("Config's external_leaders", func() {
	It("takes CIDRs, IP addresses and DNS names, and names each entry it cannot read", func() {
		f := newFixture()
		f.cfg.ExternalLeaders = []string{"10.20.0.0/16", "2001:db8::/32", "203.0.113.7", "redis.example.com"}
		Expect(f.cfg.Validate()).To(Succeed())
		for entry, says := range map[string]string{
			"10.20.0.1/16":        `external_leaders[0]: "10.20.0.1/16" has bits set beyond its prefix length; write 10.20.0.0/16`,
			"0x7f.1":              `external_leaders[0]: "0x7f.1" is not a CIDR, an IP address or a DNS name`,
			"":                    `external_leaders[0]: "" is not a CIDR, an IP address or a DNS name`,
			"fe80::1%eth0":        `external_leaders[0]: "fe80::1%eth0" is not a CIDR, an IP address or a DNS name`,
			"::ffff:10.0.0.0/104": `external_leaders[0]: "::ffff:10.0.0.0/104": write IPv4 ranges in IPv4 form`,
		} {
			f.cfg.ExternalLeaders = []string{entry}
			err := f.cfg.Validate()
			Expect(err).To(HaveOccurred(), entry)
			Expect(err.Error()).To(ContainSubstring(says), entry)
		}
	})
})
