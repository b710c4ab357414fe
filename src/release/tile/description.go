// Package tile builds the Ops Manager tile of Redis for Cloud Foundry: it
// reads the tile description kept in the repository (config/tile/tile.yml), the
// BOSH release tarballs the tile packs and the migrations, checks that every
// setting an operator makes reaches a property that a job of those releases
// defines, and writes the .pivotal file (a zip of metadata/NAME.yml,
// releases/*.tgz and migrations/v1/*.js) in one atomic step.
//
// The description is close to Ops Manager's product template, with two
// differences: job properties are set in BOSH's dotted form under each job of
// an instance group (the generator nests them into the template's manifest),
// and a form or an errand may be marked pending, which leaves it out of the
// tile until the release has what it needs.
package tile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Description is config/tile/tile.yml: what the tile shows an operator and how each
// setting reaches the jobs.
type Description struct {
	// Name is the product's name in Ops Manager; never change it once
	// released (Ops Manager then sees a different product).
	Name        string `yaml:"name"`
	Label       string `yaml:"label"`
	Description string `yaml:"description"`
	// Icon is a PNG file, relative to the description's folder.
	Icon                     string `yaml:"icon"`
	MetadataVersion          string `yaml:"metadata_version"`
	MinimumVersionForUpgrade string `yaml:"minimum_version_for_upgrade"`
	Rank                     int    `yaml:"rank"`
	Serial                   bool   `yaml:"serial"`
	// ServiceBroker marks a tile that registers a service broker with
	// Cloud Foundry: Ops Manager then deploys it after the Cloud Foundry
	// tile and runs its errands against a running Cloud Controller.
	ServiceBroker bool `yaml:"service_broker"`
	// Releases names the BOSH releases the tile packs; their tarballs are
	// given to the generator. The first one's version is the tile's version
	// unless another is given.
	Releases                []string         `yaml:"releases"`
	StemcellCriteria        StemcellCriteria `yaml:"stemcell_criteria"`
	RequiresProductVersions []ProductVersion `yaml:"requires_product_versions"`
	Variables               []Variable       `yaml:"variables"`
	Forms                   []Form           `yaml:"forms"`
	Generated               []Property       `yaml:"generated"`
	InstanceGroups          []InstanceGroup  `yaml:"instance_groups"`
	Errands                 []Errand         `yaml:"errands"`
}

// StemcellCriteria is the stemcell Ops Manager deploys the tile's VMs on.
type StemcellCriteria struct {
	OS                         string `yaml:"os"`
	Version                    string `yaml:"version"`
	RequiresCPI                bool   `yaml:"requires_cpi"`
	EnablePatchSecurityUpdates bool   `yaml:"enable_patch_security_updates"`
}

// ProductVersion names another tile and the versions of it this one needs
// (or, in provides_product_versions, this tile's own).
type ProductVersion struct {
	Name    string `yaml:"name"`
	Version string `yaml:"version"`
}

// Variable is a CredHub variable that BOSH generates at deploy time and that
// job properties reach as ((( NAME.FIELD ))); it goes into the tile as is.
type Variable struct {
	Name     string         `yaml:"name"`
	Type     string         `yaml:"type"`
	Options  map[string]any `yaml:"options,omitempty"`
	Consumes map[string]any `yaml:"consumes,omitempty"`
}

// Form is a page of settings in Ops Manager.
type Form struct {
	Name        string `yaml:"name"`
	Label       string `yaml:"label"`
	Description string `yaml:"description"`
	Markdown    string `yaml:"markdown"`
	// Pending, when set, says why the form is left out of the tile for now
	// (what the release still lacks).
	Pending    string     `yaml:"pending"`
	Properties []Property `yaml:"properties"`
}

// Property is a setting: on a form, one the operator makes; under
// generated, one Ops Manager generates (credentials nobody types).
type Property struct {
	Name        string `yaml:"name"`
	Type        string `yaml:"type"`
	Label       string `yaml:"label"`
	Description string `yaml:"description"`
	Placeholder string `yaml:"placeholder"`
	// Default is the value before the operator changes it; nil means none
	// (the operator must set it unless Optional).
	Default     any      `yaml:"default"`
	Optional    bool     `yaml:"optional"`
	Constraints any      `yaml:"constraints"`
	Options     []Option `yaml:"options"`
}

// Option is one choice of a dropdown_select or selector property. In the
// metadata only a dropdown_select's options appear as Options (name and
// label); a selector's become option templates.
type Option struct {
	Name  any    `yaml:"name"`
	Label string `yaml:"label"`
	// Properties are the settings a selector shows when this option is
	// chosen; Ops Manager names them .properties.SELECTOR.OPTION.NAME.
	Properties []Property `yaml:"properties,omitempty"`
	// Manifests are a selector option's named manifests: a job property
	// set to (( .properties.SELECTOR.selected_option.parsed_manifest(NAME) ))
	// takes the chosen option's manifest NAME, which may itself use
	// expressions. Every option of a selector defines the same names.
	Manifests map[string]any `yaml:"manifests,omitempty"`
}

