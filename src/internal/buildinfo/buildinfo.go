// Package buildinfo says which release a binary was built for. The release's
// packaging script stamps the version at build time:
//
//	go build -ldflags "-X github.com/cf-redis/redis-for-cf/src/internal/buildinfo.version=1.4.2"
//
// and every command reports it (its -version flag and its startup log).
package buildinfo

import (
	"flag"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Unstamped is the version of a binary built without the release's version:
// `go build`, `go test`, or a release made by a plain `bosh create-release`
// rather than scripts/create-release.
const Unstamped = "0+dev"

// version is set by the linker (-X); empty means Unstamped.
var version string

// Version is the BOSH release version this binary was built for, such as
// 1.4.2 (a final release) or 1.4.2+dev.20261203224600 (a dev release made
// after 1.4.2), or Unstamped.
func Version() string {
	if version == "" {
		return Unstamped
	}
	return version
}

// SemVer is Version as a semantic version (see ToSemVer), for
// maintenance_info.version: an unstamped binary's is 0.0.1-dev, and a version
// ToSemVer refuses (a hand-made -X) gives 0.0.0.
func SemVer() string {
	v, err := ToSemVer(Version())
	if err != nil {
		return "0.0.0"
	}
	return v
}

var releaseRe = regexp.MustCompile(`^(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:\+dev(?:\.([0-9A-Za-z.-]+))?)?$`)

// ToSemVer turns a BOSH release version into the semantic version that Ops
// Manager (the tile's product_version) and Cloud Foundry (maintenance_info)
// need, keeping the order BOSH gives the release versions:
//
//   - a final release X, X.Y or X.Y.Z is X.Y.Z, padded with zeros;
//   - a dev release X.Y.Z+dev.N comes after the final X.Y.Z and before the
//     next final one (BOSH's post-release "+"), so it becomes the pre-release
//     X.Y.(Z+1)-dev.N: semantic versioning ignores "+build" when ordering, and
//     X.Y.Z-dev.N would sort before X.Y.Z.
func ToSemVer(release string) (string, error) {
	m := releaseRe.FindStringSubmatch(release)
	if m == nil {
		return "", fmt.Errorf("release version %q is neither a final version (1.4.2) nor a dev one (1.4.2+dev.20261203224600)", release)
	}
	parts := [3]uint64{}
	for i, s := range m[1:4] {
		if s == "" {
			continue
		}
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return "", fmt.Errorf("release version %q: %w", release, err)
		}
		parts[i] = n
	}
	if !strings.Contains(release, "+dev") {
		return fmt.Sprintf("%d.%d.%d", parts[0], parts[1], parts[2]), nil
	}
	v := fmt.Sprintf("%d.%d.%d-dev", parts[0], parts[1], parts[2]+1)
	if m[4] != "" {
		v += "." + m[4]
	}
	return v, nil
}

// Flag defines -version on fs: a command that finds it set prints Line and
// exits 0 before it reads any config.
func Flag(fs *flag.FlagSet) *bool {
	return fs.Bool("version", false, "print the release version this program was built for, and exit")
}

// Line is what a command prints for -version and at start: its name and
// Version, such as "redis-broker version 1.4.2".
func Line(name string) string { return name + " version " + Version() }
