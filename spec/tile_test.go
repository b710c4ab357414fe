package spec

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
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
	Releases           []struct{ Name, File, Version string }
	PostDeployErrands  []struct{ Name string } `yaml:"post_deploy_errands"`
	PreDeleteErrands   []struct{ Name string } `yaml:"pre_delete_errands"`
	FormTypes          []tileForm              `yaml:"form_types"`
	PropertyBlueprints []struct {
		Name         string `yaml:"name"`
		Type         string `yaml:"type"`
		Configurable bool   `yaml:"configurable"`
		Optional     bool   `yaml:"optional"`
		Default      any    `yaml:"default"`
	} `yaml:"property_blueprints"`
	JobTypes []struct {
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
		Reference string `yaml:"reference"`
	} `yaml:"property_inputs"`
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
		migrations, err := filepath.Glob(filepath.Join(root, "tile/migrations/v1/*.js"))
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
		opsPath := regexp.MustCompile(`^/product-properties/(\.properties\.[a-z0-9_]+)\?$`)
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
		for _, b := range meta.PropertyBlueprints {
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
				for p, v := range leaves {
					Expect(slices.ContainsFunc(defined, func(d string) bool { return p == d || strings.HasPrefix(p, d+".") })).
						To(BeTrue(), "%s/%s sets %s, which jobs/%s/spec does not define", jt.Name, t.Name, p, t.Name)
					for _, m := range regexp.MustCompile(`\(\( \.properties\.([a-z0-9_]+)\.`).FindAllStringSubmatch(fmt.Sprint(v), -1) {
						takenBy[m[1]] = append(takenBy[m[1]], t.Name+": "+p)
					}
				}
			}
		}
		for _, f := range meta.FormTypes {
			Expect(f.PropertyInputs).NotTo(BeEmpty())
			for _, in := range f.PropertyInputs {
				name := strings.TrimPrefix(in.Reference, ".properties.")
				Expect(takenBy[name]).NotTo(BeEmpty(), "form %s: %s reaches no job property", f.Name, name)
				GinkgoWriter.Printf("%s -> %v\n", name, takenBy[name])
			}
		}
		for _, b := range meta.PropertyBlueprints {
			Expect(takenBy[b.Name]).NotTo(BeEmpty(), "property %s reaches no job property", b.Name)
		}
	})

	It("has every form of tile/tile.yml, except those marked pending, which build-tile names", func() {
		data, err := os.ReadFile(filepath.Join(root, "tile/tile.yml"))
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
				for p, v := range leaves {
					last := p[strings.LastIndex(p, ".")+1:]
					if last == "password" || last == "private_key" || last == "certificate" || last == "ca" {
						Expect(fmt.Sprint(v)).To(MatchRegexp(expr.String()), "%s/%s %s", jt.Name, t.Name, p)
					}
				}
			}
		}
		for _, b := range meta.PropertyBlueprints {
			if slices.Contains([]string{"secret", "simple_credentials", "rsa_cert_credentials", "rsa_pkey_credentials", "salted_credentials"}, b.Type) {
				Expect(b.Default).To(BeNil(), "%s has no default", b.Name)
			}
		}
	})

	It("passes the project's own checks when read back from the file", func() {
		out, err := exec.Command(generator, "check", pivotal).CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		Expect(string(out)).To(ContainSubstring("p-redis " + meta.ProductVersion + " passes its checks"))
	})

	Describe("tile-generator, given bad input", func() {
		// tileCopy copies tile/ into a folder of its own, with tile.yml
		// changed by edit.
		tileCopy := func(edit func(string) string) string {
			GinkgoHelper()
			dir := GinkgoT().TempDir()
			Expect(os.MkdirAll(filepath.Join(dir, "migrations/v1"), 0o755)).To(Succeed())
			copies := []string{"tile.yml", "icon.png"}
			migrations, err := filepath.Glob(filepath.Join(root, "tile/migrations/v1/*.js"))
			Expect(err).NotTo(HaveOccurred())
			for _, m := range migrations {
				copies = append(copies, "migrations/v1/"+filepath.Base(m))
			}
			for _, rel := range copies {
				data, err := os.ReadFile(filepath.Join(root, "tile", rel))
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
