// Command redis-shared-agent runs on each shared VM: it creates, supervises
// and deletes the VM's redis-server instances for the broker, through an HTTP
// API with basic auth (and TLS when configured).
package main

import (
	"log/slog"
	"os"

	"github.com/cf-redis/redis-for-cf/src/internal/agentcmd"
	"github.com/cf-redis/redis-for-cf/src/internal/sharedagent"
)

func main() {
	var cfg sharedagent.Config
	os.Exit(agentcmd.Command{
		Name:   "redis-shared-agent",
		Config: &cfg,
		API: func() agentcmd.API {
			return agentcmd.API{Listen: cfg.Listen, Credentials: cfg.Credentials, TLS: cfg.TLS, Metrics: cfg.Metrics}
		},
		New: func(logger *slog.Logger) (agentcmd.Agent, []any, error) {
			mgr, err := sharedagent.New(cfg, logger)
			return mgr, []any{"tls", cfg.TLS != nil}, err
		},
		// The API serves while Start recovers the instances.
		ServeDuringStart: true,
	}.Main())
}
