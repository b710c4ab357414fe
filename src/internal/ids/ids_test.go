package ids_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/cf-redis/redis-for-cf/src/internal/ids"
)

func TestValid(t *testing.T) {
	for _, id := range []string{"a", "A1", "0-x_y.z", strings.Repeat("a", 128)} {
		if !ids.Valid(id) {
			t.Errorf("%q should be valid", id)
		}
	}
	for _, id := range []string{"", ".a", "-a", "a/b", "a:b", "a b", strings.Repeat("a", 129), "../x"} {
		if ids.Valid(id) {
			t.Errorf("%q should be invalid", id)
		}
	}
}

func TestCheck(t *testing.T) {
	invalid := errors.New("invalid")
	err := ids.Check("binding id", "a/b", invalid)
	if !errors.Is(err, invalid) || !strings.Contains(err.Error(), "binding id must be 1-128") {
		t.Fatalf("got %v", err)
	}
	if err := ids.Check("binding id", "ok", invalid); err != nil {
		t.Fatalf("got %v", err)
	}
}
