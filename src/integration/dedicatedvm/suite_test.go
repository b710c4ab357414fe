// Package dedicatedvm_test drives the real broker and dedicated-node agents
// (built from this tree, each node on its own loopback address with its own
// redis-server) through a real OSB client, and uses the credentials with
// go-redis. Cloud Controller is the one part played by the test; kill -9,
// SIGSTOP, an undeletable file and a wrong CA play the failures of VMs.
//
// Every spec starts a system of its own and stops it, with every process it
// started, when it ends, failed or not; before that it checks the pool's
// invariants (expectPoolConsistent). The specs run serially.
package dedicatedvm_test

import (
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/testkit/systemspec"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

func TestDedicatedVM(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "dedicated-vm plan")
}

var bins systemtest.Binaries

var _ = BeforeSuite(func() {
	// Processes die and restart in these specs; with race-detector binaries
	// on a loaded two-core machine that can take seconds.
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(20 * time.Millisecond)
	bins = systemspec.Build()
})
