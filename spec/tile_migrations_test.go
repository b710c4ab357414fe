package spec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"go.yaml.in/yaml/v3"
)

// migrationRunner runs the tile's migrations under node as Ops Manager
// runs them: each in a context of its own that has nothing but `exports`
// and `console`, in the order of their names, each given what the one
// before returned (as plain JSON data).
const migrationRunner = `
const vm = require('vm');
const fs = require('fs');
let state = JSON.parse(fs.readFileSync(0, 'utf8'));
for (const file of process.argv.slice(1)) {
  const sandbox = { exports: {}, console: { log() {} } };
  vm.runInNewContext(fs.readFileSync(file, 'utf8'), sandbox, { filename: file });
  if (typeof sandbox.exports.migrate !== 'function') {
    throw new Error(file + ' defines no exports.migrate');
  }
  state = JSON.parse(JSON.stringify(sandbox.exports.migrate(state)));
}
process.stdout.write(JSON.stringify(state));
`

// migrate runs every migration of tile/migrations/v1 on the properties of
// an installation and returns what Ops Manager would keep.
func migrate(properties map[string]any) map[string]any {
	GinkgoHelper()
	node, err := exec.LookPath("node")
	Expect(err).NotTo(HaveOccurred(), "the migration tests run the migrations under node")
	files, err := filepath.Glob(filepath.Join(root, "tile/migrations/v1/*.js"))
	Expect(err).NotTo(HaveOccurred())
	Expect(files).NotTo(BeEmpty())
	input, err := json.Marshal(map[string]any{"properties": properties, "variable_migrations": []any{}})
	Expect(err).NotTo(HaveOccurred())
	cmd := exec.Command(node, append([]string{"-e", migrationRunner}, files...)...)
	cmd.Stdin = bytes.NewReader(input)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	Expect(err).NotTo(HaveOccurred(), stderr.String())
	var result struct {
		Properties         map[string]any `json:"properties"`
		VariableMigrations []any          `json:"variable_migrations"`
	}
	Expect(json.Unmarshal(out, &result)).To(Succeed())
	Expect(result.VariableMigrations).NotTo(BeNil(), "the migrations hand back the whole input")
	return result.Properties
}

// tileProperties lists the properties tile/tile.yml defines: on forms,
// pending or not, a selector's options' own (.properties.SELECTOR.OPTION.NAME),
// and generated.
func tileProperties() []string {
	GinkgoHelper()
	data, err := os.ReadFile(filepath.Join(root, "tile/tile.yml"))
	Expect(err).NotTo(HaveOccurred())
	var desc struct {
		Forms []struct {
			Properties []struct {
				Name    string
				Options []struct {
					Name       any
					Properties []struct{ Name string }
				}
			}
		}
		Generated []struct{ Name string }
	}
	Expect(yaml.Unmarshal(data, &desc)).To(Succeed())
	var out []string
	for _, f := range desc.Forms {
		for _, p := range f.Properties {
			out = append(out, ".properties."+p.Name)
			for _, o := range p.Options {
				for _, q := range o.Properties {
					out = append(out, fmt.Sprintf(".properties.%s.%v.%s", p.Name, o.Name, q.Name))
				}
			}
		}
	}
	for _, p := range desc.Generated {
		out = append(out, ".properties."+p.Name)
	}
	return out
}

func value(v any) map[string]any { return map[string]any{"value": v} }

var _ = Describe("the tile's migrations", func() {
	// What an installation of the earlier p-redis tile (broker job type
	// cf-redis-broker) holds: the settings under their old names, and
	// others the migrations must leave alone.
	legacy := func() map[string]any {
		return map[string]any{
			".cf-redis-broker.service_instance_limit":       value(12),
			".cf-redis-broker.redis_maxmemory":              value("512MB"),
			".cf-redis-broker.broker_http_auth_credentials": value(map[string]any{"identity": "admin", "password": "s3cret"}),
			".properties.syslog_address":                    value("logs.example.com"),
			".redis-node.persistent_disk_note":              value("kept"),
		}
	}

	It("carry an earlier p-redis tile's settings over under the new names, values kept", func() {
		got := migrate(legacy())
		Expect(got).To(Equal(map[string]any{
			".properties.shared_vm_max_instances": value(12.0),
			".properties.shared_vm_maxmemory_mb":  value(512.0),
			".properties.broker_credentials":      value(map[string]any{"identity": "admin", "password": "s3cret"}),
			".properties.syslog_address":          value("logs.example.com"),
			".redis-node.persistent_disk_note":    value("kept"),
		}))
	})

	It("write only properties this tile has", func() {
		known := tileProperties()
		before := legacy()
		for name := range migrate(before) {
			if _, had := before[name]; !had {
				Expect(known).To(ContainElement(name), "a migration writes %s, which tile/tile.yml does not define", name)
			}
		}
	})

	DescribeTable("turn Redis memory sizes into MB, dropping what cannot be read so the new default applies",
		func(old any, want any) {
			got := migrate(map[string]any{".cf-redis-broker.redis_maxmemory": value(old)})
			if want == nil {
				Expect(got).To(BeEmpty())
				return
			}
			Expect(got).To(Equal(map[string]any{".properties.shared_vm_maxmemory_mb": value(want)}))
		},
		Entry("mb", "512mb", 512.0),
		Entry("gb", "1GB", 1024.0),
		Entry("g, a power of 1000", "1g", 953.0),
		Entry("bytes", "268435456", 256.0),
		Entry("a number", 268435456, 256.0),
		Entry("below a megabyte", "100kb", nil),
		Entry("not a size", "lots", nil),
		Entry("no value", nil, nil),
	)

	It("keep a setting the new tile already has", func() {
		props := legacy()
		props[".properties.shared_vm_max_instances"] = value(30)
		got := migrate(props)
		Expect(got[".properties.shared_vm_max_instances"]).To(Equal(value(30.0)))
		Expect(got).NotTo(HaveKey(".cf-redis-broker.service_instance_limit"))
	})

	It("change nothing on an installation of this tile, and twice is once", func() {
		current := map[string]any{}
		for _, name := range tileProperties() {
			current[name] = value("set")
		}
		Expect(migrate(current)).To(Equal(current))
		once := migrate(legacy())
		Expect(migrate(once)).To(Equal(once))
	})

	It("are named as Ops Manager runs them, in order, once each", func() {
		files, err := filepath.Glob(filepath.Join(root, "tile/migrations/v1/*"))
		Expect(err).NotTo(HaveOccurred())
		for _, f := range files {
			Expect(filepath.Base(f)).To(MatchRegexp(`^20\d{10}_[a-z0-9_-]+\.js$`))
			src, err := os.ReadFile(f)
			Expect(err).NotTo(HaveOccurred())
			Expect(strings.Contains(string(src), "require(")).To(BeFalse(), "%s: Ops Manager's runtime has no modules", f)
		}
	})
})
