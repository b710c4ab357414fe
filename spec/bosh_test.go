package spec

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/cloudfoundry/bosh-cli/v7/templatescompiler/erbrenderer"
	boshlog "github.com/cloudfoundry/bosh-utils/logger"
	boshsys "github.com/cloudfoundry/bosh-utils/system"
	"go.yaml.in/yaml/v3"
)

// root is the release's directory, relative to this package's.
const root = ".."

// Job is a release job as its spec file describes it.
type Job struct {
	Name       string              `yaml:"name"`
	Templates  map[string]string   `yaml:"templates"`
	Packages   []string            `yaml:"packages"`
	Consumes   []LinkSpec          `yaml:"consumes"`
	Provides   []LinkSpec          `yaml:"provides"`
	Properties map[string]Property `yaml:"properties"`
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

// jobNames lists the release's jobs.
func jobNames() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(root, "jobs"))
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

// loadJob reads jobs/NAME/spec.
func loadJob(name string) (*Job, error) {
	data, err := os.ReadFile(filepath.Join(root, "jobs", name, "spec"))
	if err != nil {
		return nil, err
	}
	var j Job
	if err := yaml.Unmarshal(data, &j); err != nil {
		return nil, fmt.Errorf("jobs/%s/spec: %w", name, err)
	}
	return &j, nil
}

// provided returns the link the job provides under name.
func (j *Job) provided(name string) (LinkSpec, bool) {
	for _, l := range j.Provides {
		if l.Name == name {
			return l, true
		}
	}
	return LinkSpec{}, false
}

// Instance is what the Director tells a template about the instance it
// renders for (spec.id, spec.address, spec.ip, ...).
type Instance struct {
	Group      string // the instance group, spec.name
	Index      int
	ID         string
	AZ         string
	IP         string
	Address    string
	Deployment string
}

// LinkData is a resolved link as the Director hands it to a template.
type LinkData struct {
	Instances  []LinkInstance `json:"instances"`
	Properties map[string]any `json:"properties"`
}

// LinkInstance is one instance of a link's provider.
type LinkInstance struct {
	Name      string `json:"name"`
	Index     int    `json:"index"`
	ID        string `json:"id"`
	AZ        string `json:"az"`
	Address   string `json:"address"`
	Bootstrap bool   `json:"bootstrap"`
}

// linkFrom builds the link named name that job provides from the instances
// of its group with props as the job's properties, as the Director does:
// the properties the link lists, each from props or else its default.
func linkFrom(job *Job, name string, props map[string]any, instances []Instance) (LinkData, error) {
	spec, ok := job.provided(name)
	if !ok {
		return LinkData{}, fmt.Errorf("job %s provides no link %q", job.Name, name)
	}
	link := LinkData{Instances: []LinkInstance{}, Properties: map[string]any{}}
	for _, p := range spec.Properties {
		def, ok := job.Properties[p]
		if !ok {
			return LinkData{}, fmt.Errorf("job %s: link %s lists property %s, which the job does not define", job.Name, name, p)
		}
		v, set := lookup(props, p)
		if !set {
			v = def.Default
		}
		setPath(link.Properties, p, v)
	}
	for i, in := range instances {
		link.Instances = append(link.Instances, LinkInstance{
			Name: in.Group, Index: in.Index, ID: in.ID, AZ: in.AZ, Address: in.Address, Bootstrap: i == 0,
		})
	}
	return link, nil
}

// lookup finds a dotted property name in nested maps.
func lookup(m map[string]any, dotted string) (any, bool) {
	var cur any = m
	for _, k := range strings.Split(dotted, ".") {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = mm[k]; !ok {
			return nil, false
		}
	}
	return cur, cur != nil
}

// setPath sets a dotted property name in nested maps.
func setPath(m map[string]any, dotted string, v any) {
	keys := strings.Split(dotted, ".")
	for _, k := range keys[:len(keys)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[k] = next
		}
		m = next
	}
	m[keys[len(keys)-1]] = v
}

