package tile

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Release is what the tile needs to know of a BOSH release tarball: its name
// and version (from release.MF) and each job's spec (job.MF of
// jobs/NAME.tgz), which says what properties and links the job has.
type Release struct {
	Name    string
	Version string
	// Path is the tarball's file; empty for a release read from a stream.
	Path string
	Jobs map[string]*JobSpec
	size int64
}

// JobSpec is a job's spec as the release tarball carries it.
type JobSpec struct {
	Name       string                    `yaml:"name"`
	Properties map[string]map[string]any `yaml:"properties"`
	Consumes   []LinkSpec                `yaml:"consumes"`
	Provides   []LinkSpec                `yaml:"provides"`
}

// LinkSpec is a link a job consumes or provides.
type LinkSpec struct {
	Name     string `yaml:"name"`
	Type     string `yaml:"type"`
	Optional bool   `yaml:"optional"`
}

// File is the name the tarball has under releases/ in the tile.
func (r *Release) File() string { return fmt.Sprintf("%s-%s.tgz", r.Name, r.Version) }

// String names the release and its version, as BOSH writes them.
func (r *Release) String() string { return r.Name + " " + r.Version }

// JobNames lists the release's jobs, sorted.
func (r *Release) JobNames() []string { return sortedKeys(r.Jobs) }

// HasProperty reports whether the job's spec defines the dotted property
// name, or a property that holds it (a hash property "a" holds "a.b").
func (j *JobSpec) HasProperty(name string) bool {
	for p := range j.Properties {
		if name == p || strings.HasPrefix(name, p+".") {
			return true
		}
	}
	return false
}

// link finds one of the job's links by name.
func link(links []LinkSpec, name string) (LinkSpec, bool) {
	i := slices.IndexFunc(links, func(l LinkSpec) bool { return l.Name == name })
	if i < 0 {
		return LinkSpec{}, false
	}
	return links[i], true
}

// ReadRelease reads a release tarball's manifest and job specs.
func ReadRelease(file string) (*Release, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("release tarball %s: %w", file, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("release tarball %s: %w", file, err)
	}
	r, err := ReadReleaseFrom(f)
	if err != nil {
		return nil, fmt.Errorf("release tarball %s: %w", file, err)
	}
	r.Path, r.size = file, st.Size()
	return r, nil
}

// maxSpecArchive bounds the size of one job archive read into memory: a job
// holds templates, never binaries.
const maxSpecArchive = 64 << 20

// ReadReleaseFrom is ReadRelease for a stream (a tarball inside a tile).
func ReadReleaseFrom(r io.Reader) (*Release, error) {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("not a gzipped tarball: %w", err)
	}
	tr := tar.NewReader(gz)
	var mf struct {
		Name    string `yaml:"name"`
		Version string `yaml:"version"`
		Jobs    []struct {
			Name string `yaml:"name"`
		} `yaml:"jobs"`
	}
	haveMF := false
	specs := map[string]*JobSpec{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		name := strings.TrimPrefix(path.Clean(h.Name), "./")
		switch {
		case name == "release.MF":
			data, err := io.ReadAll(tr)
			if err != nil {
				return nil, err
			}
			if err := yaml.Unmarshal(data, &mf); err != nil {
				return nil, fmt.Errorf("release.MF: %w", err)
			}
			haveMF = true
		case strings.HasPrefix(name, "jobs/") && strings.HasSuffix(name, ".tgz"):
			data, err := io.ReadAll(io.LimitReader(tr, maxSpecArchive+1))
			if err != nil {
				return nil, err
			}
			if len(data) > maxSpecArchive {
				return nil, fmt.Errorf("%s is larger than a job archive can be", name)
			}
			spec, err := readJobSpec(data)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			specs[strings.TrimSuffix(path.Base(name), ".tgz")] = spec
		}
	}
	if !haveMF {
		return nil, errors.New("no release.MF: not a BOSH release tarball")
	}
	if mf.Name == "" || mf.Version == "" {
		return nil, errors.New("release.MF names no release name and version")
	}
	rel := &Release{Name: mf.Name, Version: mf.Version, Jobs: map[string]*JobSpec{}}
	for _, j := range mf.Jobs {
		spec, ok := specs[j.Name]
		if !ok {
			return nil, fmt.Errorf("release.MF lists job %s, but jobs/%s.tgz is missing", j.Name, j.Name)
		}
		if spec.Name != j.Name {
			return nil, fmt.Errorf("jobs/%s.tgz holds the spec of job %q", j.Name, spec.Name)
		}
		rel.Jobs[j.Name] = spec
	}
	return rel, nil
}

func readJobSpec(archive []byte) (*JobSpec, error) {
	gz, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, errors.New("no job.MF")
		}
		if err != nil {
			return nil, err
		}
		if strings.TrimPrefix(path.Clean(h.Name), "./") != "job.MF" {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		var spec JobSpec
		if err := yaml.Unmarshal(data, &spec); err != nil {
			return nil, fmt.Errorf("job.MF: %w", err)
		}
		return &spec, nil
	}
}
