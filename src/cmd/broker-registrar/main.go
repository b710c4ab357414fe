// Command broker-registrar is the errand that registers the Redis service
// broker with Cloud Foundry's Cloud Controller (v3 API), or updates its
// registration, and opens its plans to every org or to a list of orgs. Run
// it after every deploy: it is idempotent.
//
//	broker-registrar -config FILE
//
// Exit status: 0 done, 1 Cloud Controller or UAA refused or could not be
// reached (the reason is on stderr), 2 bad usage or config.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/cf-redis/redis-for-cf/src/internal/ccapi"
	"github.com/cf-redis/redis-for-cf/src/internal/configfile"
	"github.com/cf-redis/redis-for-cf/src/internal/registrar"
)

func main() { os.Exit(run()) }

func run() int {
	configPath := flag.String("config", "", "path of the errand's JSON config file")
	flag.Parse()
	if *configPath == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: broker-registrar -config FILE")
		return 2
	}
	var cfg registrar.Config
	if err := configfile.Load(*configPath, &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "broker-registrar:", err)
		return 2
	}
	cc, err := ccapi.New(cfg.CloudController)
	if err != nil {
		fmt.Fprintln(os.Stderr, "broker-registrar:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout())
	defer cancel()
	if err := registrar.Register(ctx, cc, &cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "broker-registrar: FAILED:", err)
		return 1
	}
	fmt.Println("broker-registrar: done")
	return 0
}
