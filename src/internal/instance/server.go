package instance

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/cgroup"
	"github.com/cf-redis/redis-for-cf/src/internal/params"
	"github.com/cf-redis/redis-for-cf/src/internal/redisconf"
	"github.com/cf-redis/redis-for-cf/src/internal/replication"
	"github.com/cf-redis/redis-for-cf/src/internal/supervisor"
)

// Env is what every server of one agent shares.
type Env struct {
	// Host is the address apps connect to; it goes into bindings.
	Host string
	// Bind is the address redis-servers listen on.
	Bind string
	// RedisServer is the absolute path of the redis-server binary
	// (RedisServerPath): adoption compares it with /proc/PID/exe.
	RedisServer string
	// TLS, when set, makes every server with a TLS port serve it with this
	// certificate; nil means plaintext only.
	TLS *RedisTLS
	// Plan is the plan name snapshots record in their manifest.
	Plan string
	// Hz is the servers' hz (redisconf.Config.Hz); zero means Redis's
	// default.
	Hz int
	// Logger receives the servers' logs; nil discards them.
	Logger *slog.Logger
	// Cgroups, when set, runs every server in a cgroup of its own with a
	// memory ceiling of redisconf.MemoryCeiling(maxmemory) and an equal
	// CPU weight; nil runs them in the agent's cgroup.
	Cgroups *cgroup.Tree
	// Started reports whether the agent finished recovering its instances:
	// until then a restore cut short by a crash may still be rolled back, so
	// snapshots and restores are refused. Nil means started.
	Started func() bool
}

// Paths are where one server's files live.
type Paths struct {
	// Dir holds the server's files; a restore stages a backup in it, on the
	// file system of Data.
	Dir string
	// Conf is redis.conf, ACL the ACL file, Data redis-server's dir (RDB and
	// AOF), Pid the pid file, Log redis-server's log (its logfile, where
	// the supervisor also appends what it prints before it opens it).
	Conf, ACL, Data, Pid, Log string
}

// PathsIn are the paths of a server whose files are all in dir but its log.
func PathsIn(dir, log string) Paths {
	return Paths{
		Dir:  dir,
		Conf: filepath.Join(dir, "redis.conf"),
		ACL:  filepath.Join(dir, "users.acl"),
		Data: filepath.Join(dir, "data"),
		Pid:  filepath.Join(dir, "redis.pid"),
		Log:  log,
	}
}

// Config says which server a Server runs and how its agent keeps it.
type Config struct {
	Env *Env
	// Name names the server in its redis.conf and logs: the instance id on
	// a shared VM, the node id on a node.
	Name  string
	Paths Paths
	Store Store
	// Lock serialises the operations that change the server (and, on a
	// node, everything else the node does); it returns the unlock.
	Lock func(ctx context.Context) (func(), error)
	// Runnable reports whether the server should run now (not deleted, not
	// being reset): a background retry stops when it says no. Nil means
	// always.
	Runnable func() bool
}

// Server runs one redis-server from its record. The zero value is not
// usable; call New.
type Server struct {
	cfg    Config
	env    *Env
	logger *slog.Logger
	sup    *supervisor.Supervisor
	// group is the server's cgroup; nil without cgroups.
	group *cgroup.Group

	mu      sync.Mutex
	closing bool
	// retryCancel stops the background retry of a server that did not
	// start; nil when none runs.
	retryCancel context.CancelFunc
	// busy is the snapshot or restore running, if any: one at a time.
	busy string
	// baseline is what a follower reported of the platform's settings
	// right after the agent set them; nil when they are to be set again.
	baseline *baseline
	// drifts counts the changes a leader's stream made to them since the
	// last replication request.
	drifts int
	// unanswered counts the follower checks in a row that got no answer.
	unanswered int
	// note is what the guard last did to the server (it ended a script),
	// shown as last_error while the server had at most noteRestarts
	// restarts.
	note         string
	noteRestarts int

	// admin is the agent's admin connection (newAdminClient); a stopped
	// server's is replaced, so no connection to a gone server stays open.
	admin atomic.Pointer[redis.Client]
	// guard is the Guard's state of the server, touched by its loop only.
	guard guardState
	// follows is whether the record, as last rendered into the files,
	// follows a leader: the guard checks those every round.
	follows atomic.Bool
	// maxClients is the server's maxclients as last rendered.
	maxClients atomic.Int64
	// haLeader is, in an HA group, whom the Sentinels last said the
	// server follows; nil until they answered once.
	haLeader atomic.Pointer[haLeader]
	// restarting is set while a restore stops and starts the server on
	// purpose: a group's leader then leads again at once (prepareHA).
	restarting atomic.Bool
}

