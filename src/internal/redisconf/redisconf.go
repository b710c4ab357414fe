// Package redisconf renders the files one redis-server reads: redis.conf and
// its ACL file. Both agents (shared VMs and dedicated nodes) use it, so every
// instance of every plan runs with the same persistence and the same limits on
// what tenants may do.
package redisconf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"text/template"

	"github.com/cf-redis/redis-for-cf/src/internal/params"
	"github.com/cf-redis/redis-for-cf/src/internal/statefile"
)

// Config is what differs between two instances' redis.conf files.
type Config struct {
	// InstanceID names the instance in the file's header comment.
	InstanceID string
	// Bind is the address redis-server listens on.
	Bind string
	// Port is the plaintext TCP port; it must be in 1-65535. It is kept
	// even while the server listens on TLS only (Params.TLSOnly), so the
	// instance keeps it when TLS-only is turned off again.
	Port int
	// Dir holds dump.rdb and appendonlydir/.
	Dir string
	// ACLFile is the users file rendered by RenderACL.
	ACLFile string
	// LogFile is the file redis-server writes its log to, opening it anew
	// for every line, so that renaming it rotates it (package logrotate);
	// empty means standard output. Redis cannot change it while it runs
	// (an immutable config: CONFIG SET refuses it even to the admin).
	LogFile string
	// MaxMemoryBytes is the instance's memory limit; it must be positive, as an
	// instance without a limit could take a shared VM's memory.
	MaxMemoryBytes int64
	// MaxClients caps client connections; zero means DefaultMaxClients.
	MaxClients int
	// Hz is how many times a second the server runs its background tasks
	// (active expiry, idle-client timeouts, blocking-command timeouts when
	// nothing else wakes it, statistics); dynamic-hz raises it while the
	// server has more than 200 clients per tick. Zero means DefaultHz;
	// otherwise it must be in 1-500. SharedHz is what shared VMs use.
	Hz int
	// Params are the tenant's settings.
	Params params.Parameters
	// ReplicaOf, when not nil, makes the server a read-only follower of this
	// leader; nil renders no replication directive, so the server leads.
	ReplicaOf *Leader
	// TLS, when not nil, adds a TLS port beside Port; with Params.TLSOnly,
	// the TLS port is the only one (the server renders "port 0").
	TLS *TLS
	// HA, when not nil, makes the server a member of a Sentinel-managed
	// group: it replicates with the group's credentials whoever leads, and
	// a leader refuses writes without a follower in sync. Nil renders
	// none of it.
	HA *HA
}

// HA is what a member of a high-availability group (one leader, followers
// and Sentinel beside each) renders beyond a lone server's settings.
type HA struct {
	// User and Password are the group's replication user: every member
	// has it, so any member can follow any other, whichever Sentinel
	// promotes. They are masteruser and masterauth even on the leader.
	User, Password string
	// AnnounceIP and AnnouncePort are the address the server gives its
	// leader as its own, which Sentinel and Sentinel-aware clients then
	// use: the member's address in the group (its TLS port over TLS).
	AnnounceIP   string
	AnnouncePort int
	// TLS says members replicate over their TLS ports.
	TLS bool
	// Followers is how many followers a leader of the group has: once as
	// many ask for a full copy, the leader sends it at once rather than
	// after repl-diskless-sync-delay's five seconds, so a group forms in
	// well under a second. Zero leaves Redis's default (no such count).
	Followers int
}

// MinReplicasToWrite and MinReplicasMaxLag are a group leader's
// min-replicas-to-write and min-replicas-max-lag: it refuses writes
// (NOREPLICAS) unless a follower acknowledged the stream within the last
// MinReplicasMaxLag seconds. Followers acknowledge every second, so three
// seconds tolerate two lost acknowledgements; it bounds the writes a
// leader cut off from its followers accepts, and Sentinel then promotes a
// follower, to about three seconds' worth.
const (
	MinReplicasToWrite = 1
	MinReplicasMaxLag  = 3
)

// TLS is the TLS port of a redis-server and its certificate. Clients
// authenticate with ACL users, not certificates. A follower whose leader
// is reached with TLS (Leader.TLS) replicates over TLS, verifying the
// leader with CAFile.
type TLS struct {
	// Port is the TLS port; it must be in 1-65535 and differ from Port.
	Port int
	// CertFile, KeyFile and CAFile are PEM files: the server's certificate,
	// its key, and the CA that signed it.
	CertFile, KeyFile, CAFile string
}

