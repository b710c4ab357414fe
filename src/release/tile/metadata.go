package tile

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/cf-redis/redis-for-cf/src/internal/buildinfo"
	"github.com/cf-redis/redis-for-cf/src/release/boshrender"
)

// Metadata is Ops Manager's product template: metadata/NAME.yml in the
// tile. Fields are in the order Ops Manager's documentation lists them.
type Metadata struct {
	Name                     string           `yaml:"name"`
	ProductVersion           string           `yaml:"product_version"`
	MinimumVersionForUpgrade string           `yaml:"minimum_version_for_upgrade"`
	MetadataVersion          string           `yaml:"metadata_version"`
	Label                    string           `yaml:"label"`
	Description              string           `yaml:"description"`
	Rank                     int              `yaml:"rank"`
	Serial                   bool             `yaml:"serial"`
	ServiceBroker            bool             `yaml:"service_broker"`
	IconImage                string           `yaml:"icon_image"`
	StemcellCriteria         StemcellCriteria `yaml:"stemcell_criteria"`
	ProvidesProductVersions  []ProductVersion `yaml:"provides_product_versions"`
	RequiresProductVersions  []ProductVersion `yaml:"requires_product_versions,omitempty"`
	Releases                 []ReleaseRef     `yaml:"releases"`
	Variables                []Variable       `yaml:"variables,omitempty"`
	PostDeployErrands        []ErrandRef      `yaml:"post_deploy_errands,omitempty"`
	PreDeleteErrands         []ErrandRef      `yaml:"pre_delete_errands,omitempty"`
	FormTypes                []FormType       `yaml:"form_types"`
	PropertyBlueprints       []Blueprint      `yaml:"property_blueprints"`
	JobTypes                 []JobType        `yaml:"job_types"`
}

// ReleaseRef is a release the tile carries under releases/FILE.
type ReleaseRef struct {
	Name    string `yaml:"name"`
	File    string `yaml:"file"`
	Version string `yaml:"version"`
}

// ErrandRef lists an errand (a job type with errand: true) to run after
// deploys or before deletion.
type ErrandRef struct {
	Name string `yaml:"name"`
}

// FormType is a page of settings.
type FormType struct {
	Name           string          `yaml:"name"`
	Label          string          `yaml:"label"`
	Description    string          `yaml:"description"`
	Markdown       string          `yaml:"markdown,omitempty"`
	PropertyInputs []PropertyInput `yaml:"property_inputs"`
}

// PropertyInput puts a property blueprint on a form.
type PropertyInput struct {
	Reference   string `yaml:"reference"`
	Label       string `yaml:"label"`
	Description string `yaml:"description,omitempty"`
	Placeholder string `yaml:"placeholder,omitempty"`
	// SelectorPropertyInputs are a selector's options, each with the
	// inputs of its own properties.
	SelectorPropertyInputs []SelectorPropertyInput `yaml:"selector_property_inputs,omitempty"`
}

// SelectorPropertyInput is one option of a selector on a form
// (.properties.SELECTOR.OPTION) and the inputs it shows when chosen.
type SelectorPropertyInput struct {
	Reference      string          `yaml:"reference"`
	Label          string          `yaml:"label"`
	PropertyInputs []PropertyInput `yaml:"property_inputs,omitempty"`
}

// Blueprint is a property: its type, default, and whether the operator sets
// it (configurable) or Ops Manager generates it.
type Blueprint struct {
	Name         string   `yaml:"name"`
	Type         string   `yaml:"type"`
	Configurable bool     `yaml:"configurable"`
	Optional     bool     `yaml:"optional,omitempty"`
	Default      any      `yaml:"default,omitempty"`
	Constraints  any      `yaml:"constraints,omitempty"`
	Options      []Option `yaml:"options,omitempty"`
	// OptionTemplates are a selector's options; its Default and the value
	// Ops Manager gives are an option's SelectValue.
	OptionTemplates []OptionTemplate `yaml:"option_templates,omitempty"`
}

