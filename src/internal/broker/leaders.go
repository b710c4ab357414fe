package broker

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/cf-redis/redis-for-cf/src/internal/replication"
)

// A leader's replication stream runs with admin rights on its follower, and
// the follower's agent connects wherever the leader's address points, from
// inside the platform's network. So a tenant may name as a leader only an
// instance of this service (by id) or a Redis at an address the operator
// listed in external_leaders, and never one of the platform's own addresses,
// whatever the list says.

// resolver looks up a host name's addresses; *net.Resolver is the real one.
type resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

var _ resolver = (*net.Resolver)(nil)

// resolveTimeout bounds the DNS lookups of one leader check: a tenant's name
// that does not answer costs seconds, and is a 400.
const resolveTimeout = 3 * time.Second

// allowList is Config.ExternalLeaders parsed: IP addresses and CIDRs as
// prefixes, DNS names lowercased without a trailing dot.
type allowList struct {
	prefixes []netip.Prefix
	names    map[string]bool
}

func (a allowList) hasAddr(addr netip.Addr) bool {
	for _, p := range a.prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// parseAllowList reads the entries of external_leaders, naming each it
// cannot read.
func parseAllowList(entries []string) (allowList, []error) {
	out := allowList{names: map[string]bool{}}
	var errs []error
	for i, e := range entries {
		field := fmt.Sprintf("external_leaders[%d]", i)
		if p, err := netip.ParsePrefix(e); err == nil {
			switch {
			case p.Addr().Is4In6():
				errs = append(errs, fmt.Errorf("%s: %q: write IPv4 ranges in IPv4 form", field, e))
			case p.Masked() != p:
				errs = append(errs, fmt.Errorf("%s: %q has bits set beyond its prefix length; write %s", field, e, p.Masked()))
			default:
				out.prefixes = append(out.prefixes, p)
			}
			continue
		}
		if replication.CheckHost(e) != nil {
			errs = append(errs, fmt.Errorf("%s: %q is not a CIDR, an IP address or a DNS name", field, e))
			continue
		}
		if a, err := netip.ParseAddr(e); err == nil {
			a = a.Unmap()
			out.prefixes = append(out.prefixes, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		out.names[normalName(e)] = true
	}
	return out, errs
}

// normalName is a DNS name as names compare: lowercase, no trailing dot.
func normalName(host string) string { return strings.ToLower(strings.TrimSuffix(host, ".")) }

// checkExternalLeader decides whether an instance may follow the leader a
// tenant gave by address, and returns the address the agent is to connect
// to: the host itself when it is an IP address, otherwise the address the
// name resolved to and that passed the checks, so that a name whose answer
// changes afterwards (DNS rebinding) cannot lead the agent elsewhere.
//
// An IP address must be in a listed CIDR or be a listed address; a name
// must be listed itself or have only listed addresses. No address of the
// platform may lead, listed or not: loopback, unspecified, link-local,
// multicast and broadcast addresses, and the broker's, agents' and nodes'
// own (platformAddrs). Leader.Check has checked the form of the host.
func (b *Broker) checkExternalLeader(ctx context.Context, l replication.Leader) (netip.Addr, error) {
	host := l.Host
	notListed := func(shown string) error {
		return badRequest("parameter %q: leader %s is not in the operator's external_leaders list; "+
			"follow an instance of this service by its id, or ask your operator to allow it", ReplicaOfParam, shown)
	}
	refused := func(what string) error {
		return badRequest("parameter %q: leader %s, which no instance may follow; "+
			"follow an instance of this service by its id, or a Redis outside the platform", ReplicaOfParam, what)
	}
	// The platform's addresses are looked up (DNS) only for an address the
	// list allows, once per check.
	var platform map[netip.Addr]bool
	ours := func(a netip.Addr) bool {
		if platform == nil {
			platform = b.platformAddrs(ctx)
		}
		return platform[a]
	}
	if addr, err := netip.ParseAddr(host); err == nil {
		a := addr.Unmap()
		switch why := specialReason(a); {
		case why != "":
			return netip.Addr{}, refused(host + " is " + why)
		case !b.allowed.hasAddr(a):
			return netip.Addr{}, notListed(host)
		case ours(a):
			return netip.Addr{}, refused(host + " is an address of the platform itself")
		}
		return a, nil
	}
	name := normalName(host)
	if name == "localhost" || strings.HasSuffix(name, ".localhost") {
		return netip.Addr{}, refused(host + " is a loopback address")
	}
	listed := b.allowed.names[name]
	if !listed && len(b.allowed.prefixes) == 0 {
		// Nothing the name could resolve to is listed: no lookup on a
		// tenant's behalf.
		return netip.Addr{}, notListed(host)
	}
	if b.platformNames()[name] {
		return netip.Addr{}, refused(host + " is an address of the platform itself")
	}
	addrs, err := b.lookup(ctx, host)
	if err != nil || len(addrs) == 0 {
		b.logger.Info("a leader's name did not resolve", "host", host, "error", err)
		return netip.Addr{}, badRequest("parameter %q: leader.host %q does not resolve to an address; "+
			"check the name, or follow an instance of this service by its id", ReplicaOfParam, host)
	}
	for _, addr := range addrs {
		a := addr.Unmap().WithZone("")
		switch why := specialReason(a); {
		case why != "":
			return netip.Addr{}, refused(fmt.Sprintf("%s resolves to %s, %s", host, addr, why))
		case !listed && !b.allowed.hasAddr(a):
			return netip.Addr{}, notListed(fmt.Sprintf("%s (%s)", host, addr))
		case ours(a):
			return netip.Addr{}, refused(fmt.Sprintf("%s resolves to %s, an address of the platform itself", host, addr))
		}
	}
	return addrs[0].Unmap().WithZone(""), nil
}

// specialReason says why an address (IPv4-mapped ones unmapped) can lead
// no instance on any platform ("a loopback address", ...), or "".
func specialReason(a netip.Addr) string {
	switch {
	case a.IsLoopback():
		return "a loopback address"
	case a.IsUnspecified(), a.Is4() && a.As4()[0] == 0, a.Is6() && ipv4Compatible.Contains(a):
		// 0.0.0.0/8 is "this network"; ::a.b.c.d the deprecated
		// IPv4-compatible form.
		return "an unspecified address"
	case a.IsLinkLocalUnicast():
		return "a link-local address"
	case a.IsMulticast(), a.IsLinkLocalMulticast(), a.IsInterfaceLocalMulticast():
		return "a multicast address"
	case a == broadcast:
		return "a broadcast address"
	}
	return ""
}

var (
	ipv4Compatible = netip.MustParsePrefix("::/96")
	broadcast      = netip.AddrFrom4([4]byte{255, 255, 255, 255})
)

// platformNames are the DNS names of the platform's own hosts in the
// config: the broker's listen host and every agent's and node's API host.
func (b *Broker) platformNames() map[string]bool {
	out := map[string]bool{}
	for _, h := range b.platformHosts() {
		if _, err := netip.ParseAddr(h); err != nil && h != "" {
			out[normalName(h)] = true
		}
	}
	return out
}

// platformHosts lists the hosts, addresses or names, that the config gives
// the broker and every shared agent and dedicated node.
func (b *Broker) platformHosts() []string {
	var hosts []string
	if h, _, err := net.SplitHostPort(b.cfg.Listen); err == nil {
		hosts = append(hosts, h)
	}
	add := func(raw string) {
		if u, err := url.Parse(raw); err == nil {
			hosts = append(hosts, u.Hostname())
		}
	}
	if p := b.cfg.SharedVM; p != nil {
		for _, a := range p.Agents {
			add(a.URL)
		}
	}
	if p := b.cfg.DedicatedVM; p != nil {
		for _, n := range p.Nodes {
			add(n.URL)
		}
	}
	return hosts
}

// platformAddrs is every address of the platform the broker knows of when
// asked: its own VM's (its interfaces'), the hosts of its config, and the
// host every instance of the records is served at (the agents' and nodes'
// Redis addresses). Names are resolved now, all at once within one
// resolveTimeout; every address a platform name ever resolved to is kept
// (b.platformSeen), so a name that does not resolve this time still counts
// with the addresses it had.
func (b *Broker) platformAddrs(ctx context.Context) map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	add := func(a netip.Addr) { out[a.Unmap().WithZone("")] = true }
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				add(p.Addr())
			}
		}
	}
	hosts := b.platformHosts()
	_ = b.state.View(func(s state) {
		for _, r := range s.Instances.All() {
			hosts = append(hosts, r.Host)
		}
	})
	names := map[string]bool{}
	for _, h := range hosts {
		if a, err := netip.ParseAddr(h); err == nil {
			add(a)
		} else if h != "" {
			names[normalName(h)] = true
		}
	}
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for name := range names {
		wg.Go(func() {
			addrs, err := b.resolver.LookupNetIP(ctx, "ip", name)
			if err != nil {
				b.logger.Warn("a platform host did not resolve; the leader check uses the addresses it had before", "host", name, "error", err)
			}
			for _, a := range addrs {
				b.platformSeen.Store(a.Unmap().WithZone(""), true)
			}
		})
	}
	wg.Wait()
	b.platformSeen.Range(func(k, _ any) bool {
		add(k.(netip.Addr))
		return true
	})
	return out
}

func (b *Broker) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	return b.resolver.LookupNetIP(ctx, "ip", host)
}
