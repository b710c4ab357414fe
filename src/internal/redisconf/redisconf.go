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
	// Port is the TCP port; it must be in 1-65535.
	Port int
	// Dir holds dump.rdb and appendonlydir/.
	Dir string
	// ACLFile is the users file rendered by RenderACL.
	ACLFile string
	// MaxMemoryBytes is the instance's memory limit; it must be positive, as an
	// instance without a limit could take a shared VM's memory.
	MaxMemoryBytes int64
	// MaxClients caps client connections; zero means 10000, Redis's default.
	MaxClients int
	// Params are the tenant's settings.
	Params params.Parameters
	// ReplicaOf, when not nil, makes the server a read-only follower of this
	// leader; nil renders no replication directive, so the server leads.
	ReplicaOf *Leader
	// TLS, when not nil, adds a TLS port beside Port.
	TLS *TLS
}

// TLS is the TLS port of a redis-server and its certificate. Clients
// authenticate with ACL users, not certificates, and replication stays on
// the plaintext port.
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
// must apply them live: the certificate before the port.
func (t *TLS) Directives() []params.Directive {
	return []params.Directive{
		{Name: "tls-cert-file", Value: t.CertFile},
		{Name: "tls-key-file", Value: t.KeyFile},
		{Name: "tls-ca-cert-file", Value: t.CAFile},
		{Name: "tls-auth-clients", Value: "no"},
		{Name: "tls-protocols", Value: TLSProtocols},
		{Name: "tls-replication", Value: "no"},
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
}

var confTemplate = template.Must(template.New("redis.conf").Funcs(template.FuncMap{"quote": quote}).Parse(`# redis.conf of instance {{.InstanceID}}, rendered by its agent.
# Edits are overwritten: change settings through the service broker.
bind {{.Bind}}
port {{.Port}}
protected-mode no
daemonize no
supervised no
logfile ""
dir {{quote .Dir}}
aclfile {{quote .ACLFile}}
maxclients {{.MaxClients}}
maxmemory {{.MaxMemoryBytes}}
{{range .Params.Directives}}{{.Name}} {{quote .Value}}
{{end}}{{with .ReplicaOf}}
# A follower: it replicates its leader and refuses writes.
replicaof {{quote .Host}} {{.Port}}
{{if .User}}masteruser {{quote .User}}
{{end}}{{if .Password}}masterauth {{quote .Password}}
{{end}}replica-read-only yes
{{end}}{{with .TLS}}
# TLS beside the plaintext port; apps authenticate as ACL users, not with
# certificates, and replication stays on the plaintext port.
{{range .Directives}}{{.Name}} {{quote .Value}}
{{end}}{{end}}
# Persistence: the append-only file, fsynced every second, plus RDB snapshots.
appendonly yes
appendfsync everysec
appenddirname "appendonlydir"
aof-use-rdb-preamble yes
dbfilename dump.rdb
save 3600 1 300 100 60 10000
stop-writes-on-bgsave-error yes

# The platform owns persistence, replication and the server itself.
enable-debug-command no
enable-module-command no
enable-protected-configs no
tcp-keepalive 60
`))

// Render writes the redis.conf of c to w.
func Render(w io.Writer, c Config) error {
	if err := c.validate(); err != nil {
		return err
	}
	if c.MaxClients == 0 {
		c.MaxClients = 10000
	}
	return confTemplate.Execute(w, c)
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
	if c.Bind == "" || c.Dir == "" || c.ACLFile == "" {
		errs = append(errs, errors.New("bind, dir and aclfile must be set"))
	}
	if err := c.Params.Validate(); err != nil {
		errs = append(errs, err)
	}
	if l := c.ReplicaOf; l != nil && (l.Host == "" || l.Port < 1 || l.Port > 65535) {
		errs = append(errs, fmt.Errorf("replicaof needs a host and a port in 1-65535, not %q %d", l.Host, l.Port))
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

// TLSConfigSet returns the CONFIG SET command that gives a running server
// the TLS settings of t: its certificate and TLS port, or, when t is nil,
// no TLS port.
func TLSConfigSet(t *TLS) []any {
	if t == nil {
		return []any{"CONFIG", "SET", "tls-port", "0"}
	}
	args := []any{"CONFIG", "SET"}
	for _, d := range t.Directives() {
		args = append(args, d.Name, d.Value)
	}
	return args
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
)

// UsernamePattern is what a username may look like: letters, digits and
// '-', '_', '.', which need no quoting in ACL rules or URIs.
var UsernamePattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)

var hashPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

// TenantDeniedCommands are the commands a binding user may not run: the
// platform owns configuration, persistence, replication and the server
// process. Lua scripting, transactions, pub/sub and every keyspace command
// stay allowed.
var TenantDeniedCommands = []string{
	"config", "debug", "shutdown", "module", "acl",
	"replicaof", "slaveof", "sync", "psync", "replconf", "failover", "cluster",
	"monitor", "migrate", "save", "bgsave", "bgrewriteaof", "pfdebug", "pfselftest",
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
	rule := "on #" + u.PasswordHash + " ~* &* +@all"
	if !u.Admin {
		for _, c := range TenantDeniedCommands {
			rule += " -" + c
		}
		// Client libraries ask who they are; the answer reveals nothing.
		rule += " +acl|whoami"
	}
	return rule
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
		if u.Role != RoleTenant && u.Role != RoleReplication {
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
