// Package replication makes a redis-server follow a leader (follower mode,
// for instances of both plans) and reads back how that is going. Both agents
// use it, so a shared instance and a dedicated node follow and report alike.
package replication

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/redisconf"
)

// Leader is where a follower replicates from and the credentials of a
// replication user on it.
type Leader struct {
	Host     string `json:"host"`
	Port     int    `json:"port"`
	Username string `json:"username"`
	Password string `json:"password"`
	// TLS says Port is the leader's TLS port: the follower replicates over
	// TLS, verifying the leader with its own agent's CA (leaders of this
	// service only).
	TLS bool `json:"tls,omitempty"`
}

// Check reports a leader that cannot be written into redis.conf safely or
// cannot be reached at all. It checks the form only: which leaders a
// tenant may name is the broker's decision.
func (l Leader) Check() error {
	switch {
	case CheckHost(l.Host) != nil:
		return fmt.Errorf("leader.host: %w", CheckHost(l.Host))
	case l.Port < 1 || l.Port > 65535:
		return errors.New("leader.port must be in 1-65535")
	case l.Username != "" && !redisconf.UsernamePattern.MatchString(l.Username):
		return errors.New("leader.username is not a valid ACL username")
	case len(l.Password) > 512:
		return errors.New("leader.password is too long")
	}
	return nil
}

// CheckHost reports a host that is neither an IP address in its standard
// form (netip's: dotted decimal IPv4, IPv6, no zone) nor a DNS name (RFC
// 1123 labels of letters, digits and '-', at most 253 characters). A name a
// resolver would read as an IPv4 address in another notation ("2130706433",
// "0x7f.1", "127.1") is neither: such forms are how an address slips past
// a check that reads it differently from the resolver.
func CheckHost(host string) error {
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return fmt.Errorf("%q is neither an IP address in standard form (no zone) nor a DNS name", host)
		}
		return nil
	}
	name := strings.TrimSuffix(host, ".")
	if name == "" || len(name) > 253 {
		return fmt.Errorf("%q is neither an IP address in standard form nor a DNS name", host)
	}
	labels := strings.Split(name, ".")
	numeric := true
	for _, l := range labels {
		if !dnsLabel.MatchString(l) {
			return fmt.Errorf("%q is neither an IP address in standard form nor a DNS name", host)
		}
		numeric = numeric && numberLabel.MatchString(l)
	}
	if numeric || allDigits.MatchString(labels[len(labels)-1]) {
		return fmt.Errorf("%q is neither an IP address in standard form nor a DNS name", host)
	}
	return nil
}

var (
	dnsLabel    = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
	numberLabel = regexp.MustCompile(`^(0[xX][0-9A-Fa-f]*|[0-9]+)$`)
	allDigits   = regexp.MustCompile(`^[0-9]+$`)
)

// Conf is the leader as redisconf renders it.
func (l *Leader) Conf() *redisconf.Leader {
	if l == nil {
		return nil
	}
	return &redisconf.Leader{Host: l.Host, Port: l.Port, User: l.Username, Password: l.Password, TLS: l.TLS}
}

// Roles of Status.Role.
const (
	RoleLeader   = "leader"
	RoleFollower = "follower"
)

// Status is a server's place in a leader/follower pair.
type Status struct {
	// Role is RoleLeader or RoleFollower; empty when redis-server did not
	// answer.
	Role string `json:"role"`
	// LeaderHost and LeaderPort are the leader a follower replicates.
	LeaderHost string `json:"leader_host,omitempty"`
	LeaderPort int    `json:"leader_port,omitempty"`
	// Link is "up" while a follower is connected to its leader and in sync,
	// "down" otherwise; empty for a leader.
	Link string `json:"link,omitempty"`
	// LagBytes is how far behind a follower is (the leader's replication
	// offset minus its own) or, on a leader, how far its slowest connected
	// follower is. -1 means unknown: the leader did not answer.
	LagBytes int64 `json:"lag_bytes"`
	// Offset is the server's own replication offset.
	Offset int64 `json:"offset"`
	// Followers counts the followers connected to a leader, and InSync
	// those of them online (done with their initial sync): what a leader's
	// min-replicas-to-write counts, at once.
	Followers int `json:"followers"`
	InSync    int `json:"in_sync,omitempty"`
}

// leaderTimeout bounds the question to a follower's leader: a leader that
// does not answer leaves the lag unknown, not the status late.
const leaderTimeout = time.Second

// Read turns a server's INFO replication section into a Status; for a
// follower it asks the leader (with the replication user's credentials) for
// its offset, to measure the lag.
func Read(ctx context.Context, info map[string]string, leader *Leader) Status {
	r := Status{}
	if info["role"] != "slave" {
		r.Role = RoleLeader
		r.Offset = atoi(info["master_repl_offset"])
		r.Followers = int(atoi(info["connected_slaves"]))
		for i := range r.Followers {
			if off, ok := followerOffset(info[fmt.Sprintf("slave%d", i)]); ok {
				r.LagBytes = max(r.LagBytes, r.Offset-off)
				r.InSync++
			}
		}
		return r
	}
	r.Role = RoleFollower
	r.LeaderHost = info["master_host"]
	r.LeaderPort = int(atoi(info["master_port"]))
	r.Link = "down"
	if info["master_link_status"] == "up" {
		r.Link = "up"
	}
	r.Offset = atoi(info["slave_repl_offset"])
	r.LagBytes = -1
	if leader != nil {
		lctx, cancel := context.WithTimeout(ctx, leaderTimeout)
		defer cancel()
		c := redis.NewClient(&redis.Options{
			Addr:     net.JoinHostPort(leader.Host, strconv.Itoa(leader.Port)),
			Username: leader.Username, Password: leader.Password,
			Protocol: 2, DisableIdentity: true, MaxRetries: -1, DialerRetries: 1, PoolSize: 1,
			DialTimeout: leaderTimeout, ReadTimeout: leaderTimeout, WriteTimeout: leaderTimeout,
		})
		defer c.Close()
		if v, err := c.InfoMap(lctx, "replication").Result(); err == nil {
			if off, ok := v["Replication"]["master_repl_offset"]; ok {
				r.LagBytes = max(atoi(off)-r.Offset, 0)
			}
		}
	}
	return r
}

// Apply makes a running server follow leader, or lead when leader is nil,
// through do, which runs one command as the server's admin.
func Apply(ctx context.Context, do func(ctx context.Context, args ...any) error, leader *Leader) error {
	if leader == nil {
		if err := do(ctx, "REPLICAOF", "NO", "ONE"); err != nil {
			return err
		}
		return do(ctx, "CONFIG", "SET", "masteruser", "", "masterauth", "")
	}
	if err := do(ctx, "CONFIG", "SET", "masteruser", leader.Username, "masterauth", leader.Password, "replica-read-only", "yes"); err != nil {
		return err
	}
	return do(ctx, "REPLICAOF", leader.Host, strconv.Itoa(leader.Port))
}

// followerOffset reads the offset of a leader's "slaveN" INFO line
// ("ip=...,port=...,state=online,offset=123,lag=0"); only an online follower
// counts.
func followerOffset(line string) (int64, bool) {
	var off int64
	online := false
	for _, kv := range strings.Split(line, ",") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "state":
			online = v == "online"
		case "offset":
			off = atoi(v)
		}
	}
	return off, online
}

func atoi(s string) int64 {
	v, _ := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	return v
}
