package buildinfo

import (
	"slices"
	"testing"

	"github.com/Masterminds/semver/v3"
)

func TestToSemVer(t *testing.T) {
	for release, want := range map[string]string{
		"12":                       "12.0.0",
		"1.4":                      "1.4.0",
		"1.4.2":                    "1.4.2",
		"1.4.2+dev.20261203224600": "1.4.3-dev.20261203224600",
		"0+dev.7":                  "0.0.1-dev.7",
		"0+dev":                    "0.0.1-dev",
	} {
		got, err := ToSemVer(release)
		if err != nil || got != want {
			t.Errorf("ToSemVer(%q) = %q, %v; want %q", release, got, err, want)
		}
	}
	for _, bad := range []string{"", "latest", "1.2.3.4", "1.2-rc.1", "v1.2.3", "1.2.3+dev.x y"} {
		if got, err := ToSemVer(bad); err == nil {
			t.Errorf("ToSemVer(%q) = %q, want an error", bad, got)
		}
	}
}

// The semantic versions sort as BOSH sorts the releases: each dev release
// after the final it was made from and before the next final one.
func TestToSemVerKeepsBOSHOrder(t *testing.T) {
	releases := []string{"0+dev.20261201000000", "0+dev.20261203224600", "1.0.0", "1.0.0+dev.20261204000000",
		"1.0.0+dev.20261205000000", "1.0.1", "1.0.1+dev.20261206000000", "1.1.0", "2"}
	var got []*semver.Version
	for _, r := range releases {
		s, err := ToSemVer(r)
		if err != nil {
			t.Fatal(err)
		}
		v, err := semver.StrictNewVersion(s)
		if err != nil {
			t.Fatalf("%s gives %q, not a semantic version: %v", r, s, err)
		}
		got = append(got, v)
	}
	if !slices.IsSortedFunc(got, func(a, b *semver.Version) int { return a.Compare(b) }) {
		t.Errorf("%v do not sort as %v", got, releases)
	}
	for i := 1; i < len(got); i++ {
		if got[i-1].Equal(got[i]) {
			t.Errorf("%s and %s give the same version", releases[i-1], releases[i])
		}
	}
}

func TestVersion(t *testing.T) {
	old := version
	t.Cleanup(func() { version = old })
	version = ""
	if Version() != Unstamped || SemVer() != "0.0.1-dev" {
		t.Errorf("unstamped: Version() = %q, SemVer() = %q", Version(), SemVer())
	}
	version = "1.4.2+dev.20261203224600"
	if Version() != version || SemVer() != "1.4.3-dev.20261203224600" {
		t.Errorf("stamped: Version() = %q, SemVer() = %q", Version(), SemVer())
	}
}
