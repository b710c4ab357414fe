package spec

import (
	"archive/zip"
	"fmt"
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

// concoursePipeline is ci/pipeline.yml as Concourse reads it (the parts
// that name things).
type concoursePipeline struct {
	ResourceTypes []struct {
		Name string `yaml:"name"`
	} `yaml:"resource_types"`
	Resources []struct {
		Name   string         `yaml:"name"`
		Type   string         `yaml:"type"`
		Source map[string]any `yaml:"source"`
	} `yaml:"resources"`
	Jobs []struct {
		Name string           `yaml:"name"`
		Plan []map[string]any `yaml:"plan"`
	} `yaml:"jobs"`
}

// concourseTask is a task file, ci/tasks/NAME.yml.
type concourseTask struct {
	Platform      string         `yaml:"platform"`
	ImageResource map[string]any `yaml:"image_resource"`
	Inputs        []struct {
		Name     string `yaml:"name"`
		Optional bool   `yaml:"optional"`
	} `yaml:"inputs"`
	Outputs []struct {
		Name string `yaml:"name"`
	} `yaml:"outputs"`
	Params map[string]any `yaml:"params"`
	Run    struct {
		Path string   `yaml:"path"`
		Args []string `yaml:"args"`
	} `yaml:"run"`
}

// Concourse's own resource types: a pipeline may use them undeclared.
var concourseCoreTypes = []string{"git", "s3", "time", "registry-image", "docker-image", "bosh-io-release", "bosh-io-stemcell", "github-release", "semver", "pool", "mock"}

// taskScriptLine is what a task script may do: set shell options, go to the
// checkout or a remembered folder, remember a folder, clean up with a
// script, and call scripts/.
var (
	taskScriptLine = regexp.MustCompile(`^(set -euo pipefail|cd "\$\(dirname "\$0"\)/\.\./\.\."|[a-z_]+=\$PWD(/[a-z._-]+)*|cd "\$[a-z_]+(/[a-z._-]+)*"|trap 'scripts/[a-z-]+( [^']*)?' EXIT|(exec |([A-Z_]+=\S+ )*)scripts/[a-z-]+( .*)?)$`)
	scriptCall     = regexp.MustCompile(`scripts/([a-z-]+)`)
)

// scriptsCalled lists the scripts/ a task script calls, failing on a line
// that does anything else.
func scriptsCalled(path string) []string {
	GinkgoHelper()
	data, err := os.ReadFile(path)
	Expect(err).NotTo(HaveOccurred())
	text := strings.ReplaceAll(string(data), "\\\n", " ")
	Expect(text).To(HavePrefix("#!/usr/bin/env bash\n"), path)
	var called []string
	for _, line := range strings.Split(text, "\n") {
		line = strings.Join(strings.Fields(line), " ")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		Expect(line).To(MatchRegexp(taskScriptLine.String()), "%s: a task script only calls scripts/", path)
		for _, m := range scriptCall.FindAllStringSubmatch(line, -1) {
			called = append(called, m[1])
		}
	}
	Expect(called).NotTo(BeEmpty(), "%s calls no script", path)
	return called
}

// steps lists a plan's steps in order, the steps of in_parallel, do and try
// and the hooks included.
func steps(plan []map[string]any) []map[string]any {
	var out []map[string]any
	for _, s := range plan {
		out = append(out, s)
		var nested []any
		switch p := s["in_parallel"].(type) {
		case []any:
			nested = p
		case map[string]any:
			nested, _ = p["steps"].([]any)
		}
		if d, ok := s["do"].([]any); ok {
			nested = append(nested, d...)
		}
		for _, hook := range []string{"try", "on_success", "on_failure", "on_error", "on_abort", "ensure"} {
			if h, ok := s[hook].(map[string]any); ok {
				nested = append(nested, h)
			}
		}
		for _, n := range nested {
			if m, ok := n.(map[string]any); ok {
				out = append(out, steps([]map[string]any{m})...)
			}
		}
	}
	return out
}

func strs(v any) []string {
	var out []string
	if l, ok := v.([]any); ok {
		for _, e := range l {
			out = append(out, fmt.Sprint(e))
		}
	}
	return out
}

var _ = Describe("ci/pipeline.yml", Ordered, func() {
	var (
		p       concoursePipeline
		text    string
		tasks   = map[string]concourseTask{}
		scripts = map[string][]string{} // task script -> scripts/ it calls
	)

	BeforeAll(func() {
		data, err := os.ReadFile(filepath.Join(root, "ci/pipeline.yml"))
		Expect(err).NotTo(HaveOccurred())
		text = string(data)
		dec := yaml.NewDecoder(strings.NewReader(text))
		dec.KnownFields(false)
		Expect(dec.Decode(&p)).To(Succeed())
		Expect(p.Jobs).NotTo(BeEmpty())
	})

	It("has the jobs of the delivery: tests, release, tile, local deployment with smoke tests, redis blob bump", func() {
		var jobs []string
		for _, j := range p.Jobs {
			jobs = append(jobs, j.Name)
		}
		Expect(jobs).To(ConsistOf("test", "build-release", "build-tile", "deploy-local", "bump-redis-blob"))
	})

	It("names unique resources and jobs, of known types, each used", func() {
		var names, jobs, types []string
		for _, t := range p.ResourceTypes {
			types = append(types, t.Name)
		}
		used := map[string]bool{}
		for _, j := range p.Jobs {
			jobs = append(jobs, j.Name)
			for _, s := range steps(j.Plan) {
				for _, verb := range []string{"get", "put"} {
					if name, ok := s[verb].(string); ok {
						if r, ok := s["resource"].(string); ok {
							name = r
						}
						used[name] = true
					}
				}
			}
		}
		for _, r := range p.Resources {
			names = append(names, r.Name)
			Expect(slices.Contains(concourseCoreTypes, r.Type) || slices.Contains(types, r.Type)).To(BeTrue(), "resource %s: type %s", r.Name, r.Type)
			Expect(used).To(HaveKey(r.Name), "resource %s is used by no job", r.Name)
		}
		slices.Sort(names)
		Expect(slices.Compact(slices.Clone(names))).To(Equal(names), "resource names are unique")
		slices.Sort(jobs)
		Expect(slices.Compact(slices.Clone(jobs))).To(Equal(jobs), "job names are unique")
	})

	It("resolves every step: resources, passed jobs, task files, their inputs and outputs", func() {
		resources := map[string]bool{}
		for _, r := range p.Resources {
			resources[r.Name] = true
		}
		// touches[job] are the resources the job gets or puts: `passed`
		// can only name a job that does.
		touches := map[string]map[string]bool{}
		for _, j := range p.Jobs {
			touches[j.Name] = map[string]bool{}
			for _, s := range steps(j.Plan) {
				for _, verb := range []string{"get", "put"} {
					if name, ok := s[verb].(string); ok {
						if r, ok := s["resource"].(string); ok {
							name = r
						}
						touches[j.Name][name] = true
					}
				}
			}
		}
		for _, j := range p.Jobs {
			artifacts := map[string]bool{}
			// Steps run in order; in_parallel's steps are all done before
			// the next step.
			for _, s := range steps(j.Plan) {
				where := fmt.Sprintf("job %s", j.Name)
				if name, ok := s["get"].(string); ok {
					res := name
					if r, ok := s["resource"].(string); ok {
						res = r
					}
					Expect(resources).To(HaveKey(res), "%s: get %s", where, res)
					for _, passed := range strs(s["passed"]) {
						Expect(touches).To(HaveKey(passed), "%s: get %s passed %s: no such job", where, res, passed)
						Expect(touches[passed]).To(HaveKey(res), "%s: get %s passed %s, which neither gets nor puts it", where, res, passed)
					}
					artifacts[name] = true
				}
				if name, ok := s["put"].(string); ok {
					res := name
					if r, ok := s["resource"].(string); ok {
						res = r
					}
					Expect(resources).To(HaveKey(res), "%s: put %s", where, res)
					params, _ := s["params"].(map[string]any)
					for _, key := range []string{"file", "repository"} {
						if v, ok := params[key].(string); ok {
							first := strings.Split(v, "/")[0]
							Expect(artifacts).To(HaveKey(first), "%s: put %s takes %s from %s, which no earlier step made", where, res, key, first)
						}
					}
					artifacts[name] = true
				}
				if name, ok := s["task"].(string); ok {
					where = fmt.Sprintf("job %s: task %s", j.Name, name)
					file, _ := s["file"].(string)
					first, rest, _ := strings.Cut(file, "/")
					Expect(artifacts).To(HaveKey(first), "%s: file %s comes from no earlier step", where, file)
					Expect(rest).To(MatchRegexp(`^ci/tasks/[a-z-]+\.yml$`), where)
					Expect(strings.TrimSuffix(filepath.Base(rest), ".yml")).To(Equal(name), "%s: task NAME is ci/tasks/NAME.yml", where)
					data, err := os.ReadFile(filepath.Join(root, rest))
					Expect(err).NotTo(HaveOccurred(), where)
					var t concourseTask
					dec := yaml.NewDecoder(strings.NewReader(string(data)))
					dec.KnownFields(true)
					Expect(dec.Decode(&t)).To(Succeed(), "%s: %s", where, rest)
					Expect(t.Platform).To(Equal("linux"), where)
					Expect(t.ImageResource).To(HaveKey("source"), where)
					tasks[rest] = t

					inputMapping, _ := s["input_mapping"].(map[string]any)
					inputs := map[string]bool{}
					for _, in := range t.Inputs {
						inputs[in.Name] = true
						artifact := in.Name
						if m, ok := inputMapping[in.Name].(string); ok {
							artifact = m
						}
						if !in.Optional {
							Expect(artifacts).To(HaveKey(artifact), "%s: input %s comes from no earlier step", where, artifact)
						}
					}
					for in := range inputMapping {
						Expect(inputs).To(HaveKey(in), "%s: input_mapping of %s, which the task does not take", where, in)
					}
					outputMapping, _ := s["output_mapping"].(map[string]any)
					for _, out := range t.Outputs {
						artifact := out.Name
						if m, ok := outputMapping[out.Name].(string); ok {
							artifact = m
						}
						artifacts[artifact] = true
					}
					params, _ := s["params"].(map[string]any)
					for k := range params {
						Expect(t.Params).To(HaveKey(k), "%s: param %s is not one %s takes", where, k, rest)
					}

					runFirst, runRest, _ := strings.Cut(t.Run.Path, "/")
					Expect(inputs).To(HaveKey(runFirst), "%s: run.path %s is in no input", where, t.Run.Path)
					Expect(runRest).To(Equal(strings.TrimSuffix(rest, ".yml")+".sh"), "%s: ci/tasks/NAME.yml runs ci/tasks/NAME.sh", where)
					st, err := os.Stat(filepath.Join(root, runRest))
					Expect(err).NotTo(HaveOccurred(), where)
					Expect(st.Mode()&0o111).NotTo(BeZero(), "%s is executable", runRest)
					scripts[runRest] = scriptsCalled(filepath.Join(root, runRest))
				}
			}
		}
		Expect(tasks).NotTo(BeEmpty())
	})

	It("deploys only what an earlier job published: each get of a published resource has passed jobs that chain back to its put", func() {
		// puts[r] are the jobs that put resource r; gets[job][r] the passed
		// jobs of the job's get of r.
		puts := map[string][]string{}
		gets := map[string]map[string][]string{}
		resourceOf := func(s map[string]any, verb string) string {
			name, _ := s[verb].(string)
			if r, ok := s["resource"].(string); ok {
				return r
			}
			return name
		}
		for _, j := range p.Jobs {
			gets[j.Name] = map[string][]string{}
			for _, s := range steps(j.Plan) {
				if _, ok := s["put"].(string); ok {
					puts[resourceOf(s, "put")] = append(puts[resourceOf(s, "put")], j.Name)
				}
				if _, ok := s["get"].(string); ok {
					gets[j.Name][resourceOf(s, "get")] = strs(s["passed"])
				}
			}
		}
		// chains says whether job has res from a put: its own, or through
		// passed jobs that each have it from a put.
		var chains func(job, res string, seen map[string]bool) bool
		chains = func(job, res string, seen map[string]bool) bool {
			if slices.Contains(puts[res], job) {
				return true
			}
			passed := gets[job][res]
			if seen[job] || len(passed) == 0 {
				return false
			}
			seen[job] = true
			for _, up := range passed {
				if !chains(up, res, seen) {
					return false
				}
			}
			return true
		}
		for _, j := range p.Jobs {
			for res, passed := range gets[j.Name] {
				if len(puts[res]) == 0 || slices.Contains(puts[res], j.Name) {
					continue
				}
				Expect(passed).NotTo(BeEmpty(), "job %s gets %s, which job %v publishes, without passed: it would take whatever version is newest", j.Name, res, puts[res])
				Expect(chains(j.Name, res, map[string]bool{})).To(BeTrue(), "job %s gets %s passed %v, which do not all have it from a put", j.Name, res, passed)
			}
		}

		// The job that deploys takes the published artifact into the task
		// that deploys it, triggered by it, and lays out the release that
		// artifact carries instead of building one.
		deployers := 0
		for _, j := range p.Jobs {
			triggered := map[string]bool{}
			for _, s := range steps(j.Plan) {
				if name, ok := s["get"].(string); ok && s["trigger"] == true && len(puts[resourceOf(s, "get")]) > 0 {
					triggered[name] = true
				}
			}
			for _, s := range steps(j.Plan) {
				file, ok := s["file"].(string)
				if _, task := s["task"]; !ok || !task {
					continue
				}
				_, rest, _ := strings.Cut(file, "/")
				called := scriptsCalled(filepath.Join(root, strings.TrimSuffix(rest, ".yml")+".sh"))
				if !slices.Contains(called, "deploy-local") {
					continue
				}
				deployers++
				where := fmt.Sprintf("job %s: task %s", j.Name, s["task"])
				Expect(called).NotTo(ContainElements("create-release"), "%s builds a release instead of deploying the published one", where)
				Expect(called).NotTo(ContainElements("build-tile"), "%s builds a tile instead of deploying the published one", where)
				Expect(called).To(ContainElement("unpack-release"), "%s deploys the release the published artifact carries", where)
				Expect(slices.Index(called, "unpack-release")).To(BeNumerically("<", slices.Index(called, "deploy-local")), where)
				data, err := os.ReadFile(filepath.Join(root, rest))
				Expect(err).NotTo(HaveOccurred())
				var t concourseTask
				Expect(yaml.Unmarshal(data, &t)).To(Succeed())
				inputMapping, _ := s["input_mapping"].(map[string]any)
				published := false
				for _, in := range t.Inputs {
					artifact := in.Name
					if m, ok := inputMapping[in.Name].(string); ok {
						artifact = m
					}
					if triggered[artifact] {
						published = true
					}
				}
				Expect(published).To(BeTrue(), "%s takes no input that an earlier job published and that triggers the job", where)
			}
		}
		Expect(deployers).To(BeNumerically(">", 0), "a job deploys")
	})

	It("gives the task that runs scripts/test Node 20 or later (the client suite's; Debian bookworm's is 18), on its PATH", func() {
		nodeResources := map[string]bool{}
		for _, r := range p.Resources {
			repo, _ := r.Source["repository"].(string)
			tag, _ := r.Source["tag"].(string)
			major, _, _ := strings.Cut(tag, "-")
			if r.Type == "registry-image" && repo == "node" && len(major) >= 2 && major >= "20" {
				nodeResources[r.Name] = true
			}
		}
		found := false
		for _, j := range p.Jobs {
			var node string
			for _, s := range steps(j.Plan) {
				if name, ok := s["get"].(string); ok && nodeResources[name] {
					params, _ := s["params"].(map[string]any)
					Expect(params).To(HaveKeyWithValue("format", "rootfs"), "job %s: get %s as a root file system", j.Name, name)
					node = name
				}
			}
			for _, s := range steps(j.Plan) {
				file, ok := s["file"].(string)
				if !ok {
					continue
				}
				_, rest, _ := strings.Cut(file, "/")
				script := filepath.Join(root, strings.TrimSuffix(rest, ".yml")+".sh")
				if !slices.Contains(scriptsCalled(script), "test") {
					continue
				}
				found = true
				Expect(node).NotTo(BeEmpty(), "job %s runs scripts/test without a node image", j.Name)
				data, err := os.ReadFile(filepath.Join(root, rest))
				Expect(err).NotTo(HaveOccurred())
				var t concourseTask
				Expect(yaml.Unmarshal(data, &t)).To(Succeed())
				Expect(t.Inputs).To(ContainElement(HaveField("Name", node)), "task %s takes %s", rest, node)
				Expect(string(mustRead(script))).To(MatchRegexp(`(?m)^PATH=\$work/` + regexp.QuoteMeta(node) + `/rootfs/usr/local/bin:\$PATH scripts/test$`))
			}
		}
		Expect(found).To(BeTrue(), "a task runs scripts/test")
	})

	It("has no task file or script the pipeline does not run", func() {
		files, err := filepath.Glob(filepath.Join(root, "ci/tasks/*"))
		Expect(err).NotTo(HaveOccurred())
		for _, f := range files {
			rel := "ci/tasks/" + filepath.Base(f)
			if strings.HasSuffix(rel, ".yml") {
				Expect(tasks).To(HaveKey(rel), "%s is run by no job", rel)
			} else {
				Expect(scripts).To(HaveKey(rel), "%s is run by no task", rel)
			}
		}
	})

	It("calls scripts that exist and are executable", func() {
		for script, called := range scripts {
			for _, c := range called {
				st, err := os.Stat(filepath.Join(root, "scripts", c))
				Expect(err).NotTo(HaveOccurred(), "%s calls scripts/%s", script, c)
				Expect(st.Mode()&0o111).NotTo(BeZero(), "scripts/%s is executable", c)
			}
		}
	})

	It("documents every ((variable)) it needs", func() {
		header, _, _ := strings.Cut(text, "\nresources:")
		for _, m := range regexp.MustCompile(`\(\(([a-z0-9-]+)\)\)`).FindAllStringSubmatch(text, -1) {
			Expect(header).To(ContainSubstring(m[1]), "the header names ((%s))", m[1])
		}
	})

	It("packs the bpm release that scripts/build-tile pins", func() {
		build, err := os.ReadFile(filepath.Join(root, "scripts/build-tile"))
		Expect(err).NotTo(HaveOccurred())
		pinned := regexp.MustCompile(`(?m)^BPM_VERSION=(\S+)$`).FindStringSubmatch(string(build))
		Expect(pinned).NotTo(BeNil())
		Expect(text).To(ContainSubstring(`version: {version: "` + pinned[1] + `"}`))
	})
})

var _ = Describe("scripts/bump-redis-blob", func() {
	// release copies what the script touches into a release folder of its
	// own: its scripts, config/ and go.mod (for the pinned bosh-cli).
	release := func() string {
		GinkgoHelper()
		dir := GinkgoT().TempDir()
		for _, f := range []string{"scripts/add-blobs", "scripts/bump-redis-blob", "config/blobs.yml", "config/final.yml", "go.mod", "go.sum"} {
			data, err := os.ReadFile(filepath.Join(root, f))
			Expect(err).NotTo(HaveOccurred())
			Expect(os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755)).To(Succeed())
			Expect(os.WriteFile(filepath.Join(dir, f), data, 0o755)).To(Succeed())
		}
		return dir
	}
	pinned := func() string {
		GinkgoHelper()
		data, err := os.ReadFile(filepath.Join(root, "scripts/add-blobs"))
		Expect(err).NotTo(HaveOccurred())
		m := regexp.MustCompile(`(?m)^REDIS_DEBIAN_VERSION=(\S+)$`).FindStringSubmatch(string(data))
		Expect(m).NotTo(BeNil())
		return m[1]
	}
	// sourcePackage writes a folder shaped like what `apt-get source redis`
	// leaves: redis_7.0.15.orig.tar.gz (src/version.h) and
	// redis_7.0.15-REVISION.debian.tar.xz (debian/changelog, whose entries
	// are the new one and then the pinned one, and debian/patches/series).
	sourcePackage := func(revision string) string {
		GinkgoHelper()
		dir := GinkgoT().TempDir()
		Expect(os.WriteFile(filepath.Join(dir, "redis_7.0.15.orig.tar.gz"), targzOf(map[string]string{
			"redis-7.0.15/src/version.h": "#define REDIS_VERSION \"7.0.15\"\n#define REDIS_VERSION_NUM 0x0007000f\n",
		}), 0o644)).To(Succeed())
		tree := GinkgoT().TempDir()
		Expect(os.MkdirAll(filepath.Join(tree, "debian/patches"), 0o755)).To(Succeed())
		changelog := fmt.Sprintf("redis (5:7.0.15-%s) bookworm-security; urgency=high\n\n  * CVE-2099-12345: a fix.\n\n -- A Maintainer <a@example.org>  Thu, 01 Oct 2026 10:00:00 +0000\n\n"+
			"redis (%s) bookworm-security; urgency=high\n\n  * CVE-2026-92925: an older fix.\n\n -- A Maintainer <a@example.org>  Thu, 24 Sep 2026 13:34:16 -0700\n", revision, pinned())
		Expect(os.WriteFile(filepath.Join(tree, "debian/changelog"), []byte(changelog), 0o644)).To(Succeed())
		Expect(os.WriteFile(filepath.Join(tree, "debian/patches/series"), []byte("CVE-2099-12345.patch\n"), 0o644)).To(Succeed())
		out, err := exec.Command("tar", "-C", tree, "-cJf", filepath.Join(dir, "redis_7.0.15-"+revision+".debian.tar.xz"), "debian").CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		return dir
	}
	run := func(dir string, args ...string) (string, error) {
		cmd := exec.Command(filepath.Join(dir, "scripts/bump-redis-blob"), args...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	// localBlobstore points the release's config/final.yml at a blobstore
	// folder (bosh-cli's local provider) and marks the other blobs as
	// uploaded there already, and returns the folder.
	localBlobstore := func(dir string) string {
		GinkgoHelper()
		store := GinkgoT().TempDir()
		// The release's own blobstore (an S3 bucket) gives way to the
		// folder: everything from its "blobstore:" key on is replaced.
		final, err := os.ReadFile(filepath.Join(dir, "config/final.yml"))
		Expect(err).NotTo(HaveOccurred())
		at := regexp.MustCompile(`(?m)^blobstore:`).FindIndex(final)
		Expect(at).NotTo(BeNil(), "config/final.yml names a blobstore")
		final = append(final[:at[0]:at[0]], fmt.Sprintf("blobstore:\n  provider: local\n  options:\n    blobstore_path: %s\n", store)...)
		Expect(os.WriteFile(filepath.Join(dir, "config/final.yml"), final, 0o644)).To(Succeed())
		blobs, err := os.ReadFile(filepath.Join(dir, "config/blobs.yml"))
		Expect(err).NotTo(HaveOccurred())
		// Every blob but Redis's (the Go toolchain, the vendored modules)
		// counts as uploaded already.
		re := regexp.MustCompile(`(?m)^((golang|go-vendor)/[^\n]*:\n(  [a-z]+: [^\n]*\n)*)`)
		Expect(re.FindAll(blobs, -1)).To(HaveLen(2))
		blobs = re.ReplaceAll(blobs, []byte("${1}  object_id: stand-in-${2}\n"))
		Expect(os.WriteFile(filepath.Join(dir, "config/blobs.yml"), blobs, 0o644)).To(Succeed())
		return store
	}
	gitInit := func(dir string) {
		GinkgoHelper()
		for _, args := range [][]string{{"init", "-q"}, {"add", "."}, {"-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "before"}} {
			out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).CombinedOutput()
			Expect(err).NotTo(HaveOccurred(), string(out))
		}
	}
	sha256Of := func(path string) string {
		GinkgoHelper()
		sum, err := exec.Command("sha256sum", path).Output()
		Expect(err).NotTo(HaveOccurred())
		return strings.Fields(string(sum))[0]
	}

	It("pins the newer Debian revision and both tarballs' sha256, swaps the blobs, uploads them, and commits with --commit", func() {
		dir := release()
		store := localBlobstore(dir)
		gitInit(dir)
		src := sourcePackage("1~deb12u99")
		cmd := exec.Command(filepath.Join(dir, "scripts/bump-redis-blob"), "--commit", src)
		cmd.Env = append(os.Environ(), "BLOBSTORE_ACCESS_KEY_ID=ci-key", "BLOBSTORE_SECRET_ACCESS_KEY=ci-'secret")
		o, err := cmd.CombinedOutput()
		out := string(o)
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).NotTo(ContainSubstring("secret"))
		Expect(filepath.Join(dir, "config/private.yml")).NotTo(BeAnExistingFile(), "the credentials it wrote are gone")
		Expect(out).To(ContainSubstring("redis " + pinned() + " -> 5:7.0.15-1~deb12u99"))

		addBlobs, err := os.ReadFile(filepath.Join(dir, "scripts/add-blobs"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(addBlobs)).To(ContainSubstring("\nREDIS_DEBIAN_VERSION=5:7.0.15-1~deb12u99\n"))
		Expect(string(addBlobs)).To(ContainSubstring("\nREDIS_ORIG_SHA256=" + sha256Of(filepath.Join(src, "redis_7.0.15.orig.tar.gz")) + "\n"))
		Expect(string(addBlobs)).To(ContainSubstring("\nREDIS_DEBIAN_SHA256=" + sha256Of(filepath.Join(src, "redis_7.0.15-1~deb12u99.debian.tar.xz")) + "\n"))
		blobs, err := os.ReadFile(filepath.Join(dir, "config/blobs.yml"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(blobs)).To(ContainSubstring("redis/redis_7.0.15.orig.tar.gz:"))
		Expect(string(blobs)).To(ContainSubstring("redis/redis_7.0.15-1~deb12u99.debian.tar.xz:"))
		Expect(strings.Count(string(blobs), "redis/redis")).To(Equal(2), "the old Debian tarball is gone")
		Expect(string(blobs)).To(ContainSubstring("golang/"), "the other blobs stay")
		Expect(filepath.Join(dir, "blobs/redis/redis_7.0.15-1~deb12u99.debian.tar.xz")).To(BeARegularFile())
		// Uploaded before the commit: each redis blob has an object id,
		// under which the blobstore holds its bytes.
		ids := regexp.MustCompile(`(?m)^(redis/[^\n]*):\n(?:  [a-z]+: [^\n]*\n)*?  object_id: (\S+)\n`).FindAllStringSubmatch(string(blobs), -1)
		Expect(ids).To(HaveLen(2), string(blobs))
		for _, id := range ids {
			stored, err := os.ReadFile(filepath.Join(store, id[2]))
			Expect(err).NotTo(HaveOccurred(), "%s is in the blobstore", id[1])
			local, err := os.ReadFile(filepath.Join(dir, "blobs", id[1]))
			Expect(err).NotTo(HaveOccurred())
			Expect(stored).To(Equal(local))
		}

		log, err := exec.Command("git", "-C", dir, "log", "-1", "--format=%B", "--name-only").CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(log))
		Expect(string(log)).To(ContainSubstring("Bump redis to Debian's 5:7.0.15-1~deb12u99"))
		Expect(string(log)).To(ContainSubstring("CVE-2099-12345: a fix."), "the commit quotes the new changelog entries")
		Expect(string(log)).NotTo(ContainSubstring("an older fix"), "and only those")
		Expect(string(log)).To(And(ContainSubstring("scripts/add-blobs"), ContainSubstring("config/blobs.yml")))
	})

	It("commits nothing with --commit when it cannot upload the blobs", func() {
		dir := release()
		gitInit(dir)
		out, err := run(dir, "--commit", sourcePackage("1~deb12u99"))
		Expect(err).To(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("bosh upload-blobs failed (config/final.yml needs a blobstore"))
		Expect(out).To(ContainSubstring("nothing committed"))
		log, err := exec.Command("git", "-C", dir, "log", "--format=%s").CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(log))
		Expect(string(log)).To(Equal("before\n"))
	})

	It("changes nothing for a revision that is not newer, and refuses what is not Redis's source package", func() {
		dir := release()
		out, err := run(dir, sourcePackage("1~deb12u1"))
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("is not newer than the pinned " + pinned() + ": nothing to do"))

		other := GinkgoT().TempDir()
		Expect(os.WriteFile(filepath.Join(other, "other.tar.gz"), targzOf(map[string]string{"README": "hello"}), 0o644)).To(Succeed())
		out, err = run(dir, other)
		Expect(err).To(HaveOccurred())
		Expect(out).To(ContainSubstring("not a Redis source package"))

		for _, f := range []string{"scripts/add-blobs", "config/blobs.yml"} {
			before, err := os.ReadFile(filepath.Join(root, f))
			Expect(err).NotTo(HaveOccurred())
			after, err := os.ReadFile(filepath.Join(dir, f))
			Expect(err).NotTo(HaveOccurred())
			Expect(after).To(Equal(before), "nothing changed")
		}
	})
})

