package nodeagent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/instance"
	"github.com/cf-redis/redis-for-cf/src/internal/redisconf"
	"github.com/cf-redis/redis-for-cf/src/internal/secret"
	"github.com/cf-redis/redis-for-cf/src/internal/sentinel"
	"github.com/cf-redis/redis-for-cf/src/internal/supervisor"
)

// sentinelProc is the node's redis-sentinel, run from the same binary as
// its redis-server (redis-server --sentinel) while the node is a member of
// an HA group. Its files are in DataDir/sentinel; the agent writes
// sentinel.conf when the node joins a group (or finds it missing) and
// Sentinel owns it from then on. Its admin is the node's AdminUser with
// the record's admin password, which changes only while both are stopped.
type sentinelProc struct {
	n    *Node
	dir  string
	conf string
	sup  *supervisor.Supervisor
}

func newSentinel(n *Node) *sentinelProc {
	dir := filepath.Join(n.cfg.DataDir, "sentinel")
	p := &sentinelProc{n: n, dir: dir, conf: filepath.Join(dir, "sentinel.conf")}
	p.sup = supervisor.New(supervisor.Config{
		Name:    n.cfg.NodeID + "-sentinel",
		Path:    n.cfg.RedisServer,
		Args:    []string{p.conf, "--sentinel"},
		Dir:     dir,
		PidFile: filepath.Join(n.cfg.DataDir, "sentinel.pid"),
		// What Sentinel prints before it opens its logfile (the same file).
		LogFile: p.logFile(),
		Ready: func(ctx context.Context, pid int) error {
			conn, err := net.DialTimeout("tcp", p.addr(), time.Second)
			if err != nil {
				return err
			}
			conn.Close()
			if !p.owns(ctx, pid) {
				return errors.New("not answering as this node's Sentinel yet")
			}
			return nil
		},
		Owns: p.owns,
		Find: func(ctx context.Context) (int, bool) {
			info, err := p.info(ctx)
			if err != nil {
				return 0, false
			}
			pid, err := strconv.Atoi(info["process_id"])
			return pid, err == nil
		},
		Logger: n.logger,
	})
	return p
}

// addr is where the agent reaches its Sentinel.
// logFile is Sentinel's log, in the job's log folder beside redis-server's,
// rotated and removed with it.
func (p *sentinelProc) logFile() string { return filepath.Join(p.n.cfg.LogDir, "redis-sentinel.log") }

func (p *sentinelProc) addr() string {
	return net.JoinHostPort(p.n.cfg.Bind, strconv.Itoa(p.n.cfg.HA.SentinelPort))
}

// tls is the config the agent dials its Sentinel with: TLS when the group
// runs over TLS; nil otherwise.
func (p *sentinelProc) tls() *tls.Config {
	r := p.n.current().Record
	if r.HA == nil || !r.HA.TLS || p.n.cfg.RedisTLS == nil {
		return nil
	}
	c, err := p.n.cfg.RedisTLS.ClientConfig()
	if err != nil {
		return &tls.Config{MinVersion: tls.VersionTLS12, VerifyConnection: func(tls.ConnectionState) error { return err }}
	}
	return c
}

// admin is a connection to the Sentinel as the node's admin.
func (p *sentinelProc) admin() *redis.Client {
	return sentinel.Client(p.addr(), instance.AdminUser, p.n.current().AdminPassword, p.tls())
}

// info is the Sentinel's INFO server section.
func (p *sentinelProc) info(ctx context.Context) (map[string]string, error) {
	c := p.admin()
	defer c.Close()
	m, err := c.InfoMap(ctx, "server").Result()
	if err != nil {
		return nil, err
	}
	return m["Server"], nil
}

// owns reports whether the Sentinel answering with the admin password is
// process pid reading this node's sentinel.conf.
func (p *sentinelProc) owns(ctx context.Context, pid int) bool {
	info, err := p.info(ctx)
	return err == nil && info["process_id"] == strconv.Itoa(pid) && info["config_file"] == p.conf
}

