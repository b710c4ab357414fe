// Package nodeapi is the HTTPS API between the broker and a dedicated node's
// agent: its messages, its errors, the server side (NewHandler) and the client
// the broker uses (Client).
//
// A node is one VM running one redis-server that is handed whole to one
// service instance at a time: the broker claims it for an instance, adds and
// removes binding users, and resets it (wiping every byte of the tenant's data)
// before it goes back to the pool. Every request carries basic auth, and the
// client only speaks HTTPS, verifying the node's certificate against a
// configured CA. Every operation is idempotent, so the broker can retry any of
// them after a crash or a timeout.
package nodeapi

import (
	"errors"
	"net/http"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/jsonhttp"
	"github.com/cf-redis/redis-for-cf/src/internal/params"
	"github.com/cf-redis/redis-for-cf/src/internal/replication"
)

// Credentials are the basic-auth username and password the broker presents;
// the same type as the shared agents' API.
type Credentials = agentapi.Credentials

// The states of a node.
const (
	// StateFree is a node that passed its last reset and holds no instance.
	StateFree = "free"
	// StateClaimed is a node serving one instance.
	StateClaimed = "claimed"
	// StateResetting is a node whose reset began and has not ended; an agent
	// that starts and finds it finishes the reset.
	StateResetting = "resetting"
	// StateResetFailed is a node whose last reset did not verify: it is
	// quarantined, refusing claims until a later reset passes.
	StateResetFailed = "reset_failed"
)

// The replication roles of a node.
const (
	// RoleLeader is a node that accepts writes (Redis's "master").
	RoleLeader = replication.RoleLeader
	// RoleFollower is a read-only replica of another node (Redis's "slave").
	RoleFollower = replication.RoleFollower
)

// Binding roles.
const (
	// BindingRoleTenant is an app's binding user: every data command but
	// those the platform owns. It is the role of a request without one.
	BindingRoleTenant = ""
	// BindingRoleReplication is a user that may only replicate from the node:
	// the broker gives it to a follower of this node.
	BindingRoleReplication = "replication"
)

// Status describes a node and its redis-server.
type Status struct {
	// NodeID is the node's configured stable id, so the broker can check
	// that the address it called is the node it expects.
	NodeID string `json:"node_id"`
	// State is StateFree, StateClaimed, StateResetting or StateResetFailed.
	State string `json:"state"`
	// InstanceID is the instance holding the node; empty when free. A node
	// resetting or quarantined keeps the id of the instance it held.
	InstanceID string `json:"instance_id"`
	// ResetError says why the last reset failed; empty otherwise.
	ResetError string `json:"reset_error,omitempty"`
	// RedisRunning reports whether redis-server answered just now; the live
	// fields below are zero when it did not.
	RedisRunning bool `json:"redis_running"`
	// RedisError says why redis-server did not answer.
	RedisError string `json:"redis_error,omitempty"`
	// RedisVersion is INFO's redis_version, e.g. "7.0.15".
	RedisVersion string `json:"redis_version"`
	// UsedMemoryBytes is INFO's used_memory.
	UsedMemoryBytes int64 `json:"used_memory_bytes"`
	// MaxMemoryBytes is redis-server's configured memory limit.
	MaxMemoryBytes int64 `json:"maxmemory_bytes"`
	// Keys counts the keys of every database.
	Keys int64 `json:"keys"`
	// Host and Port are where apps connect.
	Host string `json:"host"`
	Port int    `json:"port"`
	// TLSPort is redis-server's TLS port; zero when the node serves no TLS.
	TLSPort    int               `json:"tls_port,omitempty"`
	Parameters params.Parameters `json:"parameters"`
	// Bindings are the usernames of the binding users, sorted.
	Bindings    []string    `json:"bindings"`
	Replication Replication `json:"replication"`
}

// Replication is a node's place in a leader/follower pair.
type Replication = replication.Status

// ClaimRequest hands a free node to an instance.
type ClaimRequest struct {
	InstanceID string            `json:"instance_id"`
	Parameters params.Parameters `json:"parameters"`
}

// ParametersRequest replaces the parameters of the instance holding a node.
type ParametersRequest struct {
	InstanceID string            `json:"instance_id"`
	Parameters params.Parameters `json:"parameters"`
}

// BindingRequest creates a binding user. The agent keeps only the password's
// hash.
type BindingRequest struct {
	InstanceID string `json:"instance_id"`
	Password   string `json:"password"`
	// Role is BindingRoleTenant (empty) or BindingRoleReplication.
	Role string `json:"role,omitempty"`
}

// Binding is a binding user of a node and where it connects.
type Binding struct {
	Username string `json:"username"`
	Host     string `json:"host"`
	Port     int    `json:"port"`
	Role     string `json:"role,omitempty"`
	// TLSPort is redis-server's TLS port and TLSCA the PEM CA that signed
	// its certificate; both empty when the node serves no TLS.
	TLSPort int    `json:"tls_port,omitempty"`
	TLSCA   string `json:"tls_ca,omitempty"`
}

// ResetRequest wipes a node that instance InstanceID held.
type ResetRequest struct {
	InstanceID string `json:"instance_id"`
}

// ReplicationRequest makes the node a follower of Leader, or a leader again
// when Leader is nil.
type ReplicationRequest struct {
	InstanceID string  `json:"instance_id"`
	Leader     *Leader `json:"leader"`
}

// Leader is where a follower replicates from and the credentials of a
// replication binding on it.
type Leader = replication.Leader

// Errors both sides of the API agree on; they travel as the "error" code of a
// JSON error body and come back out of Client as the same values.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
	ErrInvalid  = errors.New("invalid request")
	// ErrUnavailable means the node could not be reached or its redis-server
	// did not answer; a retry may succeed.
	ErrUnavailable = errors.New("unavailable")
	// ErrBusy means the node is held by another instance (or is being reset):
	// the broker must pick another node.
	ErrBusy = errors.New("node busy")
	// ErrDirty means the node's last reset did not verify: it is quarantined
	// until a reset passes.
	ErrDirty = errors.New("node dirty")
)

// errorCodes are the codes and statuses of the errors.
var errorCodes = jsonhttp.Codes{
	{Err: ErrNotFound, Code: "not_found", Status: http.StatusNotFound},
	{Err: ErrConflict, Code: "conflict", Status: http.StatusConflict},
	{Err: ErrBusy, Code: "busy", Status: http.StatusConflict},
	{Err: ErrDirty, Code: "dirty", Status: http.StatusLocked},
	{Err: ErrInvalid, Code: "invalid", Status: http.StatusBadRequest},
	{Err: ErrUnavailable, Code: "unavailable", Status: http.StatusServiceUnavailable},
}

var codes = errorCodes.Map()

// ErrorBody is the JSON body of every error response.
type ErrorBody = agentapi.ErrorBody
