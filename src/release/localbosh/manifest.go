package localbosh

import (
	"context"
	"crypto/rand"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"

	"github.com/cf-redis/redis-for-cf/src/release/boshrender"
)

// DevReleasesOpsFile is the ops file, in the release, that makes the
// manifest take the releases last uploaded instead of pinned ones: every
// local deploy applies it, as the release is built from the checkout.
const DevReleasesOpsFile = "manifests/operations/dev-releases.yml"

// defaultNames are the deployment_name and network_name the manifest's
// BOSH DNS names and certificates are built from, unless -v or -l give them.
var defaultNames = [][2]string{{"deployment_name", "redis"}, {"network_name", "default"}}

// interpolate runs `bosh interpolate` on the manifest with the ops files
// and variables, generating the manifest's own variables (passwords, CA,
// certificates) into the vars store, where they stay for the next deploy.
// It returns the manifest with every variable filled in.
func (d *Director) interpolate(ctx context.Context) ([]byte, error) {
	args := []string{"tool", "bosh-cli", "interpolate", d.opts.Manifest, "--var-errs",
		"--vars-store", filepath.Join(d.opts.StateDir, "vars.yml")}
	ops := append(slices.Clone(d.opts.OpsFiles), d.extraOps...)
	if dev := filepath.Join(d.opts.ReleaseDir, DevReleasesOpsFile); !slices.Contains(ops, dev) {
		ops = append(ops, dev)
	}
	for _, o := range ops {
		args = append(args, "-o", o)
	}
	given, err := givenVars(d.opts.Vars, d.opts.VarsFiles)
	if err != nil {
		return nil, err
	}
	for _, kv := range defaultNames {
		if !given[kv[0]] {
			args = append(args, "-v", kv[0]+"="+kv[1])
		}
	}
	for _, v := range d.opts.Vars {
		args = append(args, "-v", v)
	}
	for _, f := range append(slices.Clone(d.opts.VarsFiles), d.extraVarsFiles...) {
		args = append(args, "-l", f)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = d.opts.ReleaseDir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("bosh interpolate: %w\n%s", err, stderr.String())
	}
	return out, nil
}

// loadManifest interpolates and parses the manifest and loads the jobs of
// this release it names.
func (d *Director) loadManifest(ctx context.Context) error {
	doc, err := d.interpolate(ctx)
	if err != nil {
		return err
	}
	if err := writeAtomic(filepath.Join(d.opts.StateDir, "manifest.yml"), doc, 0o600); err != nil {
		return err
	}
	return d.parseManifest(doc)
}

// loadDeployed loads the manifest of the last deploy, unless one is loaded.
func (d *Director) loadDeployed() error {
	if d.manifest.Name != "" {
		return nil
	}
	doc, err := os.ReadFile(filepath.Join(d.opts.StateDir, "manifest.yml"))
	if err != nil {
		return fmt.Errorf("nothing deployed in %s: %w", d.opts.StateDir, err)
	}
	return d.parseManifest(doc)
}

func (d *Director) parseManifest(doc []byte) error {
	var err error
	var m boshrender.Manifest
	if err := yaml.Unmarshal(doc, &m); err != nil {
		return fmt.Errorf("the interpolated manifest: %w", err)
	}
	if m.Name == "" {
		return fmt.Errorf("the manifest has no name")
	}
	jobs := map[string]*boshrender.Job{}
	groups := map[string]bool{}
	for _, g := range m.InstanceGroups {
		if groups[g.Name] {
			return fmt.Errorf("instance group %s is in the manifest twice", g.Name)
		}
		groups[g.Name] = true
		if g.Instances < 0 {
			return fmt.Errorf("instance group %s: %d instances", g.Name, g.Instances)
		}
		for _, mj := range g.Jobs {
			switch {
			case mj.Release == Release:
				if jobs[mj.Name] == nil {
					if jobs[mj.Name], err = boshrender.LoadJob(d.opts.ReleaseDir, mj.Name); err != nil {
						return fmt.Errorf("instance group %s: job %s: %w", g.Name, mj.Name, err)
					}
				}
			case mj.Release == "bpm" && mj.Name == "bpm":
			default:
				return fmt.Errorf("instance group %s: job %s of release %s: only this release's jobs and bpm run locally", g.Name, mj.Name, mj.Release)
			}
		}
	}
	d.manifest, d.jobs = m, jobs
	return nil
}

