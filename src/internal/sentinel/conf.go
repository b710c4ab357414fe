package sentinel

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/cf-redis/redis-for-cf/src/internal/redisconf"
	"github.com/cf-redis/redis-for-cf/src/internal/secret"
	"github.com/cf-redis/redis-for-cf/src/internal/statefile"
)

// Conf is what a member's sentinel.conf says when the agent writes it: at
// the join, and again only after a reset wiped it. Sentinel rewrites the
// file from then on (the Sentinels it met, the followers, the epochs, who
// leads after a failover), so the agent never writes it again while the
// node stays in the group: it changes users live instead.
type Conf struct {
	// Group is the group; Self is this member's index in its Members.
	Group Group
	Self  int
	// Bind is the address Sentinel listens on; it announces the member's
	// Host and SentinelPort to its peers.
	Bind string
	// Dir is Sentinel's working directory, which holds the file.
	Dir string
	// LogFile is the file Sentinel logs to (opened anew for every line, so
	// a rename rotates it); empty logs to standard output.
	LogFile string
	// TLS, when set, makes Sentinel serve its port over TLS only and
	// connect to the servers and its peers over TLS (Group.TLS).
	TLS *redisconf.TLS
	// Users are Sentinel's users: the agent's admin first (Admin set),
	// then the apps' (ClientRule), by their password hashes.
	Users []redisconf.User
}

// ClientCommands are what an app's user may do on a Sentinel: what
// Sentinel-aware clients (go-redis, ioredis, Jedis, Lettuce, redis-py)
// ask to find the leader and the followers, and the subscription through
// which they learn of a failover.
var ClientCommands = []string{
	"auth", "hello", "ping", "client|setname",
	"sentinel|get-master-addr-by-name", "sentinel|master", "sentinel|masters",
	"sentinel|replicas", "sentinel|slaves", "sentinel|sentinels",
	"subscribe", "unsubscribe",
}

// ClientChannels are the channels an app's user may subscribe to.
var ClientChannels = []string{"+switch-master", "+replica-reconf-done", "+slave-reconf-done"}

// PeerCommands are what User may do on a Sentinel: what one Sentinel asks
// another (its vote on a leader being down, and for the failover's
// leader), and what an agent asks of its peers' Sentinels (who leads).
var PeerCommands = []string{
	"auth", "hello", "ping", "client|setname",
	"sentinel|is-master-down-by-addr", "sentinel|master", "sentinel|get-master-addr-by-name",
}

// Rule is the ACL rule of a user on a Sentinel (everything after "user
// NAME"): the admin's, User's (a peer's) or an app's.
func Rule(u redisconf.User) string {
	if u.Admin {
		return "on #" + u.PasswordHash + " ~* &* +@all"
	}
	rule := "on #" + u.PasswordHash + " resetchannels"
	cmds := ClientCommands
	if u.Name == User {
		cmds = PeerCommands
	} else {
		for _, c := range ClientChannels {
			rule += " &" + c
		}
	}
	rule += " -@all"
	for _, c := range cmds {
		rule += " +" + c
	}
	return rule
}

// Render returns the sentinel.conf of c.
func Render(c Conf) ([]byte, error) {
	g := c.Group
	if err := g.Check(); err != nil {
		return nil, err
	}
	if c.Self < 0 || c.Self >= len(g.Members) || c.Dir == "" || c.Bind == "" {
		return nil, fmt.Errorf("sentinel.conf needs the member, a bind address and a directory")
	}
	if g.TLS && c.TLS == nil {
		return nil, fmt.Errorf("a group over TLS needs Sentinel's TLS certificate")
	}
	self, leader := g.Members[c.Self], g.Members[g.Leader]
	var b bytes.Buffer
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("# sentinel.conf of HA group %s, written by the node agent when the node joined it.", g.MasterName)
	p("# Sentinel owns this file from then on and rewrites it; the agent changes users live.")
	p("bind %s", c.Bind)
	p("protected-mode no")
	p("daemonize no")
	p("supervised no")
	p("logfile %s", quote(c.LogFile))
	p("dir %s", quote(c.Dir))
	if c.TLS != nil && g.TLS {
		p("port 0")
		p("tls-port %d", self.SentinelPort)
		for _, d := range c.TLS.Directives(true) {
			if d.Name != "tls-port" {
				p("%s %s", d.Name, quote(d.Value))
			}
		}
	} else {
		p("port %d", self.SentinelPort)
	}
	p("sentinel announce-ip %s", quote(self.Host))
	p("sentinel announce-port %d", self.SentinelPort)
	p("sentinel resolve-hostnames yes")
	p("sentinel announce-hostnames yes")
	// Scripts run with Sentinel's rights; nobody may change them live.
	p("sentinel deny-scripts-reconfig yes")
	p("user default off resetpass resetchannels -@all")
	hasPeer := false
	for _, u := range c.Users {
		if !redisconf.UsernamePattern.MatchString(u.Name) || u.Name == "default" {
			return nil, fmt.Errorf("invalid ACL username %q", u.Name)
		}
		hasPeer = hasPeer || u.Name == User
		p("user %s %s", u.Name, Rule(u))
	}
	if !hasPeer {
		p("user %s %s", User, Rule(redisconf.User{Name: User, PasswordHash: secret.Hash(g.SentinelPassword)}))
	}
	p("sentinel sentinel-user %s", User)
	p("sentinel sentinel-pass %s", quote(g.SentinelPassword))
	p("sentinel monitor %s %s %d %d", g.MasterName, quote(leader.Host), leader.Port, Quorum)
	p("sentinel auth-user %s %s", g.MasterName, User)
	p("sentinel auth-pass %s %s", g.MasterName, quote(g.SentinelPassword))
	p("sentinel down-after-milliseconds %s %d", g.MasterName, DownAfter.Milliseconds())
	p("sentinel failover-timeout %s %d", g.MasterName, FailoverTimeout.Milliseconds())
	p("sentinel parallel-syncs %s 1", g.MasterName)
	// The peers and the followers are known from the start: a Sentinel
	// votes with its peers before the first hello messages went round,
	// and a failover in the first ten seconds (before the leader's INFO
	// listed them) still points every follower at the new leader.
	for i, m := range g.Members {
		if i != c.Self {
			p("sentinel known-sentinel %s %s %d %s", g.MasterName, quote(m.Host), m.SentinelPort, PeerID(g, i))
		}
		if i != g.Leader {
			p("sentinel known-replica %s %s %d", g.MasterName, quote(m.Host), m.Port)
		}
	}
	p("sentinel myid %s", PeerID(g, c.Self))
	return b.Bytes(), nil
}

// WriteFile renders c into Dir/sentinel.conf atomically.
func WriteFile(path string, c Conf) error {
	b, err := Render(c)
	if err != nil {
		return err
	}
	return statefile.Replace(path, b, 0o600)
}

// quote is a sentinel.conf argument: double-quoted with backslash escapes.
func quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`)
	return `"` + r.Replace(s) + `"`
}

// PeerID is the Sentinel id (myid) of member i of g: derived from the
// group and the member, so every member knows its peers' ids before they
// ever met, and forty hex digits, as Sentinel requires.
func PeerID(g Group, i int) string {
	sum := sha1.Sum([]byte(g.MasterName + "\x00" + g.Members[i].Addr() + "\x00" + strconv.Itoa(g.Members[i].SentinelPort)))
	return hex.EncodeToString(sum[:])
}