// TLSProtocols are the TLS versions redis-server accepts.
const TLSProtocols = "TLSv1.2 TLSv1.3"

// Directives returns the redis.conf settings of t, in the order CONFIG SET
// must apply them live: the certificate before the port. replication says
// whether the server replicates from its leader over TLS.
func (t *TLS) Directives(replication bool) []params.Directive {
	tlsReplication := "no"
	if replication {
		tlsReplication = "yes"
	}
	return []params.Directive{
		{Name: "tls-cert-file", Value: t.CertFile},
		{Name: "tls-key-file", Value: t.KeyFile},
		{Name: "tls-ca-cert-file", Value: t.CAFile},
		{Name: "tls-auth-clients", Value: "no"},
		{Name: "tls-protocols", Value: TLSProtocols},
		{Name: "tls-replication", Value: tlsReplication},
		{Name: "tls-port", Value: strconv.Itoa(t.Port)},
	}
}

// Leader is the server a follower replicates from.
type Leader struct {
	// Host and Port are where the leader's redis-server listens.
	Host string
	Port int
	// User and Password authenticate the follower to the leader (masteruser
	// and masterauth); empty leaves either out.
	User, Password string
	// TLS says Port is the leader's TLS port: the follower replicates over
	// TLS (tls-replication yes), which needs Config.TLS.
	TLS bool
}

var confTemplate = template.Must(template.New("redis.conf").Funcs(template.FuncMap{"quote": quote, "arg": arg}).Parse(`# redis.conf of instance {{.InstanceID}}, rendered by its agent.
# Edits are overwritten: change settings through the service broker.
bind {{.Bind}}
protected-mode no
daemonize no
supervised no
logfile {{quote .LogFile}}
dir {{quote .Dir}}
aclfile {{quote .ACLFile}}
appenddirname "appendonlydir"
dbfilename dump.rdb

# The platform owns the server itself: no debugging, modules or protected
# settings (dir, dbfilename and the like) from any client, nor from a leader.
enable-debug-command no
enable-module-command no
enable-protected-configs no
{{with .ReplicaOf}}
# A follower: it replicates its leader and refuses writes.
replicaof {{quote .Host}} {{.Port}}
{{end}}
# The settings the platform owns, which its agent also sets on the running
# server and puts back when they drift: memory and the limits derived from
# it, the tenant's parameters, persistence (the append-only file, fsynced
# every second, plus RDB snapshots), replication and TLS.
{{range .Settings}}{{.Name}} {{arg .Value}}
{{end}}`))

// Render writes the redis.conf of c to w.
func Render(w io.Writer, c Config) error {
	if err := c.validate(); err != nil {
		return err
	}
	return confTemplate.Execute(w, c)
}

// DefaultMaxClients is maxclients when a Config leaves it zero: Redis's own
// default.
const DefaultMaxClients = 10000

// DefaultHz is hz when a Config leaves it zero: Redis's own default, ten
// wake-ups a second.
const DefaultHz = 10

// SharedHz is the hz of shared-VM instances: once a second. An idle
// server's wake-ups are nearly all the CPU it uses, and at ten a second
// 2,000 idle instances on one VM take more than a core; at one, about a
// quarter as much. The price, for a tenant, is timing (README, Idle
// instances): keys nobody reads are deleted, and their "expired" events
// sent, up to a second after their TTL rather than a tenth; a blocking
// command's timeout (BLPOP, XREAD BLOCK, WAIT) ends up to a second late when
// nothing else wakes the server. Expired keys are still never returned, and
// idle connections still close after the tenant's timeout, whose unit is a
// second anyway.
const SharedHz = 1

func (c Config) hz() int {
	if c.Hz == 0 {
		return DefaultHz
	}
	return c.Hz
}

const (
	kib = int64(1) << 10
	mib = kib << 10
	gib = mib << 10
)