// InstanceGroup is a group of VMs (an Ops Manager job type) and the jobs
// each of them runs.
type InstanceGroup struct {
	Name         string    `yaml:"name"`
	Label        string    `yaml:"label"`
	Instances    Instances `yaml:"instances"`
	Resources    Resources `yaml:"resources"`
	MaxInFlight  any       `yaml:"max_in_flight"`
	SingleAZOnly bool      `yaml:"single_az_only"`
	Jobs         []Job     `yaml:"jobs"`
}

// Instances is how many VMs an instance group has and whether the operator
// may change it (in Resource Config).
type Instances struct {
	Default      int  `yaml:"default"`
	Configurable bool `yaml:"configurable"`
	// Min and Max bound what the operator may choose; nil means no bound.
	Min *int `yaml:"min"`
	Max *int `yaml:"max"`
}

// Resources are a VM's default sizes (MB, and CPUs); the operator may change
// them in Resource Config. A PersistentDisk of 0 means none.
type Resources struct {
	RAM            int `yaml:"ram"`
	EphemeralDisk  int `yaml:"ephemeral_disk"`
	PersistentDisk int `yaml:"persistent_disk"`
	CPU            int `yaml:"cpu"`
}

// Job is a job of a release that an instance group or errand runs, with
// its properties under their dotted names (as in the job's spec).
type Job struct {
	Name       string         `yaml:"name"`
	Release    string         `yaml:"release"`
	Consumes   map[string]any `yaml:"consumes"`
	Provides   map[string]any `yaml:"provides"`
	Properties map[string]any `yaml:"properties"`
}

// Errand is an instance group that runs once: after every deploy
// (post-deploy) or before the deployment is deleted (pre-delete).
type Errand struct {
	Name  string `yaml:"name"`
	Label string `yaml:"label"`
	// Description says what the errand does, for the description's readers
	// (Ops Manager shows only the label).
	Description string `yaml:"description"`
	// Run is "post-deploy" or "pre-delete".
	Run string `yaml:"run"`
	// Default is the errand's run rule in Ops Manager: "on", "off" or
	// "when-changed"; empty means "on".
	Default   string    `yaml:"default"`
	Pending   string    `yaml:"pending"`
	Resources Resources `yaml:"resources"`
	Jobs      []Job     `yaml:"jobs"`
}

// ErrandRuns are the values Errand.Run takes.
var ErrandRuns = []string{"post-deploy", "pre-delete"}

// ConfigurableTypes are the property types an operator can set on a form
// (the ones om's config-template also knows how to template).
var ConfigurableTypes = []string{
	"boolean", "integer", "port", "string", "text", "string_list", "http_url", "email",
	"network_address", "ca_certificate", "dropdown_select", "selector", "secret", "simple_credentials",
	"rsa_cert_credentials",
}

// GeneratedTypes are the property types Ops Manager generates values for
// when they are not configurable.
var GeneratedTypes = []string{
	"secret", "simple_credentials", "rsa_cert_credentials", "rsa_pkey_credentials",
	"salted_credentials", "uuid",
}

// SecretTypes are the property types whose values are secrets.
var SecretTypes = []string{
	"secret", "simple_credentials", "rsa_cert_credentials", "rsa_pkey_credentials", "salted_credentials",
}

var (
	nameRe     = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	jobNameRe  = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)
	propNameRe = regexp.MustCompile(`^[a-z0-9_]+(\.[a-z0-9_]+)*$`)
)

// LoadDescription reads a tile description strictly: an unknown or misspelt
// key is an error, and so is anything Validate rejects.
func LoadDescription(path string) (*Description, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	d, err := ParseDescription(data)
	if err != nil {
		return nil, prefixed(path, err)
	}
	return d, nil
}

// prefixed puts prefix before each of the errors err joins.
func prefixed(prefix string, err error) error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, prefixed(prefix, e))
		}
		return errors.Join(out...)
	}
	return fmt.Errorf("%s: %w", prefix, err)
}

// ParseDescription is LoadDescription for bytes already read.
func ParseDescription(data []byte) (*Description, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var d Description
	if err := dec.Decode(&d); err != nil {
		return nil, err
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("more than one YAML document")
	}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return &d, nil
}