var _ = Describe("scripts/unpack-release", func() {
	// fakeRelease is a redis-for-cf release tarball as scripts/create-release
	// makes one, small: a job, the redis-for-cf package (a program, internal
	// code, the vendor blob with its go.mod copy) and the redis package (a blob and
	// a source file), each file marked so the test can tell it from the
	// checkout's.
	fakeRelease := func(name, gomod string) []byte {
		GinkgoHelper()
		return targzOf(map[string]string{
			"release.MF": "name: " + name + "\nversion: 7.1.0\ncommit_hash: abc1234\n",
			"jobs/redis-broker.tgz": string(targzOf(map[string]string{
				"./job.MF":                    "---\nname: redis-broker\ntemplates: {config.json.erb: config/config.json}\n",
				"./templates/config.json.erb": "published template\n",
			})),
			"packages/redis-for-cf.tgz": string(targzOf(map[string]string{
				"./packaging":                 "echo published packaging\n",
				"./cmd/redis-broker/main.go":  "package main // published\n",
				"./internal/broker/broker.go": "package broker // published\n",
				// The vendored modules are a blob, with the go.mod they
				// were vendored for.
				"./go-vendor/redis-for-cf.tgz": string(targzOf(map[string]string{
					"vendor/go.mod.release":     gomod,
					"vendor/modules.txt":        "# published\n",
					"vendor/example.org/m/m.go": "package m\n",
				})),
			})),
			"packages/redis.tgz": string(targzOf(map[string]string{
				"./packaging":                      "echo published redis packaging\n",
				"./redis/build.sh":                 "# published build.sh\n",
				"./redis/redis_7.0.15.orig.tar.gz": "published blob\n",
			})),
			"packages/golang-1-linux.tgz": string(targzOf(map[string]string{"./packaging": "# go\n"})),
		})
	}
	gomod := func() string {
		GinkgoHelper()
		data, err := os.ReadFile(filepath.Join(root, "go.mod"))
		Expect(err).NotTo(HaveOccurred())
		return string(data)
	}
	unpack := func(input, dir string) (string, error) {
		out, err := exec.Command(filepath.Join(root, "scripts/unpack-release"), input, dir).CombinedOutput()
		return string(out), err
	}
	read := func(path string) string {
		GinkgoHelper()
		data, err := os.ReadFile(path)
		Expect(err).NotTo(HaveOccurred())
		return string(data)
	}
	// tileOf zips a release into a tile as build-tile does.
	tileOf := func(path string, files map[string][]byte) {
		GinkgoHelper()
		f, err := os.Create(path)
		Expect(err).NotTo(HaveOccurred())
		zw := zip.NewWriter(f)
		for name, data := range files {
			w, err := zw.Create(name)
			Expect(err).NotTo(HaveOccurred())
			_, err = w.Write(data)
			Expect(err).NotTo(HaveOccurred())
		}
		Expect(zw.Close()).To(Succeed())
		Expect(f.Close()).To(Succeed())
	}

	It("lays out the release a tile carries over a copy of the checkout: its jobs, packaging, sources and blobs, the deploy tooling kept", func() {
		work := GinkgoT().TempDir()
		tile := filepath.Join(work, "p-redis-7.1.0.pivotal")
		tileOf(tile, map[string][]byte{
			"metadata/p-redis.yml":            []byte("name: p-redis\n"),
			"releases/redis-for-cf-7.1.0.tgz": fakeRelease("redis-for-cf", gomod()),
			"releases/bpm-1.4.38.tgz":         targzOf(map[string]string{"release.MF": "name: bpm\n"}),
		})
		dir := filepath.Join(work, "deploy")
		out, err := unpack(tile, dir)
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(HaveSuffix(dir + "\n"))

		Expect(read(filepath.Join(dir, "jobs/redis-broker/spec"))).To(ContainSubstring("name: redis-broker"))
		Expect(read(filepath.Join(dir, "jobs/redis-broker/templates/config.json.erb"))).To(Equal("published template\n"))
		Expect(filepath.Join(dir, "jobs/redis-node")).NotTo(BeADirectory(), "only the release's jobs")
		Expect(read(filepath.Join(dir, "packages/redis-for-cf/packaging"))).To(Equal("echo published packaging\n"))
		Expect(read(filepath.Join(dir, "packages/redis/packaging"))).To(Equal("echo published redis packaging\n"))
		Expect(read(filepath.Join(dir, "packages/redis-for-cf/spec"))).To(Equal(read(filepath.Join(root, "packages/redis-for-cf/spec"))))
		Expect(read(filepath.Join(dir, "src/cmd/redis-broker/main.go"))).To(Equal("package main // published\n"))
		Expect(read(filepath.Join(dir, "src/internal/broker/broker.go"))).To(Equal("package broker // published\n"))
		Expect(filepath.Join(dir, "src/internal/store")).NotTo(BeADirectory(), "src/internal is the release's alone")
		Expect(read(filepath.Join(dir, "src/cmd/deploy-local/main.go"))).To(Equal(read(filepath.Join(root, "src/cmd/deploy-local/main.go"))), "the tooling stays")
		Expect(filepath.Join(dir, "src/vendor")).NotTo(BeADirectory())
		Expect(read(filepath.Join(dir, "blobs/redis/redis_7.0.15.orig.tar.gz"))).To(Equal("published blob\n"), "a file blobs.yml names is a blob")
		Expect(filepath.Join(dir, "blobs/go-vendor/redis-for-cf.tgz")).To(BeARegularFile(), "the vendor blob too")
		Expect(read(filepath.Join(dir, "src/redis/build.sh"))).To(Equal("# published build.sh\n"))
		Expect(filepath.Join(dir, "scripts/deploy-local")).To(BeARegularFile())
		Expect(filepath.Join(dir, "manifests/redis.yml")).To(BeARegularFile())
		Expect(filepath.Join(dir, ".git")).NotTo(BeADirectory())
	})

	It("refuses a tile without the release, another release, a release of another go.mod, and a folder in use", func() {
		work := GinkgoT().TempDir()
		tile := filepath.Join(work, "p-redis-1.0.0.pivotal")
		tileOf(tile, map[string][]byte{"metadata/p-redis.yml": []byte("name: p-redis\n")})
		out, err := unpack(tile, filepath.Join(work, "a"))
		Expect(err).To(HaveOccurred())
		Expect(out).To(ContainSubstring("carries 0 redis-for-cf releases, not one"))

		other := filepath.Join(work, "other.tgz")
		Expect(os.WriteFile(other, fakeRelease("cf-redis", gomod()), 0o644)).To(Succeed())
		out, err = unpack(other, filepath.Join(work, "b"))
		Expect(err).To(HaveOccurred())
		Expect(out).To(ContainSubstring("holds release 'cf-redis', not redis-for-cf"))

		older := filepath.Join(work, "older.tgz")
		Expect(os.WriteFile(older, fakeRelease("redis-for-cf", "module example.org/old\n"), 0o644)).To(Succeed())
		out, err = unpack(older, filepath.Join(work, "c"))
		Expect(err).To(HaveOccurred())
		Expect(out).To(ContainSubstring("built with another go.mod"))

		used := filepath.Join(work, "d")
		Expect(os.MkdirAll(used, 0o755)).To(Succeed())
		Expect(os.WriteFile(filepath.Join(used, "x"), nil, 0o644)).To(Succeed())
		out, err = unpack(older, used)
		Expect(err).To(HaveOccurred())
		Expect(out).To(ContainSubstring("is not empty"))
	})
})
