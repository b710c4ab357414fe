package spec

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"go.yaml.in/yaml/v3"
)

// tileMetadata is the part of the tile's metadata/p-redis.yml these tests
// read, parsed here rather than with the generator's own types: the tests
// check the generator's output, not its model.
type tileMetadata struct {
	Name               string `yaml:"name"`
	ProductVersion     string `yaml:"product_version"`
	ServiceBroker      bool   `yaml:"service_broker"`
	Releases           []struct{ Name, File, Version string }
	PostDeployErrands  []struct{ Name string } `yaml:"post_deploy_errands"`
	PreDeleteErrands   []struct{ Name string } `yaml:"pre_delete_errands"`
	FormTypes          []tileForm              `yaml:"form_types"`
	PropertyBlueprints []tileBlueprint         `yaml:"property_blueprints"`
	JobTypes           []struct {
		Name      string `yaml:"name"`
		Errand    bool   `yaml:"errand"`
		Templates []struct {
			Name, Release, Manifest, Consumes, Provides string
		} `yaml:"templates"`
		ResourceDefinitions []struct {
			Name    string `yaml:"name"`
			Default int    `yaml:"default"`
		} `yaml:"resource_definitions"`
		InstanceDefinition struct {
			Configurable bool `yaml:"configurable"`
			Default      int  `yaml:"default"`
		} `yaml:"instance_definition"`
	} `yaml:"job_types"`
}

type tileForm struct {
	Name           string `yaml:"name"`
	PropertyInputs []struct {
		Reference              string `yaml:"reference"`
		SelectorPropertyInputs []struct {
			Reference      string `yaml:"reference"`
			PropertyInputs []struct {
				Reference string `yaml:"reference"`
			} `yaml:"property_inputs"`
		} `yaml:"selector_property_inputs"`
	} `yaml:"property_inputs"`
}

type tileBlueprint struct {
	Name            string `yaml:"name"`
	Type            string `yaml:"type"`
	Configurable    bool   `yaml:"configurable"`
	Optional        bool   `yaml:"optional"`
	Default         any    `yaml:"default"`
	OptionTemplates []struct {
		Name           string `yaml:"name"`
		SelectValue    string `yaml:"select_value"`
		NamedManifests []struct {
			Name     string `yaml:"name"`
			Manifest string `yaml:"manifest"`
		} `yaml:"named_manifests"`
		PropertyBlueprints []tileBlueprint `yaml:"property_blueprints"`
	} `yaml:"option_templates"`
}

// tileAllBlueprints lists the blueprints and, after a selector, its
// options' properties under the names Ops Manager gives them
// (SELECTOR.OPTION.NAME).
func tileAllBlueprints(bps []tileBlueprint) []tileBlueprint {
	var out []tileBlueprint
	for _, b := range bps {
		out = append(out, b)
		for _, ot := range b.OptionTemplates {
			for _, nb := range ot.PropertyBlueprints {
				nb.Name = b.Name + "." + ot.Name + "." + nb.Name
				out = append(out, nb)
			}
		}
	}
	return out
}

// tileFormInputs lists the properties a form shows, a selector's options'
// own included.
func tileFormInputs(f tileForm) []string {
	var out []string
	for _, in := range f.PropertyInputs {
		out = append(out, in.Reference)
		for _, sel := range in.SelectorPropertyInputs {
			for _, pin := range sel.PropertyInputs {
				out = append(out, pin.Reference)
			}
		}
	}
	return out
}

// tileParsedManifest matches a job property that takes a selector's chosen
// option's named manifest whole.
var tileParsedManifest = regexp.MustCompile(`^\(\( \.properties\.([a-z0-9_]+)\.selected_option\.parsed_manifest\(([a-z0-9_]+)\) \)\)$`)

// tilePropertyRef finds the tile properties an expression reads.
var tilePropertyRef = regexp.MustCompile(`\.properties\.([a-z0-9_]+(?:\.[a-z0-9_]+\.[a-z0-9_]+)?)\.(?:value|identity|password|cert_pem|private_key_pem|selected_option)\b`)

// tileOptionManifests returns, for each option of a selector, the named
// manifest a job property takes from it, parsed.
func tileOptionManifests(meta tileMetadata, selector, manifest string) map[string]any {
	GinkgoHelper()
	i := slices.IndexFunc(meta.PropertyBlueprints, func(b tileBlueprint) bool { return b.Name == selector })
	Expect(i).To(BeNumerically(">=", 0), "selector %s", selector)
	out := map[string]any{}
	for _, ot := range meta.PropertyBlueprints[i].OptionTemplates {
		j := slices.IndexFunc(ot.NamedManifests, func(n struct {
			Name     string `yaml:"name"`
			Manifest string `yaml:"manifest"`
		}) bool {
			return n.Name == manifest
		})
		Expect(j).To(BeNumerically(">=", 0), "option %s of %s has the manifest %s", ot.Name, selector, manifest)
		var v any
		Expect(yaml.Unmarshal([]byte(ot.NamedManifests[j].Manifest), &v)).To(Succeed())
		out[ot.Name] = v
	}
	return out
}

