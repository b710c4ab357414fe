// Package sharedvm_test proves the shared-vm plan end to end: the real
// redis-broker and redis-shared-agent binaries (built with the race
// detector), real redis-server processes, a real OSB client playing Cloud
// Controller, go-redis and redis-cli playing apps, and kill -9 playing the
// failures of a VM.
//
// Every Describe starts a system of its own and stops it, with every process
// it started, when it ends, failed or not. The specs run serially: a system
// is a handful of processes and this suite runs on two cores.
package sharedvm_test

import (
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/klog/v2"

	"github.com/cf-redis/redis-for-cf/src/testkit/systemspec"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

func TestSharedVM(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Shared-VM plan integration suite")
}

// bins are the binaries every spec runs, built once.
var bins systemtest.Binaries

var _ = BeforeSuite(func() {
	// Processes start, die and restart in these specs; on a loaded two-core
	// machine with race-detector binaries that can take seconds.
	SetDefaultEventuallyTimeout(10 * time.Second)
	SetDefaultEventuallyPollingInterval(20 * time.Millisecond)
	// The OSB client logs every error answer through klog; the specs provoke
	// many on purpose.
	klog.LogToStderr(false)
	klog.SetOutput(GinkgoWriter)
	bins = systemspec.Build()
})
