package spec

import (
	"github.com/cf-redis/redis-for-cf/src/release/boshrender"
)

// root is the release's directory, relative to this package's.
const root = ".."

// The Director's view of jobs, instances and links, and the renderer, are
// src/release/boshrender's, which the local deployment shares.
type (
	LinkSpec     = boshrender.LinkSpec
	Property     = boshrender.Property
	Instance     = boshrender.Instance
	LinkData     = boshrender.LinkData
	LinkInstance = boshrender.LinkInstance
)

// Job is a release job as its spec file describes it.
type Job struct{ *boshrender.Job }

// jobNames lists the release's jobs.
func jobNames() ([]string, error) { return boshrender.JobNames(root) }

// loadJob reads jobs/NAME/spec.
func loadJob(name string) (*Job, error) {
	j, err := boshrender.LoadJob(root, name)
	if err != nil {
		return nil, err
	}
	return &Job{j}, nil
}

// provided returns the link the job provides under name.
func (j *Job) provided(name string) (LinkSpec, bool) { return j.Provided(name) }

// linkFrom builds the link named name that job provides from the instances
// of its group with props as the job's properties, as the Director does.
func linkFrom(job *Job, name string, props map[string]any, instances []Instance) (LinkData, error) {
	return boshrender.LinkFrom(job.Job, name, props, instances)
}

// setPath sets a dotted property name in nested maps.
func setPath(m map[string]any, dotted string, v any) { boshrender.SetPath(m, dotted, v) }

// props builds nested properties from dotted names and values.
func props(kv ...any) map[string]any {
	m := map[string]any{}
	for i := 0; i+1 < len(kv); i += 2 {
		setPath(m, kv[i].(string), kv[i+1])
	}
	return m
}

// render renders the job's template src (a key of its spec's templates)
// with bosh-cli's own ERB renderer, for an instance with the given
// manifest properties and links, and returns the output.
func (j *Job) render(src string, properties map[string]any, in Instance, links map[string]LinkData) (string, error) {
	return j.Render(src, properties, in, links)
}

// renderAll renders every template of the job and returns the outputs by
// destination path (e.g. "config/config.json").
func (j *Job) renderAll(properties map[string]any, in Instance, links map[string]LinkData) (map[string]string, error) {
	return j.RenderAll(properties, in, links)
}