// tileResolve does what Ops Manager does to a manifest value at Apply
// Changes: a selector's named manifest is the chosen option's, and each
// (( .properties.NAME.value )) and (( A ? B : C )) becomes its value, from
// values (an unset optional property is null).
func tileResolve(meta tileMetadata, v any, chosen map[string]string, values map[string]any) any {
	GinkgoHelper()
	switch t := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, sub := range t {
			out[k] = tileResolve(meta, sub, chosen, values)
		}
		return out
	case string:
		if m := tileParsedManifest.FindStringSubmatch(t); m != nil {
			option, ok := chosen[m[1]]
			Expect(ok).To(BeTrue(), "no option chosen for selector %s", m[1])
			return tileResolve(meta, tileOptionManifests(meta, m[1], m[2])[option], chosen, values)
		}
		operand := func(s string) any {
			if l, ok := strings.CutPrefix(s, "'"); ok {
				return strings.TrimSuffix(l, "'")
			}
			m := regexp.MustCompile(`^\.properties\.([a-z0-9_.]+)\.value$`).FindStringSubmatch(s)
			Expect(m).NotTo(BeNil(), "an expression the test resolves: %s", s)
			return values[m[1]]
		}
		if m := regexp.MustCompile(`^\(\( (\S+) \? (\S+|'[^']*') : (\S+|'[^']*') \)\)$`).FindStringSubmatch(t); m != nil {
			if cond, _ := operand(m[1]).(bool); cond {
				return operand(m[2])
			}
			return operand(m[3])
		}
		// Credentials and CredHub's variables are left as written: the
		// caller sets what the templates need of them.
		if m := regexp.MustCompile(`^\(\( (\.properties\.[a-z0-9_.]+\.value) \)\)$`).FindStringSubmatch(t); m != nil {
			return operand(m[1])
		}
		return t
	}
	return v
}

// tileJobProperties lists the properties jobs/NAME/spec defines.
func tileJobProperties(job string) []string {
	GinkgoHelper()
	data, err := os.ReadFile(filepath.Join(root, "jobs", job, "spec"))
	Expect(err).NotTo(HaveOccurred(), "job %s is in the release's jobs/", job)
	var spec struct {
		Properties map[string]any `yaml:"properties"`
	}
	Expect(yaml.Unmarshal(data, &spec)).To(Succeed())
	var out []string
	for p := range spec.Properties {
		out = append(out, p)
	}
	return out
}

// tileLeaves lists the dotted names of a manifest's leaves with their values.
func tileLeaves(prefix string, v any, out map[string]any) {
	m, ok := v.(map[string]any)
	if !ok {
		out[prefix] = v
		return
	}
	for k, sub := range m {
		name := k
		if prefix != "" {
			name = prefix + "." + k
		}
		tileLeaves(name, sub, out)
	}
}

// standInBPM writes a stand-in for the bpm release tarball (bosh.io, where
// scripts/build-tile fetches the real one, is out of reach here): a
// release.MF naming bpm 1.2.17 and its job bpm, which is all the tile
// reads of it.
func standInBPM(dir string) string {
	GinkgoHelper()
	job := targzOf(map[string]string{"./job.MF": "name: bpm\ntemplates: {}\npackages: []\nproperties: {}\n", "./monit": ""})
	path := filepath.Join(dir, "bpm-1.2.17.tgz")
	Expect(os.WriteFile(path, targzOf(map[string]string{
		"release.MF":   "name: bpm\nversion: 1.2.17\njobs:\n- name: bpm\n  version: stand-in\npackages: []\n",
		"jobs/bpm.tgz": string(job),
	}), 0o644)).To(Succeed())
	return path
}

// targzOf makes a .tgz of files, by name.
func targzOf(files map[string]string) []byte {
	GinkgoHelper()
	var b bytes.Buffer
	gz := gzip.NewWriter(&b)
	tw := tar.NewWriter(gz)
	names := make([]string, 0, len(files))
	for k := range files {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, name := range names {
		Expect(tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(files[name]))})).To(Succeed())
		_, err := tw.Write([]byte(files[name]))
		Expect(err).NotTo(HaveOccurred())
	}
	Expect(tw.Close()).To(Succeed())
	Expect(gz.Close()).To(Succeed())
	return b.Bytes()
}

// omBinary is the pinned om that scripts/setup builds into .local/bin.
func omBinary() string {
	GinkgoHelper()
	om, err := filepath.Abs(filepath.Join(root, ".local/bin/om"))
	Expect(err).NotTo(HaveOccurred())
	out, err := exec.Command("go", "version", "-m", om).CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "om is not installed: run scripts/setup\n%s", out)
	Expect(string(out)).To(MatchRegexp(`mod\s+github.com/pivotal-cf/om\s`), "%s is a build of om", om)
	return om
}

// zipFiles reads a zip's entries into memory, except releases/ (large).
func zipFiles(path string) (names []string, files map[string][]byte) {
	GinkgoHelper()
	zr, err := zip.OpenReader(path)
	Expect(err).NotTo(HaveOccurred())
	defer zr.Close()
	files = map[string][]byte{}
	for _, f := range zr.File {
		names = append(names, f.Name)
		if strings.HasPrefix(f.Name, "releases/") {
			continue
		}
		rc, err := f.Open()
		Expect(err).NotTo(HaveOccurred())
		data, err := io.ReadAll(rc)
		Expect(err).NotTo(HaveOccurred())
		rc.Close()
		files[f.Name] = data
	}
	return names, files
}

