package nodeagent_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/secret"
)

var _ = Describe("a state file written before the one record shape", func() {
	It("loads, and the node serves its claimed instance with the old credentials", func(ctx SpecContext) {
		cfg := nodeConfig(tempDir(), "127.0.0.1")
		Expect(os.MkdirAll(cfg.DataDir, 0o700)).To(Succeed())
		appPw, replPw := secret.New(), secret.New()
		// As the node agent wrote it before: the claim's fields at the top,
		// the claim's time as claimed_at.
		legacy := fmt.Sprintf(`{
  "state": "claimed",
  "instance_id": "old-1",
  "parameters": {"maxmemory-policy": "allkeys-lru", "notify-keyspace-events": "", "timeout": 0},
  "admin_password": %q,
  "bindings": {
    "app": {"password_hash": %q},
    "repl-follower": {"password_hash": %q, "role": "replication"}
  },
  "claimed_at": "2026-11-01T10:00:00Z"
}`, secret.New(), secret.Hash(appPw), secret.Hash(replPw))
		Expect(os.WriteFile(filepath.Join(cfg.DataDir, "state.json"), []byte(legacy), 0o600)).To(Succeed())

		nd := startNode(cfg)
		Expect(nd.node(ctx)).To(Equal(agentapi.Node{NodeID: "node-127-0-0-1", State: agentapi.NodeClaimed, InstanceID: "old-1"}))
		inst := nd.get(ctx, "old-1")
		Expect(inst.Bindings).To(Equal([]string{"app", "repl-follower"}))
		Expect(inst.Parameters.MaxMemoryPolicy).To(Equal("allkeys-lru"))
		Expect(inst.MaxMemoryBytes).To(Equal(int64(64 << 20)))
		app := nd.tenant("app", appPw)
		Expect(app.Set(ctx, "k", "v", 0).Err()).To(Succeed())
		Expect(nd.tenant("repl-follower", replPw).Get(ctx, "k").Err()).To(MatchError(ContainSubstring("NOPERM")))

		a, err := nd.client.Snapshot(ctx, "old-1", agentapi.SnapshotRequest{})
		Expect(err).NotTo(HaveOccurred(), "the claim's time carried over, so the snapshot knows its instance")
		var buf bytes.Buffer
		_, err = buf.ReadFrom(a)
		Expect(err).NotTo(HaveOccurred())
		Expect(a.Close()).To(Succeed())

		var st map[string]json.RawMessage
		data, err := os.ReadFile(filepath.Join(cfg.DataDir, "state.json"))
		Expect(err).NotTo(HaveOccurred())
		Expect(json.Unmarshal(data, &st)).To(Succeed())
		Expect(st).NotTo(HaveKey("claimed_at"))
		Expect(string(st["created_at"])).To(Equal(`"2026-11-01T10:00:00Z"`))
		Expect(string(st["id"])).To(Equal(`"old-1"`))

		Expect(nd.client.Delete(ctx, "old-1")).To(Succeed())
		Expect(nd.tenant("app", appPw).Ping(ctx).Err()).To(MatchError(ContainSubstring("WRONGPASS")))
	})
})
