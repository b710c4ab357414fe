// Package agentapi is the one HTTP API between the broker and the agents
// that run redis-servers: the shared VMs' agents (many instances each) and
// the dedicated nodes' agents (one instance at a time, handed out whole).
// Both serve the same instance routes; a node adds GET /v1/node, its place
// in the pool. This package holds the messages, the errors, the server side
// (NewHandler) and the client the broker uses (Client).
//
// Every request carries basic auth; agents serve it over TLS when configured
// (nodes always). Every operation is idempotent, so the broker can retry any
// of them after a crash or a timeout without creating duplicates.
package agentapi

import (
	"errors"
	"net/http"

	"github.com/cf-redis/redis-for-cf/src/internal/jsonhttp"
	"github.com/cf-redis/redis-for-cf/src/internal/params"
	"github.com/cf-redis/redis-for-cf/src/internal/replication"
	"github.com/cf-redis/redis-for-cf/src/internal/sentinel"
)

// Credentials are the basic-auth username and password of the API.
type Credentials = jsonhttp.Credentials

// InstanceRequest asks for an instance with a memory limit and parameters.
// On a dedicated node it claims the node; MaxMemoryBytes is then zero (the
// node's limit is the VM's).
type InstanceRequest struct {
	MaxMemoryBytes int64             `json:"maxmemory_bytes"`
	Parameters     params.Parameters `json:"parameters"`
}

// UpdateRequest replaces an instance's parameters.
type UpdateRequest struct {
	Parameters params.Parameters `json:"parameters"`
}

// ResizeRequest gives an instance a new memory limit (the plan's changed).
type ResizeRequest struct {
	MaxMemoryBytes int64 `json:"maxmemory_bytes"`
}

// The states of an instance.
const (
	StateRunning    = "running"
	StateStarting   = "starting"
	StateRestarting = "restarting"
	StateFailed     = "failed"
	StateDeleting   = "deleting"
)

// Instance describes one redis-server instance on an agent.
type Instance struct {
	ID   string `json:"id"`
	Host string `json:"host"`
	Port int    `json:"port"`
	// TLSPort is the instance's TLS port; zero when the agent serves no TLS.
	TLSPort int `json:"tls_port,omitempty"`
	// TLSCA is the PEM CA that signed the instance's certificate, in the
	// answer to a create (a claim, for a node), so that the broker knows it
	// before any binding (an HA group's Sentinels are asked over TLS who
	// leads); empty in other answers and when the agent serves no TLS.
	TLSCA          string            `json:"tls_ca,omitempty"`
	MaxMemoryBytes int64             `json:"maxmemory_bytes"`
	Parameters     params.Parameters `json:"parameters"`
	// State is one of the State constants.
	State string `json:"state"`
	// Restarts counts unexpected exits of redis-server since the agent started.
	Restarts int `json:"restarts"`
	// LastError says why the process last stopped or failed to start, or
	// what the agent did to it (it ended a script that ran too long).
	LastError string `json:"last_error,omitempty"`
	// ReplicationStopped, when set, says why the instance no longer follows
	// the leader of its last replication request: that leader's stream
	// kept changing the platform's settings or users. Empty while it
	// follows or never followed; a new replication request clears it.
	ReplicationStopped string `json:"replication_stopped,omitempty"`
	// Bindings are the usernames of the instance's binding users, sorted.
	Bindings []string `json:"bindings"`
	// NodeID is the id of the dedicated node holding the instance; empty on
	// a shared VM. The broker checks it is the node it claimed.
	NodeID string `json:"node_id,omitempty"`
	// Live is what the running server reports; only Get fills it in, and
	// only when the server answered.
	Live *Live `json:"live,omitempty"`
	// BackupSkip, when set, says why this node leaves the instance's
	// backups to another member of its HA group (the first follower in
	// member order that Sentinel sees up); only a node's List fills it in.
	// Scheduled backups and the backup errand skip such an instance.
	BackupSkip string `json:"backup_skip,omitempty"`
}

// Live is what an instance's running redis-server reports of itself.
type Live struct {
	RedisVersion    string `json:"redis_version"`
	UsedMemoryBytes int64  `json:"used_memory_bytes"`
	// Keys counts the keys of every database.
	Keys        int64              `json:"keys"`
	Replication replication.Status `json:"replication"`
}

// ReplicationRequest makes an instance a read-only follower of Leader, or a
// leader again when Leader is nil.
type ReplicationRequest struct {
	Leader *replication.Leader `json:"leader"`
}

// HARequest makes a dedicated node's instance a member of a
// high-availability group: the group's name for Sentinel, its three
// members (redis-server and Sentinel addresses), which one leads first,
// and the replication and Sentinel passwords every member shares. The
// broker sends the same request to each member.
type HARequest = sentinel.Group