// New returns the Server of cfg. It starts nothing.
func New(cfg Config) *Server {
	logger := cfg.Env.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, env: cfg.Env, logger: logger, group: cfg.Env.Cgroups.Group(cfg.Name)}
	s.admin.Store(s.newAdminClient())
	p := cfg.Paths
	var cg supervisor.Cgroup
	if s.group != nil {
		cg = s.group
	}
	s.sup = supervisor.New(supervisor.Config{
		Name:    cfg.Name,
		Path:    cfg.Env.RedisServer,
		Args:    []string{p.Conf},
		Dir:     p.Dir,
		PidFile: p.Pid,
		LogFile: p.Log,
		Ready: func(ctx context.Context, pid int) error {
			// A plain dial first: refused at once while redis-server loads,
			// it spares a Redis client per poll.
			conn, err := net.DialTimeout("tcp", s.addr(s.current()), time.Second)
			if err != nil {
				return err
			}
			conn.Close()
			// Bounded, so a foreign process holding the port cannot stall
			// the supervisor's check that the child is still alive.
			if !s.ownsWithin(ctx, pid, readyProbeTimeout) {
				return errors.New("not answering as this instance's server yet")
			}
			return nil
		},
		Owns: func(ctx context.Context, pid int) bool {
			return s.ownsWithin(ctx, pid, adoptProbeTimeout)
		},
		Find: func(ctx context.Context) (int, bool) {
			return s.runningPid(ctx, adoptProbeTimeout)
		},
		Cgroup: cg,
		Logger: logger,
		// In an HA group every start follows whoever the Sentinels say
		// leads now, never the files of before: a leader that died and
		// was replaced comes back as a follower, not as a second leader.
		Prepare: s.prepareHA,
	})
	return s
}

// Timeouts of the checks that a process is the instance's server: short
// while a new process starts (polled every few milliseconds), longer for a
// server found running, which may be busy.
const (
	readyProbeTimeout = 500 * time.Millisecond
	adoptProbeTimeout = 2 * time.Second
	adminTimeout      = 10 * time.Second
)

// Paths are the server's files.
func (s *Server) Paths() Paths { return s.cfg.Paths }

// current is the record the server runs from; the zero Record when the
// agent has none (the probes then fail).
func (s *Server) current() Record {
	r, _ := s.cfg.Store.Current()
	return r
}

// Start renders the server's files from its record and makes sure its
// redis-server runs under the supervisor, adopting one left running by an
// earlier agent. It returns once the server answers. The caller holds the
// lock.
func (s *Server) Start(ctx context.Context) error {
	if s.sup.Status().Supervising {
		return nil
	}
	r, err := s.cfg.Store.Current()
	if err != nil {
		return err
	}
	if err := s.writeFiles(r); err != nil {
		return err
	}
	if err := s.private(); err != nil {
		return err
	}
	seeded, err := redisconf.SeedAOF(s.cfg.Paths.Data)
	if err != nil {
		return err
	}
	if err := s.group.Create(redisconf.MemoryCeiling(r.MaxMemoryBytes)); err != nil {
		return errors.Join(fmt.Errorf("setting up the server's cgroup: %w", err), seeded())
	}
	err = s.sup.Start(ctx)
	s.group.Started()
	if err != nil {
		return errors.Join(err, seeded())
	}
	if err := seeded(); err != nil {
		// Not durable: a write acknowledged now could be lost with the
		// manifest in a power cut.
		return errors.Join(err, s.sup.Stop(context.WithoutCancel(ctx)))
	}
	// An adopted server runs in its cgroup already, unless an agent
	// without cgroups started it: bound it now.
	if st := s.sup.Status(); st.Adopted && s.group != nil && !s.group.Contains(st.Pid) {
		s.logger.Warn("the adopted redis-server ran outside its cgroup; moving it in", "instance", s.cfg.Name, "pid", st.Pid)
		if err := s.group.Join(st.Pid); err != nil {
			s.logger.Error("the adopted redis-server runs without its memory ceiling until it restarts", "instance", s.cfg.Name, "error", err)
		}
	}
	s.started(ctx)
	return nil
}

