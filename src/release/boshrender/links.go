package boshrender

import (
	"fmt"
	"strings"
)

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

// LinkFrom builds the link named name that job provides from the instances
// of its group with props as the job's properties, as the Director does:
// the properties the link lists, each from props or else its default.
func LinkFrom(job *Job, name string, props map[string]any, instances []Instance) (LinkData, error) {
	spec, ok := job.Provided(name)
	if !ok {
		return LinkData{}, fmt.Errorf("job %s provides no link %q", job.Name, name)
	}
	link := LinkData{Instances: []LinkInstance{}, Properties: map[string]any{}}
	for _, p := range spec.Properties {
		def, ok := job.Properties[p]
		if !ok {
			return LinkData{}, fmt.Errorf("job %s: link %s lists property %s, which the job does not define", job.Name, name, p)
		}
		v, set := Lookup(props, p)
		if !set {
			v = def.Default
		}
		SetPath(link.Properties, p, v)
	}
	for i, in := range instances {
		link.Instances = append(link.Instances, LinkInstance{
			Name: in.Group, Index: in.Index, ID: in.ID, AZ: in.AZ, Address: in.Address, Bootstrap: i == 0,
		})
	}
	return link, nil
}

// Lookup finds a dotted property name in nested maps; a nil value counts as
// unset.
func Lookup(m map[string]any, dotted string) (any, bool) {
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

// SetPath sets a dotted property name in nested maps, making the maps on
// the way.
func SetPath(m map[string]any, dotted string, v any) {
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
