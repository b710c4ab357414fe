// Package dedicatedha_test drives the real broker and three real
// dedicated-node agents (built from this tree, each on its own loopback
// address with its redis-server and its Sentinel) through the OSB API, as
// Cloud Controller would, and uses the credentials as apps do: go-redis's
// FailoverClient through the Sentinels, and plain clients on each member.
// Cloud Controller is the one part the test plays; kill -9 plays the
// failures.
//
// Every spec starts a system of its own and stops it, with every process
// it started, when it ends, failed or not. The specs run serially.
package dedicatedha_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/testkit/systemspec"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

func TestDedicatedHA(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "dedicated-ha plan")
}

var bins systemtest.Binaries

var _ = BeforeSuite(func() {
	// Processes die and restart in these specs; with race-detector binaries
	// on a loaded two-core machine that can take seconds.
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(50 * time.Millisecond)
	bins = systemspec.Build()
})

var ctx = context.Background()
