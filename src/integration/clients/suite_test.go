// Package clients_test connects the Redis clients apps use to real instances
// of both plans, each client reading its credentials from a VCAP_SERVICES in
// Cloud Foundry's shape and finding its service by the tag "redis", as an
// app does: go-redis (this module's), redis-cli (the release's build), Node's
// ioredis and node-redis (pinned in testdata/package.json, installed by
// scripts/test with npm ci), Debian's python3-redis and ruby-redis.
//
// Each client runs the same operations (AUTH, SET/GET, a pipeline,
// MULTI/EXEC, EVAL and pub/sub across two connections) in each mode:
//
//   - plain: the binding's username and password in plaintext;
//   - tls: tls_port or tls_uri, verifying the server with tls_ca;
//   - tls-only: an instance provisioned with {"tls_only": true}, whose
//     port and uri are TLS ones; the client reads only uri or host/port and
//     tls_ca, and the instance's plaintext port is closed;
//   - password-only: the client is given host, port and password (and the
//     URI redis://:password@host:port), as Redis for PCF's apps were, and
//     AUTH with the password alone logs in as the binding.
//
// The clients in other languages are small scripts under testdata that print
// one JSON line per operation with what they read back; the specs compare
// those values with what they must be, and read the keys back with their own
// connection.
//
// One system serves both plans (a shared agent and two dedicated nodes, TLS
// on), started once; each plan has one instance for the plain, tls and
// password-only modes and one TLS-only instance, provisioned by the first
// spec that needs it; each spec binds anew.
package clients_test

import (
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/testkit/systemspec"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

func TestClients(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "clients apps use, on both plans")
}

// bins are the binaries the system runs, built once.
var bins systemtest.Binaries

var _ = BeforeSuite(func() {
	// Race-detector binaries and interpreters starting on a loaded two-core
	// machine can take seconds.
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(50 * time.Millisecond)
	requireClients()
	bins = systemspec.Build()
})
