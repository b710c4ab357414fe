package secret_test

import (
	"regexp"
	"testing"

	"github.com/cf-redis/redis-for-cf/src/internal/secret"
)

func TestNew(t *testing.T) {
	seen := map[string]bool{}
	shape := regexp.MustCompile(`^[A-Za-z0-9]{48}$`)
	for range 1000 {
		p := secret.New()
		if !shape.MatchString(p) {
			t.Fatalf("password %q is not 48 letters and digits", p)
		}
		if seen[p] {
			t.Fatal("a password repeated")
		}
		seen[p] = true
	}
}

func TestHash(t *testing.T) {
	// sha256("abc"), as Redis's ACL "#<hash>" rules expect.
	const want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	if got := secret.Hash("abc"); got != want {
		t.Fatalf("Hash(abc) = %s, want %s", got, want)
	}
}