// started has a follower's settings set again by the guard (its leader may
// have changed them since it started) and opens the admin connection of a
// server that now answers, while it has a free slot. The connection opens
// in the background: Start need not wait the round trips of a new
// connection's HELLO and AUTH (about 0.7 ms of a provision's path), and
// whatever needs the admin connection next waits for it in the client's
// pool of one.
func (s *Server) started(ctx context.Context) {
	s.setBaseline(nil)
	admin := s.Admin()
	go func() {
		err := admin.Ping(context.WithoutCancel(ctx)).Err()
		if err != nil && !isBusy(err) && !s.Closing() {
			s.logger.Warn("the admin connection could not be opened yet; it is dialled again at its next use", "instance", s.cfg.Name, "error", err)
		}
	}()
}

// Recover brings the server back as an agent starts: it finishes what a
// crash cut short (a restore is rolled back), starts or adopts
// redis-server, and makes an adopted one take the settings of its files,
// which the crashed agent may have written without telling it (and this
// agent's config may turn TLS on or off). A server that does not start is
// retried in the background. The caller holds the lock.
func (s *Server) Recover(ctx context.Context) {
	s.RecoverData(ctx)
	if err := s.Start(ctx); err != nil {
		s.logger.Error("redis-server did not start; retrying in the background", "instance", s.cfg.Name, "error", err)
		s.retry()
		return
	}
	if s.sup.Status().Adopted {
		if err := s.converge(ctx, s.current()); err != nil {
			s.logger.Error("the adopted redis-server did not take its settings; they apply at its next restart", "instance", s.cfg.Name, "error", err)
		}
	}
}

// retry keeps trying to start the server, with backoff, until it runs, is
// no longer Runnable, or the server shuts down.
func (s *Server) retry() {
	ctx, cancel := context.WithCancel(context.Background())
	s.mu.Lock()
	if s.retryCancel != nil || s.closing {
		s.mu.Unlock()
		cancel()
		return
	}
	s.retryCancel = cancel
	s.mu.Unlock()
	go func() {
		defer func() {
			s.mu.Lock()
			s.retryCancel = nil
			s.mu.Unlock()
			cancel()
		}()
		delay := time.Second
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			unlock, err := s.cfg.Lock(ctx)
			if err != nil {
				return
			}
			if s.cfg.Runnable == nil || s.cfg.Runnable() {
				err = s.Start(ctx)
			}
			unlock()
			if err == nil {
				return
			}
			s.logger.Error("redis-server still does not start", "instance", s.cfg.Name, "error", err)
			delay = min(delay*2, time.Minute)
		}
	}()
}

func (s *Server) stopRetry() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.retryCancel != nil {
		s.retryCancel()
	}
}

// Stop stops redis-server: the supervised one, or one a crashed agent left
// running (adopted, then stopped), and any background retry. With discard,
// whose data is about to go, the server is killed at once (SIGKILL, with
// its snapshot child and its cgroup, which is removed): there is nothing to
// save, and a server busy in an endless script would never agree to stop.
// The caller holds the lock.
func (s *Server) Stop(ctx context.Context, discard bool) error {
	defer s.renewAdmin()
	s.stopRetry()
	if !s.sup.Status().Supervising {
		_, recorded := os.Stat(s.cfg.Paths.Pid)
		if _, running := s.runningPid(ctx, time.Second); recorded != nil && !running {
			// No server was left running; a start that failed may
			// have left its cgroup.
			if discard {
				return s.discardGroup()
			}
			return nil
		}
		if err := s.sup.Start(ctx); err != nil {
			s.logger.Info("no running redis-server to stop", "instance", s.cfg.Name, "detail", err)
		}
	}
	if discard {
		if err := s.sup.Kill(ctx); err != nil {
			return fmt.Errorf("redis-server did not stop: %w", err)
		}
		return s.discardGroup()
	}
	if err := s.sup.Stop(ctx); err != nil {
		return fmt.Errorf("redis-server did not stop: %w", err)
	}
	return nil
}

