package spec

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"go.yaml.in/yaml/v3"

	"github.com/cf-redis/redis-for-cf/src/release/localbosh"
	"github.com/cf-redis/redis-for-cf/src/testkit/redistest"
)

// packagePrograms are the commands of src/cmd the redis-for-cf package
// builds, as its spec names them.
func packagePrograms() []string {
	GinkgoHelper()
	programs, err := localbosh.PackagePrograms(filepath.Join(root, "packages/redis-for-cf/spec"))
	Expect(err).NotTo(HaveOccurred())
	return programs
}

// releaseManifest is a release tarball's release.MF.
type releaseManifest struct {
	Name     string                  `yaml:"name"`
	Version  string                  `yaml:"version"`
	Jobs     []struct{ Name string } `yaml:"jobs"`
	Packages []struct {
		Name         string   `yaml:"name"`
		Dependencies []string `yaml:"dependencies"`
	} `yaml:"packages"`
}

// extract unpacks a .tgz into dir, refusing links and paths that leave it:
// a package must compile from its own files.
func extract(archive, dir string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("%s: %w", archive, err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", archive, err)
		}
		name := filepath.Clean(h.Name)
		if name == "." {
			continue
		}
		if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("%s: %s leaves the archive", archive, h.Name)
		}
		dst := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode)&0o777|0o200)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: %s is a %c entry, not a file or folder (a link would dangle on the compilation VM)", archive, h.Name, h.Typeflag)
		}
	}
}

// compile runs a package's packaging script as the BOSH agent does: in the
// extracted package, with BOSH_COMPILE_TARGET, BOSH_INSTALL_TARGET and the
// compiled dependencies under BOSH_PACKAGES_DIR, a bare environment and, as
// root, no network at all.
func compile(releaseDir, name, packagesDir, workDir string) (string, error) {
	compileDir := filepath.Join(workDir, "compile", name)
	installDir := filepath.Join(packagesDir, name)
	for _, d := range []string{compileDir, installDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", err
		}
	}
	if err := extract(filepath.Join(releaseDir, "packages", name+".tgz"), compileDir); err != nil {
		return "", err
	}
	args := []string{"bash", "-e", "packaging"}
	if os.Geteuid() == 0 {
		args = append([]string{"unshare", "--net"}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = compileDir
	cmd.Env = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"BOSH_COMPILE_TARGET=" + compileDir,
		"BOSH_INSTALL_TARGET=" + installDir,
		"BOSH_PACKAGES_DIR=" + packagesDir,
		"BOSH_PACKAGE_NAME=" + name,
		"BOSH_PACKAGE_VERSION=test",
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		tail := string(out)
		if len(tail) > 4000 {
			tail = "..." + tail[len(tail)-4000:]
		}
		return "", fmt.Errorf("packaging %s: %w\n%s", name, err, tail)
	}
	return installDir, nil
}

