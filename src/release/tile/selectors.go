package tile

import (
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/cf-redis/redis-for-cf/src/release/boshrender"
)

// parsedManifest reports whether a job property's value is a selector's
// named manifest, (( .properties.SELECTOR.selected_option.parsed_manifest(NAME) )).
func parsedManifest(v any) (selector, manifest string, ok bool) {
	s, isString := v.(string)
	if !isString {
		return "", "", false
	}
	refs, err := ParseRefs(s)
	if err != nil || len(refs) != 1 || refs[0].Manifest == "" || strings.TrimSpace(s) != refs[0].Raw {
		return "", "", false
	}
	return refs[0].Name, refs[0].Manifest, true
}

// expand checks a job property set whole to a selector's named manifest:
// under every option, each property the manifest sets (below the job
// property's name) must be in the job's spec, and its expressions resolve.
func (c *checker) expand(where string, spec *JobSpec, r *Release, prop, selector, manifest string, blueprints map[string]Blueprint) {
	b, ok := blueprints[selector]
	if !ok || b.Type != "selector" {
		c.bad("%s: property %s: %s is not a selector", where, prop, selector)
		return
	}
	c.used[selector]++
	for _, ot := range b.OptionTemplates {
		i := slices.IndexFunc(ot.NamedManifests, func(n NamedManifest) bool { return n.Name == manifest })
		if i < 0 {
			c.bad("%s: property %s: option %s of selector %s has no manifest %s", where, prop, ot.Name, selector, manifest)
			continue
		}
		var v any
		if err := yaml.Unmarshal([]byte(ot.NamedManifests[i].Manifest), &v); err != nil {
			c.bad("%s: property %s: option %s: manifest %s: %v", where, prop, ot.Name, manifest, err)
			continue
		}
		var leaves []string
		flatten(prop, v, &leaves)
		tree := map[string]any{}
		boshrender.SetPath(tree, prop, v)
		for _, p := range leaves {
			at := fmt.Sprintf("%s: property %s (option %s of %s)", where, p, ot.Name, selector)
			if !spec.HasProperty(p) {
				c.bad("%s: not in the job's spec (release %s)", at, r)
			}
			leaf, _ := boshrender.Lookup(tree, p)
			c.values(at, leaf, blueprints, selector+"."+ot.Name)
		}
	}
}

// selector checks a selector's option templates: names, select values and
// named manifests that every option has.
func (c *checker) selector(name string, b Blueprint) {
	if (b.Type == "selector") != (len(b.OptionTemplates) > 0) {
		c.bad("property %s: option_templates are for (and required by) a selector", name)
		return
	}
	if b.Type != "selector" {
		return
	}
	var options, values []string
	var manifests []string
	for i, ot := range b.OptionTemplates {
		options = append(options, ot.Name)
		values = append(values, ot.SelectValue)
		var these []string
		for _, n := range ot.NamedManifests {
			these = append(these, n.Name)
		}
		slices.Sort(these)
		if i == 0 {
			manifests = these
		} else if !slices.Equal(these, manifests) {
			c.bad("property %s: option %s has the manifests %v, option %s %v: parsed_manifest would fail on one of them", name, ot.Name, these, b.OptionTemplates[0].Name, manifests)
		}
	}
	c.unique("property "+name+": options", options)
	c.unique("property "+name+": select values", values)
	if b.Default != nil && !slices.Contains(values, fmt.Sprint(b.Default)) {
		c.bad("property %s: default %v is none of its options' select values", name, b.Default)
	}
}

// selectorInputs checks a form input's selector inputs against the
// blueprint's options, marks their properties as on the form, and returns
// their references.
func (c *checker) selectorInputs(form string, in PropertyInput, b Blueprint, onForm map[string]string) []string {
	if b.Type != "selector" {
		if len(in.SelectorPropertyInputs) > 0 {
			c.bad("form %s: %s has selector_property_inputs, but is a %s", form, in.Reference, b.Type)
		}
		return nil
	}
	var refs, shown []string
	for _, sel := range in.SelectorPropertyInputs {
		refs = append(refs, sel.Reference)
		option, ok := strings.CutPrefix(sel.Reference, in.Reference+".")
		i := slices.IndexFunc(b.OptionTemplates, func(ot OptionTemplate) bool { return ot.Name == option })
		if !ok || i < 0 {
			c.bad("form %s: %s is no option of %s", form, sel.Reference, in.Reference)
			continue
		}
		shown = append(shown, option)
		for _, pin := range sel.PropertyInputs {
			refs = append(refs, pin.Reference)
			prop, ok := strings.CutPrefix(pin.Reference, sel.Reference+".")
			if !ok || !slices.ContainsFunc(b.OptionTemplates[i].PropertyBlueprints, func(p Blueprint) bool { return p.Name == prop }) {
				c.bad("form %s: %s is no property of option %s", form, pin.Reference, sel.Reference)
				continue
			}
			onForm[strings.TrimPrefix(pin.Reference, ".properties.")] = form
		}
	}
	for _, ot := range b.OptionTemplates {
		if !slices.Contains(shown, ot.Name) {
			c.bad("form %s: option %s of %s is not on the form", form, ot.Name, in.Reference)
		}
	}
	return refs
}

// namedBlueprint is a blueprint under the name expressions use.
type namedBlueprint struct {
	Blueprint
	name   string
	nested bool
}

// allBlueprints lists the blueprints and, after each selector, its
// options' properties as SELECTOR.OPTION.NAME.
func allBlueprints(bps []Blueprint) []namedBlueprint {
	var out []namedBlueprint
	for _, b := range bps {
		out = append(out, namedBlueprint{Blueprint: b, name: b.Name})
		for _, ot := range b.OptionTemplates {
			for _, nb := range ot.PropertyBlueprints {
				out = append(out, namedBlueprint{Blueprint: nb, name: b.Name + "." + ot.Name + "." + nb.Name, nested: true})
			}
		}
	}
	return out
}