// discardGroup kills whatever is left in the server's cgroup (a server an
// earlier agent left running that was too busy to be adopted) and removes
// the cgroup.
func (s *Server) discardGroup() error {
	if err := errors.Join(s.group.Kill(), s.group.Remove()); err != nil {
		return fmt.Errorf("removing the server's cgroup: %w", err)
	}
	return nil
}

// Close keeps redis-server from being started again, by a retry or by
// anyone who checks Closing, without stopping it.
func (s *Server) Close() {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.stopRetry()
}

// Shutdown stops redis-server gracefully, so it flushes its AOF, and keeps
// it from being started again (Close).
func (s *Server) Shutdown(ctx context.Context) {
	defer s.Admin().Close()
	s.Close()
	if err := s.sup.Stop(ctx); err != nil {
		s.logger.Error("stopping redis-server failed", "instance", s.cfg.Name, "error", err)
		return
	}
	// The next agent makes it again; a machine with hundreds of stopped
	// agents' groups would be hard to read.
	if err := s.group.Remove(); err != nil {
		s.logger.Warn("removing the server's cgroup failed", "instance", s.cfg.Name, "error", err)
	}
}

// Closing reports whether Shutdown was called.
func (s *Server) Closing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// Abandon stops supervising redis-server without stopping it, as a crash of
// the agent would: the next agent must adopt it.
func (s *Server) Abandon() {
	s.stopRetry()
	s.sup.Detach()
}

// Describe is r as the API shows it, with the state of its process.
func (s *Server) Describe(r Record) agentapi.Instance {
	inst := agentapi.Instance{
		ID:             r.ID,
		Host:           s.env.Host,
		Port:           r.Port,
		TLSPort:        r.TLSPort,
		MaxMemoryBytes: r.MaxMemoryBytes,
		Parameters:     r.Parameters,
		State:          agentapi.StateStarting,
		Bindings:       r.Usernames(),

		ReplicationStopped: r.ReplicationStopped,
	}
	s.mu.Lock()
	retrying := s.retryCancel != nil
	note, noteRestarts := s.note, s.noteRestarts
	s.mu.Unlock()
	switch st := s.sup.Status(); {
	case st.Supervising:
		inst.Restarts, inst.LastError = st.Restarts, st.LastExit
		if note != "" && st.Restarts <= noteRestarts {
			inst.LastError = note
		}
		switch {
		case st.Running:
			inst.State = agentapi.StateRunning
		case st.Restarts > 0:
			inst.State = agentapi.StateRestarting
		}
	case retrying:
		inst.State = agentapi.StateFailed
	}
	return inst
}

// TLSCA is the PEM CA of r's TLS certificate; empty when r's server
// serves no TLS.
func (s *Server) TLSCA(r Record) string {
	if r.TLSPort == 0 || s.env.TLS == nil {
		return ""
	}
	return s.env.TLS.CA()
}

// writeFiles renders r's redis.conf and ACL file.
func (s *Server) writeFiles(r Record) error {
	p := s.cfg.Paths
	if err := os.MkdirAll(p.Data, 0o700); err != nil {
		return fmt.Errorf("creating the data directory: %w", err)
	}
	c := s.conf(r)
	s.follows.Store(r.following() != nil)
	s.maxClients.Store(int64(c.MaxClients))
	if c.MaxClients == 0 {
		s.maxClients.Store(redisconf.DefaultMaxClients)
	}
	if err := redisconf.WriteACLFile(p.ACL, r.aclUsers()); err != nil {
		return err
	}
	return redisconf.WriteFile(p.Conf, c)
}

// conf is the redis.conf of r.
func (s *Server) conf(r Record) redisconf.Config {
	p := s.cfg.Paths
	c := redisconf.Config{
		InstanceID:     s.cfg.Name,
		Bind:           s.env.Bind,
		Port:           r.Port,
		Dir:            p.Data,
		ACLFile:        p.ACL,
		LogFile:        p.Log,
		MaxMemoryBytes: r.MaxMemoryBytes,
		Hz:             s.env.Hz,
		Params:         r.Parameters,
		ReplicaOf:      r.following().Conf(),
		TLS:            s.tls(r),
		HA:             s.haConf(r),
	}
	if r.HA != nil {
		c.ReplicaOf = s.haFollows(r).Conf()
	}
	return c
}

