package spec

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"go.yaml.in/yaml/v3"

	"github.com/cf-redis/redis-for-cf/src/testkit/miniotest"
)

// blobsYML is config/blobs.yml.
type blobsYML map[string]struct {
	Size     int64  `yaml:"size"`
	SHA      string `yaml:"sha"`
	ObjectID string `yaml:"object_id"`
}

// fingerprints reads the release.MF of a release tarball: each package's and
// job's fingerprint by name, and the version.
func fingerprints(tarball string) (map[string]string, string) {
	GinkgoHelper()
	dir := GinkgoT().TempDir()
	out, err := exec.Command("tar", "-xzf", tarball, "-C", dir, "--wildcards", "*release.MF").CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), string(out))
	data, err := os.ReadFile(filepath.Join(dir, "release.MF"))
	Expect(err).NotTo(HaveOccurred())
	var mf struct {
		Version  string `yaml:"version"`
		Packages []struct {
			Name        string `yaml:"name"`
			Fingerprint string `yaml:"fingerprint"`
		} `yaml:"packages"`
		Jobs []struct {
			Name        string `yaml:"name"`
			Fingerprint string `yaml:"fingerprint"`
		} `yaml:"jobs"`
	}
	Expect(yaml.Unmarshal(data, &mf)).To(Succeed())
	fp := map[string]string{}
	for _, p := range mf.Packages {
		fp["packages/"+p.Name] = p.Fingerprint
	}
	for _, j := range mf.Jobs {
		fp["jobs/"+j.Name] = j.Fingerprint
	}
	return fp, mf.Version
}

