package localbosh

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// pkg is a built package: its files under Dir (a folder named for its
// fingerprint), as /var/vcap/packages/NAME holds them.
type pkg struct {
	Name        string
	Fingerprint string
	Dir         string
	// Source says where it came from, for the user.
	Source string
}

// buildPackages builds what the VMs run: redis-for-cf (every command under
// src/cmd, as its packaging script builds them: -trimpath, no cgo; but
// from this checkout's module cache rather than a vendor tree), redis (the
// compiled package, or Debian's binaries), and bpm (localvm, the VMs' own
// tools).
//
// A command of src/cmd that does not build (work in progress of another
// change) is left out, and said so, when no job of the deployment runs it:
// needed reports whether one does.
func (d *Director) buildPackages(ctx context.Context, needed func(cmd string) bool) (map[string]pkg, error) {
	out := map[string]pkg{}
	tmp, err := os.MkdirTemp(d.opts.StateDir, "build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	bin := filepath.Join(tmp, "redis-for-cf", "bin")
	source, err := d.buildCommands(ctx, bin, needed)
	if err != nil {
		return nil, err
	}
	if out["redis-for-cf"], err = d.storePackage("redis-for-cf", filepath.Join(tmp, "redis-for-cf"), source); err != nil {
		return nil, err
	}

	vmBin := filepath.Join(tmp, "bpm", "bin")
	if err := d.goBuild(ctx, []string{"build", "-o", filepath.Join(vmBin, "localvm"), "./src/cmd/localvm"}, "CGO_ENABLED=0"); err != nil {
		return nil, err
	}
	if out["bpm"], err = d.storePackage("bpm", filepath.Join(tmp, "bpm"), "localvm (init, monit and bpm stand-ins)"); err != nil {
		return nil, err
	}

	redisDir, source, err := d.redisSource(filepath.Join(tmp, "redis"))
	if err != nil {
		return nil, err
	}
	if out["redis"], err = d.storePackage("redis", redisDir, source); err != nil {
		return nil, err
	}
	return out, nil
}

// buildCommands builds the commands the redis-for-cf package builds (those
// of src/cmd its spec names) into bin, as its packaging script does, and
// says what it built. A command no job of the deployment runs is left out,
// with a warning, when it does not build.
func (d *Director) buildCommands(ctx context.Context, bin string, needed func(cmd string) bool) (string, error) {
	programs, err := PackagePrograms(filepath.Join(d.opts.ReleaseDir, "packages", "redis-for-cf", "spec"))
	if err != nil {
		return "", err
	}
	build := func(pkgs ...string) error {
		args := []string{"build", "-trimpath", "-o", bin + "/"}
		if d.opts.LDFlags != "" {
			args = append(args, "-ldflags", d.opts.LDFlags)
		}
		return d.goBuild(ctx, append(args, pkgs...), "CGO_ENABLED=0")
	}
	var pkgs []string
	for _, p := range programs {
		pkgs = append(pkgs, "./src/cmd/"+p)
	}
	source := "go build -trimpath " + strings.Join(pkgs, " ")
	if d.opts.LDFlags != "" {
		source = fmt.Sprintf("go build -trimpath -ldflags %q %s", d.opts.LDFlags, strings.Join(pkgs, " "))
	}
	if err := build(pkgs...); err == nil {
		return source, nil
	}
	var skipped []string
	for _, p := range programs {
		if err := build("./src/cmd/" + p); err != nil {
			if needed(p) {
				return "", err
			}
			skipped = append(skipped, p)
			d.printf("  warning: src/cmd/%s does not build, and no job of the deployment runs it: left out\n%s", p, indentText(err.Error(), "      | "))
		}
	}
	if len(skipped) == 0 {
		return source, nil
	}
	return fmt.Sprintf("%s (without %s)", source, strings.Join(skipped, ", ")), nil
}

// PackagePrograms lists the commands a package spec's files name
// ("cmd/NAME/**/*"), in its order.
func PackagePrograms(specFile string) ([]string, error) {
	data, err := os.ReadFile(specFile)
	if err != nil {
		return nil, err
	}
	var spec struct {
		Files []string `yaml:"files"`
	}
	if err := yaml.Unmarshal(data, &spec); err != nil {
		return nil, fmt.Errorf("%s: %w", specFile, err)
	}
	var out []string
	for _, f := range spec.Files {
		if rest, ok := strings.CutPrefix(f, "cmd/"); ok {
			out = append(out, strings.TrimSuffix(rest, "/**/*"))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s names no command under cmd/", specFile)
	}
	return out, nil
}

func indentText(s, prefix string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString(prefix + line + "\n")
	}
	return b.String()
}

func (d *Director) goBuild(ctx context.Context, args []string, env ...string) error {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = d.opts.ReleaseDir
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// redisSource lays out the redis package in dir: the compiled package if
// there is one, else Debian's binaries (the same bookworm-security source
// and security patches as the release's blobs, built with Debian's own
// choices). It says which.
func (d *Director) redisSource(dir string) (string, string, error) {
	compiled := d.opts.RedisPackage
	if compiled == "" {
		if c := filepath.Join(d.opts.ReleaseDir, ".local", "redis-package"); fileExists(filepath.Join(c, "bin", "redis-server")) {
			compiled = c
		}
	}
	if compiled != "" {
		if !fileExists(filepath.Join(compiled, "bin", "redis-server")) {
			return "", "", fmt.Errorf("redis package %s has no bin/redis-server", compiled)
		}
		if err := copyTree(compiled, dir); err != nil {
			return "", "", err
		}
		return dir, "compiled from the release's blob (" + compiled + ")", nil
	}
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return "", "", err
	}
	server, err := exec.LookPath("redis-server")
	if err != nil {
		return "", "", errors.New("no redis package: install Debian's redis-server (scripts/setup) or compile the release's (--compile-redis)")
	}
	if err := copyFile(server, filepath.Join(bin, "redis-server")); err != nil {
		return "", "", err
	}
	for _, tool := range []string{"redis-cli", "redis-benchmark"} {
		if p, err := exec.LookPath(tool); err == nil {
			if err := copyFile(p, filepath.Join(bin, tool)); err != nil {
				return "", "", err
			}
		}
	}
	// As `make install` lays them out.
	for _, link := range []string{"redis-check-aof", "redis-check-rdb", "redis-sentinel"} {
		if err := os.Symlink("redis-server", filepath.Join(bin, link)); err != nil {
			return "", "", err
		}
	}
	out, _ := exec.Command(server, "--version").Output()
	return dir, "Debian's " + strings.TrimSpace(string(out)) + " (" + server + ")", nil
}

// packageFiles maps each file a package's spec names (files:, globs without
// "**") to the release file it is: from src/, else from blobs/, as
// bosh create-release takes them. A glob that matches nothing is an error.
func (d *Director) packageFiles(name string) (map[string]string, error) {
	specFile := filepath.Join(d.opts.ReleaseDir, "packages", name, "spec")
	data, err := os.ReadFile(specFile)
	if err != nil {
		return nil, err
	}
	var spec struct {
		Files []string `yaml:"files"`
	}
	if err := yaml.Unmarshal(data, &spec); err != nil {
		return nil, fmt.Errorf("%s: %w", specFile, err)
	}
	files := map[string]string{}
	for _, glob := range spec.Files {
		found := false
		for _, dir := range []string{"src", "blobs"} {
			base := filepath.Join(d.opts.ReleaseDir, dir)
			matches, err := filepath.Glob(filepath.Join(base, glob))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", specFile, err)
			}
			for _, m := range matches {
				rel, err := filepath.Rel(base, m)
				if err != nil {
					return nil, err
				}
				if _, ok := files[rel]; !ok {
					files[rel] = m
				}
				found = true
			}
			if found {
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("%s: no file in src/ or blobs/ matches %s", specFile, glob)
		}
	}
	return files, nil
}

// storePackage moves the package laid out in src to
// StateDir/packages/NAME/FINGERPRINT, unless that exists, and returns it.
//
// The fingerprint covers the files and how they were made (source): as a
// BOSH package's version follows its inputs, a build with other flags is
// another package even where its files come out the same.
func (d *Director) storePackage(name, src, source string) (pkg, error) {
	fp, err := fingerprint(src, source)
	if err != nil {
		return pkg{}, err
	}
	dst := filepath.Join(d.opts.StateDir, "packages", name, fp)
	if !fileExists(dst) {
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return pkg{}, err
		}
		if err := os.Rename(src, dst); err != nil {
			return pkg{}, err
		}
	}
	return pkg{Name: name, Fingerprint: fp, Dir: dst, Source: source}, nil
}

