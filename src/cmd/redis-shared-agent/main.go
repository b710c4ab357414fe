// Command redis-shared-agent runs on each shared VM: it creates, supervises
// and deletes the VM's redis-server instances for the broker, through an HTTP
// API with basic auth (and TLS when configured).
package main

import (
	"log/slog"
	"os"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/agentcmd"
	"github.com/cf-redis/redis-for-cf/src/internal/serve"
	"github.com/cf-redis/redis-for-cf/src/internal/sharedagent"
)

func main() {
	var cfg sharedagent.Config
	os.Exit(agentcmd.Command{
		Name:   "redis-shared-agent",
		Config: &cfg,
		New: func(logger *slog.Logger) (agentcmd.Agent, serve.Server, []any, error) {
			mgr, err := sharedagent.New(cfg, logger)
			if err != nil {
				return nil, serve.Server{}, nil, err
			}
			srv := serve.Server{
				Addr:    cfg.Listen,
				Handler: agentapi.NewHandler(mgr, cfg.Credentials, logger),
				Logger:  logger,
			}
			if cfg.TLS != nil {
				srv.CertFile, srv.KeyFile = cfg.TLS.CertFile, cfg.TLS.KeyFile
			}
			return mgr, srv, []any{"tls", cfg.TLS != nil}, nil
		},
		// The API serves while Start recovers the instances.
		ServeDuringStart: true,
	}.Main())
}
