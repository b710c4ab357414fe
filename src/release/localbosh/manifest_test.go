package localbosh

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/cf-redis/redis-for-cf/src/release/boshrender"
)

// The release's own manifest pins its releases and takes its names from
// variables; a local deploy fills them in (dev releases, redis on default)
// unless the user gives the names.
func TestInterpolateFillsInTheReleaseManifestsNamesAndDevReleases(t *testing.T) {
	for _, tc := range []struct {
		vars            []string
		deployment, net string
	}{
		{nil, "redis", "default"},
		{[]string{"deployment_name=cache", "network_name=services"}, "cache", "services"},
	} {
		repo, err := filepath.Abs("../../..")
		if err != nil {
			t.Fatal(err)
		}
		d, err := New(Options{ReleaseDir: repo, StateDir: filepath.Join(t.TempDir(), "state"), Vars: tc.vars})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(d.opts.StateDir, 0o700); err != nil {
			t.Fatal(err)
		}
		doc, err := d.interpolate(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var m boshrender.Manifest
		var rels struct {
			Releases []map[string]string `yaml:"releases"`
		}
		if err := yaml.Unmarshal(doc, &m); err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(doc, &rels); err != nil {
			t.Fatal(err)
		}
		if len(rels.Releases) != 2 {
			t.Errorf("releases %v", rels.Releases)
		}
		if m.Name != tc.deployment {
			t.Errorf("vars %v: deployment %q, want %q", tc.vars, m.Name, tc.deployment)
		}
		for _, g := range m.InstanceGroups {
			if g.Network() != tc.net {
				t.Errorf("vars %v: instance group %s on network %q, want %q", tc.vars, g.Name, g.Network(), tc.net)
			}
		}
		for _, r := range rels.Releases {
			if len(r) != 2 || r["version"] != "latest" {
				t.Errorf("release %v: want the dev release (version latest, no url or sha1)", r)
			}
		}
	}
}

func TestRunErrandFindsAnErrandGroupByItsNameOrItsJobs(t *testing.T) {
	backup := boshrender.InstanceGroup{Name: "backup", Lifecycle: "errand", Jobs: []boshrender.ManifestJob{{Name: "redis-backup"}}}
	broker := boshrender.InstanceGroup{Name: "redis-broker", Jobs: []boshrender.ManifestJob{{Name: "bpm"}, {Name: "redis-broker"}}}
	named := boshrender.InstanceGroup{Name: "redis-broker", Jobs: []boshrender.ManifestJob{{Name: "bpm"}}}
	for _, tc := range []struct {
		g          boshrender.InstanceGroup
		name, want string
	}{
		{backup, "backup", "redis-backup"},
		{backup, "redis-backup", "redis-backup"},
		{backup, "smoke-tests", ""},
		{broker, "redis-broker", "redis-broker"}, // a job's name, as a colocated errand
		{named, "redis-broker", ""},              // a service group's name is no errand
	} {
		if got := errandJob(tc.g, tc.name); got != tc.want {
			t.Errorf("errandJob(%s, %q) = %q, want %q", tc.g.Name, tc.name, got, tc.want)
		}
	}
}
