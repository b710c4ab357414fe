package hostile_test

import (
	. "github.com/onsi/ginkgo/v2"

	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

// forEachPlan declares one spec per plan.
func forEachPlan(text string, body func(p plan)) {
	for _, p := range plans {
		It(text+" ("+p.name+")", func() { body(p) })
	}
}

// The attacks that leave other instances alone share one system of stock
// configuration: a shared VM and four dedicated nodes. Each spec makes its
// own instances; a failure does not stop the next spec.
var _ = Describe("a system in its stock configuration", Ordered, ContinueOnFailure, func() {
	var sys *system
	BeforeAll(func() { sys = startSystem(systemtest.Options{Nodes: 4, MaxMemoryMB: 64}) })

	Describe("a leader the tenant runs, streaming admin commands", func() {
		forEachPlan("gets its changes undone, and is cut off when it keeps making them", func(p plan) { expectHostileLeaderContained(sys, p) })
	})
	Describe("replica_of with no external_leaders configured", func() {
		It("refuses any host and port with a 400", func() {
			id := newID("follower")
			sys.provision(sharedPlan, id)
			expectLeaderRefused(sys, id, leaderAddress{"a TEST-NET address", "192.0.2.10", 6379}, "")
		})
		forEachPlan("refuses the platform's own addresses", func(p plan) { expectPlatformLeadersRefused(sys, p) })
	})
	Describe("CLIENT commands against the platform and other apps", func() {
		forEachPlan("CLIENT PAUSE is refused, and bind and unbind still work", func(p plan) { expectPauseRefused(sys, p) })
		forEachPlan("CLIENT KILL USER of another binding is refused", func(p plan) { expectClientKillRefused(sys, p) })
	})
	Describe("binding ids of reserved users", func() {
		forEachPlan("are refused with a 400, and the instance binds and deletes afterwards", func(p plan) { expectReservedIDsRefused(sys, p) })
	})
	Describe("file modes", func() {
		forEachPlan("keep an instance's files from other users of the VM", func(p plan) { expectFileModes(sys, p) })
	})
	Describe("a flood of unauthenticated connections", func() {
		forEachPlan("does not lock the platform or new bindings out", func(p plan) { expectFloodSurvived(sys, p) })
	})
})

// An operator's allow-list holds loopback and TEST-NET-1: the platform's
// addresses stay refused even so.
var _ = Describe("replica_of with external_leaders configured", Ordered, ContinueOnFailure, func() {
	var sys *system
	BeforeAll(func() {
		sys = startSystem(systemtest.Options{Nodes: 1, BrokerConfig: map[string]any{
			"external_leaders": []string{"127.0.0.0/8", "192.0.2.0/24"},
		}})
	})
	forEachPlan("refuses the platform's own addresses even when the list covers them", func(p plan) { expectPlatformLeadersRefused(sys, p) })
	It("refuses a leader outside the list, naming external_leaders", func() {
		id := newID("follower")
		sys.provision(sharedPlan, id)
		expectLeaderRefused(sys, id, leaderAddress{"TEST-NET-2, not in the list", "198.51.100.7", 6379}, "external_leaders")
	})
	It("accepts a leader in the list", func() {
		expectListedLeaderAccepted(sys)
	})
})

// Memory attacks blow servers up on a stock build: each system holds only
// the attacked instances (and a neighbour), with a 64 MiB plan.
var _ = Describe("memory attacks", Ordered, ContinueOnFailure, func() {
	var sys *system
	BeforeAll(func() { sys = startSystem(systemtest.Options{Nodes: 3, MaxMemoryMB: 64, NodeMemoryMB: 64}) })

	forEachPlan("150 pipelined GETs of 10 MB never read stay within the ceiling", func(p plan) { expectOutputBuffersBounded(sys, p) })
	forEachPlan("three 499 MB bulk strings stay within the ceiling", func(p plan) { expectQueryBuffersBounded(sys, p) })
	forEachPlan("a script writing 1000 x 1 MiB stays within the ceiling and spares the neighbours", func(p plan) { expectScriptBounded(sys, p) })
})

// A busy script pins a core until its server stops: its own system.
var _ = Describe("a busy script", Ordered, ContinueOnFailure, func() {
	var sys *system
	BeforeAll(func() { sys = startSystem(systemtest.Options{Nodes: 1}) })
	forEachPlan("does not stop its instance's delete", func(p plan) { expectBusyInstanceDeleted(sys, p) })
})

var _ = Describe("a busy script with max_script_seconds 3", Ordered, ContinueOnFailure, func() {
	var sys *system
	BeforeAll(func() {
		sys = startSystem(systemtest.Options{Nodes: 1, AgentConfig: map[string]any{"max_script_seconds": 3}})
	})
	forEachPlan("is ended by the agent, and the instance serves its data again", func(p plan) { expectBusyScriptEnded(sys, p) })
})

var _ = Describe("a dedicated reset interrupted by restarts", func() {
	It("finishes when the node agent comes back after the broker", func() {
		expectResetAfterRestarts(startSystem(systemtest.Options{Nodes: 1}))
	})
})
