package backup

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/store"
)

// Source is a VM whose instances are backed up: a shared agent or a
// dedicated node, reached over its API (the errand) or in the same process
// (an agent's schedule).
type Source struct {
	// Name says where the instances are, for messages: "agent shared-0".
	Name string
	// Instances lists the source's instances: those being deleted are left
	// out, and those with a BackupSkip are left to another member of their
	// HA group, with a line saying so.
	Instances func(ctx context.Context) ([]agentapi.Instance, error)
	// Snapshot returns a consistent snapshot of one instance as a tar.gz
	// stream; reading it to the end without error means the archive is
	// whole. The caller closes it.
	Snapshot func(ctx context.Context, id string) (io.ReadCloser, error)
}

// Runner backs up every instance of its sources. The zero value is not
// usable: Store is required.
type Runner struct {
	Store store.Store
	// Prefix is the destination's path prefix.
	Prefix    string
	Retention Retention
	// Out receives one line per instance and a summary; nil discards them.
	Out io.Writer
	// Now returns the time; nil means time.Now.
	Now func() time.Time
	// Record, when set, receives every instance's Result as Backup ends
	// (but for one that failed because its context ended): an agent's
	// metrics keep the last of each (agentmetrics.Backups).
	Record func(Result)
}

// Result is the outcome of one instance's backup.
type Result struct {
	Instance string
	Source   string
	// Object is the backup's name; Where is its location for people.
	Object, Where string
	Bytes         int64
	Started       time.Time
	Duration      time.Duration
	// Pruned are the old backups deleted after this one succeeded.
	Pruned []string
	Err    error
	// Found marks the newest backup already in the destination (made by
	// an earlier run, before the agent started, or by the backup errand),
	// as Schedule.Run reports it: not an attempt of this run. Started is
	// the time in its name; Duration is 0.
	Found bool
}

// Summary is the outcome of a run.
type Summary struct {
	Results []Result
	// SourceErrors are sources whose instances could not be listed.
	SourceErrors []error
	// Skipped are the instances a source left to another member of their
	// HA group, as "id (source)".
	Skipped  []string
	Duration time.Duration
}

// Failed counts the instances and sources that failed.
func (s Summary) Failed() int {
	n := len(s.SourceErrors)
	for _, r := range s.Results {
		if r.Err != nil {
			n++
		}
	}
	return n
}

func (r *Runner) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Runner) printf(format string, args ...any) {
	if r.Out != nil {
		fmt.Fprintf(r.Out, format+"\n", args...)
	}
}

// Run backs up every instance of every source, one at a time, going on
// after failures, and prints a line per instance and a summary.
func (r *Runner) Run(ctx context.Context, sources []Source) Summary {
	start := r.now()
	var sum Summary
	for _, src := range sources {
		list, err := src.Instances(ctx)
		if err != nil {
			err = fmt.Errorf("%s: cannot list its instances: %w", src.Name, err)
			r.printf("%s: FAILED: %v", src.Name, err)
			sum.SourceErrors = append(sum.SourceErrors, err)
			continue
		}
		for _, inst := range list {
			switch {
			case inst.State == agentapi.StateDeleting:
			case inst.BackupSkip != "":
				r.printf("backup of instance %s (%s): skipped, another member of its HA group backs it up: %s", inst.ID, src.Name, inst.BackupSkip)
				sum.Skipped = append(sum.Skipped, fmt.Sprintf("%s (%s)", inst.ID, src.Name))
			default:
				sum.Results = append(sum.Results, r.Backup(ctx, src, inst.ID))
			}
		}
	}
	sum.Duration = r.now().Sub(start)
	var bytes int64
	var failed []string
	for _, res := range sum.Results {
		bytes += res.Bytes
		if res.Err != nil {
			failed = append(failed, res.Instance)
		}
	}
	line := fmt.Sprintf("backup finished: %d of %d instances backed up", len(sum.Results)-len(failed), len(sum.Results))
	if len(failed) > 0 {
		line += fmt.Sprintf(", %d failed (%s)", len(failed), strings.Join(failed, ", "))
	}
	if n := len(sum.Skipped); n > 0 {
		line += fmt.Sprintf(", %d left to another member of their HA group", n)
	}
	if n := len(sum.SourceErrors); n > 0 {
		line += fmt.Sprintf(", %d VMs could not be asked for their instances", n)
	}
	r.printf("%s; %s in %s", line, megabytes(bytes), sum.Duration.Round(time.Millisecond))
	return sum
}

// Backup backs up one instance: its snapshot streams from the source into
// the store under a name of the time it started, and older backups are
// pruned once it succeeded. It prints one line.
func (r *Runner) Backup(ctx context.Context, src Source, id string) Result {
	res := Result{Instance: id, Source: src.Name, Started: r.now().UTC()}
	res.Object = ObjectName(r.Prefix, id, res.Started)
	res.Where = r.Store.Where(res.Object)
	res.Bytes, res.Err = r.upload(ctx, src, id, res.Object)
	res.Duration = r.now().Sub(res.Started)
	if r.Record != nil && !(res.Err != nil && ctx.Err() != nil) {
		// A backup cut short because its caller stopped (the agent shutting
		// down) is neither a success nor the destination's failure.
		defer func() { r.Record(res) }()
	}
	if res.Err != nil {
		if !strings.Contains(res.Err.Error(), "deleted during its backup") && gone(ctx, src, id) {
			res.Err = fmt.Errorf("%w (the instance was deleted during its backup)", res.Err)
		}
		r.printf("backup of instance %s (%s): FAILED, started %s, after %s: %v",
			id, src.Name, res.Started.Format(time.RFC3339), res.Duration.Round(time.Millisecond), res.Err)
		return res
	}
	pruned, err := Prune(ctx, r.Store, r.Prefix, id, r.Retention, r.now())
	res.Pruned = pruned
	note := ""
	if len(pruned) > 0 {
		note = fmt.Sprintf(", %d older backups deleted", len(pruned))
	}
	if err != nil {
		note += fmt.Sprintf(", deleting older backups failed: %v", err)
	}
	r.printf("backup of instance %s (%s): ok, started %s, %s in %s (%s/s), %s%s",
		id, src.Name, res.Started.Format(time.RFC3339), megabytes(res.Bytes), res.Duration.Round(time.Millisecond),
		megabytes(int64(float64(res.Bytes)/max(res.Duration.Seconds(), 0.001))), res.Where, note)
	return res
}

func (r *Runner) upload(ctx context.Context, src Source, id, name string) (int64, error) {
	body, err := src.Snapshot(ctx, id)
	if err != nil {
		return 0, err
	}
	defer body.Close()
	return r.Store.Put(ctx, name, body)
}

// gone reports whether the source no longer lists instance id.
func gone(ctx context.Context, src Source, id string) bool {
	list, err := src.Instances(ctx)
	return err == nil && !slices.ContainsFunc(list, func(i agentapi.Instance) bool { return i.ID == id })
}

func megabytes(n int64) string {
	return fmt.Sprintf("%.1f MB", float64(n)/1e6)
}
