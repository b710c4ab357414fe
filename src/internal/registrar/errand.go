package registrar

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cf-redis/redis-for-cf/src/internal/buildinfo"
	"github.com/cf-redis/redis-for-cf/src/internal/ccapi"
	"github.com/cf-redis/redis-for-cf/src/internal/configfile"
)

// errandConfig is the config of either errand: *Config or *DeregisterConfig.
type errandConfig interface {
	configfile.Validator
	Timeout() time.Duration
	cloudController() ccapi.Config
}

func (c *Config) cloudController() ccapi.Config           { return c.CloudController }
func (c *DeregisterConfig) cloudController() ccapi.Config { return c.CloudController }

// Main is the main of the errand name (broker-registrar or
// broker-deregistrar): it loads the -config file into cfg, runs do (Register
// or Deregister) against its Cloud Controller within the config's time
// limit, and reports the outcome. It returns the exit status: 0 done, 1 do
// failed (the reason is on stderr), 2 bad usage or config.
func Main[C errandConfig](name string, cfg C, do func(context.Context, *ccapi.Client, C, io.Writer) error) int {
	configPath := flag.String("config", "", "path of the errand's JSON config file")
	showVersion := buildinfo.Flag(flag.CommandLine)
	flag.Parse()
	if *showVersion {
		fmt.Println(buildinfo.Line(name))
		return 0
	}
	if *configPath == "" || flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "usage: %s -config FILE\n", name)
		return 2
	}
	fmt.Println(buildinfo.Line(name))
	if err := configfile.Load(*configPath, cfg); err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		return 2
	}
	cc, err := ccapi.New(cfg.cloudController())
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout())
	defer cancel()
	if err := do(ctx, cc, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, name+": FAILED:", err)
		return 1
	}
	fmt.Println(name + ": done")
	return 0
}
