package instance

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/redisconf"
	"github.com/cf-redis/redis-for-cf/src/internal/replication"
	"github.com/cf-redis/redis-for-cf/src/internal/secret"
)

// lock takes the server's lock for an operation of ctx.
func (s *Server) lock(ctx context.Context) (func(), error) {
	unlock, err := s.cfg.Lock(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", agentapi.ErrUnavailable, err)
	}
	return unlock, nil
}

// change applies change to instance id's record under the lock, renders
// the files of the result and hands it to apply, which makes the running
// server take it.
func (s *Server) change(ctx context.Context, id string, change func(*Record) error, apply func(Record) error) (Record, error) {
	if err := CheckID("instance id", id); err != nil {
		return Record{}, err
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return Record{}, err
	}
	defer unlock()
	r, err := s.cfg.Store.Update(id, change)
	if err != nil {
		return Record{}, err
	}
	if err := s.writeFiles(r); err != nil {
		return Record{}, err
	}
	// A follower's settings or users change: the guard takes its baseline
	// again (unless apply did) rather than count the change as the
	// leader's.
	s.setBaseline(nil)
	return r, apply(r)
}

// Get describes instance id with what its running server reports.
func (s *Server) Get(ctx context.Context, id string) (agentapi.Instance, error) {
	if err := CheckID("instance id", id); err != nil {
		return agentapi.Instance{}, err
	}
	r, err := s.cfg.Store.Held(id)
	if err != nil {
		return agentapi.Instance{}, err
	}
	inst := s.Describe(r)
	inst.Live = s.live(ctx, r)
	return inst, nil
}

// live is what r's running server reports; nil when it does not answer.
func (s *Server) live(ctx context.Context, r Record) *agentapi.Live {
	info, err := s.Admin().InfoMap(ctx, "server", "memory", "keyspace", "replication").Result()
	if err != nil {
		return nil
	}
	l := &agentapi.Live{
		RedisVersion:    info["Server"]["redis_version"],
		UsedMemoryBytes: atoi(info["Memory"]["used_memory"]),
		Replication:     replication.Read(ctx, info["Replication"], s.leaderOf(r)),
	}
	for _, line := range info["Keyspace"] {
		l.Keys += KeyspaceField(line, "keys")
	}
	return l
}

// KeyspaceField reads one field of an INFO keyspace line
// ("keys=1,expires=0,avg_ttl=0").
func KeyspaceField(line, field string) int64 {
	for _, kv := range strings.Split(line, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok && k == field {
			return atoi(v)
		}
	}
	return 0
}

func atoi(s string) int64 {
	v, _ := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	return v
}

// Update sets new parameters: they are recorded and written into
// redis.conf, so they hold across restarts, and applied to the running
// server with CONFIG SET.
func (s *Server) Update(ctx context.Context, id string, req agentapi.UpdateRequest) (agentapi.Instance, error) {
	if err := CheckParameters(req.Parameters, s.env.TLS); err != nil {
		return agentapi.Instance{}, err
	}
	var closed string
	r, err := s.change(ctx, id, func(r *Record) error {
		if !s.tlsOnly(*r) {
			closed = s.addr(*r)
		}
		r.Parameters = req.Parameters
		return nil
	}, func(r Record) error {
		if err := s.configSet(ctx, r, "parameters are"); err != nil {
			return err
		}
		if closed != "" && s.tlsOnly(r) {
			// The plaintext port no longer listens: the connections
			// opened on it before go too, the agent's own included.
			s.closeClientsOn(ctx, closed)
			s.renewAdmin()
		}
		return nil
	})
	if err != nil {
		return agentapi.Instance{}, err
	}
	return s.Describe(r), nil
}

// ApplyParameters writes the files of the record as stored and sets its
// parameters on the running server, as a node's claim does. The caller
// holds the lock.
func (s *Server) ApplyParameters(ctx context.Context) error {
	r := s.current()
	if err := s.writeFiles(r); err != nil {
		return err
	}
	return s.configSet(ctx, r, "parameters are")
}

// configSet gives the running server every setting of r's redis.conf that
// CONFIG SET can change (the parameters, the memory limit and the limits
// derived from it, ...); what names what changed, for the error.
func (s *Server) configSet(ctx context.Context, r Record, what string) error {
	s.setBaseline(nil)
	if err := s.adminDo(ctx, redisconf.ConfigSet(s.conf(r).Settings())...); err != nil {
		return fmt.Errorf("%w: the %s saved and apply at the next restart, but the running server did not take them: %v", agentapi.ErrUnavailable, what, err)
	}
	return nil
}

// SetMaxMemory writes r's files (its memory limit changed) and applies the
// limit to the running server with CONFIG SET. The caller holds the lock
// and stored r.
func (s *Server) SetMaxMemory(ctx context.Context, r Record) error {
	if err := s.writeFiles(r); err != nil {
		return err
	}
	if err := s.configSet(ctx, r, "new memory limit and the limits derived from it are"); err != nil {
		return err
	}
	// The kernel's ceiling follows; one it cannot lower yet (the server
	// uses more) applies at the next start.
	if err := s.group.Create(redisconf.MemoryCeiling(r.MaxMemoryBytes)); err != nil {
		s.logger.Warn("the server's memory ceiling did not change; it does at its next start", "instance", s.cfg.Name, "error", err)
	}
	return nil
}

