// Package sentinel is what a dedicated node adds to its redis-server when it
// joins a high-availability group: a redis-sentinel of the same Redis build,
// supervised beside it, whose config file the agent writes once (at the
// join) and Sentinel owns from then on; the users Sentinel and the group's
// replication need on every member; and the one question the node agent
// asks before every start of its redis-server: which member do the
// Sentinels say leads now?
package sentinel

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/cf-redis/redis-for-cf/src/internal/replication"
)

// DefaultPort is Sentinel's port unless the node's config says otherwise:
// Sentinel's own.
const DefaultPort = 26379

// Quorum is how many Sentinels must find a leader unreachable before a
// failover starts; with three members, two, a majority, which is also
// what electing the Sentinel that runs the failover takes.
const Quorum = 2

// Members is how many nodes a group has: a leader and two followers.
const Members = 3

// DownAfter is Sentinel's down-after-milliseconds: how long a leader may
// leave its pings unanswered before a Sentinel calls it down. Sentinel's
// default, 30 s, alone would miss the 5 s the plan aims at. Sentinel pings
// once a second, so 2 s is two missed pings. 1 s, tried first, failed over
// twice in a row on a loaded 2-core test machine with TLS: a leader just
// promoted looked down before the Sentinels' new TLS links to it had
// answered. The price of a short value: a leader that answers nothing for
// 2 s (a Lua script running that long, a stalled VM) is failed over.
const DownAfter = 2 * time.Second

// FailoverTimeout is Sentinel's failover-timeout: how long a failover may
// take before another Sentinel may try again (after twice this), and how
// long the followers get to be pointed at the new leader. Sentinel's
// default is three minutes; a failover here takes a few seconds, so a
// stalled one is retried after ten.
const FailoverTimeout = 5 * time.Second

// The users a group adds on every member's redis-server and Sentinel.
const (
	// ReplicationUser is the group's replication user (masteruser) on
	// every member's redis-server: any member may come to lead.
	ReplicationUser = "ha-replication"
	// User is Sentinel's user on every member's redis-server
	// (redisconf.RoleSentinel) and the Sentinels' user on each other
	// (sentinel-user): peers' votes, and the agents' question of who leads.
	User = "ha-sentinel"
)

// Member is one node of a group.
type Member struct {
	// Host and Port are where the member's redis-server serves clients
	// and followers: its TLS port in a group over TLS.
	Host string `json:"host"`
	Port int    `json:"port"`
	// SentinelPort is where the member's Sentinel listens, on Host.
	SentinelPort int `json:"sentinel_port"`
}

// Addr is the member's redis-server as host:port.
func (m Member) Addr() string { return fmt.Sprintf("%s:%d", m.Host, m.Port) }

// Group is an HA group as the broker sets it up and each member keeps it.
type Group struct {
	// MasterName is the name Sentinel monitors the group under and clients
	// ask for.
	MasterName string `json:"master_name"`
	// Members are the group's nodes, Members of them.
	Members []Member `json:"members"`
	// Leader is the index in Members of the member that leads when the
	// group forms; Sentinel decides from then on.
	Leader int `json:"leader"`
	// ReplicationPassword is ReplicationUser's password, SentinelPassword
	// User's.
	ReplicationPassword string `json:"replication_password"`
	SentinelPassword    string `json:"sentinel_password"`
	// TLS says members replicate, and Sentinels connect, over TLS (the
	// members' ports are their TLS ports, and Sentinels serve TLS only).
	TLS bool `json:"tls,omitempty"`
}

// MinPasswordLength is the shortest password a group accepts.
const MinPasswordLength = 32

var masterName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)

// Check reports what makes g unusable, naming the field.
func (g Group) Check() error {
	var errs []error
	if !masterName.MatchString(g.MasterName) {
		errs = append(errs, errors.New("master_name: 1-128 letters, digits, '.', '_' or '-'"))
	}
	if len(g.Members) != Members {
		errs = append(errs, fmt.Errorf("members: a group has %d members, not %d", Members, len(g.Members)))
	}
	seen := map[string]bool{}
	for i, m := range g.Members {
		if err := replication.CheckHost(m.Host); err != nil {
			errs = append(errs, fmt.Errorf("members[%d].host: %w", i, err))
		}
		if m.Port < 1 || m.Port > 65535 || m.SentinelPort < 1 || m.SentinelPort > 65535 || m.Port == m.SentinelPort {
			errs = append(errs, fmt.Errorf("members[%d]: port and sentinel_port must be distinct and in 1-65535", i))
		}
		if seen[m.Addr()] {
			errs = append(errs, fmt.Errorf("members[%d]: %s is named twice", i, m.Addr()))
		}
		seen[m.Addr()] = true
	}
	if g.Leader < 0 || g.Leader >= len(g.Members) {
		errs = append(errs, fmt.Errorf("leader: %d is not the index of a member", g.Leader))
	}
	if len(g.ReplicationPassword) < MinPasswordLength || len(g.SentinelPassword) < MinPasswordLength {
		errs = append(errs, fmt.Errorf("replication_password and sentinel_password need at least %d characters", MinPasswordLength))
	}
	if len(g.ReplicationPassword) > 512 || len(g.SentinelPassword) > 512 {
		errs = append(errs, errors.New("replication_password and sentinel_password are too long"))
	}
	return errors.Join(errs...)
}

// Self is the index of the member at host and port; false when none is.
func (g Group) Self(host string, port int) (int, bool) {
	for i, m := range g.Members {
		if m.Host == host && m.Port == port {
			return i, true
		}
	}
	return 0, false
}

// Backer is the index of the member that takes the group's scheduled
// backups (and the backup errand's) while the member at leaderHost and
// leaderPort leads: the first follower in member order that up holds (by
// its Addr) to be up, or, when none is or up is nil (not known), the first
// follower. Every member computes it from the Sentinels' current view, so
// one backs up and the others leave it to that one; after a failover, or
// while a follower is down, the choice follows. A leader that is no member
// (a view from before the group formed) leaves the first member.
func (g Group) Backer(leaderHost string, leaderPort int, up map[string]bool) int {
	first := -1
	for i, m := range g.Members {
		if m.Host == leaderHost && m.Port == leaderPort {
			continue
		}
		if first < 0 {
			first = i
		}
		if up == nil || up[m.Addr()] {
			return i
		}
	}
	return max(first, 0)
}

// Equal reports whether g and o are the same group.
func (g Group) Equal(o Group) bool {
	return slices.Equal(g.Members, o.Members) && g.MasterName == o.MasterName && g.Leader == o.Leader && g.TLS == o.TLS &&
		g.ReplicationPassword == o.ReplicationPassword && g.SentinelPassword == o.SentinelPassword
}

// Follow is the leader at addr as a follower of the group replicates it.
func (g Group) Follow(host string, port int) *replication.Leader {
	return &replication.Leader{Host: host, Port: port, Username: ReplicationUser, Password: g.ReplicationPassword, TLS: g.TLS}
}
