package instance

import (
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/redisconf"
	"github.com/cf-redis/redis-for-cf/src/internal/replication"
)

// MaxDrifts is how many changes of the platform's settings or users a
// leader's replication stream may make while an instance follows it: at
// this many the agent stops following it.
const MaxDrifts = 3

// MaxUnanswered is how many checks in a row a follower may leave
// unanswered (each waits adminTimeout; BUSY is a script's and answered)
// before the agent takes it as the stream's doing: a CLIENT PAUSE in the
// stream stops every client's commands, the agent's too, and only a
// restart from the server's files ends it. It counts as a drift.
const MaxUnanswered = 2

// baseline is what a server reported of the platform's settings and users
// right after the agent set them, in the same transaction: a later answer
// that differs was changed by someone else, however Redis normalised the
// values.
type baseline struct {
	config map[string]string
	acl    []string
}

// following is the leader r's server follows: none when r has none or
// the agent stopped following it.
func (r Record) following() *replication.Leader {
	if r.ReplicationStopped != "" {
		return nil
	}
	return r.Leader
}

// setBaseline replaces the baseline (nil: the platform's settings are to
// be set again, as after a start or any change the agent made).
func (s *Server) setBaseline(b *baseline) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.baseline = b
}

func (s *Server) currentBaseline() *baseline {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.baseline
}

// converge makes a running server's users, settings and replication those
// of r's record: a leader stops following first, so no stream changes
// anything after the settings were put back; a follower is told its
// leader last (a no-op when it follows it already). It keeps the baseline
// of a follower.
func (s *Server) converge(ctx context.Context, r Record) error {
	if r.HA != nil {
		// A member of an HA group: its leader is one of the group's, whose
		// stream the agent trusts; the settings and users go first, so
		// the replication handshake runs with them.
		if _, err := s.enforce(ctx, r); err != nil {
			return err
		}
		return s.applyReplication(ctx, r)
	}
	if r.following() == nil {
		if err := s.applyReplication(ctx, r); err != nil {
			return err
		}
	}
	b, err := s.enforce(ctx, r)
	if err != nil {
		return err
	}
	if r.following() != nil {
		if err := s.applyReplication(ctx, r); err != nil {
			return err
		}
		s.setBaseline(b)
	}
	return nil
}

// enforce gives the running server r's users and every setting the
// platform owns (Settings) in one transaction, which also reads them back
// as the baseline: no command of a leader's stream can come in between.
// Users are set one by one (ACL SETUSER keeps their connections), not with
// ACL LOAD, which in Redis 7.0 closes every authenticated client's
// connection, so an agent restart would cut every app off; users r does
// not have go (ACL DELUSER closes their connections). A user that came
// between reading the users and the transaction is deleted in a second
// round.
func (s *Server) enforce(ctx context.Context, r Record) (*baseline, error) {
	settings := s.conf(r).Settings()
	names := make([]any, 0, len(settings)+2)
	names = append(names, "CONFIG", "GET")
	for _, d := range settings {
		names = append(names, d.Name)
	}
	users := r.aclUsers()
	keep := map[string]bool{"default": true}
	for _, u := range users {
		keep[u.Name] = true
	}
	var stray []string
	for range 3 {
		var cfg *redis.MapStringStringCmd
		var acl *redis.StringSliceCmd
		_, err := s.Admin().TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Do(ctx, "ACL", "SETUSER", "default", "reset")
			for _, u := range users {
				p.Do(ctx, aclSetUser(u)...)
			}
			for _, name := range stray {
				p.Do(ctx, "ACL", "DELUSER", name)
			}
			p.Do(ctx, redisconf.ConfigSet(settings)...)
			cfg = redis.NewMapStringStringCmd(ctx, names...)
			_ = p.Process(ctx, cfg)
			acl = p.ACLList(ctx)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("setting the platform's users and settings: %w", err)
		}
		stray = stray[:0]
		for _, rule := range acl.Val() {
			if name := aclName(rule); !keep[name] {
				stray = append(stray, name)
			}
		}
		if len(stray) == 0 {
			return &baseline{config: cfg.Val(), acl: acl.Val()}, nil
		}
	}
	return nil, fmt.Errorf("users %s keep coming back", strings.Join(stray, ", "))
}

// aclName is the user of an ACL LIST line ("user NAME rules...").
func aclName(rule string) string {
	f := strings.Fields(rule)
	if len(f) < 2 {
		return ""
	}
	return f[1]
}