// props builds nested properties from dotted names and values.
func props(kv ...any) map[string]any {
	m := map[string]any{}
	for i := 0; i+1 < len(kv); i += 2 {
		setPath(m, kv[i].(string), kv[i+1])
	}
	return m
}

var fillingError = regexp.MustCompile(`Error filling in template [^\n]*`)

// renderContext is the JSON document bosh-cli's renderer script reads: its
// RootContext (templatescompiler.RootContext) plus "ip", "name" and "links",
// which the Director's spec has and the create-env one lacks.
type renderContext map[string]any

func (c renderContext) MarshalJSON() ([]byte, error) { return json.Marshal(map[string]any(c)) }

// linkRunner runs bosh-cli's renderer script through testdata/links.rb,
// which adds the Director's link() and if_link() to it.
type linkRunner struct {
	boshsys.CmdRunner
	shim string
}

func (r linkRunner) RunComplexCommand(cmd boshsys.Command) (string, string, int, error) {
	if cmd.Name == "ruby" {
		// -W0: the script's ERB.new arguments draw deprecation warnings from
		// newer Rubies.
		cmd.Args = append([]string{"-W0", r.shim}, cmd.Args...)
	}
	return r.CmdRunner.RunComplexCommand(cmd)
}

// render renders the job's template src (a key of its spec's templates)
// with bosh-cli's own ERB renderer, for an instance with the given
// manifest properties and links, and returns the output.
func (j *Job) render(src string, properties map[string]any, in Instance, links map[string]LinkData) (string, error) {
	if _, ok := j.Templates[src]; !ok {
		return "", fmt.Errorf("job %s has no template %s", j.Name, src)
	}
	shim, err := filepath.Abs("testdata/links.rb")
	if err != nil {
		return "", err
	}
	defaults := map[string]any{}
	for name, p := range j.Properties {
		defaults[name] = p.Default
	}
	if properties == nil {
		properties = map[string]any{}
	}
	if links == nil {
		links = map[string]LinkData{}
	}
	ctx := renderContext{
		"index":              in.Index,
		"id":                 in.ID,
		"az":                 in.AZ,
		"bootstrap":          in.Index == 0,
		"name":               in.Group,
		"job":                map[string]any{"name": j.Name},
		"deployment":         in.Deployment,
		"address":            in.Address,
		"ip":                 in.IP,
		"networks":           map[string]any{"default": map[string]any{"ip": in.IP, "netmask": "255.255.255.0", "gateway": "10.0.0.1"}},
		"global_properties":  map[string]any{},
		"cluster_properties": map[string]any{},
		"job_properties":     properties,
		"default_properties": defaults,
		"links":              links,
	}
	dir, err := os.MkdirTemp("", "render-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	logger := boshlog.NewLogger(boshlog.LevelNone)
	renderer := erbrenderer.NewERBRenderer(boshsys.NewOsFileSystem(logger),
		linkRunner{CmdRunner: boshsys.NewExecCmdRunner(logger), shim: shim}, logger)
	srcPath, err := filepath.Abs(filepath.Join(root, "jobs", j.Name, "templates", src))
	if err != nil {
		return "", err
	}
	dst := filepath.Join(dir, "out")
	if err := renderer.Render(srcPath, dst, ctx); err != nil {
		// The renderer's error quotes the whole of Ruby's stderr; its first
		// line is the Director's own message.
		if m := fillingError.FindString(err.Error()); m != "" {
			return "", errors.New(m)
		}
		return "", err
	}
	out, err := os.ReadFile(dst)
	return string(out), err
}

// renderAll renders every template of the job and returns the outputs by
// destination path (e.g. "config/config.json").
func (j *Job) renderAll(properties map[string]any, in Instance, links map[string]LinkData) (map[string]string, error) {
	out := map[string]string{}
	for _, src := range slices.Sorted(maps.Keys(j.Templates)) {
		s, err := j.render(src, properties, in, links)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", src, err)
		}
		out[j.Templates[src]] = s
	}
	return out, nil
}