// Validate checks the description on its own, naming the bad field; what
// needs the releases (does the job exist, does it define the property) is
// checked when the tile is built.
func (d *Description) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if !jobNameRe.MatchString(d.Name) {
		bad("name: %q is not a product name (lower case letters, digits, - and _)", d.Name)
	}
	for field, v := range map[string]string{
		"label": d.Label, "description": d.Description, "icon": d.Icon, "metadata_version": d.MetadataVersion,
		"minimum_version_for_upgrade": d.MinimumVersionForUpgrade,
		"stemcell_criteria.os":        d.StemcellCriteria.OS, "stemcell_criteria.version": d.StemcellCriteria.Version,
	} {
		if strings.TrimSpace(v) == "" {
			bad("%s is required", field)
		}
	}
	if len(d.Releases) == 0 {
		bad("releases: name at least one release")
	}
	unique("releases", d.Releases, bad)
	var products []string
	for i, p := range d.RequiresProductVersions {
		if p.Name == "" || p.Version == "" {
			bad("requires_product_versions[%d]: name and version are required", i)
		}
		products = append(products, p.Name)
	}
	unique("requires_product_versions", products, bad)

	var vars []string
	for i, v := range d.Variables {
		if !jobNameRe.MatchString(v.Name) {
			bad("variables[%d]: %q is not a variable name", i, v.Name)
		}
		if _, ok := VariableFields[v.Type]; !ok {
			bad("variables %s: type %q is not one BOSH generates (%s)", v.Name, v.Type, strings.Join(sortedKeys(VariableFields), ", "))
		}
		vars = append(vars, v.Name)
	}
	unique("variables", vars, bad)

	var props, forms []string
	for _, f := range d.Forms {
		if !nameRe.MatchString(f.Name) {
			bad("forms: %q is not a form name (lower case letters, digits and _)", f.Name)
		}
		forms = append(forms, f.Name)
		if f.Label == "" {
			bad("form %s: label is required", f.Name)
		}
		if len(f.Properties) == 0 {
			bad("form %s: no properties", f.Name)
		}
		for _, p := range f.Properties {
			props = append(props, p.Name)
			if err := p.validate(true); err != nil {
				bad("form %s: property %s: %w", f.Name, p.Name, err)
			}
			if err := p.validateSelector(); err != nil {
				bad("form %s: selector %s: %w", f.Name, p.Name, err)
			}
		}
	}
	for _, p := range d.Generated {
		props = append(props, p.Name)
		if err := p.validate(false); err != nil {
			bad("generated property %s: %w", p.Name, err)
		}
	}
	unique("forms", forms, bad)
	unique("properties (forms and generated)", props, bad)

	var groups []string
	for _, g := range d.InstanceGroups {
		groups = append(groups, g.Name)
		if !jobNameRe.MatchString(g.Name) {
			bad("instance_groups: %q is not an instance group name", g.Name)
		}
		if g.Label == "" {
			bad("instance group %s: label is required", g.Name)
		}
		in := g.Instances
		if in.Min != nil && in.Default < *in.Min || in.Max != nil && in.Default > *in.Max || in.Default < 0 {
			bad("instance group %s: instances.default %d is outside its bounds", g.Name, in.Default)
		}
		if !in.Configurable && in.Default == 0 {
			bad("instance group %s: no instances and not configurable: it would never run", g.Name)
		}
		errs = append(errs, g.Resources.validate("instance group "+g.Name, false)...)
		errs = append(errs, validateJobs("instance group "+g.Name, g.Jobs)...)
	}
	for _, e := range d.Errands {
		groups = append(groups, e.Name)
		if !jobNameRe.MatchString(e.Name) {
			bad("errands: %q is not an errand name", e.Name)
		}
		if e.Label == "" {
			bad("errand %s: label is required", e.Name)
		}
		if !contains(ErrandRuns, e.Run) {
			bad("errand %s: run must be one of %s, not %q", e.Name, strings.Join(ErrandRuns, ", "), e.Run)
		}
		if e.Default != "" && !contains([]string{"on", "off", "when-changed"}, e.Default) {
			bad("errand %s: default must be on, off or when-changed, not %q", e.Name, e.Default)
		}
		errs = append(errs, e.Resources.validate("errand "+e.Name, true)...)
		errs = append(errs, validateJobs("errand "+e.Name, e.Jobs)...)
	}
	if len(d.InstanceGroups) == 0 {
		bad("instance_groups: the tile deploys nothing")
	}
	unique("instance groups and errands", groups, bad)
	return errors.Join(errs...)
}

