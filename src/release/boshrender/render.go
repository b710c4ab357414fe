package boshrender

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"

	"github.com/cloudfoundry/bosh-cli/v7/templatescompiler/erbrenderer"
	boshlog "github.com/cloudfoundry/bosh-utils/logger"
	boshsys "github.com/cloudfoundry/bosh-utils/system"
)

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
	// Network names the instance's network in spec.networks; empty means
	// "default".
	Network string
}

// linksShim is links.rb: it runs bosh-cli's renderer script with link() and
// if_link().
//
//go:embed links.rb
var linksShim []byte

var fillingError = regexp.MustCompile(`Error filling in template [^\n]*`)

// renderContext is the JSON document bosh-cli's renderer script reads: its
// RootContext (templatescompiler.RootContext) plus "ip", "name" and "links",
// which the Director's spec has and the create-env one lacks.
type renderContext map[string]any

func (c renderContext) MarshalJSON() ([]byte, error) { return json.Marshal(map[string]any(c)) }

// linkRunner runs bosh-cli's renderer script through links.rb, which adds
// the Director's link() and if_link() to it.
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

// Render renders the job's template src (a key of its spec's templates)
// with bosh-cli's own ERB renderer, for an instance with the given
// manifest properties (nil: none) and links (nil: none), and returns the
// output. A template that fails returns the Director's own message ("Error
// filling in template ...").
func (j *Job) Render(src string, properties map[string]any, in Instance, links map[string]LinkData) (string, error) {
	if _, ok := j.Templates[src]; !ok {
		return "", fmt.Errorf("job %s has no template %s", j.Name, src)
	}
	return j.renderFile(filepath.Join("templates", src), properties, in, links)
}

// RenderMonit renders the job's monit file, which the Director renders as
// it does the templates; a job without one renders to "".
func (j *Job) RenderMonit(properties map[string]any, in Instance, links map[string]LinkData) (string, error) {
	if _, err := os.Stat(filepath.Join(j.dir, "monit")); errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	return j.renderFile("monit", properties, in, links)
}

// renderFile renders the job's file at rel, a path in its folder.
func (j *Job) renderFile(rel string, properties map[string]any, in Instance, links map[string]LinkData) (string, error) {
	if j.dir == "" {
		return "", fmt.Errorf("job %s was not loaded from a release (LoadJob)", j.Name)
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
	network := in.Network
	if network == "" {
		network = "default"
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
		"networks":           map[string]any{network: map[string]any{"ip": in.IP, "netmask": "255.255.255.0", "gateway": gateway(in.IP)}},
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
	shim := filepath.Join(dir, "links.rb")
	if err := os.WriteFile(shim, linksShim, 0o600); err != nil {
		return "", err
	}
	logger := boshlog.NewLogger(boshlog.LevelNone)
	renderer := erbrenderer.NewERBRenderer(boshsys.NewOsFileSystem(logger),
		linkRunner{CmdRunner: boshsys.NewExecCmdRunner(logger), shim: shim}, logger)
	dst := filepath.Join(dir, "out")
	if err := renderer.Render(filepath.Join(j.dir, rel), dst, ctx); err != nil {
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

// RenderAll renders every template of the job and returns the outputs by
// destination path (e.g. "config/config.json").
func (j *Job) RenderAll(properties map[string]any, in Instance, links map[string]LinkData) (map[string]string, error) {
	out := map[string]string{}
	for _, src := range slices.Sorted(maps.Keys(j.Templates)) {
		s, err := j.Render(src, properties, in, links)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", src, err)
		}
		out[j.Templates[src]] = s
	}
	return out, nil
}

// gateway is the first address of an IPv4 address's /24, as templates see
// it in spec.networks; empty for other addresses.
func gateway(ip string) string {
	v4 := net.ParseIP(ip).To4()
	if v4 == nil {
		return ""
	}
	return net.IPv4(v4[0], v4[1], v4[2], 1).String()
}
