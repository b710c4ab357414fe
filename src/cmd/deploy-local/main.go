// Command deploy-local deploys manifests/redis.yml on this machine, each
// instance a "VM" of its own (network, mount, PID and UTS namespaces with
// their own address and /var/vcap), then runs the smoke-tests and backup
// errands: see package localbosh, and scripts/deploy-local, which runs it.
// It is a development tool, not part of the release.
//
//	deploy-local [-o OPS_FILE]... [-v NAME=VALUE]... [-l VARS_FILE]... [flags]
//	deploy-local --stop    stop every VM, keep disks, credentials and logs
//	deploy-local --down    delete the deployment and everything it made
//
// Backups go to S3 unless --no-s3: it applies
// manifests/operations/backups-s3.yml (unless an -o names it already) and,
// unless a backup_s3_endpoint variable is given, runs MinIO as the
// deployment's S3 (namespace NAME-s3, 10.244.0.3:9000, bucket
// redis-backups) and gives the backup_s3_* variables itself. After the
// backup errand it lists what the bucket holds.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/cf-redis/redis-for-cf/src/internal/buildinfo"
	"github.com/cf-redis/redis-for-cf/src/release/boshrender"
	"github.com/cf-redis/redis-for-cf/src/release/localbosh"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("deploy-local", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var opts localbosh.Options
	var ops, vars, varsFiles list
	fs.Var(&ops, "o", "ops file applied to the manifest (repeatable)")
	fs.Var(&ops, "ops-file", "same as -o")
	fs.Var(&vars, "v", "variable NAME=VALUE for the manifest (repeatable)")
	fs.Var(&vars, "var", "same as -v")
	fs.Var(&varsFiles, "l", "YAML file of variables for the manifest (repeatable)")
	fs.Var(&varsFiles, "vars-file", "same as -l")
	fs.StringVar(&opts.Name, "name", "rcf", "prefix of the deployment's namespaces (1-6 letters and digits)")
	fs.StringVar(&opts.StateDir, "state", "", "state folder (default .local/deploy-local/NAME in the checkout)")
	fs.StringVar(&opts.Manifest, "manifest", "", "deployment manifest (default manifests/redis.yml)")
	fs.StringVar(&opts.RedisPackage, "redis-package", "", "a compiled redis package (a folder with bin/redis-server); default .local/redis-package if present, else Debian's redis-server")
	fs.StringVar(&opts.LDFlags, "ldflags", "", "go build -ldflags for the project's binaries")
	compileRedis := fs.Bool("compile-redis", false, "first compile the redis package from the release's blobs into .local/redis-package (a few minutes)")
	skipErrands := fs.Bool("skip-errands", false, "deploy only: run neither the smoke tests nor the backup errand")
	fs.BoolVar(&opts.S3, "s3", true, "back up to S3: apply manifests/operations/backups-s3.yml (unless an -o names it) and, unless -v/-l give backup_s3_endpoint "+
		"(then give every backup_s3_* variable, for an S3 the VMs reach on 10.244.0.0/24), run MinIO as the deployment's S3 in namespace NAME-s3 at "+
		localbosh.S3Endpoint+" (bucket "+localbosh.S3Bucket+"; stopped with the VMs; data and generated credentials in the state folder until --down) and give the backup_s3_* variables")
	noS3 := fs.Bool("no-s3", false, "same as --s3=false: deploy the manifest as given, no MinIO")
	keep := fs.Bool("keep-on-failure", false, "leave the VMs running when the deploy or an errand fails (default: stop them, keeping disks and logs)")
	down := fs.Bool("down", false, "delete the deployment: stop every VM (drain first), remove its namespaces and its state folder")
	stop := fs.Bool("stop", false, "stop every VM (drain first) and remove its namespaces, keeping disks, credentials and logs")
	showVersion := buildinfo.Flag(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, buildinfo.Line("deploy-local"))
		return 0
	}
	if fs.NArg() > 0 || (*down && *stop) {
		fmt.Fprintln(stderr, "usage: deploy-local [-o OPS_FILE]... [-v NAME=VALUE]... [-l VARS_FILE]... [--name NAME] [--state DIR] | --stop | --down")
		return 2
	}
	if *noS3 {
		opts.S3 = false
	}
	opts.OpsFiles, opts.Vars, opts.VarsFiles = absAll(ops), vars, absAll(varsFiles)
	opts.Out = stdout
	if opts.Manifest != "" {
		opts.Manifest, _ = filepath.Abs(opts.Manifest)
	}
	d, err := localbosh.New(opts)
	if err != nil {
		fmt.Fprintln(stderr, "deploy-local:", err)
		return 2
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()

	switch {
	case *down:
		if err := d.Down(context.WithoutCancel(ctx)); err != nil {
			fmt.Fprintln(stderr, "deploy-local --down:", err)
			return 1
		}
		fmt.Fprintln(stdout, "Deleted: no VM, namespace or process of the deployment is left, and its state folder is removed.")
		return 0
	case *stop:
		if err := d.Stop(context.WithoutCancel(ctx)); err != nil {
			fmt.Fprintln(stderr, "deploy-local --stop:", err)
			return 1
		}
		fmt.Fprintf(stdout, "Stopped: no VM or namespace of the deployment is left; disks, credentials and logs stay in %s.\n", d.StateDir())
		return 0
	}

	if *compileRedis {
		fmt.Fprintln(stdout, "Compiling the redis package from the release's blobs with packages/redis/packaging ...")
		dir, err := d.CompileRedis(ctx)
		if err != nil {
			fmt.Fprintln(stderr, "deploy-local:", err)
			return 1
		}
		fmt.Fprintln(stdout, "  compiled into", dir)
	}
	failed := func(what string, err error) int {
		fmt.Fprintf(stderr, "deploy-local: %s failed: %v\n", what, err)
		if *keep {
			fmt.Fprintf(stdout, "The VMs stay (--keep-on-failure); logs in %s/vms/*/vcap/sys/log. Stop them with scripts/deploy-local --stop.\n", d.StateDir())
			return 1
		}
		fmt.Fprintf(stdout, "Stopping every VM (disks, credentials and logs stay in %s; run again to retry, --down to delete):\n", d.StateDir())
		stopCtx, stopCancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
		defer stopCancel()
		if serr := d.Stop(stopCtx); serr != nil {
			fmt.Fprintln(stderr, "deploy-local: stopping failed too:", serr)
		}
		return 1
	}
	if err := d.Deploy(ctx); err != nil {
		if !d.Touched() {
			fmt.Fprintln(stderr, "deploy-local: deploy failed before it changed any VM; what ran before runs on:", err)
			return 1
		}
		return failed("deploy", err)
	}
	if !*skipErrands {
		if err := errands(ctx, d, stdout); err != nil {
			return failed("errands", err)
		}
	}
	if b, err := d.Broker(); err == nil {
		fmt.Fprintf(stdout, `
The deployment runs. Its network is reachable only from the namespaces it made; apps' view:
  ip netns exec %[1]s curl -s -u %[2]s:"$(go tool bosh-cli int %[3]s --path /redis_broker_password)" -H 'X-Broker-API-Version: 2.14' %[4]s/v2/catalog
Logs: %[5]s/vms/*/vcap/sys/log.  Stop: scripts/deploy-local --stop.  Delete: scripts/deploy-local --down.
`, d.AppsNamespace(), b.Username, filepath.Join(d.StateDir(), "vars.yml"), b.URL, d.StateDir())
		if s3, err := d.S3(); err == nil {
			fmt.Fprintf(stdout, "Backups: MinIO at %s (netns %s), bucket %s; access key id and secret in %s.\n",
				s3.Endpoint, s3.Namespace, s3.Bucket, s3.CredentialsFile)
		}
	}
	return 0
}