// Binding roles.
const (
	// RoleTenant is an app's binding user: every data command but those the
	// platform owns. It is the role of a request without one.
	RoleTenant = ""
	// RoleReplication is a user that may only replicate from the instance:
	// the broker gives it to a follower of the instance.
	RoleReplication = "replication"
)

// BindingRequest carries the password of a new binding user. The agent keeps
// only its hash.
type BindingRequest struct {
	Password string `json:"password"`
	// Role is RoleTenant (empty) or RoleReplication.
	Role string `json:"role,omitempty"`
}

// Binding is a binding user of an instance and where it connects.
type Binding struct {
	Username string `json:"username"`
	Host     string `json:"host"`
	Port     int    `json:"port"`
	Role     string `json:"role,omitempty"`
	// TLSPort is the instance's TLS port and TLSCA the PEM CA that signed
	// its certificate; both empty when the agent serves no TLS.
	TLSPort int    `json:"tls_port,omitempty"`
	TLSCA   string `json:"tls_ca,omitempty"`
}

// Capacity is what an agent holds and can still take.
type Capacity struct {
	// MemoryBytes is the memory the agent may give to instances in all.
	MemoryBytes int64 `json:"memory_bytes"`
	// AllocatedBytes is the sum of the instances' limits.
	AllocatedBytes int64 `json:"allocated_bytes"`
	Instances      int   `json:"instances"`
	// MaxInstances is the most instances the agent takes; zero means no
	// limit beyond memory and ports.
	MaxInstances int `json:"max_instances"`
	// FreePorts is the number of ports of the range not reserved.
	FreePorts int `json:"free_ports"`
	// PortsPerInstance is how many ports of the range an instance takes: 2
	// when the agent serves TLS (a plaintext and a TLS port); zero means 1.
	PortsPerInstance int `json:"ports_per_instance,omitempty"`
}

// Fits reports whether one more instance of maxmemory bytes fits.
func (c Capacity) Fits(maxmemory int64) bool {
	return c.MemoryBytes-c.AllocatedBytes >= maxmemory &&
		c.FreePorts >= max(1, c.PortsPerInstance) &&
		(c.MaxInstances == 0 || c.Instances < c.MaxInstances)
}

// The states of a dedicated node.
const (
	// NodeFree is a node that passed its last reset and holds no instance.
	NodeFree = "free"
	// NodeClaimed is a node serving one instance.
	NodeClaimed = "claimed"
	// NodeResetting is a node whose reset began and has not ended; an agent
	// that starts and finds it finishes the reset.
	NodeResetting = "resetting"
	// NodeResetFailed is a node whose last reset did not verify: it is
	// quarantined, refusing claims until a later reset passes.
	NodeResetFailed = "reset_failed"
)

// Node is a dedicated node's place in the pool (GET /v1/node).
type Node struct {
	// NodeID is the node's configured stable id, so the broker can check
	// that the address it called is the node it expects.
	NodeID string `json:"node_id"`
	// State is one of the Node constants.
	State string `json:"state"`
	// InstanceID is the instance holding the node; empty when free. A node
	// resetting or quarantined keeps the id of the instance it held.
	InstanceID string `json:"instance_id"`
	// ResetError says why the last reset failed; empty otherwise.
	ResetError string `json:"reset_error,omitempty"`
}

// Errors both sides of the API agree on; they travel as the "error" code of a
// JSON error body and come back out of Client as the same values.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
	// ErrFull means the agent has no room (memory, ports, disk) for what
	// was asked.
	ErrFull    = errors.New("agent full")
	ErrInvalid = errors.New("invalid request")
	// ErrUnavailable means the agent could not be reached or the instance is
	// not running; a retry may succeed.
	ErrUnavailable = errors.New("unavailable")
	// ErrBusy means a dedicated node is held by another instance (or is
	// being reset): the broker must pick another node.
	ErrBusy = errors.New("node busy")
	// ErrDirty means a dedicated node's last reset did not verify: it is
	// quarantined until a reset passes.
	ErrDirty = errors.New("node dirty")
)

// errorCodes are the codes and statuses of the errors, in the order they
// are tried.
var errorCodes = jsonhttp.Codes{
	{Err: ErrNotFound, Code: "not_found", Status: http.StatusNotFound},
	{Err: ErrBusy, Code: "busy", Status: http.StatusConflict},
	{Err: ErrConflict, Code: "conflict", Status: http.StatusConflict},
	{Err: ErrDirty, Code: "dirty", Status: http.StatusLocked},
	{Err: ErrFull, Code: "full", Status: http.StatusInsufficientStorage},
	{Err: ErrInvalid, Code: "invalid", Status: http.StatusBadRequest},
	{Err: ErrUnavailable, Code: "unavailable", Status: http.StatusServiceUnavailable},
}

// ErrorBody is the JSON body of every error response.
type ErrorBody = jsonhttp.ErrorBody