var _ = Describe("the release", Ordered, func() {
	var (
		work, releaseDir, packagesDir string
		mf                            releaseManifest
		redisDone                     chan struct{}
		redisErr                      error
	)

	BeforeAll(func() {
		work = GinkgoT().TempDir()
		tarball := filepath.Join(work, "redis-for-cf.tgz")
		cmd := exec.Command(filepath.Join(root, "scripts/create-release"), tarball)
		out, err := cmd.CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		Expect(strings.TrimSpace(string(out))).To(HaveSuffix(tarball))

		releaseDir = filepath.Join(work, "release")
		Expect(os.Mkdir(releaseDir, 0o755)).To(Succeed())
		Expect(extract(tarball, releaseDir)).To(Succeed())
		data, err := os.ReadFile(filepath.Join(releaseDir, "release.MF"))
		Expect(err).NotTo(HaveOccurred())
		Expect(yaml.Unmarshal(data, &mf)).To(Succeed())

		packagesDir = filepath.Join(work, "packages")
		Expect(os.Mkdir(packagesDir, 0o755)).To(Succeed())
		// redis needs nothing else, and takes a minute or two: it compiles
		// while the Go packages do.
		redisDone = make(chan struct{})
		go func() {
			defer close(redisDone)
			_, redisErr = compile(releaseDir, "redis", packagesDir, work)
		}()
		DeferCleanup(func() { <-redisDone })
	})

	It("holds every job and package, as files only", func() {
		Expect(mf.Name).To(Equal("redis-for-cf"))
		// A version of its own: the last final release's, +dev.TIMESTAMP.
		Expect(mf.Version).To(MatchRegexp(`^\d+(\.\d+){0,2}\+dev\.\d{14}$`))
		jobs, err := jobNames()
		Expect(err).NotTo(HaveOccurred())
		var got []string
		for _, j := range mf.Jobs {
			got = append(got, j.Name)
		}
		Expect(got).To(ConsistOf(jobs))
		got = nil
		for _, p := range mf.Packages {
			got = append(got, p.Name)
		}
		Expect(got).To(ConsistOf("golang-1-linux", "redis", "redis-for-cf"))
		for _, name := range jobs {
			dir := filepath.Join(work, "jobs", name)
			Expect(extract(filepath.Join(releaseDir, "jobs", name+".tgz"), dir)).To(Succeed())
			Expect(filepath.Join(dir, "monit")).To(BeARegularFile())
			j := mustLoadJob(name)
			for src := range j.Templates {
				Expect(filepath.Join(dir, "templates", src)).To(BeARegularFile())
			}
		}
	})

	It("compiles the Go programs from the tarball alone, offline, with the packaged Go", func() {
		_, err := compile(releaseDir, "golang-1-linux", packagesDir, work)
		Expect(err).NotTo(HaveOccurred())
		bin, err := compile(releaseDir, "redis-for-cf", packagesDir, work)
		Expect(err).NotTo(HaveOccurred())

		// The package's spec names the programs the jobs run; every other
		// command of src/cmd builds, deploys or tests the release.
		programs := packagePrograms()
		Expect(programs).To(ContainElements("redis-broker", "redis-shared-agent", "redis-node-agent", "redis-backup"))
		built, err := os.ReadDir(filepath.Join(bin, "bin"))
		Expect(err).NotTo(HaveOccurred())
		var names []string
		for _, b := range built {
			names = append(names, b.Name())
		}
		Expect(names).To(ConsistOf(programs), "the package builds exactly the programs its spec names")
		for _, c := range programs {
			Expect(filepath.Join(root, "src/cmd", c)).To(BeADirectory())
			out, err := exec.Command(filepath.Join(bin, "bin", c)).CombinedOutput()
			var exit *exec.ExitError
			Expect(errors.As(err, &exit)).To(BeTrue(), "%s without -config must refuse to start", c)
			Expect(exit.ExitCode()).To(Equal(2))
			Expect(string(out)).To(And(ContainSubstring("usage"), ContainSubstring(c)))

			// Stamped with the release's version by the packaging script.
			out, err = exec.Command(filepath.Join(bin, "bin", c), "-version").CombinedOutput()
			Expect(err).NotTo(HaveOccurred(), "%s -version: %s", c, out)
			Expect(string(out)).To(Equal(c + " version " + mf.Version + "\n"))
			// And says it first when it starts, before it reads its config.
			out, _ = exec.Command(filepath.Join(bin, "bin", c), "-config", filepath.Join(work, "no-such-config.json")).CombinedOutput()
			Expect(string(out)).To(ContainSubstring(mf.Version), "%s logs its version at start", c)
		}
		for _, tool := range []string{"configcheck", "deploy-local", "localvm", "tile-generator", "vcap-services"} {
			Expect(filepath.Join(root, "src/cmd", tool)).To(BeADirectory())
			Expect(filepath.Join(bin, "bin", tool)).NotTo(BeAnExistingFile(), "tools stay out of the release")
		}
	})

	It("compiles redis-server 7.0.15 from its source blobs with Debian's security patches and the release's own, as the tests' build, with TLS", func() {
		Eventually(redisDone).WithTimeout(10 * time.Minute).Should(BeClosed())
		Expect(redisErr).NotTo(HaveOccurred())
		bin := filepath.Join(packagesDir, "redis", "bin")
		out, err := exec.Command(filepath.Join(bin, "redis-server"), "--version").CombinedOutput()
		Expect(err).NotTo(HaveOccurred())
		Expect(string(out)).To(MatchRegexp(`^Redis server v=7\.0\.15 sha=deb12u\d+\+cf1:0 `), "--version names the Debian revision and the release's one patch")
		Expect(filepath.Join(bin, "redis-cli")).To(BeARegularFile())

		// The package is built as the tests' Redis is: from the same blobs,
		// by the same script, with the same patches.
		tests, err := redistest.LoadBuild(root)
		Expect(err).NotTo(HaveOccurred())
		data, err := os.ReadFile(filepath.Join(packagesDir, "redis", "build-info"))
		Expect(err).NotTo(HaveOccurred())
		info := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			k, v, _ := strings.Cut(line, "=")
			info[k] = v
		}
		for _, k := range []string{"debian_version", "orig_sha256", "debian_sha256", "build_script_sha256", "applied", "excluded", "cf_applied", "cf_patches_sha256"} {
			Expect(info[k]).To(Equal(tests.Info[k]), k)
		}
		Expect(strings.Fields(info["applied"])).To(ContainElement("CVE-2025-49844.patch"))
		Expect(info["cf_applied"]).To(Equal("cf-password-only-login.patch"))

		// A TLS-only redis-server answers PING over TLS.
		p := newPKI("127.0.0.1")
		dir := GinkgoT().TempDir()
		for name, data := range map[string]string{"ca.crt": p.ca, "tls.crt": p.cert, "tls.key": p.key} {
			Expect(os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600)).To(Succeed())
		}
		port, err := redistest.FreePort()
		Expect(err).NotTo(HaveOccurred())
		server := exec.Command(filepath.Join(bin, "redis-server"), "--port", "0", "--bind", "127.0.0.1",
			"--tls-port", fmt.Sprint(port), "--tls-cert-file", filepath.Join(dir, "tls.crt"),
			"--tls-key-file", filepath.Join(dir, "tls.key"), "--tls-ca-cert-file", filepath.Join(dir, "ca.crt"),
			"--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--dir", dir)
		server.Stdout, server.Stderr = GinkgoWriter, GinkgoWriter
		Expect(server.Start()).To(Succeed())
		DeferCleanup(func() {
			_ = server.Process.Kill()
			_ = server.Wait()
		})
		roots := x509.NewCertPool()
		Expect(roots.AppendCertsFromPEM([]byte(p.ca))).To(BeTrue())
		ping := func() (string, error) {
			conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port), &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
			if err != nil {
				return "", err
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := conn.Write([]byte("PING\r\n")); err != nil {
				return "", err
			}
			return bufio.NewReader(conn).ReadString('\n')
		}
		Eventually(ping).WithTimeout(10 * time.Second).Should(Equal("+PONG\r\n"))
	})
})
