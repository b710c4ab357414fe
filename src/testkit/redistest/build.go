package redistest

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"
)

// BuildPointer is the file, relative to the repository's root, that names
// the folder of the Redis build the tests run. scripts/setup builds Redis
// from the release's redis blobs with src/redis/build.sh (the script the
// release's redis package compiles with) and the release's own patches
// (src/redis/patches) into a cache folder keyed by their sha256, and writes
// that folder's absolute path here.
const BuildPointer = ".local/redis-build"

// Build is a Redis build from the release's blobs, as scripts/setup made
// it. The zero value is no build.
type Build struct {
	// Dir holds bin/ and build-info.
	Dir string
	// Info is build-info's KEY=VALUE lines: debian_version (e.g.
	// "5:7.0.15-1~deb12u10"), orig_sha256, debian_sha256,
	// build_script_sha256, applied and excluded (the Debian patches, space
	// separated), cf_applied and cf_patches_sha256 (the release's own
	// patches in series order and their sha256, space separated) and
	// PROGRAM_sha256 of each program (redis_server_sha256...).
	Info map[string]string
}

// Program returns the absolute path of the named program (redis-server,
// redis-cli, redis-benchmark) of the tests' Redis build, checked as
// LoadBuild checks it. It never falls back to another Redis on the machine.
func Program(name string) (string, error) {
	b, err := Current()
	if err != nil {
		return "", err
	}
	return b.Program(name)
}

// TB is the part of testing.TB, and of Ginkgo's GinkgoT(), that
// MustProgram uses.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
}

// MustProgram is Program that fails the test on an error.
func MustProgram(t TB, name string) string {
	t.Helper()
	p, err := Program(name)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return p
}

var (
	buildOnce sync.Once
	buildErr  error
	build     *Build
)

// Current is the tests' Redis build: LoadBuild of the repository holding
// the working directory, loaded once per process (hashing the programs takes
// a moment). Its Dir is laid out as the release's compiled redis package
// (bin/, build-info), so it can stand in for one.
func Current() (*Build, error) {
	buildOnce.Do(func() {
		root, err := repoRoot()
		if err != nil {
			buildErr = err
			return
		}
		build, buildErr = LoadBuild(root)
	})
	return build, buildErr
}

// repoRoot is the nearest folder at or above the working directory with a
// go.mod: `go test` runs each package in its own folder.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("redistest: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("redistest: no go.mod at or above the working directory: cannot find the repository's Redis build")
		}
		dir = parent
	}
}

// LoadBuild reads the build that root's BuildPointer names and checks that
// it is the build of root's release: made from the redis blobs that
// root/config/blobs.yml records, by root/src/redis/build.sh as it is now,
// with the patches root/src/redis/patches/series lists as they are now,
// with programs whose sha256 are the ones the build recorded. Any
// difference is an error that says to run scripts/setup.
func LoadBuild(root string) (*Build, error) {
	const fix = "run scripts/setup, which builds Redis from the release's blobs"
	pointer := filepath.Join(root, BuildPointer)
	data, err := os.ReadFile(pointer)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("redistest: no Redis build for the tests (%s is missing): %s", pointer, fix)
	}
	if err != nil {
		return nil, fmt.Errorf("redistest: %w", err)
	}
	b := &Build{Dir: strings.TrimSpace(string(data)), Info: map[string]string{}}
	if !filepath.IsAbs(b.Dir) {
		return nil, fmt.Errorf("redistest: %s names %q, not an absolute folder: %s", pointer, b.Dir, fix)
	}
	f, err := os.Open(filepath.Join(b.Dir, "build-info"))
	if err != nil {
		return nil, fmt.Errorf("redistest: the Redis build %s: %w: %s", b.Dir, err, fix)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			b.Info[k] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("redistest: reading %s/build-info: %w", b.Dir, err)
	}

	want, err := redisBlobs(filepath.Join(root, "config", "blobs.yml"))
	if err != nil {
		return nil, err
	}
	script, err := fileSHA256(filepath.Join(root, "src", "redis", "build.sh"))
	if err != nil {
		return nil, fmt.Errorf("redistest: %w", err)
	}
	names, sums, err := releasePatches(filepath.Join(root, "src", "redis", "patches"))
	if err != nil {
		return nil, fmt.Errorf("redistest: %w", err)
	}
	for key, sum := range map[string]string{
		"orig_sha256":         want.orig,
		"debian_sha256":       want.debian,
		"build_script_sha256": script,
		"cf_applied":          names,
		"cf_patches_sha256":   sums,
	} {
		if b.Info[key] != sum {
			return nil, fmt.Errorf("redistest: the Redis build %s is not this release's: its %s is %q, the release's %q: %s", b.Dir, key, b.Info[key], sum, fix)
		}
	}
	for _, name := range []string{"redis-server", "redis-cli", "redis-benchmark"} {
		if err := b.Verify(name); err != nil {
			return nil, fmt.Errorf("%w: %s", err, fix)
		}
	}
	return b, nil
}

