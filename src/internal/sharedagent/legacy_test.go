package sharedagent_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/portalloc"
	"github.com/cf-redis/redis-for-cf/src/internal/secret"
)

var _ = Describe("a state file written before the one record shape", func() {
	It("loads, and its instance serves its binding and replication users with their old passwords", func(ctx SpecContext) {
		dir := tempDir()
		port, err := portalloc.Next(portalloc.Default, nil, 0, portalloc.Listenable("127.0.0.1"))
		Expect(err).NotTo(HaveOccurred())
		appPw, replPw := secret.New(), secret.New()
		// As the shared agent wrote it before: a binding user is its bare
		// password hash, replication users are kept apart.
		legacy := fmt.Sprintf(`{
  "last_port": %[1]d,
  "instances": {
    "old-1": {
      "id": "old-1",
      "port": %[1]d,
      "maxmemory_bytes": 16777216,
      "parameters": {"maxmemory-policy": "noeviction", "notify-keyspace-events": "", "timeout": 0},
      "admin_password": %[2]q,
      "bindings": {"app": %[3]q},
      "replicators": {"repl-follower": %[4]q},
      "created_at": "2026-11-01T10:00:00Z"
    }
  }
}`, port, secret.New(), secret.Hash(appPw), secret.Hash(replPw))
		Expect(os.WriteFile(filepath.Join(dir, "state.json"), []byte(legacy), 0o600)).To(Succeed())

		a := startAgent(config(dir))
		DeferCleanup(a.stop)
		inst, err := a.client.Get(ctx, "old-1")
		Expect(err).NotTo(HaveOccurred())
		Expect(inst.State).To(Equal(agentapi.StateRunning))
		Expect(inst.Port).To(Equal(port))
		Expect(inst.Bindings).To(Equal([]string{"app", "repl-follower"}))
		app := tenant(inst, "app", appPw)
		Expect(app.Set(ctx, "k", "v", 0).Err()).To(Succeed())
		repl := tenant(inst, "repl-follower", replPw)
		Expect(repl.Get(ctx, "k").Err()).To(MatchError(ContainSubstring("NOPERM")), "still a replication user")
		_, err = a.client.Bind(ctx, "old-1", "repl-follower", agentapi.BindingRequest{Password: replPw, Role: agentapi.RoleReplication})
		Expect(err).NotTo(HaveOccurred(), "the same user again")
		Expect(a.client.Unbind(ctx, "old-1", "repl-follower")).To(Succeed())

		var st struct {
			Instances map[string]map[string]json.RawMessage `json:"instances"`
		}
		data, err := os.ReadFile(filepath.Join(dir, "state.json"))
		Expect(err).NotTo(HaveOccurred())
		Expect(json.Unmarshal(data, &st)).To(Succeed())
		Expect(st.Instances["old-1"]).NotTo(HaveKey("replicators"))
		Expect(string(st.Instances["old-1"]["bindings"])).To(MatchJSON(fmt.Sprintf(`{"app": {"password_hash": %q}}`, secret.Hash(appPw))))
	})
})
