// Command smoke-tests is the errand that checks a deployed Redis service end
// to end through its broker: for each plan it provisions an instance, binds,
// writes and reads with the binding's credentials, checks that CONFIG GET is
// refused, unbinds and deprovisions, then cleans up whatever a failure left.
//
//	smoke-tests -config FILE
//
// Exit status: 0 every plan passed, 1 a step failed (the last line names the
// plan and step), 2 bad usage or config. No password is ever printed.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"k8s.io/klog/v2"

	"github.com/cf-redis/redis-for-cf/src/internal/buildinfo"
	"github.com/cf-redis/redis-for-cf/src/internal/configfile"
	"github.com/cf-redis/redis-for-cf/src/internal/smoke"
)

func main() { os.Exit(run()) }

func run() int {
	configPath := flag.String("config", "", "path of the errand's JSON config file")
	showVersion := buildinfo.Flag(flag.CommandLine)
	flag.Parse()
	if *showVersion {
		fmt.Println(buildinfo.Line("smoke-tests"))
		return 0
	}
	if *configPath == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: smoke-tests -config FILE")
		return 2
	}
	fmt.Println(buildinfo.Line("smoke-tests"))
	var cfg smoke.Config
	if err := configfile.Load(*configPath, &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "smoke-tests:", err)
		return 2
	}
	// The OSB client logs every error answer through klog ("handling
	// failure responses"); the smoke tests report each failure themselves.
	klog.LogToStderr(false)
	klog.SetOutput(io.Discard)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	report, err := smoke.Run(ctx, &cfg, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "smoke-tests: FAILED:", err)
		return 1
	}
	if len(report.Full) > 0 {
		// Full is the service at work, not broken: the errand passes.
		fmt.Printf("smoke-tests: passed; not tested, as the broker says they are full: %s\n", strings.Join(report.Full, ", "))
		return 0
	}
	fmt.Println("smoke-tests: all plans passed")
	return 0
}