// OptionTemplate is one option of a selector: its own properties and the
// named manifests that jobs take through parsed_manifest when it is chosen.
type OptionTemplate struct {
	Name               string          `yaml:"name"`
	SelectValue        string          `yaml:"select_value"`
	NamedManifests     []NamedManifest `yaml:"named_manifests,omitempty"`
	PropertyBlueprints []Blueprint     `yaml:"property_blueprints,omitempty"`
}

// NamedManifest is YAML text, with expressions, that a job property takes
// whole through (( .properties.SELECTOR.selected_option.parsed_manifest(NAME) )).
type NamedManifest struct {
	Name     string `yaml:"name"`
	Manifest string `yaml:"manifest"`
}

// JobType is an instance group (or errand) of the deployment.
type JobType struct {
	Name                       string               `yaml:"name"`
	ResourceLabel              string               `yaml:"resource_label"`
	Errand                     bool                 `yaml:"errand,omitempty"`
	RunPostDeployErrandDefault string               `yaml:"run_post_deploy_errand_default,omitempty"`
	RunPreDeleteErrandDefault  string               `yaml:"run_pre_delete_errand_default,omitempty"`
	Templates                  []Template           `yaml:"templates"`
	ResourceDefinitions        []ResourceDefinition `yaml:"resource_definitions"`
	InstanceDefinition         InstanceDefinition   `yaml:"instance_definition"`
	StaticIP                   int                  `yaml:"static_ip"`
	DynamicIP                  int                  `yaml:"dynamic_ip"`
	MaxInFlight                any                  `yaml:"max_in_flight"`
	SingleAZOnly               bool                 `yaml:"single_az_only"`
}

// Template is a release job a job type runs. Manifest holds the job's
// properties, Consumes and Provides its links, each as YAML text (which is
// how Ops Manager takes them).
type Template struct {
	Name     string `yaml:"name"`
	Release  string `yaml:"release"`
	Manifest string `yaml:"manifest,omitempty"`
	Consumes string `yaml:"consumes,omitempty"`
	Provides string `yaml:"provides,omitempty"`
}

// ResourceDefinition is a VM size setting of Resource Config.
type ResourceDefinition struct {
	Name         string         `yaml:"name"`
	Type         string         `yaml:"type"`
	Configurable bool           `yaml:"configurable"`
	Default      int            `yaml:"default"`
	Constraints  map[string]int `yaml:"constraints,omitempty"`
}

// InstanceDefinition is a job type's instance count in Resource Config.
type InstanceDefinition struct {
	Name         string         `yaml:"name"`
	Type         string         `yaml:"type"`
	Configurable bool           `yaml:"configurable"`
	Default      int            `yaml:"default"`
	Constraints  map[string]int `yaml:"constraints,omitempty"`
}

// Built is a tile ready to be written: its metadata, the releases it packs
// and its migrations.
type Built struct {
	Metadata   *Metadata
	Releases   []*Release
	Migrations []Migration
	// Left lists what the description marks pending and the tile leaves out,
	// each with the reason.
	Left []string
}

// Options are the generator's inputs besides the description.
type Options struct {
	// Dir is the description's folder, where the icon is; empty means the
	// working directory.
	Dir string
	// Releases are the release tarballs, one for each release the
	// description names.
	Releases []*Release
	// Version is the tile's version; empty means one derived from the first
	// release's version (see DeriveVersion).
	Version string
	// Migrations are the tile's migrations, in the order Ops Manager runs them.
	Migrations []Migration
}

