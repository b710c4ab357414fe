// Package backup_test proves backups and restores end to end: the real
// broker, shared agents and dedicated nodes (built from this tree with the
// race detector), real redis-servers, a real MinIO server on loopback and a
// real local folder as destinations, the real redis-backup errand, and a
// real OSB client playing Cloud Controller. Failures are caused for real:
// MinIO stopped, a wrong secret, a missing bucket, a full tmpfs, a snapshot
// slowed past its timeout, an instance deleted and a redis-server killed
// while their snapshot runs.
//
// MinIO runs for the whole suite (scripts/setup installs the pinned
// binary); each spec or ordered container starts a system of its own and
// stops it, with every process it started, when it ends.
package backup_test

import (
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/testkit/miniotest"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemspec"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

func TestBackup(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "backups and restore")
}

var (
	bins systemtest.Binaries
	mio  *miniotest.Server
)

// bucket is the bucket every spec backs up to, each under a prefix of its
// own.
const bucket = "redis-backups"

var _ = BeforeSuite(func() {
	// Race-detector binaries on a loaded two-core machine: processes can
	// take seconds to start.
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(20 * time.Millisecond)
	bins = systemspec.Build()
	var err error
	mio, err = miniotest.Start(GinkgoT().TempDir())
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(mio.Stop)
	Expect(mio.MakeBucket(bucket)).To(Succeed())
})