// unzipOne copies one entry of a zip to a file.
func unzipOne(path, name, dst string) {
	GinkgoHelper()
	zr, err := zip.OpenReader(path)
	Expect(err).NotTo(HaveOccurred())
	defer zr.Close()
	f, err := zr.Open(name)
	Expect(err).NotTo(HaveOccurred())
	defer f.Close()
	out, err := os.Create(dst)
	Expect(err).NotTo(HaveOccurred())
	_, err = io.Copy(out, f)
	Expect(err).NotTo(HaveOccurred())
	Expect(out.Close()).To(Succeed())
}

var _ = Describe("the Ops Manager tile", Ordered, func() {
	var (
		work, pivotal, generator, bpm, release, stderr string
		meta                                           tileMetadata
		files                                          map[string][]byte
		names                                          []string
	)

	BeforeAll(func() {
		work = GinkgoT().TempDir()
		bpm = standInBPM(work)
		out := filepath.Join(work, "out")
		// One command from the checkout: it creates the release itself.
		cmd := exec.Command(filepath.Join(root, "scripts/build-tile"), "-o", out)
		cmd.Env = append(os.Environ(), "BPM_RELEASE="+bpm)
		var so, se bytes.Buffer
		cmd.Stdout, cmd.Stderr = &so, io.MultiWriter(&se, GinkgoWriter)
		Expect(cmd.Run()).To(Succeed(), se.String())
		stderr = se.String()
		pivotal = strings.TrimSpace(so.String())
		Expect(pivotal).To(MatchRegexp(`/p-redis-[0-9]+\.[0-9]+\.[0-9]+(-dev\.[0-9]+)?\.pivotal$`))
		Expect(os.ReadDir(out)).To(HaveLen(1), "the tile and nothing else")
		names, files = zipFiles(pivotal)
		Expect(yaml.Unmarshal(files["metadata/p-redis.yml"], &meta)).To(Succeed())

		generator = filepath.Join(work, "tile-generator")
		build := exec.Command("go", "build", "-o", generator, "github.com/cf-redis/redis-for-cf/src/cmd/tile-generator")
		o, err := build.CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(o))
		// The release the tile packs, for the generator's bad-input tests.
		release = filepath.Join(work, "redis-for-cf.tgz")
		unzipOne(pivotal, "releases/"+meta.Releases[0].File, release)
	})

	It("is a zip of metadata/p-redis.yml, the release tarballs and the migrations", func() {
		want := []string{"metadata/p-redis.yml"}
		for _, r := range meta.Releases {
			want = append(want, "releases/"+r.File)
		}
		migrations, err := filepath.Glob(filepath.Join(root, "config/tile/migrations/v1/*.js"))
		Expect(err).NotTo(HaveOccurred())
		Expect(migrations).NotTo(BeEmpty())
		for _, m := range migrations {
			want = append(want, "migrations/v1/"+filepath.Base(m))
			src, err := os.ReadFile(m)
			Expect(err).NotTo(HaveOccurred())
			Expect(files["migrations/v1/"+filepath.Base(m)]).To(Equal(src))
		}
		Expect(names).To(ConsistOf(want))
		var rel []string
		for _, r := range meta.Releases {
			rel = append(rel, r.Name)
		}
		Expect(rel).To(Equal([]string{"redis-for-cf", "bpm"}))
		Expect(meta.Releases[0].Version).To(MatchRegexp(`^0\+dev\.\d+$`), "the dev release build-tile created")
		Expect(filepath.Base(pivotal)).To(Equal("p-redis-" + meta.ProductVersion + ".pivotal"))
	})

	It("tells Ops Manager it is a service broker, deployed after the Cloud Foundry tile", func() {
		Expect(meta.ServiceBroker).To(BeTrue())
	})

	It("is read back by om: product-metadata and config-template succeed", func() {
		om := omBinary()
		out, err := exec.Command(om, "product-metadata", "--product-path", pivotal, "--product-name", "--product-version").CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		Expect(string(out)).To(Equal("p-redis\n" + meta.ProductVersion + "\n"))

		dir := GinkgoT().TempDir()
		out, err = exec.Command(om, "config-template", "--product-path", pivotal, "--output-directory", dir).CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		base := filepath.Join(dir, "p-redis", meta.ProductVersion)
		var product struct {
			ProductName       string                    `yaml:"product-name"`
			ProductProperties map[string]any            `yaml:"product-properties"`
			ResourceConfig    map[string]map[string]any `yaml:"resource-config"`
			ErrandConfig      map[string]any            `yaml:"errand-config"`
		}
		data, err := os.ReadFile(filepath.Join(base, "product.yml"))
		Expect(err).NotTo(HaveOccurred())
		Expect(yaml.Unmarshal(data, &product)).To(Succeed())
		Expect(product.ProductName).To(Equal("p-redis"))

		// Every configurable property is in the template: required ones in
		// product.yml, optional ones as the ops files om writes for them.
		templated := map[string]bool{}
		for k := range product.ProductProperties {
			templated[k] = true
		}
		opsPath := regexp.MustCompile(`^/product-properties/(\.properties\.[a-z0-9_.]+)\?$`)
		for _, sub := range []string{"optional", "features"} {
			ops, err := filepath.Glob(filepath.Join(base, sub, "*.yml"))
			Expect(err).NotTo(HaveOccurred())
			for _, f := range ops {
				data, err := os.ReadFile(f)
				Expect(err).NotTo(HaveOccurred())
				var list []struct{ Path string }
				Expect(yaml.Unmarshal(data, &list)).To(Succeed())
				for _, op := range list {
					if m := opsPath.FindStringSubmatch(op.Path); m != nil {
						templated[m[1]] = true
					}
				}
			}
		}
		var configurable, generated []string
		for _, b := range tileAllBlueprints(meta.PropertyBlueprints) {
			if b.Configurable {
				configurable = append(configurable, ".properties."+b.Name)
			} else {
				generated = append(generated, ".properties."+b.Name)
			}
		}
		Expect(configurable).NotTo(BeEmpty())
		for _, p := range configurable {
			Expect(templated).To(HaveKey(p), "om config-template lists %s", p)
		}
		Expect(len(templated)).To(Equal(len(configurable)), "and nothing else: %v", templated)

		// Credentials are never typed: the template asks for none of them.
		all := ""
		Expect(filepath.WalkDir(base, func(p string, e os.DirEntry, err error) error {
			if err == nil && !e.IsDir() {
				data, err := os.ReadFile(p)
				all += string(data)
				return err
			}
			return err
		})).To(Succeed())
		for _, g := range generated {
			Expect(all).NotTo(ContainSubstring(strings.TrimPrefix(g, ".properties.")))
		}

		// Instance counts are Resource Config: the shared VMs and the
		// dedicated nodes can be scaled, the broker cannot.
		for _, jt := range meta.JobTypes {
			if jt.Errand {
				continue
			}
			Expect(product.ResourceConfig).To(HaveKey(jt.Name))
			_, scalable := product.ResourceConfig[jt.Name]["instances"]
			Expect(scalable).To(Equal(jt.InstanceDefinition.Configurable), jt.Name)
		}
		Expect(product.ResourceConfig["redis-shared"]).To(HaveKey("instances"))
		Expect(product.ResourceConfig["redis-node"]).To(HaveKey("instances"))
		Expect(product.ResourceConfig["redis-broker"]).NotTo(HaveKey("instances"))
		for _, e := range append(meta.PostDeployErrands, meta.PreDeleteErrands...) {
			Expect(product.ErrandConfig).To(HaveKey(e.Name))
		}
	})

	It("maps every form property to properties that the jobs' specs in jobs/ define", func() {
		takenBy := map[string][]string{}
		for _, jt := range meta.JobTypes {
			for _, t := range jt.Templates {
				if t.Release != "redis-for-cf" {
					Expect(t.Manifest).To(BeEmpty(), "%s/%s", jt.Name, t.Name)
					continue
				}
				defined := tileJobProperties(t.Name)
				var manifest map[string]any
				Expect(yaml.Unmarshal([]byte(t.Manifest), &manifest)).To(Succeed())
				leaves := map[string]any{}
				tileLeaves("", manifest, leaves)
				// A selector's named manifest is set whole: what it sets,
				// under every option, is what the job gets.
				for p, v := range maps.Clone(leaves) {
					m := tileParsedManifest.FindStringSubmatch(fmt.Sprint(v))
					if m == nil {
						continue
					}
					takenBy[m[1]] = append(takenBy[m[1]], t.Name+": "+p)
					delete(leaves, p)
					for option, manifest := range tileOptionManifests(meta, m[1], m[2]) {
						expanded := map[string]any{}
						tileLeaves(p, manifest, expanded)
						for q, w := range expanded {
							leaves[q+" (option "+option+")"] = w
						}
					}
				}
				for p, v := range leaves {
					p, _, _ = strings.Cut(p, " (option ")
					Expect(slices.ContainsFunc(defined, func(d string) bool { return p == d || strings.HasPrefix(p, d+".") })).
						To(BeTrue(), "%s/%s sets %s, which jobs/%s/spec does not define", jt.Name, t.Name, p, t.Name)
					for _, m := range tilePropertyRef.FindAllStringSubmatch(fmt.Sprint(v), -1) {
						takenBy[m[1]] = append(takenBy[m[1]], t.Name+": "+p)
					}
				}
			}
		}
		for _, f := range meta.FormTypes {
			Expect(f.PropertyInputs).NotTo(BeEmpty())
			for _, ref := range tileFormInputs(f) {
				name := strings.TrimPrefix(ref, ".properties.")
				Expect(takenBy[name]).NotTo(BeEmpty(), "form %s: %s reaches no job property", f.Name, name)
				GinkgoWriter.Printf("%s -> %v\n", name, takenBy[name])
			}
		}
		for _, b := range tileAllBlueprints(meta.PropertyBlueprints) {
			Expect(takenBy[b.Name]).NotTo(BeEmpty(), "property %s reaches no job property", b.Name)
		}
	})

	It("has every form of config/tile/tile.yml, except those marked pending, which build-tile names", func() {
		data, err := os.ReadFile(filepath.Join(root, "config/tile/tile.yml"))
		Expect(err).NotTo(HaveOccurred())
		var desc struct {
			Forms []struct {
				Name, Pending string
				Properties    []struct{ Name string }
			}
			Errands []struct{ Name, Pending string }
		}
		Expect(yaml.Unmarshal(data, &desc)).To(Succeed())
		var forms []string
		for _, f := range meta.FormTypes {
			forms = append(forms, f.Name)
		}
		for _, f := range desc.Forms {
			if f.Pending != "" {
				Expect(forms).NotTo(ContainElement(f.Name))
				Expect(stderr).To(ContainSubstring("left out: form " + f.Name + " (pending: "))
				continue
			}
			Expect(forms).To(ContainElement(f.Name))
		}
		var errands []string
		for _, jt := range meta.JobTypes {
			if jt.Errand {
				errands = append(errands, jt.Name)
			}
		}
		for _, e := range desc.Errands {
			if e.Pending != "" {
				Expect(errands).NotTo(ContainElement(e.Name))
				Expect(stderr).To(ContainSubstring("left out: errand " + e.Name + " (pending: "))
				continue
			}
			Expect(errands).To(ContainElement(e.Name))
		}
	})

	It("runs its services under bpm with their data on persistent disks, and only jobs the releases have", func() {
		jobs, err := os.ReadDir(filepath.Join(root, "jobs"))
		Expect(err).NotTo(HaveOccurred())
		var ours []string
		for _, j := range jobs {
			ours = append(ours, j.Name())
		}
		for _, jt := range meta.JobTypes {
			var run []string
			for _, t := range jt.Templates {
				run = append(run, t.Name)
				if t.Release == "redis-for-cf" {
					Expect(ours).To(ContainElement(t.Name))
				} else {
					Expect(t.Release).To(Equal("bpm"))
				}
			}
			if jt.Errand {
				continue
			}
			Expect(run).To(ContainElement("bpm"), jt.Name)
			for _, r := range jt.ResourceDefinitions {
				if r.Name == "persistent_disk" {
					Expect(r.Default).To(BeNumerically(">=", 1024), "%s keeps its data on a persistent disk", jt.Name)
				}
			}
		}
	})

	It("keeps secrets out: every password and key is generated, typed on a form, or CredHub's", func() {
		expr := regexp.MustCompile(`^\(\(\(? [.$a-z_]`)
		for _, jt := range meta.JobTypes {
			for _, t := range jt.Templates {
				var manifest map[string]any
				Expect(yaml.Unmarshal([]byte(t.Manifest), &manifest)).To(Succeed())
				leaves := map[string]any{}
				tileLeaves("", manifest, leaves)
				for p, v := range maps.Clone(leaves) {
					if m := tileParsedManifest.FindStringSubmatch(fmt.Sprint(v)); m != nil {
						for option, manifest := range tileOptionManifests(meta, m[1], m[2]) {
							tileLeaves(p+"("+option+")", manifest, leaves)
						}
					}
				}
				for p, v := range leaves {
					last := p[strings.LastIndex(p, ".")+1:]
					if slices.Contains([]string{"password", "private_key", "certificate", "ca", "access_key_id", "secret_access_key"}, last) {
						Expect(fmt.Sprint(v)).To(MatchRegexp(expr.String()), "%s/%s %s", jt.Name, t.Name, p)
					}
				}
			}
		}
		for _, b := range tileAllBlueprints(meta.PropertyBlueprints) {
			if slices.Contains([]string{"secret", "simple_credentials", "rsa_cert_credentials", "rsa_pkey_credentials", "salted_credentials"}, b.Type) {
				Expect(b.Default).To(BeNil(), "%s has no default", b.Name)
			}
		}
	})

	It("has the broker errands trust Ops Manager's CA and follow the cf tile's certificate verification, and purge on delete by default", func() {
		seen := 0
		for _, jt := range meta.JobTypes {
			for _, t := range jt.Templates {
				if t.Name != "broker-registrar" && t.Name != "broker-deregistrar" {
					continue
				}
				seen++
				m := map[string]any{}
				Expect(yaml.Unmarshal([]byte(t.Manifest), &m)).To(Succeed())
				Expect(field(m, "cf.ca_cert")).To(Equal("(( $ops_manager.ca_certificate ))"), t.Name)
				Expect(field(m, "cf.skip_ssl_validation")).To(Equal("(( ..cf.ha_proxy.skip_cert_verify.value ))"), t.Name)
			}
		}
		Expect(seen).To(Equal(2))
		i := slices.IndexFunc(meta.PropertyBlueprints, func(b tileBlueprint) bool { return b.Name == "purge_on_delete" })
		Expect(i).NotTo(BeNumerically("<", 0))
		Expect(meta.PropertyBlueprints[i].Default).To(BeTrue())
	})

	It("has a Dedicated-HA form that turns on Sentinel on the nodes and the broker's plan together, off by default", func() {
		i := slices.IndexFunc(meta.PropertyBlueprints, func(b tileBlueprint) bool { return b.Name == "dedicated_ha_enabled" })
		Expect(i).NotTo(Equal(-1))
		Expect(meta.PropertyBlueprints[i].Type).To(Equal("boolean"))
		Expect(meta.PropertyBlueprints[i].Default).To(BeFalse())
		Expect(meta.FormTypes).To(ContainElement(HaveField("Name", "dedicated_ha_plan")))
		// manifest resolves the properties of JOBTYPE/JOB with the form's values.
		manifest := func(key string, values map[string]any) map[string]any {
			GinkgoHelper()
			for _, jt := range meta.JobTypes {
				for _, t := range jt.Templates {
					if jt.Name+"/"+t.Name == key {
						m := map[string]any{}
						Expect(yaml.Unmarshal([]byte(t.Manifest), &m)).To(Succeed())
						return tileResolve(meta, m, map[string]string{"backups": "disabled"}, values).(map[string]any)
					}
				}
			}
			Fail("no template " + key)
			return nil
		}
		nodeJob, brokerJob := mustLoadJob("redis-node"), mustLoadJob("redis-broker")
		nodes := group("redis-node", 3, 20)
		nodeTLS := newPKI("*.redis-node.default.redis.bosh")
		for _, on := range []bool{true, false} {
			values := map[string]any{"dedicated_ha_enabled": on, "dedicated_ha_tls_only": "always"}
			broker, node := manifest("redis-broker/redis-broker", values), manifest("redis-node/redis-node", values)
			Expect(broker["dedicated_ha"]).To(Equal(map[string]any{"enabled": on, "tls_only": "always"}))
			Expect(node["ha"]).To(Equal(map[string]any{"enabled": on}))

			nodeProps := props("api.password", "node-secret", "api.tls.certificate", nodeTLS.cert,
				"api.tls.private_key", nodeTLS.key, "api.tls.ca", nodeTLS.ca, "metrics.port", 0)
			nodeProps["ha"] = node["ha"]
			c := mustCheckConfig("redis-node-agent", mustRenderAll(nodeJob, nodeProps, nodes[0], nil)["config/config.json"])
			brokerProps := props("broker.password", "cc-secret", "metrics.port", 0)
			brokerProps["dedicated_ha"] = broker["dedicated_ha"]
			out := mustRenderAll(brokerJob, brokerProps, group("redis-broker", 1, 5)[0],
				map[string]LinkData{"redis-node": mustLink(nodeJob, "redis-node", nodeProps, nodes)})
			var b map[string]any
			Expect(json.Unmarshal([]byte(out["config/config.json"]), &b)).To(Succeed())
			if !on {
				Expect(field(c, "ha")).To(BeNil())
				Expect(field(b, "dedicated_ha")).To(BeNil())
				continue
			}
			Expect(field(c, "ha.sentinel_port")).To(BeEquivalentTo(26379))
			mustCheckConfig("redis-broker", out["config/config.json"])
			Expect(field(b, "dedicated_ha.tls_only")).To(Equal("always"))
			Expect(field(b, "dedicated_ha.sentinel_port")).To(BeEquivalentTo(26379))
			Expect(field(b, "dedicated_vm.nodes.2.az")).To(Equal(nodes[2].AZ))
		}
	})

	Describe("backups", func() {
		// templates finds the job types' templates by JOBTYPE/JOB.
		templates := func() map[string]struct{ Name, Release, Manifest, Consumes, Provides string } {
			out := map[string]struct{ Name, Release, Manifest, Consumes, Provides string }{}
			for _, jt := range meta.JobTypes {
				for _, t := range jt.Templates {
					out[jt.Name+"/"+t.Name] = t
				}
			}
			return out
		}
		manifestOf := func(text string) map[string]any {
			GinkgoHelper()
			m := map[string]any{}
			Expect(yaml.Unmarshal([]byte(text), &m)).To(Succeed())
			return m
		}
		// s3 are the S3 option's settings, as an operator types them.
		s3 := func(kv ...any) map[string]any {
			v := map[string]any{
				"backups.s3.endpoint": "https://s3.example.com", "backups.s3.region": nil, "backups.s3.bucket": "redis-backups",
				"backups.s3.path_prefix": "prod/redis", "backups.s3.access_key_id": "AKID", "backups.s3.secret_access_key": "s3-secret",
				"backups.s3.path_style": true, "backups.s3.ca_cert": nil, "backups.s3.scheduled": true,
				"backups.s3.schedule": "0 3 * * *", "backups.s3.keep_newest": 5, "backups.s3.keep_days": 14,
			}
			for i := 0; i+1 < len(kv); i += 2 {
				v[kv[i].(string)] = kv[i+1]
			}
			return v
		}
		// deploy resolves the agents', nodes' and the backup errand's
		// manifests as Ops Manager would with the Backups option chosen
		// and the settings given, and renders their real templates.
		type rendered struct {
			agent, node map[string]any
			errand      string
			errandErr   error
		}
		deploy := func(option string, values map[string]any) rendered {
			GinkgoHelper()
			ts := templates()
			resolve := func(key string, base ...any) map[string]any {
				GinkgoHelper()
				p := tileResolve(meta, manifestOf(ts[key].Manifest), map[string]string{"backups": option}, values).(map[string]any)
				leaves := map[string]any{}
				tileLeaves("", p, leaves)
				defined := tileJobProperties(ts[key].Name)
				for name := range leaves {
					Expect(slices.ContainsFunc(defined, func(d string) bool { return name == d || strings.HasPrefix(name, d+".") })).
						To(BeTrue(), "%s sets %s (option %s), which its spec does not define", key, name, option)
				}
				// What the tile leaves to CredHub and generated credentials.
				for k, v := range props(base...) {
					if sub, ok := p[k].(map[string]any); ok {
						maps.Copy(sub, v.(map[string]any))
					} else {
						p[k] = v
					}
				}
				return p
			}
			agentJob, nodeJob, backupJob := mustLoadJob("redis-shared-agent"), mustLoadJob("redis-node"), mustLoadJob("redis-backup")
			agents, nodes := group("redis-shared", 2, 10), group("redis-node", 2, 20)
			agentTLS, nodeTLS := newPKI("*.redis-shared.default.redis.bosh"), newPKI("*.redis-node.default.redis.bosh")
			agentProps := resolve("redis-shared/redis-shared-agent", "api.username", "broker", "api.password", "agent-secret",
				"api.tls.certificate", agentTLS.cert, "api.tls.private_key", agentTLS.key, "api.tls.ca", agentTLS.ca)
			nodeProps := resolve("redis-node/redis-node", "api.username", "broker", "api.password", "node-secret",
				"api.tls.certificate", nodeTLS.cert, "api.tls.private_key", nodeTLS.key, "api.tls.ca", nodeTLS.ca)
			errandProps := resolve("backup/redis-backup")
			var r rendered
			r.agent = mustCheckConfig("redis-shared-agent", mustRenderAll(agentJob, agentProps, agents[0], nil)["config/config.json"])
			r.node = mustCheckConfig("redis-node-agent", mustRenderAll(nodeJob, nodeProps, nodes[0], nil)["config/config.json"])
			links := map[string]LinkData{
				"redis-shared-agent": mustLink(agentJob, "redis-shared-agent", agentProps, agents),
				"redis-node":         mustLink(nodeJob, "redis-node", nodeProps, nodes),
			}
			r.errand, r.errandErr = backupJob.render("config.json.erb", errandProps, group("backup", 1, 80)[0], links)
			return r
		}

		It("are one setting for the shared VMs and the dedicated nodes, which the backup errand on a VM of its own reaches through both links", func() {
			ts := templates()
			agent, node := manifestOf(ts["redis-shared/redis-shared-agent"].Manifest), manifestOf(ts["redis-node/redis-node"].Manifest)
			Expect(agent["backups"]).To(Equal("(( .properties.backups.selected_option.parsed_manifest(backups) ))"))
			Expect(node["backups"]).To(Equal(agent["backups"]), "the errand needs the same destination and retention on both")
			Expect(ts["redis-shared/redis-shared-agent"].Provides).To(MatchYAML("redis-shared-agent: {as: shared-agents}"))
			Expect(ts["redis-node/redis-node"].Provides).To(MatchYAML("redis-node: {as: redis-nodes}"))

			errand := ts["backup/redis-backup"]
			Expect(errand.Release).To(Equal("redis-for-cf"))
			Expect(errand.Manifest).To(MatchYAML("only_this_vm: false"))
			Expect(errand.Consumes).To(MatchYAML("redis-shared-agent: {from: shared-agents}\nmore-redis-shared-agents: nil\nredis-node: {from: redis-nodes}"))
			Expect(meta.PostDeployErrands).To(ContainElement(HaveField("Name", "backup")))
			for _, jt := range meta.JobTypes {
				if jt.Name == "backup" {
					Expect(jt.Errand).To(BeTrue())
					Expect(jt.Templates).To(HaveLen(1), "the errand VM runs redis-backup alone")
				}
			}
			i := slices.IndexFunc(meta.PropertyBlueprints, func(b tileBlueprint) bool { return b.Name == "backups" })
			Expect(meta.PropertyBlueprints[i].Type).To(Equal("selector"))
			Expect(meta.PropertyBlueprints[i].Default).To(Equal("disabled"), "backups stay off until an operator sets a bucket")
		})

		It("to S3 render, on the agents, the nodes and the errand, configs their programs accept, with the form's settings", func() {
			r := deploy("s3", s3())
			for _, c := range []map[string]any{r.agent, r.node} {
				Expect(field(c, "backups.schedule")).To(Equal("0 3 * * *"))
				Expect(field(c, "backups.destination.path_prefix")).To(Equal("prod/redis"))
				Expect(field(c, "backups.destination.s3.bucket")).To(Equal("redis-backups"))
				Expect(field(c, "backups.destination.s3.path_style")).To(BeTrue())
				Expect(field(c, "backups.retention")).To(Equal(map[string]any{"keep_newest": 5.0, "keep_days": 14.0}))
			}
			Expect(r.errandErr).NotTo(HaveOccurred())
			c := mustCheckConfig("redis-backup", r.errand)
			Expect(field(c, "agents")).To(HaveLen(2))
			Expect(field(c, "nodes")).To(HaveLen(2))
			Expect(field(c, "destination.s3.endpoint")).To(Equal("https://s3.example.com"))
			Expect(field(c, "retention.keep_days")).To(BeEquivalentTo(14))
		})

		It("to S3 without a schedule leave the agents and nodes to the errand", func() {
			r := deploy("s3", s3("backups.s3.scheduled", false))
			Expect(field(r.agent, "backups")).To(BeNil())
			Expect(field(r.node, "backups")).To(BeNil())
			Expect(r.errandErr).NotTo(HaveOccurred())
			Expect(field(mustCheckConfig("redis-backup", r.errand), "destination.s3.bucket")).To(Equal("redis-backups"))
		})

		It("off leave the agents and nodes without backups", func() {
			r := deploy("disabled", nil)
			Expect(field(r.agent, "backups")).To(BeNil())
			Expect(field(r.node, "backups")).To(BeNil())
		})

		// BOSH renders an errand's templates at every deploy, run or not:
		// with "No backups" (the default) the errand must still render; it
		// fails only when run (spec/errands_test.go).
		It("off still deploy the backup errand", func() {
			r := deploy("disabled", nil)
			Expect(r.errandErr).NotTo(HaveOccurred())
		})
	})

	It("passes the project's own checks when read back from the file", func() {
		out, err := exec.Command(generator, "check", pivotal).CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		Expect(string(out)).To(ContainSubstring("p-redis " + meta.ProductVersion + " passes its checks"))
	})

	Describe("tile-generator, given bad input", func() {
		// tileCopy copies config/tile/ into a folder of its own, with tile.yml
		// changed by edit.
		tileCopy := func(edit func(string) string) string {
			GinkgoHelper()
			dir := GinkgoT().TempDir()
			Expect(os.MkdirAll(filepath.Join(dir, "migrations/v1"), 0o755)).To(Succeed())
			copies := []string{"tile.yml", "icon.png"}
			migrations, err := filepath.Glob(filepath.Join(root, "config/tile/migrations/v1/*.js"))
			Expect(err).NotTo(HaveOccurred())
			for _, m := range migrations {
				copies = append(copies, "migrations/v1/"+filepath.Base(m))
			}
			for _, rel := range copies {
				data, err := os.ReadFile(filepath.Join(root, "config/tile", rel))
				Expect(err).NotTo(HaveOccurred())
				if rel == "tile.yml" {
					edited := edit(string(data))
					Expect(edited).NotTo(Equal(string(data)), "the edit changes tile.yml")
					data = []byte(edited)
				}
				Expect(os.WriteFile(filepath.Join(dir, rel), data, 0o644)).To(Succeed())
			}
			return filepath.Join(dir, "tile.yml")
		}
		// fails runs the generator and expects it to fail naming each
		// problem, with nothing written.
		fails := func(args []string, problems ...string) {
			GinkgoHelper()
			out := GinkgoT().TempDir()
			cmd := exec.Command(generator, append(args, "-output", out)...)
			cmd.Dir = root
			var se bytes.Buffer
			cmd.Stdout, cmd.Stderr = GinkgoWriter, io.MultiWriter(&se, GinkgoWriter)
			err := cmd.Run()
			var exit *exec.ExitError
			Expect(errors.As(err, &exit)).To(BeTrue(), "tile-generator fails")
			Expect(exit.ExitCode()).To(Equal(1))
			Expect(se.String()).To(ContainSubstring("no tile written"))
			for _, p := range problems {
				Expect(se.String()).To(ContainSubstring(p))
			}
			Expect(os.ReadDir(out)).To(BeEmpty(), "no .pivotal, whole or partial")
		}
		replace := func(old, new string) func(string) string {
			return func(s string) string { return strings.Replace(s, old, new, 1) }
		}

		It("names a release tarball that is missing", func() {
			missing := filepath.Join(work, "redis-for-cf-missing.tgz")
			fails([]string{"-release", missing, "-release", bpm}, "release tarball "+missing+": open")
		})

		It("names a release the description needs but was not given", func() {
			fails([]string{"-release", release}, "releases: no release tarball given for bpm")
		})

		It("names a form property mapped to a property the job's spec lacks", func() {
			desc := tileCopy(replace("shared_vm.maxmemory_mb: (( .properties", "shared_vm.max_memory_mb: (( .properties"))
			fails([]string{"-tile", desc, "-release", release, "-release", bpm},
				"job type redis-broker: job redis-broker: property shared_vm.max_memory_mb is not in the job's spec")
		})

		It("names a form property mapped to no job property", func() {
			desc := tileCopy(replace("      shared_vm.maxmemory_mb: (( .properties.shared_vm_maxmemory_mb.value ))\n", ""))
			fails([]string{"-tile", desc, "-release", release, "-release", bpm},
				"form shared_vm_plan: property shared_vm_maxmemory_mb is taken by no job property")
		})

		It("names an errand that runs a job no release has", func() {
			desc := tileCopy(replace("errands:\n", `errands:
- name: rotate-keys
  label: Rotate keys
  run: post-deploy
  resources: {ram: 1024, ephemeral_disk: 2048, persistent_disk: 0, cpu: 1}
  jobs:
  - name: rotate-keys
    release: redis-for-cf
`))
			fails([]string{"-tile", desc, "-release", release, "-release", bpm},
				"job type rotate-keys: job rotate-keys: release redis-for-cf "+meta.Releases[0].Version+" has no such job")
		})

		It("prints its usage when asked for nothing", func() {
			out, err := exec.Command(generator).CombinedOutput()
			var exit *exec.ExitError
			Expect(errors.As(err, &exit)).To(BeTrue())
			Expect(exit.ExitCode()).To(Equal(2))
			Expect(string(out)).To(ContainSubstring("usage:"))
		})
	})
})