// UsedMemory is the running server's INFO used_memory.
func (s *Server) UsedMemory(ctx context.Context) (int64, error) {
	info, err := s.Admin().InfoMap(ctx, "memory").Result()
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(info["Memory"]["used_memory"], 10, 64)
}

// SetReplication makes instance id a read-only follower of req.Leader, or a
// leader again (promotion) when req.Leader is nil: kept in the record and
// redis.conf, so a restarted server follows it again, and applied live with
// REPLICAOF.
func (s *Server) SetReplication(ctx context.Context, id string, req agentapi.ReplicationRequest) (agentapi.Instance, error) {
	if l := req.Leader; l != nil {
		if err := l.Check(); err != nil {
			return agentapi.Instance{}, fmt.Errorf("%w: %v", agentapi.ErrInvalid, err)
		}
	}
	_, err := s.change(ctx, id, func(r *Record) error {
		if r.HA != nil {
			return fmt.Errorf("%w: a member of an HA group follows the leader its Sentinels name; it takes no replica_of", agentapi.ErrInvalid)
		}
		if l := req.Leader; l != nil && (l.Port == r.Port || l.Port == r.TLSPort) && (l.Host == s.env.Host || l.Host == s.env.Bind) {
			return fmt.Errorf("%w: an instance cannot follow itself", agentapi.ErrInvalid)
		}
		if l := req.Leader; l != nil && l.TLS && s.tls(*r) == nil {
			return fmt.Errorf("%w: the leader is reached over TLS, and this VM serves no TLS to replicate with", agentapi.ErrInvalid)
		}
		r.Leader, r.ReplicationStopped = req.Leader, ""
		return nil
	}, func(r Record) error {
		s.mu.Lock()
		s.drifts = 0
		s.mu.Unlock()
		// A promoted follower gets the platform's settings and users back
		// too: its leader's stream may have changed them.
		if err := s.converge(ctx, r); err != nil {
			return fmt.Errorf("%w: replication saved for the next restart, but the running server did not take it: %v", agentapi.ErrUnavailable, err)
		}
		if l := r.Leader; l != nil {
			s.logger.Info("following a leader", "instance", id, "leader", net.JoinHostPort(l.Host, strconv.Itoa(l.Port)))
		} else {
			s.logger.Info("leading", "instance", id)
		}
		return nil
	})
	if err != nil {
		return agentapi.Instance{}, err
	}
	return s.Get(ctx, id)
}

// Bind adds a binding user with the password's hash, in the ACL file (so it
// survives restarts) and on the running server, and reports whether it was
// new. The same request again returns the same binding.
func (s *Server) Bind(ctx context.Context, id, bindingID string, req agentapi.BindingRequest) (agentapi.Binding, bool, error) {
	if err := checkBinding(bindingID, req); err != nil {
		return agentapi.Binding{}, false, err
	}
	user := User{PasswordHash: secret.Hash(req.Password), Role: req.Role}
	created := false
	r, err := s.change(ctx, id, func(r *Record) error {
		switch old, ok := r.Users[bindingID]; {
		case ok && old.Role != user.Role:
			return fmt.Errorf("%w: user %s exists with another role", agentapi.ErrConflict, bindingID)
		case ok && old != user:
			return fmt.Errorf("%w: binding %s exists with another password", agentapi.ErrConflict, bindingID)
		case !ok:
			if r.Users == nil {
				r.Users = map[string]User{}
			}
			r.Users[bindingID] = user
			created = true
		}
		return nil
	}, func(r Record) error {
		if err := s.adminDo(ctx, aclSetUser(r.aclUser(bindingID, user))...); err != nil {
			return fmt.Errorf("%w: binding user saved but not yet active: %v", agentapi.ErrUnavailable, err)
		}
		return nil
	})
	if err != nil {
		return agentapi.Binding{}, false, err
	}
	b := agentapi.Binding{Username: bindingID, Host: s.env.Host, Port: r.Port, Role: req.Role}
	if r.TLSPort != 0 && s.env.TLS != nil {
		b.TLSPort, b.TLSCA = r.TLSPort, s.env.TLS.CA()
	}
	return b, created, nil
}

// Unbind deletes a binding user from the ACL file and from the running
// server, which closes every connection it has open. It is ErrNotFound when
// the user is not recorded, after still removing it from the server in case
// an earlier attempt recorded the removal but did not reach the server.
func (s *Server) Unbind(ctx context.Context, id, bindingID string) error {
	if err := checkBindingID(bindingID); err != nil {
		return err
	}
	var missing error
	_, err := s.change(ctx, id, func(r *Record) error {
		if _, ok := r.Users[bindingID]; !ok {
			missing = fmt.Errorf("%w: no binding %s on instance %s", agentapi.ErrNotFound, bindingID, id)
		}
		delete(r.Users, bindingID)
		return nil
	}, func(r Record) error {
		// ACL DELUSER also disconnects every client authenticated as the
		// user.
		if err := s.adminDo(ctx, "ACL", "DELUSER", bindingID); err != nil {
			return fmt.Errorf("%w: binding removed from the ACL file but the running server was not reached: %v", agentapi.ErrUnavailable, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return missing
}

func aclSetUser(u redisconf.User) []any {
	args := []any{"ACL", "SETUSER", u.Name, "reset"}
	for _, f := range strings.Fields(redisconf.ACLRule(u)) {
		args = append(args, f)
	}
	return args
}
