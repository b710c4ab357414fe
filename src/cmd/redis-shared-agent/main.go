// Command redis-shared-agent runs on each shared VM: it creates, supervises
// and deletes the VM's redis-server instances for the broker, through an HTTP
// API with basic auth (and TLS when configured).
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

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/configfile"
	"github.com/cf-redis/redis-for-cf/src/internal/serve"
	"github.com/cf-redis/redis-for-cf/src/internal/sharedagent"
)

func main() { os.Exit(run()) }

func run() int {
	configPath := flag.String("config", "", "path of the agent's JSON config file")
	flag.Parse()
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if *configPath == "" {
		fmt.Fprintln(os.Stderr, "usage: redis-shared-agent -config FILE")
		return 2
	}
	var cfg sharedagent.Config
	if err := configfile.Load(*configPath, &cfg); err != nil {
		logger.Error("cannot start", "error", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	mgr, err := sharedagent.New(cfg, logger)
	if err != nil {
		logger.Error("cannot start", "error", err)
		return 1
	}
	srv := serve.Server{
		Addr:    cfg.Listen,
		Handler: agentapi.NewHandler(mgr, cfg.Credentials, logger),
		Logger:  logger,
	}
	if cfg.TLS != nil {
		srv.CertFile, srv.KeyFile = cfg.TLS.CertFile, cfg.TLS.KeyFile
	}
	errc := make(chan error, 1)
	go func() {
		errc <- srv.Run(ctx, func(a net.Addr) { logger.Info("serving", "address", a.String(), "tls", cfg.TLS != nil) })
	}()
	mgr.Start(ctx)
	// Scheduled backups, when the config has them; the errand is the
	// on-demand path.
	go func() {
		if err := mgr.RunBackups(ctx); err != nil {
			logger.Error("scheduled backups are off", "error", err)
		}
	}()

	err = <-errc
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	mgr.Shutdown(shutdownCtx)
	if err != nil {
		logger.Error("server failed", "error", err)
		return 1
	}
	logger.Info("stopped")
	return 0
}
