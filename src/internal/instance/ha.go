package instance

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/redisconf"
	"github.com/cf-redis/redis-for-cf/src/internal/replication"
	"github.com/cf-redis/redis-for-cf/src/internal/sentinel"
)

// haLeader is whom the Sentinels of a server's HA group last said it
// follows: nil Leader when it leads itself.
type haLeader struct {
	Leader *replication.Leader
}

// haSelf is the address the members of r's group know the server by:
// its TLS port in a group over TLS.
func (s *Server) haSelf(r Record) (string, int) {
	if r.HA != nil && r.HA.TLS {
		return s.env.Host, r.TLSPort
	}
	return s.env.Host, r.Port
}

// haConf is what r's redis.conf says of its group; nil outside one.
func (s *Server) haConf(r Record) *redisconf.HA {
	g := r.HA
	if g == nil {
		return nil
	}
	host, port := s.haSelf(r)
	return &redisconf.HA{User: sentinel.ReplicationUser, Password: g.ReplicationPassword, AnnounceIP: host, AnnouncePort: port, TLS: g.TLS, Followers: len(g.Members) - 1}
}

// haFollows is the leader a member of a group follows by the Sentinels'
// last answer; before any answer, the group's first leader (nil when that
// is the server itself).
func (s *Server) haFollows(r Record) *replication.Leader {
	if v := s.haLeader.Load(); v != nil {
		return v.Leader
	}
	g := r.HA
	l := g.Members[g.Leader]
	if host, port := s.haSelf(r); l.Host == host && l.Port == port {
		return nil
	}
	return g.Follow(l.Host, l.Port)
}

// askSentinels asks the group's Sentinels who leads and keeps the answer;
// false when none answered (the last answer stays).
func (s *Server) askSentinels(ctx context.Context, r Record) bool {
	var conf = s.sentinelTLS(r)
	v, ok := sentinel.Leader(ctx, *r.HA, conf)
	if !ok {
		return false
	}
	var l *replication.Leader
	if host, port := s.haSelf(r); v.Host != host || v.Port != port {
		l = r.HA.Follow(v.Host, v.Port)
	}
	s.haLeader.Store(&haLeader{Leader: l})
	return true
}

// sentinelTLS is the TLS config Sentinels of r's group are dialled with;
// nil without TLS.
func (s *Server) sentinelTLS(r Record) *tls.Config {
	if !r.HA.TLS || s.env.TLS == nil {
		return nil
	}
	c, err := s.env.TLS.ClientConfig()
	if err != nil {
		return nil
	}
	return c
}

// HAWait bounds how long a member that the Sentinels still name the
// leader waits, before its redis-server starts again, for them to promote
// a follower: long enough for Sentinel to call it down (DownAfter) and
// fail over, even when its first election fails. Sentinels that vote at
// once can split their votes, and a Sentinel that started a failover may
// start another only twice FailoverTimeout later; the second then takes
// up to FailoverTimeout. A wait of one FailoverTimeout alone made a
// restarted leader lead again, with only what it had fsynced, while the
// Sentinels retried (a loaded test machine did so).
const HAWait = sentinel.DownAfter + 3*sentinel.FailoverTimeout + 2*time.Second

// haPoll is how often a waiting member asks the Sentinels again.
const haPoll = 250 * time.Millisecond