// fingerprint hashes a folder's paths, modes, link targets and contents,
// and source.
func fingerprint(dir, source string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00", source)
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		info, err := e.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%o\x00", rel, info.Mode())
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "%s\x00", target)
		case info.Mode().IsRegular():
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
		}
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))[:16], err
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// copyFile copies src (following links) to dst with src's mode.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	info, err := in.Stat()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, info.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// copyTree copies a folder, keeping symbolic links as links.
func copyTree(src, dst string) error { return walkTree(src, dst, copyFile) }

// linkTree makes dst a copy of src whose files are hard links to src's
// (packages are never changed in place: a new build is a new folder), or
// copies where a link cannot be made.
func linkTree(src, dst string) error {
	tmp := dst + ".tmp"
	_ = os.RemoveAll(tmp)
	err := walkTree(src, tmp, func(from, to string) error {
		if err := os.Link(from, to); err == nil {
			return nil
		}
		return copyFile(from, to)
	})
	if err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// walkTree makes dst a tree of src's folders and symbolic links, with each
// regular file put in place by file.
func walkTree(src, dst string, file func(from, to string) error) error {
	return filepath.WalkDir(src, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		switch {
		case e.IsDir():
			return os.MkdirAll(target, 0o755)
		case e.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		default:
			return file(path, target)
		}
	})
}