// drift says what of the baseline's settings and users, and of the
// replication target, the running server no longer has; empty when
// nothing changed.
func (s *Server) drift(ctx context.Context, r Record, b *baseline) (string, error) {
	names := []any{"CONFIG", "GET"}
	for _, name := range slices.Sorted(maps.Keys(b.config)) {
		names = append(names, name)
	}
	cfg := redis.NewMapStringStringCmd(ctx, names...)
	var acl *redis.StringSliceCmd
	var info *redis.StringCmd
	_, err := s.Admin().Pipelined(ctx, func(p redis.Pipeliner) error {
		_ = p.Process(ctx, cfg)
		acl = p.ACLList(ctx)
		info = p.Info(ctx, "replication")
		return nil
	})
	if err != nil {
		return "", err
	}
	var changed []string
	now := cfg.Val()
	for _, name := range slices.Sorted(maps.Keys(b.config)) {
		if now[name] != b.config[name] {
			changed = append(changed, name)
		}
	}
	if !slices.Equal(acl.Val(), b.acl) {
		changed = append(changed, "users")
	}
	l := r.following()
	repl := infoFields(info.Val())
	if repl["role"] != "slave" || repl["master_host"] != l.Host || repl["master_port"] != strconv.Itoa(l.Port) {
		changed = append(changed, "replication target")
	}
	return strings.Join(changed, ", "), nil
}

// infoFields reads the "key:value" lines of an INFO reply.
func infoFields(info string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			m[k] = v
		}
	}
	return m
}

// checkFollower puts back what the leader's stream changed of the
// platform's settings and users, under the server's lock (so no verb's
// change is taken for drift), and stops following a leader at its
// MaxDrifts-th change. A stream that took the admin's access away
// (its password reset, or the user deleted) leaves only a restart from
// the server's files, which the agent renders from its record.
func (s *Server) checkFollower(ctx context.Context, g *Guard) {
	unlock, err := s.cfg.Lock(ctx)
	if err != nil {
		return // busy with a verb: next time
	}
	defer unlock()
	r := s.current()
	l := r.following()
	if l == nil {
		return
	}
	b := s.currentBaseline()
	if b == nil {
		if err := s.converge(ctx, r); err != nil && !isBusy(err) {
			s.logger.Warn("putting back the platform's settings on a follower failed", "instance", s.cfg.Name, "error", err)
			s.lostAdmin(ctx, r, err)
		}
		return
	}
	what, err := s.drift(ctx, r, b)
	lost := lostAdmin(err)
	s.mu.Lock()
	if err == nil || !isTimeout(err) {
		s.unanswered = 0
	} else {
		s.unanswered++
	}
	unanswered := s.unanswered
	s.mu.Unlock()
	switch {
	case lost:
		what = "the admin user"
	case unanswered >= MaxUnanswered:
		s.mu.Lock()
		s.unanswered = 0
		s.mu.Unlock()
		what, lost = "its answers (the server stopped answering the agent, as a CLIENT PAUSE makes it)", true
	case err != nil:
		return // BUSY, or no answer yet: next time
	case what == "":
		return
	}
	s.mu.Lock()
	s.drifts++
	drifts := s.drifts
	s.mu.Unlock()
	leader := net.JoinHostPort(l.Host, strconv.Itoa(l.Port))
	s.logger.Warn("the leader's replication stream changed the platform's settings; putting them back",
		"instance", s.cfg.Name, "leader", leader, "changed", what, "drifts", drifts)
	if drifts >= MaxDrifts {
		r, err = s.stopFollowing(r, fmt.Sprintf("replication from %s stopped at %s: its stream changed the platform's settings or users %d times (last: %s); a new replication request resumes it",
			leader, time.Now().UTC().Format(time.RFC3339), drifts, what))
		if err != nil {
			s.logger.Error("stopping replication failed", "instance", s.cfg.Name, "error", err)
			return
		}
	}
	if lost {
		s.restartFromFiles(ctx, r)
		return
	}
	if err := s.converge(ctx, r); err != nil {
		s.logger.Warn("putting back the platform's settings on a follower failed", "instance", s.cfg.Name, "error", err)
		s.lostAdmin(ctx, r, err)
	}
}

// lostAdmin restarts the server from its files when err says the admin
// can no longer log in.
func (s *Server) lostAdmin(ctx context.Context, r Record, err error) {
	if lostAdmin(err) {
		s.restartFromFiles(ctx, r)
	}
}

// stopFollowing records why the server no longer follows its leader and
// renders its files without it; the caller holds the lock.
func (s *Server) stopFollowing(r Record, why string) (Record, error) {
	r, err := s.cfg.Store.Update(r.ID, func(r *Record) error {
		r.ReplicationStopped = why
		return nil
	})
	if err != nil {
		return r, err
	}
	s.logger.Error("stopped following a leader that keeps changing the platform's settings", "instance", s.cfg.Name, "why", why)
	return r, s.writeFiles(r)
}

// restartFromFiles restarts redis-server from the files rendered from r,
// which puts back every setting and user; the caller holds the lock.
func (s *Server) restartFromFiles(ctx context.Context, r Record) {
	s.logger.Warn("the admin can no longer log in; restarting the server from its files", "instance", s.cfg.Name)
	if err := s.writeFiles(r); err != nil {
		s.logger.Error("rendering the server's files failed", "instance", s.cfg.Name, "error", err)
		return
	}
	s.setBaseline(nil)
	// Restart waits longer than one check may: it flushes the AOF.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), adminTimeout)
	defer cancel()
	if err := s.sup.Restart(ctx); err != nil {
		s.logger.Error("restarting the server failed", "instance", s.cfg.Name, "error", err)
	}
}
