package boshrender

import "fmt"

// Manifest is the part of a deployment manifest that rendering and running
// its jobs read.
type Manifest struct {
	Name     string `yaml:"name"`
	Features struct {
		UseDNSAddresses bool `yaml:"use_dns_addresses"`
	} `yaml:"features"`
	Releases []struct {
		Name string `yaml:"name"`
	} `yaml:"releases"`
	InstanceGroups []InstanceGroup `yaml:"instance_groups"`
}

// InstanceGroup is one of a manifest's instance groups.
type InstanceGroup struct {
	Name      string `yaml:"name"`
	Instances int    `yaml:"instances"`
	// Lifecycle is "service" (the default, when empty) or "errand": an
	// errand group has VMs only while its errand runs.
	Lifecycle          string   `yaml:"lifecycle"`
	AZs                []string `yaml:"azs"`
	PersistentDiskType string   `yaml:"persistent_disk_type"`
	PersistentDisk     int      `yaml:"persistent_disk"`
	Networks           []struct {
		Name string `yaml:"name"`
	} `yaml:"networks"`
	Jobs []ManifestJob `yaml:"jobs"`
}

// ManifestJob is a job of an instance group, with its properties and links.
type ManifestJob struct {
	Name       string                    `yaml:"name"`
	Release    string                    `yaml:"release"`
	Properties map[string]any            `yaml:"properties"`
	Consumes   map[string]any            `yaml:"consumes"`
	Provides   map[string]map[string]any `yaml:"provides"`
}

// AZ is the availability zone of the group's instance index, spread over
// its AZs as the Director does; empty when it names none.
func (g InstanceGroup) AZ(index int) string {
	if len(g.AZs) == 0 {
		return ""
	}
	return g.AZs[index%len(g.AZs)]
}

// Network is the name of the group's first network; "default" when it names
// none.
func (g InstanceGroup) Network() string {
	if len(g.Networks) > 0 {
		return g.Networks[0].Name
	}
	return "default"
}

// Address is the address the Director gives an instance of group g in
// links and spec.address: its BOSH DNS name when the manifest enables
// use_dns_addresses, else its IP.
func (m *Manifest) Address(g InstanceGroup, id, ip string) string {
	if !m.Features.UseDNSAddresses {
		return ip
	}
	return fmt.Sprintf("%s.%s.%s.%s.bosh", id, g.Name, g.Network(), m.Name)
}

// Deployment is a manifest as a Director sees it: the jobs of one release,
// the instances of each group, and so the links between its jobs.
type Deployment struct {
	Manifest Manifest
	// Release names the release whose jobs Jobs holds; manifest jobs of
	// other releases neither provide nor consume links here.
	Release string
	// Jobs are the release's jobs by name.
	Jobs map[string]*Job
	// Instances lists the instances of a group.
	Instances func(InstanceGroup) []Instance
}

// Provider is a link that a job of the deployment provides.
type Provider struct {
	// Alias is the name consumers ask for: the manifest's
	// provides: {NAME: {as: ALIAS}}, or the link's own name.
	Alias string
	// Type and Name are the link's, as the job's spec gives them.
	Type, Name string
	Group      InstanceGroup
	Job        *Job
	// Properties are the providing job's manifest properties.
	Properties map[string]any
}

// Providers lists every link the release's jobs provide in the deployment.
func (d *Deployment) Providers() []Provider {
	var out []Provider
	for _, g := range d.Manifest.InstanceGroups {
		for _, mj := range g.Jobs {
			j := d.Jobs[mj.Name]
			if mj.Release != d.Release || j == nil {
				continue
			}
			for _, l := range j.Provides {
				alias := l.Name
				if as, ok := mj.Provides[l.Name]["as"].(string); ok {
					alias = as
				}
				out = append(out, Provider{Alias: alias, Type: l.Type, Name: l.Name, Group: g, Job: j, Properties: mj.Properties})
			}
		}
	}
	return out
}

// Links resolves the links the manifest job mj consumes as the Director
// does: an explicit `from` names a provider's alias; "nil" blocks the link;
// otherwise the one provider of the link's type is taken, and more than one
// is an error. A link with no provider is left out if it is optional and an
// error if not.
func (d *Deployment) Links(mj ManifestJob) (map[string]LinkData, error) {
	j := d.Jobs[mj.Name]
	if j == nil {
		return nil, fmt.Errorf("job %s is not a job of release %s", mj.Name, d.Release)
	}
	out := map[string]LinkData{}
	for _, c := range j.Consumes {
		var candidates []Provider
		switch v := mj.Consumes[c.Name].(type) {
		case nil:
			for _, p := range d.Providers() {
				if p.Type == c.Type {
					candidates = append(candidates, p)
				}
			}
			if len(candidates) > 1 {
				return nil, fmt.Errorf("%s: link %s could come from %d providers; name one with from:", mj.Name, c.Name, len(candidates))
			}
		case string:
			if v != "nil" {
				return nil, fmt.Errorf("%s: consumes %s: %q", mj.Name, c.Name, v)
			}
		case map[string]any:
			from, _ := v["from"].(string)
			for _, p := range d.Providers() {
				if p.Alias == from {
					if p.Type != c.Type {
						return nil, fmt.Errorf("%s: link %s from %s is of type %s, not %s", mj.Name, c.Name, from, p.Type, c.Type)
					}
					candidates = append(candidates, p)
				}
			}
			if len(candidates) != 1 {
				return nil, fmt.Errorf("%s: link %s from %q: %d providers", mj.Name, c.Name, from, len(candidates))
			}
		}
		if len(candidates) == 0 {
			if !c.Optional {
				return nil, fmt.Errorf("%s: required link %s has no provider", mj.Name, c.Name)
			}
			continue
		}
		p := candidates[0]
		l, err := LinkFrom(p.Job, p.Name, p.Properties, d.Instances(p.Group))
		if err != nil {
			return nil, err
		}
		out[c.Name] = l
	}
	return out, nil
}