// prepareHA renders the files of a member of a group before each start of
// its redis-server, following whom the Sentinels say leads now, so that a
// server restarted by its supervisor or by a new agent never comes back
// as a second leader. A leader whose server died does not come back as
// the leader at once: its followers hold every write it acknowledged
// with WAIT, and a leader restarted from its own files (fsynced once a
// second) would make them resync to what it has, dropping the rest. It
// waits (up to HAWait) for the Sentinels to promote one of them, and
// leads again only when they could not. Outside a group it does nothing.
func (s *Server) prepareHA(ctx context.Context) error {
	r := s.current()
	if r.HA == nil {
		return nil
	}
	deadline := time.Now().Add(HAWait)
	for {
		if !s.askSentinels(ctx, r) {
			s.logger.Warn("no Sentinel of the group answered; the server starts following the leader they last named", "instance", s.cfg.Name)
			break
		}
		if s.haFollows(r) != nil {
			break
		}
		if s.restarting.Load() {
			// A restore stopped the leader to put the backup in place: the
			// group must take the restored data from it, so it leads again
			// at once, before Sentinel calls it down (DownAfter).
			break
		}
		if time.Now().After(deadline) {
			s.logger.Warn("the Sentinels still name this server the leader: no follower was promoted; it leads again", "instance", s.cfg.Name)
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(haPoll):
		}
	}
	return s.writeFiles(r)
}

// followSentinels makes a running member of a group follow the leader the
// Sentinels name. It never promotes the server (Sentinel does) and never
// changes anything when no Sentinel answers.
func (s *Server) followSentinels(ctx context.Context, r Record) error {
	if !s.askSentinels(ctx, r) {
		return nil
	}
	l := s.haFollows(r)
	if l == nil {
		return nil
	}
	return replication.Apply(ctx, s.adminDo, l)
}

// JoinGroup makes instance id a member of group g: the group's users on
// its server, the settings of a member (min-replicas-to-write among
// them), and, once join (which starts the node's Sentinel) returned, the
// leader the Sentinels name followed. The same group again does the same
// again; another group while in one is a conflict.
func (s *Server) JoinGroup(ctx context.Context, id string, g sentinel.Group, join func(Record) error) (agentapi.Instance, error) {
	if err := g.Check(); err != nil {
		return agentapi.Instance{}, fmt.Errorf("%w: %v", agentapi.ErrInvalid, err)
	}
	_, err := s.change(ctx, id, func(r *Record) error {
		if r.HA != nil && !r.HA.Equal(g) {
			return fmt.Errorf("%w: instance %s is a member of another group", agentapi.ErrConflict, id)
		}
		if r.Leader != nil {
			return fmt.Errorf("%w: instance %s follows a leader of its own (replica_of); it cannot join a group", agentapi.ErrInvalid, id)
		}
		if g.TLS && s.tls(*r) == nil {
			return fmt.Errorf("%w: the group replicates over TLS, and this node serves no TLS", agentapi.ErrInvalid)
		}
		probe := *r
		probe.HA = &g
		host, port := s.haSelf(probe)
		if _, ok := g.Self(host, port); !ok {
			return fmt.Errorf("%w: this node, %s, is not a member of the group", agentapi.ErrInvalid, net.JoinHostPort(host, strconv.Itoa(port)))
		}
		r.HA = &g
		return nil
	}, func(r Record) error {
		if err := join(r); err != nil {
			return err
		}
		if err := s.converge(ctx, r); err != nil {
			return fmt.Errorf("%w: the group is saved, but the running server did not take it: %v", agentapi.ErrUnavailable, err)
		}
		// The Sentinels of members that joined first connected before
		// Sentinel's user existed here, and their failed login stays:
		// a Sentinel keeps a link whose pings get an answer, even
		// NOAUTH, for at least 15 s, during which it counts this
		// server down and could not fail over to it. Closing the
		// connections that never logged in makes them log in again now.
		if err := s.adminDo(ctx, "CLIENT", "KILL", "USER", "default"); err != nil {
			return fmt.Errorf("%w: closing the connections that did not log in: %v", agentapi.ErrUnavailable, err)
		}
		return nil
	})
	if err != nil {
		return agentapi.Instance{}, err
	}
	s.logger.Info("joined an HA group", "instance", id, "master_name", g.MasterName)
	return s.Get(ctx, id)
}

// leaderOf is the leader r's server replicates: its replica_of leader, or
// in an HA group the one the Sentinels last named.
func (s *Server) leaderOf(r Record) *replication.Leader {
	if r.HA != nil {
		return s.haFollows(r)
	}
	return r.following()
}
