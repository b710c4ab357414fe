// Package boshrender renders a BOSH release's job templates as a Director
// would: with bosh-cli's own ERB renderer (the one `bosh create-env` uses),
// given the instance's spec, the job's properties over its spec defaults,
// and the links the Director resolves from the deployment manifest. The
// renderer has no links of its own (create-env has none); links.rb adds
// link() and if_link() as the Director's evaluation context defines them.
//
// It is shared by the release tests in spec/ and by the local deployment
// (src/release/localbosh). It lives outside src/internal on purpose: Go's
// internal rule would keep spec/, outside src/, from importing it.
//
// Rendering needs ruby on PATH.
package boshrender

import (
	"fmt"
	"os"
	"path/filepath"

	"go.yaml.in/yaml/v3"
)

// Job is a release job as its spec file describes it. The zero value has no
// templates to render; LoadJob reads one.
type Job struct {
	Name       string              `yaml:"name"`
	Templates  map[string]string   `yaml:"templates"`
	Packages   []string            `yaml:"packages"`
	Consumes   []LinkSpec          `yaml:"consumes"`
	Provides   []LinkSpec          `yaml:"provides"`
	Properties map[string]Property `yaml:"properties"`

	// dir is the job's folder, jobs/NAME, where its templates are.
	dir string
}

// LinkSpec is a link a job consumes or provides.
type LinkSpec struct {
	Name       string   `yaml:"name"`
	Type       string   `yaml:"type"`
	Optional   bool     `yaml:"optional"`
	Properties []string `yaml:"properties"`
}

// Property is a job property's definition.
type Property struct {
	Description string `yaml:"description"`
	Default     any    `yaml:"default"`
	Example     any    `yaml:"example"`
}

// JobNames lists the jobs of the release in releaseDir.
func JobNames(releaseDir string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(releaseDir, "jobs"))
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// LoadJob reads jobs/NAME/spec of the release in releaseDir.
func LoadJob(releaseDir, name string) (*Job, error) {
	dir, err := filepath.Abs(filepath.Join(releaseDir, "jobs", name))
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(dir, "spec"))
	if err != nil {
		return nil, err
	}
	var j Job
	if err := yaml.Unmarshal(data, &j); err != nil {
		return nil, fmt.Errorf("jobs/%s/spec: %w", name, err)
	}
	j.dir = dir
	return &j, nil
}

// Dir is the job's folder in the release (jobs/NAME), holding its spec,
// monit file and templates.
func (j *Job) Dir() string { return j.dir }

// Provided returns the link the job provides under name.
func (j *Job) Provided(name string) (LinkSpec, bool) {
	for _, l := range j.Provides {
		if l.Name == name {
			return l, true
		}
	}
	return LinkSpec{}, false
}