// private makes the server's dirs 0700 and its data files 0600, as earlier
// versions may have left them looser.
func (s *Server) private() error {
	p := s.cfg.Paths
	for _, d := range []string{p.Dir, p.Data} {
		if err := os.Chmod(d, 0o700); err != nil {
			return fmt.Errorf("making %s private: %w", d, err)
		}
	}
	if err := tighten(p.Data); err != nil {
		return fmt.Errorf("making the data files private: %w", err)
	}
	return nil
}

// tls is the TLS port and certificate of r's redis.conf; nil when the agent
// serves no TLS or r has no TLS port.
func (s *Server) tls(r Record) *redisconf.TLS {
	t := s.env.TLS
	if t == nil || r.TLSPort == 0 {
		return nil
	}
	return &redisconf.TLS{Port: r.TLSPort, CertFile: t.CertFile, KeyFile: t.KeyFile, CAFile: t.CAFile}
}

func (s *Server) applyReplication(ctx context.Context, r Record) error {
	if r.HA != nil {
		return s.followSentinels(ctx, r)
	}
	return replication.Apply(ctx, s.adminDo, r.following())
}

// addr is where the agent reaches r's server: its plaintext port, or the
// TLS port of a TLS-only instance (dialled with clientTLS).
func (s *Server) addr(r Record) string {
	port := r.Port
	if s.tlsOnly(r) {
		port = r.TLSPort
	}
	return net.JoinHostPort(s.env.Bind, strconv.Itoa(port))
}

// tlsOnly reports whether r's server listens on its TLS port only.
func (s *Server) tlsOnly(r Record) bool {
	return r.Parameters.TLSOnly && s.tls(r) != nil
}

// clientTLS is the TLS config the agent dials addr(r) with; nil for
// plaintext. A CA that no longer parses gives a config that fails every
// handshake, naming the cause, rather than a plaintext dial.
func (s *Server) clientTLS(r Record) *tls.Config {
	if !s.tlsOnly(r) {
		return nil
	}
	c, err := s.env.TLS.ClientConfig()
	if err != nil {
		return &tls.Config{MinVersion: tls.VersionTLS12, VerifyConnection: func(tls.ConnectionState) error {
			return fmt.Errorf("the agent's Redis CA: %w", err)
		}}
	}
	return c
}

// CheckParameters refuses parameters the agent's servers cannot serve: a
// TLS-only instance on an agent without TLS.
func CheckParameters(p params.Parameters, t *RedisTLS) error {
	if err := p.Validate(); err != nil {
		return fmt.Errorf("%w: %v", agentapi.ErrInvalid, err)
	}
	if p.TLSOnly && t == nil {
		return fmt.Errorf("%w: tls_only: this VM serves no TLS, so an instance on it cannot be TLS-only; ask your operator to turn TLS on", agentapi.ErrInvalid)
	}
	return nil
}

// runningPid asks the server answering on the port with the admin password
// for its pid.
func (s *Server) runningPid(ctx context.Context, timeout time.Duration) (int, bool) {
	c := s.client(s.current(), timeout)
	defer c.Close()
	info, err := c.InfoMap(ctx, "server").Result()
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(info["Server"]["process_id"])
	return pid, err == nil
}

// ownsWithin reports whether the redis-server answering on the port with
// the admin password is process pid reading this server's config. The
// timeout bounds every read: go-redis authenticates a new connection under
// its own read timeout, not the context's deadline.
func (s *Server) ownsWithin(ctx context.Context, pid int, timeout time.Duration) bool {
	c := s.client(s.current(), timeout)
	defer c.Close()
	info, err := c.InfoMap(ctx, "server").Result()
	if err != nil {
		return false
	}
	srv := info["Server"]
	return srv["process_id"] == strconv.Itoa(pid) && srv["config_file"] == s.cfg.Paths.Conf
}
