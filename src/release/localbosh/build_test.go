package localbosh

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPackageFiles lays out the redis package as bosh create-release does:
// the files its spec names, from src/ (the build script and the release's
// own Redis patches) and blobs/ (the two tarballs), at their paths in the
// package.
func TestPackageFiles(t *testing.T) {
	d := newTestDirector(t, Options{})
	spec, err := os.ReadFile(filepath.Join("..", "..", "..", "packages", "redis", "spec"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"packages/redis/spec":                               string(spec),
		"src/redis/build.sh":                                "build",
		"src/redis/patches/series":                          "cf.patch\n",
		"src/redis/patches/cf.patch":                        "patch",
		"blobs/redis/redis_7.0.15.orig.tar.gz":              "orig",
		"blobs/redis/redis_7.0.15-1~deb12u10.debian.tar.xz": "debian",
	}
	for name, data := range files {
		path := filepath.Join(d.opts.ReleaseDir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := d.packageFiles("redis")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"redis/build.sh":                              "src/redis/build.sh",
		"redis/patches/series":                        "src/redis/patches/series",
		"redis/patches/cf.patch":                      "src/redis/patches/cf.patch",
		"redis/redis_7.0.15.orig.tar.gz":              "blobs/redis/redis_7.0.15.orig.tar.gz",
		"redis/redis_7.0.15-1~deb12u10.debian.tar.xz": "blobs/redis/redis_7.0.15-1~deb12u10.debian.tar.xz",
	}
	if len(got) != len(want) {
		t.Fatalf("packageFiles = %v, want %v", got, want)
	}
	for rel, from := range want {
		if got[rel] != filepath.Join(d.opts.ReleaseDir, from) {
			t.Errorf("packageFiles[%s] = %q, want %s", rel, got[rel], from)
		}
	}

	// A blob not fetched yet: CompileRedis then runs scripts/add-blobs.
	if err := os.Remove(filepath.Join(d.opts.ReleaseDir, "blobs/redis/redis_7.0.15-1~deb12u10.debian.tar.xz")); err != nil {
		t.Fatal(err)
	}
	if _, err := d.packageFiles("redis"); err == nil || !strings.Contains(err.Error(), "redis/redis_*.debian.tar.xz") {
		t.Fatalf("packageFiles without the Debian tarball: %v, want an error naming its glob", err)
	}
}
