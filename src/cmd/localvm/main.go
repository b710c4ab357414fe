// Command localvm is what runs inside a VM of a local deployment
// (scripts/deploy-local) in place of the stemcell's init, monit and bpm
// (package localvm). It is a development tool, not part of the release.
//
//	localvm init --vcap DIR [--disk DIR] [--etc DIR] [--tmp DIR] [--overcommit FILE] [--hostname NAME]
//	    pid 1 of a VM; writes "ready" to file descriptor 3 once its mounts are made
//	localvm bpm start|stop|pid JOB [-p PROCESS]
//	localvm monit start [--watch DURATION] | stop | summary
package main

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
	"github.com/cf-redis/redis-for-cf/src/release/localvm"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

const usage = `usage:
  localvm init --vcap DIR [--disk DIR] [--etc DIR] [--tmp DIR] [--overcommit FILE] [--hostname NAME]
  localvm bpm start|stop|pid JOB [-p PROCESS]
  localvm monit start [--watch DURATION] | stop | summary`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	switch args[0] {
	case "-version", "--version":
		fmt.Fprintln(stdout, buildinfo.Line("localvm"))
		return 0
	case "init":
		return runInit(args[1:], stderr)
	case "bpm":
		return runBPM(args[1:], stdout, stderr)
	case "monit":
		return runMonit(args[1:], stdout, stderr)
	}
	fmt.Fprintln(stderr, usage)
	return 2
}

func runInit(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("localvm init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg localvm.InitConfig
	fs.StringVar(&cfg.Hostname, "hostname", "", "the VM's hostname")
	fs.StringVar(&cfg.Vcap, "vcap", "", "folder mounted on /var/vcap")
	fs.StringVar(&cfg.Disk, "disk", "", "folder mounted on /var/vcap/store (the persistent disk)")
	fs.StringVar(&cfg.Etc, "etc", "", "folder with hosts, resolv.conf and sysctl.d for /etc")
	fs.StringVar(&cfg.Tmp, "tmp", "", "folder mounted on /tmp")
	fs.StringVar(&cfg.Overcommit, "overcommit", "", "file mounted on /proc/sys/vm/overcommit_memory")
	if err := fs.Parse(args); err != nil || cfg.Vcap == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(stderr, "localvm init: must run as pid 1 of a new PID namespace")
		return 2
	}
	ready := os.NewFile(3, "ready")
	if ready == nil {
		fmt.Fprintln(stderr, "localvm init: file descriptor 3 (the ready pipe) is not open")
		return 2
	}
	if err := localvm.Init(cfg, ready); err != nil {
		fmt.Fprintln(stderr, "localvm init:", err)
		return 1
	}
	return 0
}

func runBPM(args []string, stdout, stderr io.Writer) int {
	if len(args) < 2 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	verb, job := args[0], args[1]
	fs := flag.NewFlagSet("bpm "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	proc := fs.String("p", "", "the process (default: all of the job's; for pid, the one named for the job)")
	if err := fs.Parse(args[2:]); err != nil || fs.NArg() > 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	var err error
	switch verb {
	case "start":
		err = localvm.BPMStart(job, *proc, stderr)
	case "stop":
		err = localvm.BPMStop(job, *proc)
	case "pid":
		var pid int
		if pid, err = localvm.BPMPid(job, *proc); err == nil {
			fmt.Fprintln(stdout, pid)
		}
	default:
		fmt.Fprintln(stderr, usage)
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "bpm:", err)
		return 1
	}
	return 0
}

func runMonit(args []string, stdout, stderr io.Writer) int {
	if len(args) < 1 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	fs := flag.NewFlagSet("monit "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	watch := fs.Duration("watch", 2*time.Second, "how long every process must stay up after start")
	if err := fs.Parse(args[1:]); err != nil || fs.NArg() > 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var err error
	switch args[0] {
	case "start":
		err = localvm.MonitStart(ctx, *watch, stderr)
	case "stop":
		err = localvm.MonitStop(ctx, stderr)
	case "summary":
		err = localvm.MonitSummary(stdout)
	default:
		fmt.Fprintln(stderr, usage)
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "monit:", err)
		return 1
	}
	return 0
}