// Manifest returns the manifest as last deployed, variables filled in.
func (d *Director) Manifest() boshrender.Manifest { return d.manifest }

func isErrandGroup(g boshrender.InstanceGroup) bool { return g.Lifecycle == "errand" }

// planInstances gives every instance of the manifest's service groups an
// id and address (keeping those it has), and returns the instances the
// manifest no longer has.
func (d *Director) planInstances() (gone []*instanceState, err error) {
	want := map[string]bool{}
	for _, g := range d.manifest.InstanceGroups {
		for i := range g.Instances {
			want[fmt.Sprintf("%s/%d", g.Name, i)] = true
			if _, err := d.ensureInstance(g, i); err != nil {
				return nil, err
			}
		}
	}
	var kept []*instanceState
	for _, in := range d.st.Instances {
		if want[fmt.Sprintf("%s/%d", in.Group, in.Index)] {
			kept = append(kept, in)
		} else {
			gone = append(gone, in)
		}
	}
	d.st.Instances = kept
	return gone, nil
}

// ensureInstance returns the state of instance index of group g, making it
// with a new id and the next free address.
func (d *Director) ensureInstance(g boshrender.InstanceGroup, index int) (*instanceState, error) {
	for _, in := range d.st.Instances {
		if in.Group == g.Name && in.Index == index {
			in.Errand = isErrandGroup(g)
			return in, nil
		}
	}
	used := map[string]bool{}
	for _, in := range d.st.Instances {
		used[in.IP] = true
	}
	ip := ""
	for h := firstVMHost; h < 255; h++ {
		if c := fmt.Sprintf("%s.%d", Subnet, h); !used[c] {
			ip = c
			break
		}
	}
	if ip == "" {
		return nil, fmt.Errorf("no address left in %s.0/24", Subnet)
	}
	in := &instanceState{Group: g.Name, Index: index, ID: newUUID(), IP: ip, Errand: isErrandGroup(g)}
	d.st.Instances = append(d.st.Instances, in)
	return in, nil
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

func (d *Director) group(name string) (boshrender.InstanceGroup, bool) {
	for _, g := range d.manifest.InstanceGroups {
		if g.Name == name {
			return g, true
		}
	}
	return boshrender.InstanceGroup{}, false
}

// instance is what templates see of an instance.
func (d *Director) instance(in *instanceState) boshrender.Instance {
	g, _ := d.group(in.Group)
	return boshrender.Instance{
		Group: in.Group, Index: in.Index, ID: in.ID, AZ: g.AZ(in.Index), IP: in.IP,
		Address: d.manifest.Address(g, in.ID, in.IP), Deployment: d.manifest.Name, Network: g.Network(),
	}
}

// instancesOf lists the instances of a group, for links.
func (d *Director) instancesOf(g boshrender.InstanceGroup) []boshrender.Instance {
	var out []boshrender.Instance
	for _, in := range d.st.Instances {
		if in.Group == g.Name && in.Index < g.Instances {
			out = append(out, d.instance(in))
		}
	}
	slices.SortFunc(out, func(a, b boshrender.Instance) int { return a.Index - b.Index })
	return out
}

// renderedJob is one job of an instance, rendered: files by their path in
// the job's folder (bin/drain, config/config.json, monit), and the
// packages it needs.
type renderedJob struct {
	Name     string
	Files    map[string]string
	Packages []string
}

// bpmJob is the stand-in of the bpm release's job: bin/bpm runs localvm's.
var bpmJob = renderedJob{
	Name:     "bpm",
	Files:    map[string]string{"bin/bpm": "#!/bin/sh\n# bpm's stand-in in a local deployment (src/release/localvm).\nexec /var/vcap/packages/bpm/bin/localvm bpm \"$@\"\n"},
	Packages: []string{"bpm"},
}

// render renders every job of the instance as the Director would.
func (d *Director) render(in *instanceState) ([]renderedJob, error) {
	g, ok := d.group(in.Group)
	if !ok {
		return nil, fmt.Errorf("no instance group %s", in.Group)
	}
	dep := boshrender.Deployment{Manifest: d.manifest, Release: Release, Jobs: d.jobs, Instances: d.instancesOf}
	spec := d.instance(in)
	out := make([]renderedJob, len(g.Jobs))
	errs := make([]error, len(g.Jobs))
	var wg sync.WaitGroup
	for i, mj := range g.Jobs {
		if mj.Release != Release {
			out[i] = bpmJob
			continue
		}
		wg.Go(func() {
			j := d.jobs[mj.Name]
			links, err := dep.Links(mj)
			if err != nil {
				errs[i] = err
				return
			}
			files, err := j.RenderAll(mj.Properties, spec, links)
			if err != nil {
				errs[i] = fmt.Errorf("%s/%d %s: %w", in.Group, in.Index, mj.Name, err)
				return
			}
			monit, err := j.RenderMonit(mj.Properties, spec, links)
			if err != nil {
				errs[i] = fmt.Errorf("%s/%d %s monit: %w", in.Group, in.Index, mj.Name, err)
				return
			}
			files["monit"] = monit
			out[i] = renderedJob{Name: mj.Name, Files: files, Packages: j.Packages}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Property returns the value a job of a group has for a property: the
// manifest's, else the job spec's default.
func (d *Director) Property(group, job, name string) (any, error) {
	g, ok := d.group(group)
	if !ok {
		return nil, fmt.Errorf("no instance group %s", group)
	}
	for _, mj := range g.Jobs {
		if mj.Name != job {
			continue
		}
		if v, ok := boshrender.Lookup(mj.Properties, name); ok {
			return v, nil
		}
		j := d.jobs[job]
		if j == nil {
			break
		}
		if p, ok := j.Properties[name]; ok {
			return p.Default, nil
		}
		return nil, fmt.Errorf("job %s has no property %s", job, name)
	}
	return nil, fmt.Errorf("instance group %s has no job %s", group, job)
}

// hostsFile is /etc/hosts of every VM: BOSH DNS's names of every instance.
func (d *Director) hostsFile() []byte {
	var b strings.Builder
	b.WriteString("# A local deployment's stand-in for BOSH DNS (src/release/localbosh).\n127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n")
	for _, in := range d.st.Instances {
		if names := d.hostNames(in); len(names) > 0 {
			fmt.Fprintf(&b, "%s %s\n", in.IP, strings.Join(names, " "))
		}
	}
	return []byte(b.String())
}

// hostNames are the BOSH DNS names of an instance: its address and its
// index name, or none when the manifest gives IP addresses.
func (d *Director) hostNames(in *instanceState) []string {
	spec := d.instance(in)
	if spec.Address == in.IP {
		return nil
	}
	names := []string{spec.Address}
	if g, ok := d.group(in.Group); ok && d.manifest.Features.UseDNSAddresses {
		names = append(names, fmt.Sprintf("%d.%s.%s.%s.bosh", in.Index, g.Name, g.Network(), d.manifest.Name))
	}
	return names
}

// writeHosts writes every VM's /etc/hosts in place: the file is bind
// mounted, so a new file (a rename) would not reach a running VM.
func (d *Director) writeHosts() error {
	data := d.hostsFile()
	for _, in := range d.st.Instances {
		path := filepath.Join(d.vmDir(in), "etc", "hosts")
		if _, err := os.Stat(filepath.Dir(path)); err != nil {
			continue
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