// errands runs the smoke tests, the release's errand when the deployment
// has it and deploy-local's own OSB cycle when not, then the backup errand
// when the deployment has it.
func errands(ctx context.Context, d *localbosh.Director, out io.Writer) error {
	var errs []error
	fmt.Fprintln(out, "\nSmoke tests")
	if d.HasErrand("smoke-tests") {
		errs = append(errs, runErrand(ctx, d, "smoke-tests", out))
	} else {
		fmt.Fprintln(out, "  the deployment has no smoke-tests errand: deploy-local's own cycle through the broker instead")
		if err := d.OSBCycle(ctx); err != nil {
			errs = append(errs, fmt.Errorf("smoke tests: %w", err))
		} else {
			fmt.Fprintln(out, "  passed")
		}
	}
	fmt.Fprintln(out, "\nBackup errand")
	switch {
	case !d.HasErrand("backup"):
		fmt.Fprintln(out, "  skipped: the deployment has no backup errand")
	case !backupsOn(d.Manifest()):
		// It would fail, rightly: it says what to configure.
		fmt.Fprintln(out, "  skipped: backups are off (--no-s3): bosh run-errand backup would fail, saying how to turn them on")
	default:
		errs = append(errs, runErrand(ctx, d, "backup", out))
		if s3, err := d.S3(); err == nil {
			objs, err := s3.Objects(ctx)
			if err != nil {
				errs = append(errs, fmt.Errorf("listing the backups in %s: %w", s3.Endpoint, err))
			} else {
				printBackups(out, s3, objs)
			}
		}
	}
	return errors.Join(errs...)
}

