// Package agentapi is the HTTP API between the broker and a shared-VM agent:
// its messages, its errors, the server side (NewHandler) and the client the
// broker uses (Client).
//
// Every request carries basic auth; agents serve it over TLS when configured.
// Every operation is idempotent, so the broker can retry any of them after a
// crash or a timeout without creating duplicates.
package agentapi

import (
	"errors"
	"net/http"

	"github.com/cf-redis/redis-for-cf/src/internal/jsonhttp"
	"github.com/cf-redis/redis-for-cf/src/internal/params"
	"github.com/cf-redis/redis-for-cf/src/internal/replication"
)

// InstanceRequest asks for an instance with a memory limit and parameters.
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

// Instance describes one redis-server on the agent's VM.
type Instance struct {
	ID   string `json:"id"`
	Host string `json:"host"`
	Port int    `json:"port"`
	// TLSPort is the instance's TLS port; zero when the agent serves no TLS.
	TLSPort        int               `json:"tls_port,omitempty"`
	MaxMemoryBytes int64             `json:"maxmemory_bytes"`
	Parameters     params.Parameters `json:"parameters"`
	// State is "running", "starting", "restarting" or "failed".
	State string `json:"state"`
	// Restarts counts unexpected exits of redis-server since the agent started.
	Restarts int `json:"restarts"`
	// LastError says why the process last stopped or failed to start.
	LastError string `json:"last_error,omitempty"`
	// Bindings are the usernames of the instance's binding users.
	Bindings []string `json:"bindings"`
	// Replication is the instance's place in a leader/follower pair; only
	// Get fills it in, as it asks the running server.
	Replication *replication.Status `json:"replication,omitempty"`
}

// ReplicationRequest makes an instance a read-only follower of Leader, or a
// leader again when Leader is nil.
type ReplicationRequest struct {
	Leader *replication.Leader `json:"leader"`
}

// BindingRequest carries the password of a new binding user. The agent keeps
// only its hash.
type BindingRequest struct {
	Password string `json:"password"`
	// Role is empty for an app's binding user, or "replication" for a user
	// that may only replicate (a follower's account on its leader).
	Role string `json:"role,omitempty"`
}

// Binding is a binding user of an instance and where it connects.
type Binding struct {
	Username string `json:"username"`
	Host     string `json:"host"`
	Port     int    `json:"port"`
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

// Errors both sides of the API agree on; they travel as the "error" code of a
// JSON error body and come back out of Client as the same values.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
	ErrFull     = errors.New("agent full")
	ErrInvalid  = errors.New("invalid request")
	// ErrUnavailable means the agent could not be reached or the instance is
	// not running; a retry may succeed.
	ErrUnavailable = errors.New("unavailable")
)

// errorCodes are the codes and statuses of the errors.
var errorCodes = jsonhttp.Codes{
	{Err: ErrNotFound, Code: "not_found", Status: http.StatusNotFound},
	{Err: ErrConflict, Code: "conflict", Status: http.StatusConflict},
	{Err: ErrFull, Code: "full", Status: http.StatusInsufficientStorage},
	{Err: ErrInvalid, Code: "invalid", Status: http.StatusBadRequest},
	{Err: ErrUnavailable, Code: "unavailable", Status: http.StatusServiceUnavailable},
}

var codes = errorCodes.Map()

// ErrorBody is the JSON body of every error response.
type ErrorBody = jsonhttp.ErrorBody
