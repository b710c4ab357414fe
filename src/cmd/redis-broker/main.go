// Command redis-broker serves the Open Service Broker API of Redis for Cloud
// Foundry: Cloud Controller calls it to create, bind, update and delete Redis
// instances, which it places on the shared VMs' agents and the dedicated
// VMs' nodes.
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

	"github.com/cf-redis/redis-for-cf/src/internal/broker"
	"github.com/cf-redis/redis-for-cf/src/internal/buildinfo"
	"github.com/cf-redis/redis-for-cf/src/internal/configfile"
	"github.com/cf-redis/redis-for-cf/src/internal/metrics"
	"github.com/cf-redis/redis-for-cf/src/internal/serve"
)

func main() { os.Exit(run()) }

func run() int {
	configPath := flag.String("config", "", "path of the broker's JSON config file")
	showVersion := buildinfo.Flag(flag.CommandLine)
	flag.Parse()
	if *showVersion {
		fmt.Println(buildinfo.Line("redis-broker"))
		return 0
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{ReplaceAttr: broker.RedactAttr}))
	if *configPath == "" {
		fmt.Fprintln(os.Stderr, "usage: redis-broker -config FILE")
		return 2
	}
	logger.Info("starting", "version", buildinfo.Version())
	var cfg broker.Config
	if err := configfile.Load(*configPath, &cfg); err != nil {
		logger.Error("cannot start", "error", err)
		return 2
	}
	clients, err := broker.NewClients(cfg)
	if err != nil {
		logger.Error("cannot start", "error", err)
		return 2
	}
	// Private, also when an earlier version (or BOSH) made it 0755: it holds
	// every instance's record.
	err = os.MkdirAll(cfg.StateDir, 0o700)
	if err == nil {
		err = os.Chmod(cfg.StateDir, 0o700)
	}
	if err != nil {
		logger.Error("cannot start", "error", err)
		return 1
	}
	b, err := broker.New(cfg, clients, logger)
	if err != nil {
		logger.Error("cannot start", "error", err)
		return 1
	}
	reg := metrics.NewRegistry()
	if err := b.RegisterMetrics(reg); err != nil {
		logger.Error("cannot start", "error", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	b.Run(ctx)
	srv := serve.Server{Addr: cfg.Listen, Handler: b.Handler(), Logger: logger}
	if cfg.TLS != nil {
		srv.CertFile, srv.KeyFile = cfg.TLS.CertFile, cfg.TLS.KeyFile
	}
	// The metrics endpoint lives and dies with the OSB API: either one
	// failing stops both.
	metricsDone := make(chan error, 1)
	go func() {
		err := cfg.Metrics.Serve(ctx, reg, logger, func(a net.Addr) { logger.Info("serving metrics", "address", a.String()) })
		if err != nil {
			stop()
		}
		metricsDone <- err
	}()
	err = srv.Run(ctx, func(a net.Addr) { logger.Info("serving", "address", a.String(), "tls", cfg.TLS != nil) })
	// Background resets end with ctx; a reset in flight finishes first.
	stop()
	b.Wait()
	if mErr := <-metricsDone; mErr != nil {
		logger.Error("metrics server failed", "error", mErr)
		return 1
	}
	if err != nil {
		logger.Error("server failed", "error", err)
		return 1
	}
	logger.Info("stopped")
	return 0
}