// users are r's users as its Sentinel has them: the admin, then the apps'.
func sentinelUsers(r instance.Record) []redisconf.User {
	users := []redisconf.User{{Name: instance.AdminUser, PasswordHash: secret.Hash(r.AdminPassword), Admin: true}}
	for _, name := range r.Usernames() {
		if u := r.Users[name]; u.Role == agentapi.RoleTenant {
			users = append(users, redisconf.User{Name: name, PasswordHash: u.PasswordHash})
		}
	}
	return users
}

// start makes the Sentinel of r's group run: it writes sentinel.conf when
// there is none (the join; the first start after a crash that came before
// the file), starts or adopts the process and gives it r's users live.
// The caller holds the operations lock.
func (p *sentinelProc) start(ctx context.Context, r instance.Record) error {
	g := r.HA
	self, ok := g.Self(p.n.cfg.Host, p.n.groupPort(r))
	if !ok {
		return fmt.Errorf("%w: this node is not a member of the group", agentapi.ErrInvalid)
	}
	if g.Members[self].SentinelPort != p.n.cfg.HA.SentinelPort {
		return fmt.Errorf("%w: members[%d].sentinel_port: this node's Sentinel listens on %d", agentapi.ErrInvalid, self, p.n.cfg.HA.SentinelPort)
	}
	if _, err := os.Stat(p.conf); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(p.dir, 0o700); err != nil {
			return fmt.Errorf("creating Sentinel's directory: %w", err)
		}
		c := sentinel.Conf{Group: *g, Self: self, Bind: p.n.cfg.Bind, Dir: p.dir, LogFile: p.logFile(), Users: sentinelUsers(r)}
		if t := p.n.cfg.RedisTLS; t != nil && g.TLS {
			c.TLS = &redisconf.TLS{Port: g.Members[self].SentinelPort, CertFile: t.CertFile, KeyFile: t.KeyFile, CAFile: t.CAFile}
		}
		if err := sentinel.WriteFile(p.conf, c); err != nil {
			return fmt.Errorf("writing sentinel.conf: %w", err)
		}
	} else if err != nil {
		return err
	}
	if !p.sup.Status().Supervising {
		if err := p.sup.Start(ctx); err != nil {
			return fmt.Errorf("%w: Sentinel did not start: %v", agentapi.ErrUnavailable, err)
		}
	}
	return p.syncUsers(ctx, r)
}

// syncUsers gives the running Sentinel exactly r's users (a crash may have
// come between a binding's record and its user) and has it save them.
func (p *sentinelProc) syncUsers(ctx context.Context, r instance.Record) error {
	c := p.admin()
	defer c.Close()
	want := map[string]bool{"default": true, sentinel.User: true}
	pipe := c.Pipeline()
	for _, u := range sentinelUsers(r)[1:] {
		want[u.Name] = true
		pipe.Do(ctx, aclSetUser(u.Name, sentinel.Rule(u))...)
	}
	want[instance.AdminUser] = true
	names, err := c.Do(ctx, "ACL", "USERS").StringSlice()
	if err != nil {
		return fmt.Errorf("%w: Sentinel's users: %v", agentapi.ErrUnavailable, err)
	}
	for _, name := range names {
		if !want[name] {
			pipe.Do(ctx, "ACL", "DELUSER", name)
		}
	}
	pipe.Do(ctx, "SENTINEL", "FLUSHCONFIG")
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("%w: setting Sentinel's users: %v", agentapi.ErrUnavailable, err)
	}
	return nil
}

// aclSetUser is the ACL SETUSER command that gives user rule.
func aclSetUser(user, rule string) []any {
	args := []any{"ACL", "SETUSER", user, "reset"}
	for _, f := range strings.Fields(rule) {
		args = append(args, f)
	}
	return args
}