// Build turns the description and the releases into the tile's metadata and
// checks it (Check). Errors name every problem found, not only the first.
func Build(d *Description, o Options) (*Built, error) {
	byName := map[string]*Release{}
	for _, r := range o.Releases {
		if _, dup := byName[r.Name]; dup {
			return nil, fmt.Errorf("release %s: two tarballs given", r.Name)
		}
		byName[r.Name] = r
	}
	var missing []string
	var releases []*Release
	for _, name := range d.Releases {
		r, ok := byName[name]
		if !ok {
			missing = append(missing, name)
			continue
		}
		releases = append(releases, r)
		delete(byName, name)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("releases: no release tarball given for %s", strings.Join(missing, ", "))
	}
	if len(byName) > 0 {
		return nil, fmt.Errorf("releases: tarballs of %s given, which the description does not name", strings.Join(sortedKeys(byName), ", "))
	}
	version := o.Version
	if version == "" {
		v, err := DeriveVersion(releases[0].Version)
		if err != nil {
			return nil, err
		}
		version = v
	}
	if !versionRe.MatchString(version) {
		return nil, fmt.Errorf("version %q is not a semantic version (like 1.2.3 or 0.0.0-dev.7)", version)
	}
	icon, err := os.ReadFile(filepath.Join(o.Dir, d.Icon))
	if err != nil {
		return nil, fmt.Errorf("icon: %w", err)
	}
	if !strings.HasPrefix(string(icon), "\x89PNG\r\n\x1a\n") {
		return nil, fmt.Errorf("icon %s is not a PNG file", d.Icon)
	}

	m := &Metadata{
		Name:                     d.Name,
		ProductVersion:           version,
		MinimumVersionForUpgrade: d.MinimumVersionForUpgrade,
		MetadataVersion:          d.MetadataVersion,
		Label:                    d.Label,
		Description:              d.Description,
		Rank:                     d.Rank,
		Serial:                   d.Serial,
		ServiceBroker:            d.ServiceBroker,
		IconImage:                base64.StdEncoding.EncodeToString(icon),
		StemcellCriteria:         d.StemcellCriteria,
		ProvidesProductVersions:  []ProductVersion{{Name: d.Name, Version: version}},
		RequiresProductVersions:  d.RequiresProductVersions,
		Variables:                d.Variables,
	}
	for _, r := range releases {
		m.Releases = append(m.Releases, ReleaseRef{Name: r.Name, File: r.File(), Version: r.Version})
	}

	b := &Built{Metadata: m, Releases: releases, Migrations: o.Migrations}
	var errs []error
	pending := map[string]string{}
	for _, f := range d.Forms {
		if f.Pending != "" {
			b.Left = append(b.Left, fmt.Sprintf("form %s (pending: %s)", f.Name, f.Pending))
			for _, p := range f.Properties {
				pending[p.Name] = f.Name
				for _, o := range p.Options {
					for _, q := range o.Properties {
						pending[fmt.Sprintf("%s.%v.%s", p.Name, o.Name, q.Name)] = f.Name
					}
				}
			}
			continue
		}
		ft := FormType{Name: f.Name, Label: f.Label, Description: f.Description, Markdown: f.Markdown}
		for _, p := range f.Properties {
			in, bp, err := formProperty(p)
			errs = append(errs, err)
			ft.PropertyInputs = append(ft.PropertyInputs, in)
			m.PropertyBlueprints = append(m.PropertyBlueprints, bp)
		}
		m.FormTypes = append(m.FormTypes, ft)
	}
	for _, p := range d.Generated {
		m.PropertyBlueprints = append(m.PropertyBlueprints, Blueprint{Name: p.Name, Type: p.Type})
	}

	for _, g := range d.InstanceGroups {
		jt := JobType{
			Name: g.Name, ResourceLabel: g.Label, ResourceDefinitions: resourceDefinitions(g.Resources, false),
			InstanceDefinition: InstanceDefinition{Name: "instances", Type: "integer", Configurable: g.Instances.Configurable, Default: g.Instances.Default},
			DynamicIP:          1, MaxInFlight: g.MaxInFlight, SingleAZOnly: g.SingleAZOnly,
		}
		if jt.MaxInFlight == nil {
			jt.MaxInFlight = 1
		}
		if g.Instances.Min != nil || g.Instances.Max != nil {
			jt.InstanceDefinition.Constraints = map[string]int{}
			if g.Instances.Min != nil {
				jt.InstanceDefinition.Constraints["min"] = *g.Instances.Min
			}
			if g.Instances.Max != nil {
				jt.InstanceDefinition.Constraints["max"] = *g.Instances.Max
			}
		}
		jt.Templates, err = templates("instance group "+g.Name, g.Jobs, pending)
		errs = append(errs, err)
		m.JobTypes = append(m.JobTypes, jt)
	}
	for _, e := range d.Errands {
		if e.Pending != "" {
			b.Left = append(b.Left, fmt.Sprintf("errand %s (pending: %s)", e.Name, e.Pending))
			if ready(e.Jobs, releases) {
				b.Left = append(b.Left, fmt.Sprintf("errand %s: every job it runs is now in the releases: wire it in (drop pending)", e.Name))
			}
			continue
		}
		jt := JobType{
			Name: e.Name, ResourceLabel: e.Label, Errand: true,
			ResourceDefinitions: resourceDefinitions(e.Resources, true),
			InstanceDefinition:  InstanceDefinition{Name: "instances", Type: "integer", Default: 1},
			DynamicIP:           1, MaxInFlight: 1, SingleAZOnly: true,
		}
		ref := ErrandRef{Name: e.Name}
		def := e.Default
		if def == "" {
			def = "on"
		}
		if e.Run == "post-deploy" {
			jt.RunPostDeployErrandDefault = def
			m.PostDeployErrands = append(m.PostDeployErrands, ref)
		} else {
			jt.RunPreDeleteErrandDefault = def
			m.PreDeleteErrands = append(m.PreDeleteErrands, ref)
		}
		jt.Templates, err = templates("errand "+e.Name, e.Jobs, pending)
		errs = append(errs, err)
		m.JobTypes = append(m.JobTypes, jt)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := Check(m, releases); err != nil {
		return nil, err
	}
	return b, nil
}

// formProperty turns a form's property into its input and blueprint; a
// selector's options become option templates, each option's properties
// nested blueprints and inputs, its manifests named manifests (YAML text).
func formProperty(p Property) (PropertyInput, Blueprint, error) {
	in := PropertyInput{Reference: ".properties." + p.Name, Label: p.Label, Description: p.Description, Placeholder: p.Placeholder}
	bp := Blueprint{
		Name: p.Name, Type: p.Type, Configurable: true, Optional: p.Optional, Default: p.Default, Constraints: p.Constraints,
	}
	if p.Type != "selector" {
		for _, o := range p.Options {
			bp.Options = append(bp.Options, Option{Name: o.Name, Label: o.Label})
		}
		return in, bp, nil
	}
	var errs []error
	for _, o := range p.Options {
		name := fmt.Sprint(o.Name)
		ot := OptionTemplate{Name: name, SelectValue: name}
		sel := SelectorPropertyInput{Reference: in.Reference + "." + name, Label: o.Label}
		for _, q := range o.Properties {
			qin, qbp, _ := formProperty(q)
			qin.Reference = sel.Reference + "." + q.Name
			sel.PropertyInputs = append(sel.PropertyInputs, qin)
			ot.PropertyBlueprints = append(ot.PropertyBlueprints, qbp)
		}
		for _, mn := range sortedKeys(o.Manifests) {
			text, err := marshal(o.Manifests[mn])
			if err != nil {
				errs = append(errs, fmt.Errorf("selector %s: option %s: manifest %s: %w", p.Name, name, mn, err))
			}
			ot.NamedManifests = append(ot.NamedManifests, NamedManifest{Name: mn, Manifest: string(text)})
		}
		in.SelectorPropertyInputs = append(in.SelectorPropertyInputs, sel)
		bp.OptionTemplates = append(bp.OptionTemplates, ot)
	}
	return in, bp, errors.Join(errs...)
}

// ready reports whether every job of a pending errand is in a release.
func ready(jobs []Job, releases []*Release) bool {
	for _, j := range jobs {
		found := false
		for _, r := range releases {
			if r.Name == j.Release && r.Jobs[j.Name] != nil {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func resourceDefinitions(r Resources, errand bool) []ResourceDefinition {
	disk := ResourceDefinition{Name: "persistent_disk", Type: "integer", Configurable: r.PersistentDisk > 0, Default: r.PersistentDisk}
	if r.PersistentDisk > 0 {
		// Below this a restore or a resync has no room; Ops Manager lets
		// the operator go up, not down past it.
		disk.Constraints = map[string]int{"min": min(r.PersistentDisk, 1024)}
	}
	return []ResourceDefinition{
		{Name: "ram", Type: "integer", Configurable: true, Default: r.RAM},
		{Name: "ephemeral_disk", Type: "integer", Configurable: true, Default: r.EphemeralDisk},
		disk,
		{Name: "cpu", Type: "integer", Configurable: true, Default: r.CPU},
	}
}

// templates turns jobs into templates: dotted properties nested into the
// manifest, links into YAML text.
func templates(where string, jobs []Job, pending map[string]string) ([]Template, error) {
	var out []Template
	var errs []error
	for _, j := range jobs {
		t := Template{Name: j.Name, Release: j.Release}
		props := map[string]any{}
		for _, name := range sortedKeys(j.Properties) {
			v := j.Properties[name]
			for _, s := range stringsIn(v) {
				refs, err := ParseRefs(s)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: job %s: property %s: %w", where, j.Name, name, err))
				}
				for _, r := range refs {
					if form, ok := pending[r.Name]; ok && r.Kind == PropertyRef {
						errs = append(errs, fmt.Errorf("%s: job %s: property %s takes %s, which is on pending form %s", where, j.Name, name, r.Raw, form))
					}
				}
			}
			boshrender.SetPath(props, name, v)
		}
		var err error
		if t.Manifest, err = yamlText(props); err != nil {
			errs = append(errs, err)
		}
		if t.Consumes, err = yamlText(j.Consumes); err != nil {
			errs = append(errs, err)
		}
		if t.Provides, err = yamlText(j.Provides); err != nil {
			errs = append(errs, err)
		}
		out = append(out, t)
	}
	return out, errors.Join(errs...)
}

// stringsIn lists the strings in a YAML value, however deeply nested.
func stringsIn(v any) []string {
	switch t := v.(type) {
	case string:
		return []string{t}
	case []any:
		var out []string
		for _, e := range t {
			out = append(out, stringsIn(e)...)
		}
		return out
	case map[string]any:
		var out []string
		for _, k := range sortedKeys(t) {
			out = append(out, stringsIn(t[k])...)
		}
		return out
	}
	return nil
}

func yamlText(v map[string]any) (string, error) {
	if len(v) == 0 {
		return "", nil
	}
	out, err := marshal(v)
	return string(out), err
}

// marshal writes YAML indented by two spaces, as Ops Manager's own examples
// are.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

var (
	versionRe = regexp.MustCompile(`^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)
)

// DeriveVersion turns a release version into a tile version, as
// buildinfo.ToSemVer does for maintenance_info: a final release's X.Y.Z is
// the tile's (X or X.Y padded with zeros), and a dev release X.Y.Z+dev.N,
// made after the final X.Y.Z, becomes X.Y.(Z+1)-dev.N, so that Ops Manager
// orders the tiles as BOSH orders the releases.
func DeriveVersion(release string) (string, error) {
	v, err := buildinfo.ToSemVer(release)
	if err != nil {
		return "", fmt.Errorf("release version %q gives no tile version: give one (%w)", release, err)
	}
	return v, nil
}
