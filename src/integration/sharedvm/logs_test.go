package sharedvm_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

// The Go programs log JSON lines (what bpm writes to JOB.stderr.log); each
// redis-server writes Redis's own log into its own file in the agent's log
// folder.
var _ = Describe("Logs", func() {
	It("are JSON lines from the broker and the agent, and Redis's own lines in redis-ID.log", func() {
		sys := startSystem(systemtest.Options{})
		id := newID("logs")
		sys.provision(id, nil)
		sys.bind(id, newID("bind"))
		for _, p := range []*systemtest.Process{sys.Broker, sys.Agents[0]} {
			lines := strings.Split(strings.TrimSpace(p.Log()), "\n")
			Expect(len(lines)).To(BeNumerically(">", 1), p.Name)
			for _, line := range lines {
				var entry map[string]any
				Expect(json.Unmarshal([]byte(line), &entry)).To(Succeed(), "%s logs %q", p.Name, line)
				Expect(entry).To(HaveKey("time"))
				Expect(entry).To(HaveKey("level"))
				Expect(entry).To(HaveKey("msg"))
			}
		}
		Expect(sys.Agents[0].Log()).To(ContainSubstring(id))
		data, err := os.ReadFile(filepath.Join(sys.agentDir(0), "logs", "redis-"+id+".log"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(data)).To(ContainSubstring("Ready to accept connections"))
		Expect(sys.Agents[0].Log()).NotTo(ContainSubstring("Ready to accept connections"), "redis-server's lines stay out of the agent's log")
	})
})