// backupsOn reports whether any job of the manifest has backups.enabled.
func backupsOn(m boshrender.Manifest) bool {
	for _, g := range m.InstanceGroups {
		for _, mj := range g.Jobs {
			if b, ok := mj.Properties["backups"].(map[string]any); ok && b["enabled"] == true {
				return true
			}
		}
	}
	return false
}

func runErrand(ctx context.Context, d *localbosh.Director, name string, out io.Writer) error {
	results, err := d.RunErrand(ctx, name)
	for _, r := range results {
		fmt.Fprintf(out, "  %s on %s: exit code %d\n", name, r.Instance, r.ExitCode)
		for _, line := range strings.Split(strings.TrimRight(r.Stdout, "\n"), "\n") {
			if line != "" {
				fmt.Fprintf(out, "    %s\n", line)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("errand %s: %w", name, err)
	}
	return nil
}

// maxListed bounds how many objects printBackups names.
const maxListed = 50

// printBackups shows what the S3 stand-in's bucket holds: every backup
// (the newest maxListed), with its size.
func printBackups(out io.Writer, s3 *localbosh.S3, objs []localbosh.S3Object) {
	var total int64
	for _, o := range objs {
		total += o.Size
	}
	fmt.Fprintf(out, "  s3://%s at %s holds %d objects, %s:\n", s3.Bucket, s3.Endpoint, len(objs), size(total))
	if len(objs) == 0 {
		fmt.Fprintln(out, "    none: no service instance exists yet")
		return
	}
	shown := objs
	if len(shown) > maxListed {
		// Names end in their time: the newest of each instance sort last.
		shown = slices.Clone(objs)
		slices.SortStableFunc(shown, func(a, b localbosh.S3Object) int { return b.LastModified.Compare(a.LastModified) })
		shown = shown[:maxListed]
		slices.SortFunc(shown, func(a, b localbosh.S3Object) int { return strings.Compare(a.Name, b.Name) })
	}
	for _, o := range shown {
		fmt.Fprintf(out, "    %10s  %s  %s\n", size(o.Size), o.LastModified.UTC().Format(time.RFC3339), o.Name)
	}
	if n := len(objs) - len(shown); n > 0 {
		fmt.Fprintf(out, "    ... and %d older ones\n", n)
	}
}

// size says n bytes for people.
func size(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
}

func absAll(paths []string) []string {
	out := make([]string, 0, len(paths))
	for _, p := range paths {
		a, err := filepath.Abs(p)
		if err != nil {
			a = p
		}
		out = append(out, a)
	}
	return out
}
