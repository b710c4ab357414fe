// Package hostile_test attacks the product as a hostile tenant would, on both
// plans: a leader the tenant runs streaming admin commands, the platform's own
// addresses offered as leaders, memory blown up through output buffers, query
// buffers and a script, a busy script before a delete, CLIENT PAUSE and CLIENT
// KILL against the platform and other apps, a flood of unauthenticated
// connections, binding ids that collide with reserved users, a dedicated
// reset interrupted by restarts, and the modes of the files an instance
// leaves on disk.
//
// Every attack runs against the real broker and agents (built with the race
// detector), real redis-servers, a real OSB client's requests and go-redis or
// raw TCP as the tenant. Attacks that cannot disturb each other share one
// system (an Ordered container that continues after a failure, so each
// attack fails or passes on its own); the destructive ones get a system of
// their own. Every system stops, with every process it started, when its
// container ends, failed or not.
package hostile_test

import (
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/testkit/systemspec"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

func TestHostile(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "hostile tenants")
}

// bins are the binaries every system runs, built once.
var bins systemtest.Binaries

var _ = BeforeSuite(func() {
	// Servers are killed and restarted in these specs; with race-detector
	// binaries on a loaded two-core machine that can take seconds.
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(50 * time.Millisecond)
	bins = systemspec.Build()
})
