package sharedagent_test

import (
	"syscall"

	. "github.com/onsi/ginkgo/v2"

	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

func processAlive(pid int) error { return syscall.Kill(pid, 0) }

// tempDir is a directory for one spec; processes started from it are killed
// when the spec ends, even if it failed before stopping them.
func tempDir() string {
	dir := GinkgoT().TempDir()
	DeferCleanup(systemtest.KillStrays, dir)
	return dir
}
