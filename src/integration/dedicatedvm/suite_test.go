// Package dedicatedvm_test drives the real broker and dedicated-node agents
// (built from this tree, each node on its own loopback address with its own
// redis-server) through a real OSB client, and uses the credentials with
// go-redis. Cloud Controller is the one part played by the test.
package dedicatedvm_test

import (
	"os"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/internal/systemtest"
)

func TestDedicatedVM(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "dedicated-vm plan")
}

var bins systemtest.Binaries

var _ = BeforeSuite(func() {
	dir, err := os.MkdirTemp("", "dedicatedvm-bins-")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.RemoveAll, dir)
	bins, err = systemtest.Build(dir, true)
	Expect(err).NotTo(HaveOccurred())
})
