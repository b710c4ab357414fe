// Command redis-example-app is an example Cloud Foundry app for Redis for
// Cloud Foundry: it finds its Redis in VCAP_SERVICES by the tag "redis",
// connects over TLS when the binding offers it, and stores, reads and
// deletes keys over HTTP on $PORT, as Pivotal's cf-redis-example-app does
// (README.md).
//
// Environment: PORT (required; Cloud Foundry sets it), VCAP_SERVICES
// (required; Cloud Foundry sets it), REDIS_SERVICE_NAME (the instance name
// to use when several Redis services are bound), LISTEN_HOST (the address
// to listen on; empty, the default, means every interface, as Cloud Foundry
// needs).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Getenv, os.Stderr, nil))
}

// run starts the app and serves until ctx ends; it returns the exit status.
// Startup errors are written to logOut. ready, when not nil, is called with
// the address the app listens on once it accepts connections.
func run(ctx context.Context, getenv func(string) string, logOut io.Writer, ready func(net.Addr)) int {
	log := slog.New(slog.NewTextHandler(logOut, nil))
	if err := serve(ctx, getenv, log, ready); err != nil {
		log.Error("redis-example-app cannot start", "error", err.Error())
		return 1
	}
	return 0
}

func serve(ctx context.Context, getenv func(string) string, log *slog.Logger, ready func(net.Addr)) error {
	port := getenv("PORT")
	if port == "" {
		return errors.New("PORT is not set: set it to the port to listen on (Cloud Foundry sets it)")
	}
	svc, err := findService(getenv("VCAP_SERVICES"), getenv("REDIS_SERVICE_NAME"))
	if err != nil {
		return err
	}
	opts, desc, err := clientOptions(svc.Credentials)
	if err != nil {
		return fmt.Errorf("service %q (%s): %w", svc.Name, svc.Label, err)
	}
	client := redis.NewClient(opts)
	defer client.Close()
	log.Info("using Redis", "service", svc.Name, "label", svc.Label, "connection", desc)
	// A Redis that is not answering yet is no reason to stop: Cloud Foundry
	// would restart the app in a loop. Say so and answer 502 until it does.
	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if err := client.Ping(pingCtx).Err(); err != nil {
		log.Warn("Redis does not answer yet", "error", err.Error())
	}
	cancel()

	ln, err := net.Listen("tcp", net.JoinHostPort(getenv("LISTEN_HOST"), port))
	if err != nil {
		return fmt.Errorf("listen on PORT %s: %w", port, err)
	}
	srv := &http.Server{
		Handler:           (&app{redis: client, log: log}).handler(),
		ReadHeaderTimeout: 10 * time.Second,
	}
	log.Info("listening", "address", ln.Addr().String())
	if ready != nil {
		ready(ln.Addr())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