// Limits are the bounds one instance's memory limit (maxmemory) sets on
// what its clients may hold outside the data: a value, a request, a
// reply backlog, all clients together.
type Limits struct {
	// MaxBulk is proto-max-bulk-len: the longest string a request may
	// carry; no value can be larger than the instance.
	MaxBulk int64
	// QueryBuffer is client-query-buffer-limit: one client's unread
	// requests, enough for one MaxBulk argument and the pipeline after it.
	QueryBuffer int64
	// ClientOutput is the hard limit of a normal client's unread replies
	// (client-output-buffer-limit normal): enough for a reply as large as
	// the whole instance, no more. A client over it is disconnected.
	ClientOutput int64
	// PubSubOutput and ReplicaOutput are the same for a subscriber and a
	// follower; each also has a soft limit of a quarter (a subscriber) or
	// half (a follower) of it, held for a minute.
	PubSubOutput, ReplicaOutput int64
	// Clients is maxmemory-clients: the memory of all normal clients
	// together (buffers, requests, their own structures). Past it Redis
	// disconnects the clients that hold the most, so many idle or
	// unauthenticated connections, or many half-sent requests, cannot add
	// up past it either. Redis 7.0 pays for it on every command, recounting
	// the client's memory (README, Data path: with maxmemory, about 5% of a
	// GET's throughput at -P 1 and 9% pipelined); without it, clients could
	// take the server past MemoryCeiling.
	Clients int64
}

// LimitsFor returns the client limits of an instance whose maxmemory is
// maxMemory bytes.
func LimitsFor(maxMemory int64) Limits {
	bulk := min(max(maxMemory, mib), 512*mib)
	return Limits{
		MaxBulk:       bulk,
		QueryBuffer:   min(bulk+mib, gib),
		ClientOutput:  max(maxMemory, mib),
		PubSubOutput:  min(max(maxMemory/2, mib), 32*mib),
		ReplicaOutput: max(2*maxMemory, 16*mib),
		Clients:       max(maxMemory, 32*mib),
	}
}

// MemoryCeiling is the most memory one redis-server may take in all, given
// its maxmemory: the data (maxmemory), its clients (Limits.Clients), as
// much again as the data while a snapshot's fork copies pages the server
// writes meanwhile, and 64 MiB for the server itself, Lua, the
// replication backlog and allocator overhead. Agents hold each server to
// it with a memory cgroup where the kernel offers one.
func MemoryCeiling(maxMemory int64) int64 {
	return 2*maxMemory + LimitsFor(maxMemory).Clients + 64*mib
}

// Settings returns the directives of c that a running server can be given
// with CONFIG SET, in the order CONFIG SET must apply them: memory and the
// limits derived from it, the tenant's parameters, persistence,
// replication and TLS (the certificate before the port). They are the
// settings the platform owns: an agent sets them at every start and puts
// them back if anything (a leader's replication stream runs as an admin)
// changes them.
func (c Config) Settings() []params.Directive {
	l := LimitsFor(c.MaxMemoryBytes)
	n := func(v int64) string { return strconv.FormatInt(v, 10) }
	maxClients := c.MaxClients
	if maxClients == 0 {
		maxClients = DefaultMaxClients
	}
	d := []params.Directive{
		{Name: "maxmemory", Value: n(c.MaxMemoryBytes)},
		{Name: "maxclients", Value: strconv.Itoa(maxClients)},
		{Name: "maxmemory-clients", Value: n(l.Clients)},
		{Name: "proto-max-bulk-len", Value: n(l.MaxBulk)},
		{Name: "client-query-buffer-limit", Value: n(l.QueryBuffer)},
		{Name: "client-output-buffer-limit", Value: fmt.Sprintf("normal %d 0 0 replica %d %d 60 pubsub %d %d 60",
			l.ClientOutput, l.ReplicaOutput, l.ReplicaOutput/2, l.PubSubOutput, l.PubSubOutput/4)},
	}
	d = append(d, c.Params.Directives()...)
	d = append(d, []params.Directive{
		{Name: "appendonly", Value: "yes"},
		{Name: "appendfsync", Value: "everysec"},
		{Name: "aof-use-rdb-preamble", Value: "yes"},
		{Name: "save", Value: "3600 1 300 100 60 10000"},
		{Name: "stop-writes-on-bgsave-error", Value: "yes"},
		{Name: "tcp-keepalive", Value: "60"},
		{Name: "replica-read-only", Value: "yes"},
		{Name: "hz", Value: strconv.Itoa(c.hz())},
		{Name: "dynamic-hz", Value: "yes"},
	}...)
	var user, auth string
	if l := c.ReplicaOf; l != nil {
		user, auth = l.User, l.Password
	}
	if h := c.HA; h != nil {
		user, auth = h.User, h.Password
		d = append(d,
			params.Directive{Name: "min-replicas-to-write", Value: strconv.Itoa(MinReplicasToWrite)},
			params.Directive{Name: "min-replicas-max-lag", Value: strconv.Itoa(MinReplicasMaxLag)},
			params.Directive{Name: "replica-announce-ip", Value: h.AnnounceIP},
			params.Directive{Name: "replica-announce-port", Value: strconv.Itoa(h.AnnouncePort)},
			params.Directive{Name: "repl-diskless-sync-max-replicas", Value: strconv.Itoa(h.Followers)},
		)
	}
	d = append(d, params.Directive{Name: "masteruser", Value: user}, params.Directive{Name: "masterauth", Value: auth})
	if c.TLS != nil {
		d = append(d, c.TLS.Directives((c.ReplicaOf != nil && c.ReplicaOf.TLS) || (c.HA != nil && c.HA.TLS))...)
	} else {
		d = append(d, params.Directive{Name: "tls-port", Value: "0"})
	}
	// The plaintext port last: a server turned TLS-only has its TLS port
	// before it closes this one.
	return append(d, params.Directive{Name: "port", Value: strconv.Itoa(c.ListenPort())})
}

