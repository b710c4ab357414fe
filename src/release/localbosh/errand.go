package localbosh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/cf-redis/redis-for-cf/src/release/boshrender"
)

// ErrNoErrand is returned by RunErrand when no instance group of the
// deployment has the errand's job.
var ErrNoErrand = errors.New("no such errand in the deployment")

// ErrandResult is one run of an errand's bin/run on one instance.
type ErrandResult struct {
	Instance       string
	ExitCode       int
	Stdout, Stderr string
}

// HasErrand reports whether the deployed manifest has an errand name, as
// RunErrand finds it.
func (d *Director) HasErrand(name string) bool {
	if d.loadDeployed() != nil {
		return false
	}
	for _, g := range d.manifest.InstanceGroups {
		if errandJob(g, name) != "" {
			return true
		}
	}
	return false
}

// errandJob is the job that `bosh run-errand name` runs on the group's
// instances: the group's own errand job when the group is an errand group
// named name, else the group's job named name; "" when none.
func errandJob(g boshrender.InstanceGroup, name string) string {
	for _, mj := range g.Jobs {
		if mj.Name == name || (isErrandGroup(g) && g.Name == name && mj.Name != "bpm") {
			return mj.Name
		}
	}
	return ""
}

// RunErrand runs the errand name as `bosh run-errand` does: name is an
// errand instance group's or a job's. An errand group's job runs on a VM of
// its own, made for the run and deleted after it; a job colocated with
// running jobs runs on every instance that has it. It returns each run's
// output; a run that exits non-zero makes the error.
func (d *Director) RunErrand(ctx context.Context, name string) ([]ErrandResult, error) {
	unlock, err := d.lockState()
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := d.loadState(); err != nil {
		return nil, err
	}
	if err := d.loadDeployed(); err != nil {
		return nil, err
	}
	var results []ErrandResult
	var errs []error
	found := false
	for _, g := range d.manifest.InstanceGroups {
		job := errandJob(g, name)
		if job == "" {
			continue
		}
		found = true
		for i := range g.Instances {
			in, err := d.ensureInstance(g, i)
			if err != nil {
				return results, err
			}
			r, err := d.runErrandOn(ctx, in, job, isErrandGroup(g))
			results = append(results, r)
			if err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := d.saveState(); err != nil {
		errs = append(errs, err)
	}
	if !found {
		return nil, fmt.Errorf("%s: %w", name, ErrNoErrand)
	}
	return results, errors.Join(errs...)
}

func (d *Director) runErrandOn(ctx context.Context, in *instanceState, job string, ownVM bool) (ErrandResult, error) {
	r := ErrandResult{Instance: fmt.Sprintf("%s/%d (%s)", in.Group, in.Index, in.ID), ExitCode: -1}
	t := time.Now()
	pid := d.initPid(in)
	if ownVM {
		pkgs, err := d.currentPackages()
		if err != nil {
			return r, err
		}
		jobs, err := d.render(in)
		if err != nil {
			return r, err
		}
		if err := d.writeHosts(); err != nil {
			return r, err
		}
		d.printf("  creating errand VM %s/%d at %s (netns %s)\n", in.Group, in.Index, in.IP, d.vmName(in))
		if err := d.createVM(ctx, in, filepath.Join(pkgs["bpm"].Dir, "bin", "localvm")); err != nil {
			return r, err
		}
		defer func() {
			if err := d.deleteVM(context.WithoutCancel(ctx), in, false); err != nil {
				d.printf("  deleting errand VM %s: %v\n", d.vmName(in), err)
			}
		}()
		dg := digest(jobs, pkgs)
		if err := d.apply(in, jobs, pkgs, dg); err != nil {
			return r, err
		}
		if pid = d.initPid(in); pid == 0 {
			return r, fmt.Errorf("errand VM %s stopped as soon as it started", d.vmName(in))
		}
		if err := d.startJobs(ctx, in, pid); err != nil {
			return r, err
		}
	} else if pid == 0 {
		return r, fmt.Errorf("the VM of %s is not running: deploy first", r.Instance)
	}
	d.printf("  running errand %s on %s\n", job, r.Instance)
	cmd := d.vmCommand(ctx, pid, nil, filepath.Join("/var/vcap/jobs", job, "bin", "run"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r.Stdout, r.Stderr = stdout.String(), stderr.String()
	r.ExitCode = cmd.ProcessState.ExitCode()
	d.printf("    exit code %d (%.1fs)\n", r.ExitCode, time.Since(t).Seconds())
	if err != nil {
		return r, fmt.Errorf("errand %s on %s: %w\n%s", job, r.Instance, err, strings.TrimSpace(r.Stderr))
	}
	return r, nil
}

// currentPackages returns the packages the last Deploy built.
func (d *Director) currentPackages() (map[string]pkg, error) {
	out := map[string]pkg{}
	for _, in := range d.st.Instances {
		if in.Errand {
			continue
		}
		for _, name := range []string{"redis-for-cf", "redis", "bpm"} {
			target, err := readlinkIn(d.vmDir(in), filepath.Join("vcap/packages", name))
			if err != nil {
				continue
			}
			fp := filepath.Base(target)
			out[name] = pkg{Name: name, Fingerprint: fp, Dir: filepath.Join(d.opts.StateDir, "packages", name, fp)}
		}
	}
	for _, name := range []string{"redis-for-cf", "redis", "bpm"} {
		if _, ok := out[name]; !ok {
			return nil, fmt.Errorf("package %s is not deployed: deploy first", name)
		}
	}
	return out, nil
}

// PackageDir returns the folder, in this machine's file system, of the
// package name as the deployed VMs have it: its files are those the VMs'
// /var/vcap/packages/NAME holds (hard links).
func (d *Director) PackageDir(name string) (string, error) {
	if d.st == nil {
		if err := d.loadState(); err != nil {
			return "", err
		}
	}
	pkgs, err := d.currentPackages()
	if err != nil {
		return "", err
	}
	return pkgs[name].Dir, nil
}
