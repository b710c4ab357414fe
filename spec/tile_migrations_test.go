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

// migrate runs every migration of config/tile/migrations/v1 on the properties of
// an installation and returns what Ops Manager would keep.
func migrate(properties map[string]any) map[string]any {
	GinkgoHelper()
	node, err := exec.LookPath("node")
	Expect(err).NotTo(HaveOccurred(), "the migration tests run the migrations under node")
	files, err := filepath.Glob(filepath.Join(root, "config/tile/migrations/v1/*.js"))
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

func mustRead(path string) []byte {
	GinkgoHelper()
	data, err := os.ReadFile(path)
	Expect(err).NotTo(HaveOccurred())
	return data
}

// tileProperties lists the properties config/tile/tile.yml defines: on forms,
// pending or not, a selector's options' own (.properties.SELECTOR.OPTION.NAME),
// and generated.
func tileProperties() []string {
	GinkgoHelper()
	data, err := os.ReadFile(filepath.Join(root, "config/tile/tile.yml"))
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

// tileSetting is a property of a config/tile/tile.yml as Ops Manager stores it: its
// type and, for a dropdown or a selector, its options.
type tileSetting struct {
	Type    string
	Options []string
}

// tileSettings lists the properties a config/tile/tile.yml puts in the tile (its
// forms that are not pending, their selectors' options' properties, and its
// generated credentials), by Ops Manager's name for them.
func tileSettings(data []byte) map[string]tileSetting {
	GinkgoHelper()
	var desc struct {
		Forms []struct {
			Pending    string
			Properties []struct {
				Name    string
				Type    string
				Options []struct {
					Name       any
					Properties []struct{ Name, Type string }
				}
			}
		}
		Generated []struct{ Name, Type string }
	}
	Expect(yaml.Unmarshal(data, &desc)).To(Succeed())
	out := map[string]tileSetting{}
	for _, f := range desc.Forms {
		if f.Pending != "" {
			continue // never in a tile, so never in an installation
		}
		for _, p := range f.Properties {
			s := tileSetting{Type: p.Type}
			for _, o := range p.Options {
				s.Options = append(s.Options, fmt.Sprint(o.Name))
				for _, q := range o.Properties {
					out[fmt.Sprintf(".properties.%s.%v.%s", p.Name, o.Name, q.Name)] = tileSetting{Type: q.Type}
				}
			}
			out[".properties."+p.Name] = s
		}
	}
	for _, g := range desc.Generated {
		out[".properties."+g.Name] = tileSetting{Type: g.Type}
	}
	return out
}

// earlierTiles returns config/tile/tile.yml as every commit that changed it left
// it: each version of this tile there has been, by commit.
func earlierTiles() map[string][]byte {
	GinkgoHelper()
	shallow, err := exec.Command("git", "-C", root, "rev-parse", "--is-shallow-repository").Output()
	Expect(err).NotTo(HaveOccurred(), "the migration tests read config/tile/tile.yml's history from git")
	Expect(strings.TrimSpace(string(shallow))).To(Equal("false"), "a shallow clone lacks the tile's history: git fetch --unshallow")
	// The file moved from tile/ to config/tile/: each commit that changed
	// either path holds the tile at one of them.
	paths := []string{"config/tile/tile.yml", "tile/tile.yml"}
	commits, err := exec.Command("git", append([]string{"-C", root, "log", "--format=%h", "--"}, paths...)...).Output()
	Expect(err).NotTo(HaveOccurred())
	out := map[string][]byte{}
	for _, c := range strings.Fields(string(commits)) {
		for _, path := range paths {
			if data, err := exec.Command("git", "-C", root, "show", c+":"+path).Output(); err == nil {
				out[c] = data
				break
			}
		}
		Expect(out).To(HaveKey(c), "%s holds no tile.yml", c)
	}
	Expect(out).NotTo(BeEmpty())
	return out
}

// operatorValue is a value an operator could have given a setting of the
// type: not the default, a dropdown's or selector's last option.
func operatorValue(s tileSetting) any {
	switch s.Type {
	case "integer", "port":
		return 7
	case "boolean":
		return true
	case "dropdown_select", "selector":
		return s.Options[len(s.Options)-1]
	case "secret":
		return map[string]any{"secret": "operator-secret"}
	case "simple_credentials":
		return map[string]any{"identity": "operator", "password": "operator-password"}
	case "rsa_cert_credentials":
		return map[string]any{"cert_pem": "-----BEGIN CERTIFICATE-----\n", "private_key_pem": "-----BEGIN RSA PRIVATE KEY-----\n"}
	default:
		return "set by the operator"
	}
}

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
				Expect(known).To(ContainElement(name), "a migration writes %s, which config/tile/tile.yml does not define", name)
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

	It("keep every setting of every earlier version of this tile, under a name and type the tile still has", func() {
		current := tileSettings(mustRead(filepath.Join(root, "config/tile/tile.yml")))
		for commit, data := range earlierTiles() {
			installation := map[string]any{}
			settings := tileSettings(data)
			for name, s := range settings {
				installation[name] = value(operatorValue(s))
			}
			// As JSON, the way the migrations hand them back.
			var want map[string]any
			raw, err := json.Marshal(installation)
			Expect(err).NotTo(HaveOccurred())
			Expect(json.Unmarshal(raw, &want)).To(Succeed())
			got := migrate(installation)
			for name, s := range settings {
				Expect(got).To(HaveKeyWithValue(name, want[name]), "config/tile/tile.yml of %s: %s is kept", commit, name)
				Expect(current).To(HaveKey(name), "config/tile/tile.yml of %s has %s, which this tile lacks: Ops Manager would drop the operator's value (rename it in a migration)", commit, name)
				Expect(current[name].Type).To(Equal(s.Type), "config/tile/tile.yml of %s: %s was a %s", commit, name, s.Type)
				if s.Options != nil {
					Expect(current[name].Options).To(ContainElement(operatorValue(s)), "config/tile/tile.yml of %s: %s's option %v is gone", commit, name, operatorValue(s))
				}
			}
		}
	})

	DescribeTable("keep the settings added since the first tile",
		func(name string, v any) {
			props := map[string]any{name: value(v)}
			Expect(migrate(props)).To(Equal(props))
			Expect(tileSettings(mustRead(filepath.Join(root, "config/tile/tile.yml")))).To(HaveKey(name))
		},
		Entry("TLS: shared-VM TLS only", ".properties.shared_vm_tls_only", "always"),
		Entry("TLS: dedicated-VM TLS only", ".properties.dedicated_vm_tls_only", "never"),
		Entry("TLS on the Redis ports", ".properties.redis_tls_enabled", true),
		Entry("replication's external leaders", ".properties.replication_external_leaders", "10.0.0.5:6379, 10.0.0.6:6379"),
		Entry("backups to S3", ".properties.backups", "s3"),
		Entry("the S3 bucket", ".properties.backups.s3.bucket", "redis-backups"),
		Entry("the S3 secret key", ".properties.backups.s3.secret_access_key", map[string]any{"secret": "k"}),
	)

	It("are named as Ops Manager runs them, in order, once each", func() {
		files, err := filepath.Glob(filepath.Join(root, "config/tile/migrations/v1/*"))
		Expect(err).NotTo(HaveOccurred())
		for _, f := range files {
			Expect(filepath.Base(f)).To(MatchRegexp(`^20\d{10}_[a-z0-9_-]+\.js$`))
			src, err := os.ReadFile(f)
			Expect(err).NotTo(HaveOccurred())
			Expect(strings.Contains(string(src), "require(")).To(BeFalse(), "%s: Ops Manager's runtime has no modules", f)
		}
	})
})