// ListenPort is the plaintext port the server listens on: Port, or 0 (none)
// when the instance is TLS-only.
func (c Config) ListenPort() int {
	if c.Params.TLSOnly {
		return 0
	}
	return c.Port
}

// ConfigSet returns the CONFIG SET command that gives a running server
// settings (see Settings), all at once: Redis applies them all or none.
func ConfigSet(settings []params.Directive) []any {
	args := []any{"CONFIG", "SET"}
	for _, d := range settings {
		args = append(args, d.Name, d.Value)
	}
	return args
}

// WriteFile renders c into path atomically, so a crash never leaves a
// half-written config for redis-server to start from. It does not fsync:
// agents render the file again from their records before every start.
func WriteFile(path string, c Config) error {
	var b bytes.Buffer
	if err := Render(&b, c); err != nil {
		return err
	}
	return statefile.Replace(path, b.Bytes(), 0o600)
}

func (c Config) validate() error {
	var errs []error
	if c.Port < 1 || c.Port > 65535 {
		errs = append(errs, fmt.Errorf("port %d is outside 1-65535", c.Port))
	}
	if c.MaxMemoryBytes <= 0 {
		errs = append(errs, errors.New("maxmemory must be positive"))
	}
	if c.Hz < 0 || c.Hz > 500 {
		errs = append(errs, fmt.Errorf("hz %d is outside 1-500", c.Hz))
	}
	if c.Bind == "" || c.Dir == "" || c.ACLFile == "" {
		errs = append(errs, errors.New("bind, dir and aclfile must be set"))
	}
	if err := c.Params.Validate(); err != nil {
		errs = append(errs, err)
	}
	if l := c.ReplicaOf; l != nil && (l.Host == "" || l.Port < 1 || l.Port > 65535) {
		errs = append(errs, fmt.Errorf("replicaof needs a host and a port in 1-65535, not %q %d", l.Host, l.Port))
	}
	if c.Params.TLSOnly && c.TLS == nil {
		errs = append(errs, errors.New("a TLS-only server (tls_only) needs a TLS port and certificate"))
	}
	if h := c.HA; h != nil && (h.User == "" || h.Password == "" || h.AnnounceIP == "" || h.AnnouncePort < 1 || h.AnnouncePort > 65535) {
		errs = append(errs, errors.New("an HA member needs a replication user, its password and an address to announce"))
	}
	if h := c.HA; h != nil && h.TLS && c.TLS == nil {
		errs = append(errs, errors.New("an HA group over TLS needs a TLS certificate and CA (tls-replication)"))
	}
	if l := c.ReplicaOf; l != nil && l.TLS && c.TLS == nil {
		errs = append(errs, errors.New("replication over TLS needs a TLS certificate and CA (tls-replication)"))
	}
	if t := c.TLS; t != nil {
		if t.Port < 1 || t.Port > 65535 || t.Port == c.Port {
			errs = append(errs, fmt.Errorf("tls-port %d must be in 1-65535 and differ from port %d", t.Port, c.Port))
		}
		if t.CertFile == "" || t.KeyFile == "" || t.CAFile == "" {
			errs = append(errs, errors.New("tls-cert-file, tls-key-file and tls-ca-cert-file must be set"))
		}
	}
	return errors.Join(errs...)
}

// plainArg is a redis.conf argument that needs no quotes.
var plainArg = regexp.MustCompile(`^[A-Za-z0-9._/:-]+$`)

// arg is s as a redis.conf argument: as it is when that is unambiguous,
// else quoted.
func arg(s string) string {
	if plainArg.MatchString(s) {
		return s
	}
	return quote(s)
}

