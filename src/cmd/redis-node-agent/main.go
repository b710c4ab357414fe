// Command redis-node-agent runs on each dedicated node: it supervises the
// node's one redis-server and lets the broker claim, bind, update, reset and
// pair the node through an HTTPS API with basic auth.
package main

import (
	"log/slog"
	"os"

	"github.com/cf-redis/redis-for-cf/src/internal/agentcmd"
	"github.com/cf-redis/redis-for-cf/src/internal/nodeagent"
)

func main() {
	var cfg nodeagent.Config
	os.Exit(agentcmd.Command{
		Name:   "redis-node-agent",
		Config: &cfg,
		API: func() agentcmd.API {
			return agentcmd.API{Listen: cfg.Listen, Credentials: cfg.Credentials, TLS: &cfg.TLS, Metrics: cfg.Metrics}
		},
		New: func(logger *slog.Logger) (agentcmd.Agent, []any, error) {
			node, err := nodeagent.New(cfg, logger)
			return node, []any{"node", cfg.NodeID}, err
		},
		// Recovery first (adopting redis-server, finishing an interrupted
		// reset), so the broker never sees a node halfway through it.
		ServeDuringStart: false,
	}.Main())
}
