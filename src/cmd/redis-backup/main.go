// Command redis-backup is the backup errand of Redis for Cloud Foundry and
// the operator's restore tool. It runs on a shared VM or a dedicated node
// and works through the local agents' APIs, so the instances' admin
// passwords never leave the agents.
//
//	redis-backup -config FILE
//	    back up every instance of the agents and nodes in FILE; one line per
//	    instance and a summary; exit status 1 if any failed, after all were
//	    tried.
//	redis-backup restore -config FILE --instance ID --from BACKUP
//	    restore instance ID from BACKUP: a backup's object name, its time
//	    (or the start of it), "latest", or a local .tar.gz file.
//	redis-backup list -config FILE --instance ID
//	    list the backups of instance ID, newest first.
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
	"time"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/backup"
	"github.com/cf-redis/redis-for-cf/src/internal/buildinfo"
	"github.com/cf-redis/redis-for-cf/src/internal/configfile"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

const usage = `usage:
  redis-backup -config FILE                                   back up every instance
  redis-backup restore -config FILE --instance ID --from BACKUP [--allow-other-instance]
  redis-backup list -config FILE --instance ID`

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "backup"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("redis-backup "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "path of the errand's JSON config file")
	instance := fs.String("instance", "", "the instance to restore or list")
	from := fs.String("from", "", `the backup to restore: an object name, a time (or the start of one), "latest", or a local .tar.gz file`)
	allowOther := fs.Bool("allow-other-instance", false, "restore a backup taken of another instance")
	showVersion := buildinfo.Flag(fs)
	err := fs.Parse(args)
	if err == nil && *showVersion {
		fmt.Fprintln(stdout, buildinfo.Line("redis-backup"))
		return 0
	}
	if err != nil || *configPath == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	fmt.Fprintln(stdout, buildinfo.Line("redis-backup"))
	var cfg backup.ErrandConfig
	if err := configfile.Load(*configPath, &cfg); err != nil {
		fmt.Fprintln(stderr, "redis-backup:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	switch cmd {
	case "backup":
		return runBackup(ctx, &cfg, stdout, stderr)
	case "restore":
		if *instance == "" || *from == "" {
			fmt.Fprintln(stderr, usage)
			return 2
		}
		return runRestore(ctx, &cfg, *instance, *from, *allowOther, stdout, stderr)
	case "list":
		if *instance == "" {
			fmt.Fprintln(stderr, usage)
			return 2
		}
		return runList(ctx, &cfg, *instance, stdout, stderr)
	default:
		fmt.Fprintln(stderr, usage)
		return 2
	}
}

func runBackup(ctx context.Context, cfg *backup.ErrandConfig, stdout, stderr io.Writer) int {
	st, err := cfg.Destination.Open()
	if err != nil {
		fmt.Fprintln(stderr, "redis-backup: destination:", err)
		return 2
	}
	sources, err := cfg.Sources()
	if err != nil {
		fmt.Fprintln(stderr, "redis-backup:", err)
		return 2
	}
	r := backup.Runner{Store: st, Prefix: cfg.Destination.PathPrefix, Retention: cfg.Retention, Out: stdout}
	if sum := r.Run(ctx, sources); sum.Failed() > 0 {
		return 1
	}
	return 0
}

func runRestore(ctx context.Context, cfg *backup.ErrandConfig, id, from string, allowOther bool, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintf(stdout, "restore of instance %s: FAILED: %v\n", id, err)
		return 1
	}
	target, err := cfg.Target(ctx, id)
	if err != nil {
		return fail(err)
	}
	src, where, err := cfg.OpenBackup(ctx, id, from, allowOther)
	if err != nil {
		return fail(err)
	}
	defer src.Close()
	req := agentapi.RestoreRequest{FromInstance: id}
	if allowOther {
		req.FromInstance = ""
	}
	start := time.Now()
	body := &counter{r: src}
	res, err := target.Restore(ctx, req, body)
	if err != nil {
		return fail(fmt.Errorf("from %s on %s: %w", where, target.Name, err))
	}
	fmt.Fprintf(stdout, "restore of instance %s (%s): ok, from %s (backup of %s taken %s), %d keys, %.1f MB in %s\n",
		id, target.Name, where, res.Backup.InstanceID, res.Backup.CreatedAt.Format(time.RFC3339), res.Keys,
		float64(body.n)/1e6, time.Since(start).Round(time.Millisecond))
	return 0
}

func runList(ctx context.Context, cfg *backup.ErrandConfig, id string, stdout, stderr io.Writer) int {
	st, err := cfg.Destination.Open()
	if err != nil {
		fmt.Fprintln(stderr, "redis-backup: destination:", err)
		return 2
	}
	backups, err := backup.List(ctx, st, cfg.Destination.PathPrefix, id)
	if err != nil {
		fmt.Fprintln(stderr, "redis-backup:", err)
		return 1
	}
	fmt.Fprintf(stdout, "%d backups of instance %s in %s\n", len(backups), id, st.Where(backup.InstancePrefix(cfg.Destination.PathPrefix, id)))
	for _, b := range backups {
		fmt.Fprintf(stdout, "%s  %10.1f MB  %s\n", b.Stamp, float64(b.Size)/1e6, b.Name)
	}
	return 0
}

type counter struct {
	r io.Reader
	n int64
}

func (c *counter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
