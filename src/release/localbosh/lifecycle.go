package localbosh

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// digest identifies what an instance runs: its rendered jobs and the
// fingerprints of their packages. An instance whose digest did not change
// is not updated.
func digest(jobs []renderedJob, pkgs map[string]pkg) string {
	h := sha256.New()
	for _, j := range jobs {
		fmt.Fprintf(h, "job %s\x00", j.Name)
		for _, path := range sortedKeys(j.Files) {
			fmt.Fprintf(h, "%s\x00%s\x00", path, j.Files[path])
		}
		for _, p := range j.Packages {
			fmt.Fprintf(h, "package %s %s\x00", p, pkgs[p].Fingerprint)
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// apply installs the jobs and their packages in the VM as the BOSH agent
// does: packages in /var/vcap/data/packages/NAME/FINGERPRINT and jobs in
// /var/vcap/data/jobs/NAME/DIGEST, each linked from /var/vcap/packages/NAME
// and /var/vcap/jobs/NAME; scripts under bin/ executable. What the VM
// held before and no longer uses is removed.
func (d *Director) apply(in *instanceState, jobs []renderedJob, pkgs map[string]pkg, dg string) error {
	vcap := filepath.Join(d.vmDir(in), "vcap")
	// localvm (monit's and bpm's stand-ins) is on every VM, as the
	// stemcell's monit is, whether a job needs bpm or not.
	usedPkgs := map[string]bool{"bpm": true}
	for _, j := range jobs {
		for _, p := range j.Packages {
			usedPkgs[p] = true
		}
	}
	for _, name := range sortedKeys(usedPkgs) {
		p, ok := pkgs[name]
		if !ok {
			return fmt.Errorf("no package %s (only %v are built here)", name, sortedKeys(pkgs))
		}
		dst := filepath.Join(vcap, "data/packages", name, p.Fingerprint)
		if !fileExists(dst) {
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			if err := linkTree(p.Dir, dst); err != nil {
				return err
			}
		}
		if err := symlinkAtomic(filepath.Join("/var/vcap/data/packages", name, p.Fingerprint), filepath.Join(vcap, "packages", name)); err != nil {
			return err
		}
	}
	usedJobs := map[string]bool{}
	for _, j := range jobs {
		usedJobs[j.Name] = true
		dir := filepath.Join(vcap, "data/jobs", j.Name, dg)
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
		for path, content := range j.Files {
			mode := os.FileMode(0o644)
			if strings.HasPrefix(path, "bin/") {
				mode = 0o755
			}
			if strings.HasPrefix(path, "config/") {
				mode = 0o640
			}
			dst := filepath.Join(dir, path)
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(dst, []byte(content), mode); err != nil {
				return err
			}
		}
		for _, p := range j.Packages {
			if err := os.MkdirAll(filepath.Join(dir, "packages"), 0o755); err != nil {
				return err
			}
			if err := os.Symlink(filepath.Join("/var/vcap/packages", p), filepath.Join(dir, "packages", p)); err != nil {
				return err
			}
		}
		if err := symlinkAtomic(filepath.Join("/var/vcap/data/jobs", j.Name, dg), filepath.Join(vcap, "jobs", j.Name)); err != nil {
			return err
		}
	}
	// What the VM no longer runs.
	prune := func(linkDir, dataDir string, used map[string]bool, keep func(name string) string) error {
		entries, _ := os.ReadDir(filepath.Join(vcap, linkDir))
		for _, e := range entries {
			if !used[e.Name()] {
				if err := os.Remove(filepath.Join(vcap, linkDir, e.Name())); err != nil {
					return err
				}
			}
		}
		names, _ := os.ReadDir(filepath.Join(vcap, dataDir))
		for _, n := range names {
			versions, _ := os.ReadDir(filepath.Join(vcap, dataDir, n.Name()))
			for _, v := range versions {
				if !used[n.Name()] || v.Name() != keep(n.Name()) {
					if err := os.RemoveAll(filepath.Join(vcap, dataDir, n.Name(), v.Name())); err != nil {
						return err
					}
				}
			}
		}
		return nil
	}
	if err := prune("jobs", "data/jobs", usedJobs, func(string) string { return dg }); err != nil {
		return err
	}
	return prune("packages", "data/packages", usedPkgs, func(name string) string { return pkgs[name].Fingerprint })
}

// symlinkAtomic points link at target, replacing what link was.
func symlinkAtomic(target, link string) error {
	tmp := link + ".new"
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	return os.Rename(tmp, link)
}

// Deploy deploys the manifest, or updates the deployment to it: it
// renders every job, builds the packages, makes the network and each
// missing VM, and updates every instance whose jobs or packages changed,
// group by group in manifest order, one instance at a time. An instance
// that no longer is in the manifest is drained and deleted, with its disk.
func (d *Director) Deploy(ctx context.Context) error {
	if err := checkHost(); err != nil {
		return err
	}
	unlock, err := d.lockState()
	if err != nil {
		return err
	}
	defer unlock()
	if err := d.loadState(); err != nil {
		return err
	}
	d.touched = false
	start := time.Now()
	if err := d.prepareS3(); err != nil {
		return err
	}
	if err := d.loadManifest(ctx); err != nil {
		return err
	}
	d.printf("Deploying %q locally: namespaces %s-*, state in %s\n", d.manifest.Name, d.opts.Name, d.opts.StateDir)
	d.printf("  manifest %s interpolated (variables in %s)\n", relTo(d.opts.ReleaseDir, d.opts.Manifest), filepath.Join(d.opts.StateDir, "vars.yml"))
	switch {
	case d.s3.minio:
		d.printf("  backups to S3 (%s): deploy-local's MinIO at %s, bucket %s\n", BackupsOpsFile, S3Endpoint, S3Bucket)
	case d.opts.S3:
		d.printf("  backups to S3 (%s): the backup_s3_* variables given\n", BackupsOpsFile)
	}
	gone, err := d.planInstances()
	if err != nil {
		return err
	}
	if err := d.saveState(); err != nil {
		return err
	}
	for _, in := range gone {
		d.touched = true
		d.printf("  deleting %s/%d (%s): no longer in the manifest\n", in.Group, in.Index, in.ID)
		if err := d.deleteVM(ctx, in, true); err != nil {
			return err
		}
	}
	if err := d.ensureNetwork(ctx); err != nil {
		return err
	}

	type work struct {
		in   *instanceState
		jobs []renderedJob
		dg   string
	}
	var todo []work
	t := time.Now()
	// Which commands of the redis-for-cf package the jobs run, errands'
	// included.
	var rendered strings.Builder
	for _, g := range d.manifest.InstanceGroups {
		for i := range g.Instances {
			in := d.find(g.Name, i)
			jobs, err := d.render(in)
			if err != nil {
				return err
			}
			for _, j := range jobs {
				for _, f := range j.Files {
					rendered.WriteString(f)
				}
			}
			if !isErrandGroup(g) {
				todo = append(todo, work{in: in, jobs: jobs})
			}
		}
	}
	d.printf("  templates rendered with bosh-cli's renderer (%.1fs)\n", time.Since(t).Seconds())
	t = time.Now()
	pkgs, err := d.buildPackages(ctx, func(cmd string) bool {
		return strings.Contains(rendered.String(), "/packages/redis-for-cf/bin/"+cmd)
	})
	if err != nil {
		return err
	}
	for _, name := range sortedKeys(pkgs) {
		d.printf("  package %s/%s: %s\n", name, pkgs[name].Fingerprint, pkgs[name].Source)
	}
	d.printf("  packages ready (%.1fs)\n", time.Since(t).Seconds())
	for i := range todo {
		todo[i].dg = digest(todo[i].jobs, pkgs)
	}
	// The S3 stand-in runs before the VMs that back up to it start; a
	// deploy that does not use it stops it (its data stays).
	if d.s3.minio {
		if err := d.startS3(ctx); err != nil {
			return err
		}
	} else if err := d.stopS3(ctx); err != nil {
		return err
	}
	d.touched = true
	if err := d.writeHosts(); err != nil {
		return err
	}
	for _, w := range todo {
		if err := d.update(ctx, w.in, w.jobs, w.dg, pkgs); err != nil {
			return err
		}
		if err := d.saveState(); err != nil {
			return err
		}
	}
	for _, w := range todo {
		pid := d.initPid(w.in)
		for _, job := range d.installedJobs(w.in) {
			if d.hasScript(w.in, job, "post-deploy") {
				out, err := d.runScript(ctx, w.in, pid, job, "post-deploy", nil)
				d.indent(out)
				if err != nil {
					return err
				}
			}
		}
	}
	d.prunePackages(pkgs)
	d.printf("Succeeded (%.1fs)\n", time.Since(start).Seconds())
	return nil
}

// prunePackages removes the builds of earlier deploys: every VM now has
// its own hard links to the current ones.
func (d *Director) prunePackages(current map[string]pkg) {
	names, _ := os.ReadDir(filepath.Join(d.opts.StateDir, "packages"))
	for _, n := range names {
		versions, _ := os.ReadDir(filepath.Join(d.opts.StateDir, "packages", n.Name()))
		for _, v := range versions {
			if p, ok := current[n.Name()]; !ok || v.Name() != p.Fingerprint {
				_ = os.RemoveAll(filepath.Join(d.opts.StateDir, "packages", n.Name(), v.Name()))
			}
		}
	}
}

// update brings one instance to the rendered jobs: a new VM is made and
// started; a running VM whose digest differs is drained, stopped, updated
// and started; a running VM with the same digest is left alone.
func (d *Director) update(ctx context.Context, in *instanceState, jobs []renderedJob, dg string, pkgs map[string]pkg) error {
	label := fmt.Sprintf("%s/%d (%s) at %s", in.Group, in.Index, in.ID, in.IP)
	t := time.Now()
	pid := d.initPid(in)
	switch {
	case pid > 0 && in.Applied == dg:
		d.printf("  %s: no changes\n", label)
		return nil
	case pid > 0:
		d.printf("  updating %s\n", label)
		if err := d.drainAndStop(ctx, in, pid, "job_changed", "hash_changed"); err != nil {
			return err
		}
	default:
		d.printf("  creating VM %s (netns %s)\n", label, d.vmName(in))
		if err := d.createVM(ctx, in, filepath.Join(pkgs["bpm"].Dir, "bin", "localvm")); err != nil {
			return err
		}
		if pid = d.initPid(in); pid == 0 {
			return fmt.Errorf("VM %s stopped as soon as it started; see %s", d.vmName(in), filepath.Join(d.vmDir(in), "init.log"))
		}
	}
	in.Applied = ""
	if err := d.apply(in, jobs, pkgs, dg); err != nil {
		return err
	}
	if err := d.startJobs(ctx, in, pid); err != nil {
		return err
	}
	in.Applied = dg
	var names []string
	for _, j := range jobs {
		names = append(names, j.Name)
	}
	d.printf("    running %s (%.1fs)\n", strings.Join(names, ", "), time.Since(t).Seconds())
	return nil
}

// deleteVM drains and stops a running VM's jobs and kills it; with
// deleteDisk, its folders and persistent disk are removed too.
func (d *Director) deleteVM(ctx context.Context, in *instanceState, deleteDisk bool) error {
	var errs []error
	if pid := d.initPid(in); pid > 0 {
		if err := d.drainAndStop(ctx, in, pid, "job_shutdown", "hash_unchanged"); err != nil {
			errs = append(errs, err)
		}
	}
	if err := d.killVM(ctx, in); err != nil {
		errs = append(errs, err)
	}
	if deleteDisk {
		for _, dir := range []string{d.vmDir(in), d.diskDir(in)} {
			if err := os.RemoveAll(dir); err != nil {
				errs = append(errs, err)
			}
		}
	}
	in.Applied = ""
	return errors.Join(errs...)
}

// Stop drains and stops every VM and deletes its namespaces, keeping the
// state: disks, credentials and logs. The next Deploy brings the instances
// back with their data. It is what a failed deploy leaves behind.
func (d *Director) Stop(ctx context.Context) error {
	unlock, err := d.lockState()
	if err != nil {
		return err
	}
	defer unlock()
	return d.stopAll(ctx, false)
}

// Down deletes the deployment: every VM is drained and stopped, every
// namespace deleted, and the state folder (disks, credentials, logs)
// removed.
func (d *Director) Down(ctx context.Context) error {
	unlock, err := d.lockState()
	if err != nil {
		return err
	}
	err = d.stopAll(ctx, true)
	unlock()
	if err != nil {
		return err
	}
	return os.RemoveAll(d.opts.StateDir)
}

func (d *Director) stopAll(ctx context.Context, deleting bool) error {
	if err := d.loadState(); err != nil && !deleting {
		return err
	}
	var errs []error
	// In reverse order of the manifest: nodes and agents before the broker.
	for _, in := range slices.Backward(d.st.Instances) {
		if d.initPid(in) > 0 {
			d.printf("  stopping %s/%d (%s)\n", in.Group, in.Index, in.ID)
		}
		if err := d.deleteVM(ctx, in, false); err != nil {
			errs = append(errs, err)
		}
		if err := d.saveState(); err != nil && !deleting {
			errs = append(errs, err)
		}
	}
	// The S3 stand-in, after the VMs that back up to it.
	if err := d.stopS3(ctx); err != nil {
		errs = append(errs, err)
	}
	// Whatever is left of this deployment's namespaces, state or not: VMs
	// of a state folder removed by hand, the apps' namespace, the LAN.
	entries, _ := os.ReadDir(netnsDir)
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, d.opts.Name+"-") || name == d.lanNS() {
			continue
		}
		if err := deleteNetns(ctx, name); err != nil {
			errs = append(errs, err)
		}
	}
	if err := deleteNetns(ctx, d.lanNS()); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func relTo(base, path string) string {
	if r, err := filepath.Rel(base, path); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return path
}

// Leftovers lists what of the deployment is left on this machine: its
// network namespaces, processes whose command line names its state folder
// (a VM's init), and mounts of its state folder or namespaces in this
// machine's mount namespace. After Down it must be empty.
func (d *Director) Leftovers() []string {
	var out []string
	entries, _ := os.ReadDir(netnsDir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), d.opts.Name+"-") {
			out = append(out, "network namespace "+e.Name())
		}
	}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmdline, []byte(d.opts.StateDir)) && processAlive(pid) {
			out = append(out, fmt.Sprintf("process %d: %s", pid, bytes.ReplaceAll(bytes.TrimRight(cmdline, "\x00"), []byte{0}, []byte{' '})))
		}
	}
	if mounts, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, line := range strings.Split(string(mounts), "\n") {
			if strings.Contains(line, d.opts.StateDir) || strings.Contains(line, filepath.Join(netnsDir, d.opts.Name+"-")) {
				out = append(out, "mount "+line)
			}
		}
	}
	return out
}
