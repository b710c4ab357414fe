// Package spec holds the release-level tests: every job template rendered by
// bosh-cli's own ERB renderer and its output loaded by the program's own
// config loader, the manifests interpolated with bosh-cli and checked against
// the job specs, the pre-start and drain scripts run in namespaces, and the
// release tarball built and its packages compiled offline.
package spec

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

func TestSpec(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Release")
}

// configcheck is src/cmd/configcheck, built for the suite: it loads a
// rendered config as the program does, which spec/ cannot do in-process (Go's
// internal rule keeps it from importing the config packages).
var configcheck string

var _ = BeforeSuite(func() {
	dir, err := os.MkdirTemp("", "spec-bin-")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.RemoveAll, dir)
	configcheck = filepath.Join(dir, "configcheck")
	cmd := exec.Command("go", "build", "-o", configcheck, "github.com/cf-redis/redis-for-cf/src/cmd/configcheck")
	out, err := cmd.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), string(out))
})
