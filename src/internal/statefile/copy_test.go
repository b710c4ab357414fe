package statefile_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/internal/statefile"
)

// registry has the shapes the agents' and the broker's states have: a map
// of pointers to records that hold maps, pointers, slices, raw JSON and
// times.
type registry struct {
	Last    int                `json:"last"`
	Records map[string]*record `json:"records"`
}

type record struct {
	ID        string            `json:"id"`
	Users     map[string]user   `json:"users,omitempty"`
	Leader    *leader           `json:"leader,omitempty"`
	Raw       json.RawMessage   `json:"raw,omitempty"`
	Tags      []string          `json:"tags,omitempty"`
	Extra     any               `json:"extra,omitempty"`
	Nested    map[string]*users `json:"nested,omitempty"`
	CreatedAt time.Time         `json:"created_at"`
}

type user struct {
	Hash string `json:"hash"`
}

type users struct {
	Names []string `json:"names"`
}

type leader struct {
	Host string `json:"host"`
	Port int    `json:"port"`
}

func sample(id string) *record {
	return &record{
		ID:        id,
		Users:     map[string]user{"u1": {Hash: "h1"}},
		Leader:    &leader{Host: "10.0.0.1", Port: 6379},
		Raw:       json.RawMessage(`{"a":1}`),
		Tags:      []string{"t1"},
		Extra:     map[string]any{"k": []any{"v"}},
		Nested:    map[string]*users{"n": {Names: []string{"x"}}},
		CreatedAt: time.Date(2026, 12, 4, 3, 0, 0, 0, time.UTC),
	}
}

// mutate changes every part of r that a shallow copy would share.
func mutate(r *record) {
	r.Users["u1"] = user{Hash: "changed"}
	r.Users["u2"] = user{Hash: "added"}
	r.Leader.Port = 1
	r.Raw[2] = 'b'
	r.Tags[0] = "changed"
	r.Extra.(map[string]any)["k"].([]any)[0] = "changed"
	r.Nested["n"].Names[0] = "changed"
}

var _ = Describe("File with nested records", func() {
	var f *statefile.File[registry]
	BeforeEach(func() {
		var err error
		f, err = statefile.Open[registry](filepath.Join(GinkgoT().TempDir(), "state.json"))
		Expect(err).NotTo(HaveOccurred())
		Expect(f.Update(func(s *registry) error {
			s.Records = map[string]*record{"a": sample("a")}
			return nil
		})).To(Succeed())
	})
	want := func() {
		GinkgoHelper()
		f.Peek(func(s registry) { Expect(s.Records).To(Equal(map[string]*record{"a": sample("a")})) })
	}

	It("keeps the state as it was when a failed update changed what its records point to", func() {
		boom := errors.New("boom")
		Expect(f.Update(func(s *registry) error { mutate(s.Records["a"]); return boom })).To(MatchError(boom))
		want()
	})

	It("keeps it also when the failed update shares a batch with one that succeeds", func() {
		// Several updates in flight are committed as one batch, each from
		// the result of those before it.
		errs := make(chan error, 40)
		for i := range 40 {
			go func() {
				errs <- f.Update(func(s *registry) error {
					if i%2 == 0 {
						mutate(s.Records["a"])
						return errors.New("refused")
					}
					s.Records[fmt.Sprint(i)] = sample(fmt.Sprint(i))
					return nil
				})
			}()
		}
		for range 40 {
			<-errs
		}
		f.Peek(func(s registry) {
			Expect(s.Records).To(HaveLen(21))
			for id, r := range s.Records {
				Expect(r).To(Equal(sample(id)))
			}
		})
	})

	It("hands View a copy whose every part the caller may change", func() {
		Expect(f.View(func(s registry) { mutate(s.Records["a"]) })).To(Succeed())
		want()
	})

	It("does not change what Peek gave when a later update changes the record", func() {
		var seen *record
		f.Peek(func(s registry) { seen = s.Records["a"] })
		Expect(f.Update(func(s *registry) error { mutate(s.Records["a"]); return nil })).To(Succeed())
		Expect(seen).To(Equal(sample("a")))
	})
})