// Program returns the path of the named program of b, which must be one
// whose sha256 the build recorded.
func (b *Build) Program(name string) (string, error) {
	if _, ok := b.Info[programKey(name)]; !ok {
		return "", fmt.Errorf("redistest: the Redis build %s records no program %q", b.Dir, name)
	}
	return filepath.Join(b.Dir, "bin", name), nil
}

// Verify checks that the named program of b is the file the build
// installed: its sha256 is the one build-info records.
func (b *Build) Verify(name string) error {
	path, err := b.Program(name)
	if err != nil {
		return err
	}
	return b.VerifyFile(name, path)
}

// VerifyFile checks that path is the build's program name: a copy of the
// file the build installed, byte for byte. Debian's /usr/bin/redis-server,
// built from the same source with Debian's choices, is not.
func (b *Build) VerifyFile(name, path string) error {
	sum, err := fileSHA256(path)
	if err != nil {
		return fmt.Errorf("redistest: %w", err)
	}
	if want := b.Info[programKey(name)]; sum != want {
		return fmt.Errorf("redistest: %s is not the %s of the Redis build %s (sha256 %s, the build's %s)", path, name, b.Dir, sum, want)
	}
	return nil
}

func programKey(name string) string {
	return strings.ReplaceAll(name, "-", "_") + "_sha256"
}

type redisBlobSums struct{ orig, debian string }

// redisBlobs reads the sha256 of the redis blobs from config/blobs.yml:
// redis/redis_V.orig.tar.gz and redis/redis_V-R.debian.tar.xz.
func redisBlobs(path string) (redisBlobSums, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return redisBlobSums{}, fmt.Errorf("redistest: %w", err)
	}
	var blobs map[string]struct {
		SHA string `yaml:"sha"`
	}
	if err := yaml.Unmarshal(data, &blobs); err != nil {
		return redisBlobSums{}, fmt.Errorf("redistest: %s: %w", path, err)
	}
	var s redisBlobSums
	for name, b := range blobs {
		sum := strings.TrimPrefix(b.SHA, "sha256:")
		switch {
		case !strings.HasPrefix(name, "redis/"):
		case strings.HasSuffix(name, ".orig.tar.gz"):
			s.orig = sum
		case strings.HasSuffix(name, ".debian.tar.xz"):
			s.debian = sum
		}
	}
	if s.orig == "" || s.debian == "" {
		return redisBlobSums{}, fmt.Errorf("redistest: %s records no redis/*.orig.tar.gz and redis/*.debian.tar.xz blobs", path)
	}
	return s, nil
}

// releasePatches reads the series of the release's own Redis patches in
// dir: their names and their sha256, each space separated in series order,
// as build.sh records them in build-info.
func releasePatches(dir string) (names, sums string, err error) {
	data, err := os.ReadFile(filepath.Join(dir, "series"))
	if err != nil {
		return "", "", err
	}
	var ns, ss []string
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		sum, err := fileSHA256(filepath.Join(dir, fields[0]))
		if err != nil {
			return "", "", err
		}
		ns = append(ns, fields[0])
		ss = append(ss, sum)
	}
	return strings.Join(ns, " "), strings.Join(ss, " "), nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