// stop kills the Sentinel (supervised, or one a crashed agent left) and,
// with wipe, removes its files: a reset leaves nothing of the group.
func (p *sentinelProc) stop(ctx context.Context, wipe bool) error {
	if !p.sup.Status().Supervising {
		if _, err := p.info(ctx); err == nil {
			if err := p.sup.Start(ctx); err != nil {
				p.n.logger.Info("no running Sentinel to stop", "detail", err)
			}
		}
	}
	var err error
	if p.sup.Status().Supervising {
		if wipe {
			err = p.sup.Kill(ctx)
		} else {
			err = p.sup.Stop(ctx)
		}
	}
	if err != nil {
		return fmt.Errorf("Sentinel did not stop: %w", err)
	}
	if wipe {
		if err := os.RemoveAll(p.dir); err != nil {
			return fmt.Errorf("removing Sentinel's files: %w", err)
		}
	}
	return nil
}

// groupPort is the port the node's group knows its redis-server by: the
// TLS port in a group over TLS.
func (n *Node) groupPort(r instance.Record) int {
	if r.HA != nil && r.HA.TLS {
		return r.TLSPort
	}
	return r.Port
}

// JoinHA makes the node's instance id a member of HA group g: it adds the
// group's users and a member's settings to its redis-server, writes
// sentinel.conf and starts Sentinel, and follows whichever member the
// Sentinels say leads. Repeating it with the same group is harmless (the
// Sentinel's own file is kept); another group is a conflict.
func (n *Node) JoinHA(ctx context.Context, id string, g sentinel.Group) (agentapi.Instance, error) {
	if n.sentinel == nil {
		return agentapi.Instance{}, fmt.Errorf("%w: node %s runs no Sentinel: HA is not enabled on it", agentapi.ErrInvalid, n.cfg.NodeID)
	}
	inst, err := n.srv.JoinGroup(ctx, id, g, func(r instance.Record) error {
		return n.sentinel.start(ctx, r)
	})
	inst.NodeID = n.cfg.NodeID
	return inst, err
}

// backupSkip says why this member of r's HA group leaves the group's
// backups to another member; empty when it takes them itself. The one that
// does is the first follower in member order that the node's Sentinel sees
// up (sentinel.Group.Backer), by the Sentinels' current view of who leads,
// which every member asks, so each schedule tick and each run of the
// backup errand back the group up once, from a follower, and the choice
// follows a failover or a follower going down. When no Sentinel answers,
// every member falls back to the group's first leader, so still only one
// backs up.
func (n *Node) backupSkip(ctx context.Context, r instance.Record) string {
	g := *r.HA
	leader := g.Members[g.Leader]
	var tlsConf *tls.Config
	var up map[string]bool
	if n.sentinel != nil {
		tlsConf = n.sentinel.tls()
		c := n.sentinel.admin()
		defer c.Close()
		if rs, err := sentinel.Replicas(ctx, c, g); err == nil {
			up = map[string]bool{}
			for _, rep := range rs {
				up[rep.Addr()] = rep.Up
			}
		}
	}
	if v, ok := sentinel.Leader(ctx, g, tlsConf); ok {
		leader = sentinel.Member{Host: v.Host, Port: v.Port}
	} else {
		n.logger.Warn("no Sentinel of the group answered: backups are left to the follower of the group's first leader", "instance", r.ID, "first_leader", leader.Addr())
	}
	backer := g.Backer(leader.Host, leader.Port, up)
	self, _ := g.Self(n.cfg.Host, n.groupPort(r))
	if backer == self {
		return ""
	}
	role := "a follower"
	if m := g.Members[self]; m.Host == leader.Host && m.Port == leader.Port {
		role = "the leader"
	}
	why := fmt.Sprintf("this node is %s; %s, the first follower in member order that Sentinel sees up, backs the group up", role, g.Members[backer].Addr())
	n.logger.Debug("backups of the instance are left to another member of its HA group", "instance", r.ID, "reason", why)
	return why
}
