package localbosh

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// installedJobs lists the jobs the VM holds now, in name order.
func (d *Director) installedJobs(in *instanceState) []string {
	entries, _ := os.ReadDir(filepath.Join(d.vmDir(in), "vcap", "jobs"))
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// hasScript reports whether the VM's job has bin/NAME.
func (d *Director) hasScript(in *instanceState, job, name string) bool {
	// The job's link points inside the VM's view; resolve it in the
	// machine's.
	target, err := os.Readlink(filepath.Join(d.vmDir(in), "vcap", "jobs", job))
	if err != nil {
		return false
	}
	rel, err := filepath.Rel("/var/vcap", target)
	if err != nil {
		return false
	}
	return fileExists(filepath.Join(d.vmDir(in), "vcap", rel, "bin", name))
}

// runScript runs a job's bin/NAME in the VM with args, and returns its
// standard output; its standard error is printed, indented.
func (d *Director) runScript(ctx context.Context, in *instanceState, pid int, job, name string, env []string, args ...string) (string, error) {
	cmd := d.vmCommand(ctx, pid, env, filepath.Join("/var/vcap/jobs", job, "bin", name), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	d.indent(stderr.String())
	if err != nil {
		return stdout.String(), fmt.Errorf("%s/%d %s bin/%s: %w\n%s%s", in.Group, in.Index, job, name, err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

func (d *Director) indent(s string) {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return
	}
	for _, line := range strings.Split(s, "\n") {
		d.printf("      | %s\n", line)
	}
}

// startJobs runs every job's pre-start, then monit start (bpm starts the
// processes; each must stay up for Watch), then every job's post-start.
func (d *Director) startJobs(ctx context.Context, in *instanceState, pid int) error {
	jobs := d.installedJobs(in)
	for _, job := range jobs {
		if d.hasScript(in, job, "pre-start") {
			out, err := d.runScript(ctx, in, pid, job, "pre-start", nil)
			d.indent(out)
			if err != nil {
				return err
			}
		}
	}
	cmd := d.vmCommand(ctx, pid, nil, "/var/vcap/bosh/bin/monit", "start", "--watch", d.opts.Watch.String())
	out, err := cmd.CombinedOutput()
	d.indent(string(out))
	if err != nil {
		return fmt.Errorf("%s/%d: monit start: %w%s", in.Group, in.Index, err, monitReason(string(out)))
	}
	for _, job := range jobs {
		if d.hasScript(in, job, "post-start") {
			out, err := d.runScript(ctx, in, pid, job, "post-start", nil)
			d.indent(out)
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// monitReason is the "monit: ..." line of monit's output, which says why it
// failed, for an error message.
func monitReason(out string) string {
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "monit: ") {
			return ": " + strings.TrimPrefix(line, "monit: ")
		}
	}
	return ""
}

// drainLimit bounds how long drain scripts may ask BOSH to wait.
const drainLimit = 10 * time.Minute

// drainAndStop stops the VM's jobs as BOSH does before an update or a
// delete: every job's drain script (with args, e.g. job_changed
// hash_changed), waiting as long as each asks, then monit stop, then every
// job's post-stop.
func (d *Director) drainAndStop(ctx context.Context, in *instanceState, pid int, args ...string) error {
	jobs := d.installedJobs(in)
	for _, job := range jobs {
		if !d.hasScript(in, job, "drain") {
			continue
		}
		start := time.Now()
		a := args
		for {
			out, err := d.runScript(ctx, in, pid, job, "drain", []string{"BOSH_JOB_STATE={}", "BOSH_JOB_NEXT_STATE={}"}, a...)
			if err != nil {
				return err
			}
			n, err := strconv.Atoi(strings.TrimSpace(out))
			if err != nil {
				return fmt.Errorf("%s/%d %s bin/drain printed %q, not an integer", in.Group, in.Index, job, strings.TrimSpace(out))
			}
			wait := time.Duration(max(n, -n)) * time.Second
			if time.Since(start)+wait > drainLimit {
				return fmt.Errorf("%s/%d %s bin/drain asks for more than %s", in.Group, in.Index, job, drainLimit)
			}
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return ctx.Err()
			}
			if n >= 0 {
				break
			}
			// A dynamic drain: asked again until it prints 0 or more.
			a = []string{"job_check_status", "hash_unchanged"}
		}
		d.printf("      drained %s (%.1fs)\n", job, time.Since(start).Seconds())
	}
	out, err := d.vmCommand(ctx, pid, nil, "/var/vcap/bosh/bin/monit", "stop").CombinedOutput()
	d.indent(string(out))
	if err != nil {
		return fmt.Errorf("%s/%d: monit stop: %w", in.Group, in.Index, err)
	}
	for _, job := range jobs {
		if d.hasScript(in, job, "post-stop") {
			out, err := d.runScript(ctx, in, pid, job, "post-stop", nil)
			d.indent(out)
			if err != nil {
				return err
			}
		}
	}
	return nil
}
