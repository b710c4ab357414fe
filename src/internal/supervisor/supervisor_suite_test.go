package supervisor_test

import (
	"context"
	"fmt"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"
)

func TestSupervisor(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Supervisor Suite")
}

var _ = BeforeSuite(func() {
	// go-redis logs every refused dial, and Ready probes dial before
	// redis-server listens: show those logs only with a failing spec.
	redis.SetLogger(ginkgoLogger{})
})

type ginkgoLogger struct{}

func (ginkgoLogger) Printf(_ context.Context, format string, v ...any) {
	fmt.Fprintf(GinkgoWriter, "go-redis: "+format+"\n", v...)
}