var _ = Describe("the blobstore", Ordered, func() {
	var (
		work, bosh, src string
		server          *miniotest.Server
	)

	// run runs a command in dir and returns its output; it must succeed.
	run := func(dir, name string, args ...string) string {
		GinkgoHelper()
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=spec", "GIT_AUTHOR_EMAIL=spec@example.com",
			"GIT_COMMITTER_NAME=spec", "GIT_COMMITTER_EMAIL=spec@example.com")
		out, err := cmd.CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "%s %s in %s:\n%s", name, strings.Join(args, " "), dir, out)
		return string(out)
	}

	BeforeAll(func() {
		work = GinkgoT().TempDir()
		abs, err := filepath.Abs(root)
		Expect(err).NotTo(HaveOccurred())

		// The operator's tools: the pinned BOSH CLI and an S3 store.
		bosh = filepath.Join(work, "bosh")
		run(abs, "go", "build", "-o", bosh, "github.com/cloudfoundry/bosh-cli/v7")
		server, err = miniotest.Start(filepath.Join(work, "minio"))
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(server.Stop)
		Expect(server.MakeBucket("release-blobs")).To(Succeed())
		// Fresh clones read without credentials, as final.yml's
		// credentials_source: none expects of the bucket.
		c, err := server.Client()
		Expect(err).NotTo(HaveOccurred())
		Expect(c.SetBucketPolicy(context.Background(), "release-blobs", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow",`+
			`"Principal":{"AWS":["*"]},"Action":["s3:GetObject"],"Resource":["arn:aws:s3:::release-blobs/*"]}]}`)).To(Succeed())

		// The repository as a commit: this checkout's files that git does
		// not ignore, and the blobs scripts/add-blobs made.
		src = filepath.Join(work, "src")
		files := run(abs, "git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
		for _, f := range strings.Split(strings.TrimRight(files, "\x00"), "\x00") {
			info, err := os.Lstat(filepath.Join(abs, f))
			if os.IsNotExist(err) {
				continue // deleted in the work tree
			}
			Expect(err).NotTo(HaveOccurred())
			Expect(info.Mode().IsRegular()).To(BeTrue(), "%s is not a regular file", f)
			Expect(os.MkdirAll(filepath.Join(src, filepath.Dir(f)), 0o755)).To(Succeed())
			run(abs, "cp", "-p", f, filepath.Join(src, f))
		}
		var blobs blobsYML
		data, err := os.ReadFile(filepath.Join(src, "config/blobs.yml"))
		Expect(err).NotTo(HaveOccurred())
		Expect(yaml.Unmarshal(data, &blobs)).To(Succeed())
		for name := range blobs {
			Expect(filepath.Join(abs, "blobs", name)).To(BeARegularFile(), "run scripts/add-blobs")
			Expect(os.MkdirAll(filepath.Join(src, "blobs", filepath.Dir(name)), 0o755)).To(Succeed())
			run(abs, "cp", filepath.Join("blobs", name), filepath.Join(src, "blobs", name))
		}

		// The operator fills final.yml's placeholders and writes
		// private.yml from its example.
		final, err := os.ReadFile(filepath.Join(src, "config/final.yml"))
		Expect(err).NotTo(HaveOccurred())
		host, port, _ := strings.Cut(server.Addr, ":")
		filled := strings.NewReplacer(
			"bucket_name: REPLACE-WITH-THE-BLOBSTORE-BUCKET", "bucket_name: release-blobs",
			"# host: REPLACE-WITH-THE-S3-ENDPOINT-HOST", "host: "+host,
			"# port: 443", "port: "+port,
			"# use_ssl: true", "use_ssl: false",
		).Replace(string(final))
		Expect(filled).To(ContainSubstring("port: "+port), "final.yml has the placeholders the README names")
		Expect(os.WriteFile(filepath.Join(src, "config/final.yml"), []byte(filled), 0o644)).To(Succeed())
		example, err := os.ReadFile(filepath.Join(src, "config/private.yml.example"))
		Expect(err).NotTo(HaveOccurred())
		private := strings.NewReplacer("REPLACE-WITH-THE-ACCESS-KEY-ID", miniotest.AccessKey,
			"REPLACE-WITH-THE-SECRET-ACCESS-KEY", miniotest.SecretKey).Replace(string(example))
		Expect(private).To(ContainSubstring(miniotest.SecretKey))
		Expect(os.WriteFile(filepath.Join(src, "config/private.yml"), []byte(private), 0o600)).To(Succeed())

		run(src, "git", "init", "-q", "-b", "main")
		run(src, "git", "add", "-A")
		Expect(run(src, "git", "status", "--porcelain", "--ignored", "config")).To(ContainSubstring("!! config/private.yml"),
			"git ignores the credentials")
		run(src, "git", "commit", "-q", "-m", "the release, its blobstore filled in")
	})

	It("gives a fresh clone every blob: upload-blobs, clone, sync-blobs and create-release build the same packages", func() {
		original := filepath.Join(work, "original.tgz")
		run(src, bosh, "create-release", "--tarball", original)
		want, _ := fingerprints(original)
		Expect(want).To(HaveKey("packages/redis-for-cf"))

		run(src, bosh, "upload-blobs")
		var blobs blobsYML
		data, err := os.ReadFile(filepath.Join(src, "config/blobs.yml"))
		Expect(err).NotTo(HaveOccurred())
		Expect(yaml.Unmarshal(data, &blobs)).To(Succeed())
		Expect(blobs).To(HaveKey("go-vendor/redis-for-cf.tgz"), "the vendored modules are a blob")
		for name, b := range blobs {
			Expect(b.ObjectID).NotTo(BeEmpty(), "%s was uploaded", name)
		}
		run(src, "git", "commit", "-q", "-am", "blobs uploaded")

		clone := filepath.Join(work, "clone")
		run(work, "git", "clone", "-q", src, clone)
		Expect(filepath.Join(clone, "config/private.yml")).NotTo(BeAnExistingFile())
		run(clone, bosh, "sync-blobs")
		fresh := filepath.Join(work, "fresh.tgz")
		run(clone, bosh, "create-release", "--tarball", fresh)
		got, _ := fingerprints(fresh)
		Expect(got).To(Equal(want))
	})

	It("makes a final release with scripts/create-release --final, which a fresh clone makes again from the blobstore", func() {
		// Bad versions are refused before anything is built.
		for _, args := range [][]string{{"--final", "--version", "1.2"}, {"--final"}, {"--version", "1.0.0"}} {
			cmd := exec.Command(filepath.Join(src, "scripts/create-release"), args...)
			cmd.Dir = src
			out, err := cmd.CombinedOutput()
			Expect(err).To(HaveOccurred(), "%v: %s", args, out)
			Expect(cmd.ProcessState.ExitCode()).To(Equal(2), "%v: %s", args, out)
		}

		out := run(src, filepath.Join(src, "scripts/create-release"), "--final", "--version", "1.0.0")
		tarball := strings.TrimSpace(out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:])
		fp, version := fingerprints(tarball)
		Expect(version).To(Equal("1.0.0"))
		Expect(filepath.Join(src, "releases/redis-for-cf/redis-for-cf-1.0.0.yml")).To(BeARegularFile())
		Expect(run(src, "git", "status", "--porcelain")).To(And(ContainSubstring("releases/"), ContainSubstring(".final_builds/")))
		run(src, "git", "add", "-A")
		run(src, "git", "commit", "-q", "-m", "final release 1.0.0")

		// Dev releases now follow 1.0.0, each with a version of its own.
		out = run(src, filepath.Join(src, "scripts/create-release"))
		_, dev := fingerprints(strings.TrimSpace(out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:]))
		Expect(dev).To(MatchRegexp(`^1\.0\.0\+dev\.\d{14}$`))

		clone := filepath.Join(work, "final-clone")
		run(work, "git", "clone", "-q", src, clone)
		again := filepath.Join(work, "again.tgz")
		run(clone, bosh, "create-release", "releases/redis-for-cf/redis-for-cf-1.0.0.yml", "--tarball", again)
		got, v := fingerprints(again)
		Expect(v).To(Equal("1.0.0"))
		Expect(got).To(Equal(fp))
		Expect(regexp.MustCompile(`[0-9a-f]{40}`).MatchString(fp["packages/redis-for-cf"])).To(BeTrue(), fmt.Sprint(fp))
	})
})
