// Command redis-node-agent runs on each dedicated node: it supervises the
// node's one redis-server and lets the broker claim, bind, update, reset and
// pair the node through an HTTPS API with basic auth.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/configfile"
	"github.com/cf-redis/redis-for-cf/src/internal/nodeagent"
	"github.com/cf-redis/redis-for-cf/src/internal/nodeapi"
	"github.com/cf-redis/redis-for-cf/src/internal/serve"
)

func main() { os.Exit(run()) }

func run() int {
	configPath := flag.String("config", "", "path of the agent's JSON config file")
	flag.Parse()
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	// go-redis logs every refused dial of the readiness probes that poll a
	// starting redis-server: debug noise, not warnings.
	redis.SetLogger(redisLogger{logger})
	if *configPath == "" {
		fmt.Fprintln(os.Stderr, "usage: redis-node-agent -config FILE")
		return 2
	}
	var cfg nodeagent.Config
	if err := configfile.Load(*configPath, &cfg); err != nil {
		logger.Error("cannot start", "error", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	node, err := nodeagent.New(cfg, logger)
	if err != nil {
		logger.Error("cannot start", "error", err)
		return 1
	}
	// Recovery first (adopting redis-server, finishing an interrupted reset),
	// so the broker never sees a node halfway through it.
	node.Start(ctx)
	// Scheduled backups, when the config has them; the errand is the
	// on-demand path.
	go func() {
		if err := node.RunBackups(ctx); err != nil {
			logger.Error("scheduled backups are off", "error", err)
		}
	}()

	srv := serve.Server{
		Addr:     cfg.Listen,
		Handler:  nodeapi.NewHandler(node, cfg.Credentials, logger),
		CertFile: cfg.TLS.CertFile,
		KeyFile:  cfg.TLS.KeyFile,
		Logger:   logger,
	}
	err = srv.Run(ctx, func(a net.Addr) { logger.Info("serving", "address", a.String(), "node", cfg.NodeID) })
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	node.Shutdown(shutdownCtx)
	if err != nil {
		logger.Error("server failed", "error", err)
		return 1
	}
	logger.Info("stopped")
	return 0
}

// redisLogger hands go-redis's internal logs to slog at debug level.
type redisLogger struct{ logger *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.logger.DebugContext(ctx, fmt.Sprintf(format, v...), "source", "go-redis")
}
