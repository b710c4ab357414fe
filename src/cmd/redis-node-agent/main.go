// Command redis-node-agent runs on each dedicated node: it supervises the
// node's one redis-server and lets the broker claim, bind, update, reset and
// pair the node through an HTTPS API with basic auth.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/agentcmd"
	"github.com/cf-redis/redis-for-cf/src/internal/nodeagent"
	"github.com/cf-redis/redis-for-cf/src/internal/serve"
)

func main() {
	var cfg nodeagent.Config
	os.Exit(agentcmd.Command{
		Name:   "redis-node-agent",
		Config: &cfg,
		New: func(logger *slog.Logger) (agentcmd.Agent, serve.Server, []any, error) {
			// go-redis logs every refused dial of the readiness probes that
			// poll a starting redis-server: debug noise, not warnings.
			redis.SetLogger(redisLogger{logger})
			node, err := nodeagent.New(cfg, logger)
			if err != nil {
				return nil, serve.Server{}, nil, err
			}
			srv := serve.Server{
				Addr:     cfg.Listen,
				Handler:  agentapi.NewHandler(node, cfg.Credentials, logger),
				CertFile: cfg.TLS.CertFile,
				KeyFile:  cfg.TLS.KeyFile,
				Logger:   logger,
			}
			return node, srv, []any{"node", cfg.NodeID}, nil
		},
		// Recovery first (adopting redis-server, finishing an interrupted
		// reset), so the broker never sees a node halfway through it.
		ServeDuringStart: false,
	}.Main())
}

// redisLogger hands go-redis's internal logs to slog at debug level.
type redisLogger struct{ logger *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.logger.DebugContext(ctx, fmt.Sprintf(format, v...), "source", "go-redis")
}
