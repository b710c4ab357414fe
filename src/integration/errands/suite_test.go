// Package errands_test proves the errands end to end, as their binaries
// (built with the race detector) run on an errand VM:
//
//   - smoke-tests against a real system (broker, shared agent, dedicated
//     node, redis-servers) from package systemtest, healthy and then broken
//     by killing the shared agent;
//   - broker-registrar and broker-deregistrar against a fake Cloud
//     Controller and UAA (package ccapitest: Cloud Controller cannot run
//     here), which reads the catalog of a real broker as Cloud Controller
//     would.
//
// Every Describe starts what it needs and stops it when it ends, failed or
// not, checking that no process is left behind.
package errands_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/internal/portalloc"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemspec"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

func TestErrands(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Errands integration suite")
}

// errandBins are the errands' binaries.
type errandBins struct {
	SmokeTests, Registrar, Deregistrar string
}

var (
	bins    systemtest.Binaries
	errands errandBins
)

// redisPorts is where this suite's agents put redis-servers: a range of its
// own, outside the kernel's ephemeral range and the other suites' ranges,
// so suites running side by side do not meet.
var redisPorts = portalloc.Range{Min: 26000, Max: 26499}

var _ = BeforeSuite(func() {
	SetDefaultEventuallyTimeout(20 * time.Second)
	SetDefaultEventuallyPollingInterval(50 * time.Millisecond)
	dir := GinkgoT().TempDir()
	// The errands build while the system's programs do.
	done := make(chan error, 1)
	go func() {
		cmd := exec.Command("go", "build", "-race", "-o", dir+"/",
			"github.com/cf-redis/redis-for-cf/src/cmd/smoke-tests",
			"github.com/cf-redis/redis-for-cf/src/cmd/broker-registrar",
			"github.com/cf-redis/redis-for-cf/src/cmd/broker-deregistrar")
		out, err := cmd.CombinedOutput()
		if err != nil {
			err = errors.New(err.Error() + "\n" + string(out))
		}
		done <- err
	}()
	var err error
	bins, err = systemtest.Build(GinkgoT().TempDir(), true)
	Expect(err).NotTo(HaveOccurred())
	Expect(<-done).To(Succeed())
	errands = errandBins{
		SmokeTests:  filepath.Join(dir, "smoke-tests"),
		Registrar:   filepath.Join(dir, "broker-registrar"),
		Deregistrar: filepath.Join(dir, "broker-deregistrar"),
	}
})

// result is how an errand ended.
type result struct {
	Code           int
	Stdout, Stderr string
}

// Output is everything the errand wrote, as `bosh run-errand` shows it.
func (r result) Output() string { return r.Stdout + r.Stderr }

// runErrand writes config as the errand's config file and runs it, with
// env added to this process's environment.
func runErrand(bin string, config any, env ...string) result {
	GinkgoHelper()
	data, err := json.MarshalIndent(config, "", "  ")
	Expect(err).NotTo(HaveOccurred())
	path := filepath.Join(GinkgoT().TempDir(), "config.json")
	Expect(os.WriteFile(path, data, 0o600)).To(Succeed())
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, "-config", path)
	// The race detector's runtime sleeps a second before a clean exit,
	// waiting for reports a short-lived errand does not need.
	cmd.Env = append(append(os.Environ(), "GORACE=atexit_sleep_ms=0"), env...)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	start := time.Now()
	err = cmd.Run()
	took := time.Since(start)
	r := result{Stdout: stdout.String(), Stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		r.Code = exit.ExitCode()
	default:
		Fail("running " + bin + ": " + err.Error())
	}
	GinkgoWriter.Printf("--- %s exited %d after %s\n%s\n", filepath.Base(bin), r.Code, took.Round(time.Millisecond), r.Output())
	Expect(r.Output()).NotTo(ContainSubstring("DATA RACE"))
	return r
}

// startSystem starts a system (systemspec.Start) whose agents put
// redis-servers in redisPorts.
func startSystem(opts systemtest.Options) *systemtest.System {
	GinkgoHelper()
	opts.PortRange = redisPorts
	return systemspec.Start(bins, opts)
}
