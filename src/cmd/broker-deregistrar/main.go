// Command broker-deregistrar is the errand that removes the Redis service
// broker from Cloud Foundry's Cloud Controller (v3 API). Run it before
// deleting the deployment. It refuses while the broker's plans have service
// instances, unless its config says to purge them from Cloud Controller.
//
//	broker-deregistrar -config FILE
//
// Exit status: 0 done (or nothing was registered), 1 refused or failed (the
// reason is on stderr), 2 bad usage or config.
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
		fmt.Fprintln(os.Stderr, "usage: broker-deregistrar -config FILE")
		return 2
	}
	var cfg registrar.DeregisterConfig
	if err := configfile.Load(*configPath, &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "broker-deregistrar:", err)
		return 2
	}
	cc, err := ccapi.New(cfg.CloudController)
	if err != nil {
		fmt.Fprintln(os.Stderr, "broker-deregistrar:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout())
	defer cancel()
	if err := registrar.Deregister(ctx, cc, &cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "broker-deregistrar: FAILED:", err)
		return 1
	}
	fmt.Println("broker-deregistrar: done")
	return 0
}