func (p Property) validate(configurable bool) error {
	var errs []error
	if !nameRe.MatchString(p.Name) {
		errs = append(errs, fmt.Errorf("%q is not a property name (lower case letters, digits and _)", p.Name))
	}
	if configurable {
		if !contains(ConfigurableTypes, p.Type) {
			errs = append(errs, fmt.Errorf("type %q is not one an operator can set (%s)", p.Type, strings.Join(ConfigurableTypes, ", ")))
		}
		if p.Label == "" {
			errs = append(errs, errors.New("label is required"))
		}
		if p.Optional && p.Default != nil {
			errs = append(errs, errors.New("optional with a default: Ops Manager allows only one of them"))
		}
		if contains(SecretTypes, p.Type) && p.Default != nil {
			errs = append(errs, errors.New("a secret with a default: every tile would share it"))
		}
		if (p.Type == "dropdown_select" || p.Type == "selector") != (len(p.Options) > 0) {
			errs = append(errs, errors.New("options are for (and required by) dropdown_select and selector"))
		}
		if p.Type != "selector" {
			for _, o := range p.Options {
				if len(o.Properties) > 0 || len(o.Manifests) > 0 {
					errs = append(errs, fmt.Errorf("option %v: properties and manifests are for a selector's options", o.Name))
				}
			}
		}
	} else {
		if !contains(GeneratedTypes, p.Type) {
			errs = append(errs, fmt.Errorf("type %q is not one Ops Manager generates (%s)", p.Type, strings.Join(GeneratedTypes, ", ")))
		}
		if p.Default != nil || p.Optional || p.Label != "" || len(p.Options) > 0 {
			errs = append(errs, errors.New("a generated property takes no default, optional, label or options: nobody types it"))
		}
	}
	return errors.Join(errs...)
}

// validateSelector checks a selector's options: each a name and a label,
// properties of their own (no selector within a selector: Ops Manager has
// none), the same named manifests, and a default that names one of them.
func (p Property) validateSelector() error {
	if p.Type != "selector" {
		return nil
	}
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	var names []string
	var manifests []string
	for i, o := range p.Options {
		name, _ := o.Name.(string)
		if !nameRe.MatchString(name) {
			bad("options[%d]: %v is not an option name (lower case letters, digits and _)", i, o.Name)
		}
		names = append(names, name)
		if o.Label == "" {
			bad("option %s: label is required", name)
		}
		var props []string
		for _, q := range o.Properties {
			props = append(props, q.Name)
			if q.Type == "selector" {
				bad("option %s: property %s: a selector within a selector", name, q.Name)
			} else if err := q.validate(true); err != nil {
				bad("option %s: property %s: %w", name, q.Name, err)
			}
		}
		unique("option "+name+": properties", props, bad)
		these := sortedKeys(o.Manifests)
		for _, m := range these {
			if !nameRe.MatchString(m) {
				bad("option %s: %q is not a manifest name (lower case letters, digits and _)", name, m)
			}
		}
		if i == 0 {
			manifests = these
		} else if !slices.Equal(manifests, these) {
			bad("option %s: manifests %v, but option %v has %v: every option needs the same ones", name, these, p.Options[0].Name, manifests)
		}
	}
	unique("options", names, bad)
	if len(manifests) == 0 {
		bad("no option has a manifest: the choice would reach no job")
	}
	if d, ok := p.Default.(string); p.Default != nil && (!ok || !slices.Contains(names, d)) {
		bad("default %v is not one of the options (%s)", p.Default, strings.Join(names, ", "))
	}
	return errors.Join(errs...)
}

func (r Resources) validate(where string, errand bool) []error {
	var errs []error
	if r.RAM <= 0 || r.EphemeralDisk <= 0 || r.CPU <= 0 || r.PersistentDisk < 0 {
		errs = append(errs, fmt.Errorf("%s: resources need ram, ephemeral_disk and cpu above 0 (and persistent_disk 0 or more)", where))
	}
	if errand && r.PersistentDisk != 0 {
		errs = append(errs, fmt.Errorf("%s: an errand keeps nothing: persistent_disk must be 0", where))
	}
	return errs
}

func validateJobs(where string, jobs []Job) []error {
	var errs []error
	if len(jobs) == 0 {
		errs = append(errs, fmt.Errorf("%s: no jobs", where))
	}
	var names []string
	for _, j := range jobs {
		names = append(names, j.Name)
		if !jobNameRe.MatchString(j.Name) || j.Release == "" {
			errs = append(errs, fmt.Errorf("%s: job %q: name and release are required", where, j.Name))
		}
		var props []string
		for p := range j.Properties {
			if !propNameRe.MatchString(p) {
				errs = append(errs, fmt.Errorf("%s: job %s: %q is not a dotted property name", where, j.Name, p))
			}
			props = append(props, p)
		}
		for _, p := range props {
			for _, q := range props {
				if strings.HasPrefix(q, p+".") {
					errs = append(errs, fmt.Errorf("%s: job %s: property %s is set both whole and in part (%s)", where, j.Name, p, q))
				}
			}
		}
	}
	unique(where+": jobs", names, func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) })
	return errs
}

func unique(what string, names []string, bad func(string, ...any)) {
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			bad("%s: %q appears more than once", what, n)
		}
		seen[n] = true
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