// quote makes a redis.conf argument of s: Redis reads double-quoted strings
// with backslash escapes.
func quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`)
	return `"` + r.Replace(s) + `"`
}

// User is one ACL user of an instance.
type User struct {
	// Name is the username; it must match UsernamePattern.
	Name string
	// PasswordHash is the hex SHA-256 of the password (secret.Hash), so the
	// ACL file never holds a password.
	PasswordHash string
	// Admin gives every command; otherwise Role says what the user may do.
	Admin bool
	// Role is what a non-admin user may do; the zero value is RoleTenant.
	Role Role
	// Sentinel marks a tenant of a server that Sentinels monitor (a
	// member of an HA group): it may publish to every channel but
	// SentinelChannel, where a forged hello message announcing a higher
	// configuration epoch would make the Sentinels take any address for
	// the group's leader.
	Sentinel bool
}

// Role is what a non-admin user may do.
type Role string

const (
	// RoleTenant is a binding user of an app: every data command, none of
	// TenantDeniedCommands.
	RoleTenant Role = ""
	// RoleReplication may only replicate from the server (a follower's
	// masteruser) and read INFO replication, to measure its lag: no keys,
	// no channels, no other command.
	RoleReplication Role = "replication"
	// RoleSentinel is the user Sentinel monitors and reconfigures an HA
	// group's servers with: SentinelCommands and the hello channel, no
	// keys.
	RoleSentinel Role = "sentinel"
)

// SentinelCommands are the only commands of a RoleSentinel user: what the
// Redis Sentinel documentation lists for its user on the monitored
// servers (monitoring, the hello channel, the promotion and
// reconfiguration transaction, which ends the clients' connections so they
// find the new leader). REPLICAOF is SLAVEOF's newer name.
var SentinelCommands = []string{
	"multi", "exec", "slaveof", "replicaof", "ping", "info", "role", "subscribe", "publish",
	"config|rewrite", "client|setname", "client|kill", "script|kill",
}

// SentinelChannel is the channel Sentinels announce themselves on through
// the servers they monitor.
const SentinelChannel = "__sentinel__:hello"

// UsernamePattern is what a username may look like: letters, digits and
// '-', '_', '.', which need no quoting in ACL rules or URIs.
var UsernamePattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)

var hashPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

// TenantDeniedCommands are the commands a binding user may not run: the
// platform owns configuration, persistence, replication and the server
// process; and no binding may stop the others, or the agent, from being
// served (CLIENT PAUSE), close their connections (CLIENT KILL) or exempt
// itself from the limit on all clients' memory (CLIENT NO-EVICT). MIGRATE
// would open connections from the platform's network to any address. Lua
// scripting, transactions, pub/sub, every keyspace command and the rest
// of CLIENT stay allowed.
var TenantDeniedCommands = []string{
	"config", "debug", "shutdown", "module", "acl",
	"replicaof", "slaveof", "sync", "psync", "replconf", "failover", "cluster",
	"monitor", "migrate", "save", "bgsave", "bgrewriteaof", "pfdebug", "pfselftest",
	"client|pause", "client|unpause", "client|kill", "client|no-evict",
}

// ReplicationCommands are the only commands of a RoleReplication user: what
// a follower sends to its leader, plus INFO's replication section.
var ReplicationCommands = []string{"psync", "replconf", "ping", "info|replication"}

// ACLRule returns the rule of a user (everything after "user NAME").
func ACLRule(u User) string {
	if !u.Admin && u.Role == RoleReplication {
		rule := "on #" + u.PasswordHash + " -@all"
		for _, c := range ReplicationCommands {
			rule += " +" + c
		}
		return rule
	}
	if !u.Admin && u.Role == RoleSentinel {
		rule := "on #" + u.PasswordHash + " resetchannels &" + SentinelChannel + " -@all"
		for _, c := range SentinelCommands {
			rule += " +" + c
		}
		return rule
	}
	rule := "on #" + u.PasswordHash + " ~* &* +@all"
	if !u.Admin {
		for _, c := range TenantDeniedCommands {
			rule += " -" + c
		}
		// Client libraries ask who they are; the answer reveals nothing.
		rule += " +acl|whoami"
		if u.Sentinel {
			// A selector: PUBLISH only to the channels that are not
			// Sentinel's (ACL channel patterns only allow).
			rule += " -publish (+publish"
			for _, p := range globsExcept(SentinelChannel) {
				rule += " &" + p
			}
			rule += ")"
		}
	}
	return rule
}

// globsExcept returns glob patterns that together match every string but
// s, which must hold no glob metacharacter: the strings that differ from s
// at some position, its proper prefixes, and the strings it is a proper
// prefix of.
func globsExcept(s string) []string {
	var globs []string
	for i := range len(s) {
		globs = append(globs, s[:i]+"[^"+s[i:i+1]+"]*")
		if i > 0 {
			globs = append(globs, s[:i])
		}
	}
	return append(globs, s+"?*")
}

// RenderACL writes an ACL file holding users. The default user is switched
// off, so a connection must authenticate as one of them.
func RenderACL(w io.Writer, users []User) error {
	var b bytes.Buffer
	b.WriteString("user default off resetpass -@all\n")
	for _, u := range users {
		if !UsernamePattern.MatchString(u.Name) || u.Name == "default" {
			return fmt.Errorf("invalid ACL username %q", u.Name)
		}
		if !hashPattern.MatchString(u.PasswordHash) {
			return fmt.Errorf("user %s: password hash must be 64 hex digits", u.Name)
		}
		if u.Role != RoleTenant && u.Role != RoleReplication && u.Role != RoleSentinel {
			return fmt.Errorf("user %s: unknown role %q", u.Name, u.Role)
		}
		fmt.Fprintf(&b, "user %s %s\n", u.Name, ACLRule(u))
	}
	_, err := w.Write(b.Bytes())
	return err
}

// WriteACLFile renders users into path atomically, without fsync, like
// WriteFile.
func WriteACLFile(path string, users []User) error {
	var b bytes.Buffer
	if err := RenderACL(&b, users); err != nil {
		return err
	}
	return statefile.Replace(path, b.Bytes(), 0o600)
}

// The append-only file's names: appenddirname as rendered, appendfilename
// Redis's default, which the rendered config keeps.
const (
	aofDirName = "appendonlydir"
	aofName    = "appendonly.aof"
)

// SeedAOF gives a data directory that holds no data yet an empty multi-part
// AOF: an empty incremental file and a manifest naming it, as Redis 7
// itself writes them. Without one, redis-server's first start writes a base
// file of its empty dataset and a manifest, fsyncing each, before it
// accepts connections: 1-2 ms on a quiet disk, tens of ms on a busy one,
// on every new instance's path. With one it opens the incremental file and
// serves.
//
// It seeds only when there is no data to lose: no dump.rdb (a restore, or a
// server that ran without the AOF, loads from it) and no appendonlydir, or
// one whose files are all empty (a seed cut short by a crash), which it
// replaces. Otherwise it does nothing.
//
// The files are written without fsync, so that redis-server can start at
// once; the returned sync makes them and their directories durable, running
// meanwhile, and must have succeeded before the instance takes a write it
// must keep (before it is reported ready). It is never nil.
func SeedAOF(dataDir string) (sync func() error, err error) {
	none := func() error { return nil }
	if _, err := os.Lstat(filepath.Join(dataDir, "dump.rdb")); !errors.Is(err, fs.ErrNotExist) {
		return none, nil
	}
	dir := filepath.Join(dataDir, aofDirName)
	if empty, err := emptyFiles(dir); err != nil || !empty {
		return none, nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return none, fmt.Errorf("seeding the AOF: %w", err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return none, fmt.Errorf("seeding the AOF: %w", err)
	}
	incr := aofName + ".1.incr.aof"
	if err := os.WriteFile(filepath.Join(dir, incr), nil, 0o644); err != nil {
		return none, fmt.Errorf("seeding the AOF: %w", err)
	}
	manifest := filepath.Join(dir, aofName+".manifest")
	if err := statefile.Replace(manifest, []byte("file "+incr+" seq 1 type i\n"), 0o644); err != nil {
		return none, fmt.Errorf("seeding the AOF: %w", err)
	}
	done := make(chan error, 1)
	go func() {
		var errs []error
		for _, f := range []string{filepath.Join(dir, incr), manifest} {
			errs = append(errs, statefile.Sync(f))
		}
		errs = append(errs, statefile.SyncDir(dir), statefile.SyncDir(dataDir))
		if err := errors.Join(errs...); err != nil {
			done <- fmt.Errorf("seeding the AOF: %w", err)
			return
		}
		done <- nil
	}()
	return func() error { return <-done }, nil
}

// emptyFiles reports whether dir is missing or holds only empty files.
func emptyFiles(dir string) (bool, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil || !fi.Mode().IsRegular() || fi.Size() != 0 {
			return false, err
		}
	}
	return true, nil
}
