// Package instance owns one redis-server instance: its record, the
// redis.conf and ACL file rendered from it, the process that serves it
// (started, supervised, retried, adopted after an agent crash, stopped), its
// admin connection, and the verbs both agents serve for it: bind, unbind,
// parameters, replication, TLS, snapshot and restore. The shared agent runs
// many of these servers; a dedicated node runs one. An agent supplies where
// the record is kept (Store) and the files live (Paths).
package instance

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/ids"
	"github.com/cf-redis/redis-for-cf/src/internal/params"
	"github.com/cf-redis/redis-for-cf/src/internal/redisconf"
	"github.com/cf-redis/redis-for-cf/src/internal/replication"
	"github.com/cf-redis/redis-for-cf/src/internal/secret"
	"github.com/cf-redis/redis-for-cf/src/internal/sentinel"
	"github.com/cf-redis/redis-for-cf/src/internal/statefile"
)

// AdminUser is the ACL user through which the agent manages an instance. Its
// password is per instance and never leaves the agent.
const AdminUser = "platform-admin"

// MinPasswordLength is the shortest binding password an agent accepts.
const MinPasswordLength = 32

// Record is what an agent keeps of one instance: enough to render its files
// and run it again after a crash.
type Record struct {
	// ID is the service instance's id; on a free dedicated node, empty.
	ID string `json:"id"`
	// Port is where apps connect in plaintext.
	Port int `json:"port"`
	// TLSPort is the instance's TLS port; zero while the agent serves no TLS.
	TLSPort        int               `json:"tls_port,omitempty"`
	MaxMemoryBytes int64             `json:"maxmemory_bytes"`
	Parameters     params.Parameters `json:"parameters"`
	// AdminPassword is the password of AdminUser that the running (or next)
	// redis-server accepts.
	AdminPassword string `json:"admin_password"`
	// Users are the binding users by username: apps' (RoleTenant) and
	// followers' (RoleReplication).
	Users map[string]User `json:"bindings,omitempty"`
	// Leader, when set, is the leader the instance follows.
	Leader *replication.Leader `json:"leader,omitempty"`
	// ReplicationStopped, when set, says why the agent stopped following
	// Leader (its stream kept changing the platform's settings): the
	// server leads until a new replication request.
	ReplicationStopped string `json:"replication_stopped,omitempty"`
	// HA, when set, is the high-availability group the instance is a
	// member of (a dedicated node of the dedicated-ha plan): Sentinel,
	// not Leader, says whom it follows.
	HA *sentinel.Group `json:"ha,omitempty"`
	// CreatedAt is when the instance was created (on a node: claimed); a
	// snapshot checks it did not change, so it never streams another
	// tenant's data under the same id.
	CreatedAt time.Time `json:"created_at,omitzero"`
}

// User is a binding user: the SHA-256 of its password and its role.
type User struct {
	PasswordHash string `json:"password_hash"`
	// Role is agentapi.RoleTenant (empty) or agentapi.RoleReplication.
	Role string `json:"role,omitempty"`
}

// UnmarshalJSON also reads the shared agent's records of before the one
// record shape, which kept a tenant user as its bare password hash.
func (u *User) UnmarshalJSON(data []byte) error {
	if len(data) > 0 && data[0] == '"' {
		*u = User{}
		return json.Unmarshal(data, &u.PasswordHash)
	}
	type plain User
	return json.Unmarshal(data, (*plain)(u))
}

// Usernames are the record's binding users, sorted; never nil.
func (r Record) Usernames() []string {
	return append([]string{}, slices.Sorted(maps.Keys(r.Users))...)
}

// aclUsers are the ACL users of r: the admin, then the binding users.
func (r Record) aclUsers() []redisconf.User {
	users := []redisconf.User{{Name: AdminUser, PasswordHash: secret.Hash(r.AdminPassword), Admin: true}}
	for _, name := range r.Usernames() {
		u := r.Users[name]
		users = append(users, r.aclUser(name, u))
	}
	if g := r.HA; g != nil {
		users = append(users,
			redisconf.User{Name: sentinel.ReplicationUser, PasswordHash: secret.Hash(g.ReplicationPassword), Role: redisconf.RoleReplication},
			redisconf.User{Name: sentinel.User, PasswordHash: secret.Hash(g.SentinelPassword), Role: redisconf.RoleSentinel})
	}
	return users
}

// aclUser is binding user u of r as its ACL user.
func (r Record) aclUser(name string, u User) redisconf.User {
	return redisconf.User{Name: name, PasswordHash: u.PasswordHash, Role: redisconf.Role(u.Role), Sentinel: r.HA != nil}
}

// Store keeps the records of an agent; a Server reads and changes its own
// record only through it. Every error it returns reaches the API as is, so
// it says why in agentapi's terms.
type Store interface {
	// Current returns the record the server runs from, whoever holds it now
	// (also while it is being deleted or reset).
	Current() (Record, error)
	// Held returns the record of instance id: agentapi.ErrNotFound, or
	// ErrConflict on a node held by another instance, when id does not hold
	// the server now.
	Held(id string) (Record, error)
	// Update changes the record of instance id in one transaction of the
	// agent's state, refusing as Held does.
	Update(id string, change func(*Record) error) (Record, error)
}

// CheckID is ids.Check with agentapi.ErrInvalid.
func CheckID(what, id string) error { return ids.Check(what, id, agentapi.ErrInvalid) }

// checkBinding checks a binding request: its id may be a username that is
// neither the admin's nor Redis's default user, its password is long
// enough, its role known.
func checkBinding(bindingID string, req agentapi.BindingRequest) error {
	if err := checkBindingID(bindingID); err != nil {
		return err
	}
	if len(req.Password) < MinPasswordLength {
		return fmt.Errorf("%w: password must have at least %d characters", agentapi.ErrInvalid, MinPasswordLength)
	}
	if req.Role != agentapi.RoleTenant && req.Role != agentapi.RoleReplication {
		return fmt.Errorf("%w: role must be empty (a tenant) or %q", agentapi.ErrInvalid, agentapi.RoleReplication)
	}
	return nil
}

// checkBindingID checks that a binding id may be a username that is neither
// the admin's nor Redis's default user.
func checkBindingID(id string) error {
	if err := CheckID("binding id", id); err != nil {
		return err
	}
	if id == AdminUser || id == "default" || id == sentinel.ReplicationUser || id == sentinel.User {
		return fmt.Errorf("%w: binding id %q is reserved", agentapi.ErrInvalid, id)
	}
	return nil
}

// UpdateIn is Store.Update for an agent whose records live in a state file
// of type S: find returns the record to change in the state, or the
// agent's refusal; the change and the write are one transaction.
func UpdateIn[S any](f *statefile.File[S], find func(*S) (*Record, error), change func(*Record) error) (Record, error) {
	var rec Record
	err := f.Update(func(s *S) error {
		r, err := find(s)
		if err != nil {
			return err
		}
		if err := change(r); err != nil {
			return err
		}
		rec = *r
		return nil
	})
	return rec, err
}