// CompileRedis compiles the release's redis package from its blobs with the
// package's own packaging script, as a BOSH compilation VM would (no
// network, the files packages/redis/spec names laid out as in the package),
// into ReleaseDir/.local/redis-package, which later deploys then install. It
// fetches the blobs first if one is missing (scripts/add-blobs).
func (d *Director) CompileRedis(ctx context.Context) (string, error) {
	files, err := d.packageFiles("redis")
	if err != nil {
		cmd := exec.CommandContext(ctx, filepath.Join(d.opts.ReleaseDir, "scripts", "add-blobs"))
		cmd.Dir = d.opts.ReleaseDir
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("scripts/add-blobs: %w\n%s", err, out)
		}
		if files, err = d.packageFiles("redis"); err != nil {
			return "", err
		}
	}
	work, err := os.MkdirTemp("", "compile-redis-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	compile := filepath.Join(work, "compile")
	install := filepath.Join(work, "install")
	for rel, path := range files {
		if err := copyFile(path, filepath.Join(compile, rel)); err != nil {
			return "", err
		}
	}
	if err := copyFile(filepath.Join(d.opts.ReleaseDir, "packages", "redis", "packaging"), filepath.Join(compile, "packaging")); err != nil {
		return "", err
	}
	if err := os.MkdirAll(install, 0o755); err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "unshare", "--net", "bash", "-e", "packaging")
	cmd.Dir = compile
	cmd.Env = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"BOSH_COMPILE_TARGET=" + compile, "BOSH_INSTALL_TARGET=" + install,
		"BOSH_PACKAGE_NAME=redis", "BOSH_PACKAGE_VERSION=local",
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		tail := string(out)
		if len(tail) > 3000 {
			tail = "..." + tail[len(tail)-3000:]
		}
		return "", fmt.Errorf("packages/redis/packaging: %w\n%s", err, tail)
	}
	dst := filepath.Join(d.opts.ReleaseDir, ".local", "redis-package")
	if err := os.RemoveAll(dst); err != nil {
		return "", err
	}
	if err := copyTree(install, dst); err != nil {
		return "", err
	}
	return dst, nil
}
