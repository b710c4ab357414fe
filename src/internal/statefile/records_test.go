package statefile_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/internal/statefile"
)

// item is a record shaped like an agent's: scalars, a map, a pointer.
type item struct {
	ID      string            `json:"id"`
	Port    int               `json:"port"`
	Users   map[string]string `json:"users,omitempty"`
	Leader  *string           `json:"leader,omitempty"`
	Created time.Time         `json:"created_at"`
	Items   []string          `json:"items,omitempty"`
}

// mapState is a state as it was kept before Records; recState the same
// state with Records. Both encode alike.
type mapState struct {
	Last  int              `json:"last"`
	Items map[string]*item `json:"instances"`
	Note  string           `json:"note,omitempty"`
}

type recState struct {
	Last  int                     `json:"last"`
	Items statefile.Records[item] `json:"instances"`
	Note  string                  `json:"note,omitempty"`
}

// recordsWriter is TestMain's writer for the kill -9 spec: each update
// changes three records and the top level together.
func recordsWriter(path string) {
	f, err := statefile.Open[recState](path)
	if err != nil {
		os.Exit(3)
	}
	for {
		_ = f.Update(func(s *recState) error {
			s.Last++
			if a := s.Items.Edit("a"); a != nil {
				a.Port = s.Last
			} else {
				s.Items.Put("a", &item{ID: "a", Port: s.Last})
			}
			s.Items.Put("b", &item{ID: "b", Port: s.Last, Items: make([]string, s.Last%100)})
			if s.Last%2 == 0 {
				s.Items.Put("c", &item{ID: "c", Port: s.Last})
			} else {
				s.Items.Delete("c")
			}
			return nil
		})
	}
}

var _ = Describe("Records", func() {
	var path string
	BeforeEach(func() { path = filepath.Join(GinkgoT().TempDir(), "state.json") })

	It("loads a state file written with a map, and writes one a map loads", func() {
		leader := "l"
		old := mapState{Last: 3, Items: map[string]*item{
			"x": {ID: "x", Port: 1, Users: map[string]string{"u": "h"}, Leader: &leader},
			"y": {ID: "y", Port: 2},
		}, Note: "n"}
		data, err := json.Marshal(old)
		Expect(err).NotTo(HaveOccurred())
		Expect(os.WriteFile(path, data, 0o600)).To(Succeed())

		f, err := statefile.Open[recState](path)
		Expect(err).NotTo(HaveOccurred())
		f.Peek(func(s recState) {
			Expect(s.Last).To(Equal(3))
			Expect(s.Note).To(Equal("n"))
			Expect(s.Items.Keys()).To(Equal([]string{"x", "y"}))
			Expect(*s.Items.At("x")).To(Equal(*old.Items["x"]))
		})
		Expect(f.Update(func(s *recState) error {
			s.Items.Edit("y").Port = 20
			s.Items.Put("z", &item{ID: "z", Port: 3})
			s.Last = 4
			return nil
		})).To(Succeed())

		written, err := os.ReadFile(path)
		Expect(err).NotTo(HaveOccurred())
		var back mapState
		Expect(json.Unmarshal(written, &back)).To(Succeed())
		old.Items["y"].Port = 20
		old.Items["z"] = &item{ID: "z", Port: 3}
		old.Last = 4
		Expect(back).To(Equal(old))
		want, err := json.Marshal(old)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(written)).To(Equal(string(want)), "the same bytes as encoding/json writes for the map")
	})

	It("changes only the copies an Update made: what Peek gave and a failed Update's records stay", func() {
		f, err := statefile.Open[recState](path)
		Expect(err).NotTo(HaveOccurred())
		Expect(f.Update(func(s *recState) error {
			s.Items.Put("x", &item{ID: "x", Port: 1, Users: map[string]string{"u": "1"}})
			return nil
		})).To(Succeed())
		var seen *item
		f.Peek(func(s recState) { seen = s.Items.At("x") })

		Expect(f.Update(func(s *recState) error {
			x := s.Items.Edit("x")
			x.Port, x.Users["u"] = 2, "2"
			Expect(s.Items.Edit("x")).To(BeIdenticalTo(x), "one copy per transaction")
			return nil
		})).To(Succeed())
		Expect(seen.Port).To(Equal(1))
		Expect(seen.Users).To(Equal(map[string]string{"u": "1"}))

		boom := errors.New("boom")
		Expect(f.Update(func(s *recState) error {
			s.Items.Edit("x").Users["u"] = "3"
			s.Items.Delete("x")
			return boom
		})).To(MatchError(boom))
		got := f.View
		Expect(got(func(s recState) {
			Expect(s.Items.Len()).To(Equal(1))
			x := s.Items.Get("x")
			Expect(x.Port).To(Equal(2))
			Expect(x.Users).To(Equal(map[string]string{"u": "2"}))
			x.Users["u"] = "changed by the caller"
		})).To(Succeed())
		f.Peek(func(s recState) { Expect(s.Items.At("x").Users["u"]).To(Equal("2"), "Get hands out a copy") })
	})

	It("commits concurrent updates of one record together, dropping only the failed ones", func() {
		f, err := statefile.Open[recState](path)
		Expect(err).NotTo(HaveOccurred())
		Expect(f.Update(func(s *recState) error { s.Items.Put("x", &item{ID: "x"}); return nil })).To(Succeed())
		want := updateAtOnce(func(i int, refuse error) error {
			return f.Update(func(s *recState) error {
				x := s.Items.Edit("x")
				x.Items = append(x.Items, strconv.Itoa(i))
				s.Items.Put(strconv.Itoa(i), &item{ID: strconv.Itoa(i)})
				return refuse
			})
		})
		check := func(s recState) {
			Expect(s.Items.At("x").Items).To(ConsistOf(want))
			Expect(s.Items.Keys()).To(ConsistOf(append([]string{"x"}, want...)))
		}
		f.Peek(check)
		reopened, err := statefile.Open[recState](path)
		Expect(err).NotTo(HaveOccurred())
		reopened.Peek(check)
	})

	It("survives kill -9 in the middle of writes with every record of one transaction", func() {
		for round := range 5 {
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), "STATEFILE_RECORDS_WRITER="+path)
			Expect(cmd.Start()).To(Succeed())
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			Eventually(func() int {
				f, err := statefile.Open[recState](path)
				if err != nil {
					return -1
				}
				n := 0
				f.Peek(func(s recState) { n = s.Last })
				return n
			}).WithTimeout(10 * time.Second).Should(BeNumerically(">", 50*(round+1)))
			Expect(cmd.Process.Signal(syscall.SIGKILL)).To(Succeed())
			<-done

			f, err := statefile.Open[recState](path)
			Expect(err).NotTo(HaveOccurred())
			f.Peek(func(s recState) {
				n := s.Last
				Expect(s.Items.At("a").Port).To(Equal(n))
				Expect(s.Items.At("b").Port).To(Equal(n))
				Expect(s.Items.At("b").Items).To(HaveLen(n % 100))
				if n%2 == 0 {
					Expect(s.Items.At("c").Port).To(Equal(n))
				} else {
					Expect(s.Items.At("c")).To(BeNil())
				}
			})
		}
	})
})

// recRegistry is registry with Records.
type recRegistry struct {
	Last    int                       `json:"last"`
	Records statefile.Records[record] `json:"records"`
}

// BenchmarkUpdate times one Update that changes one record of a state of
// n records shaped like the agents' and the broker's, kept in a map (every
// record copied and encoded per Update) and in Records (one record), on
// the same disk:
//
//	go test ./src/internal/statefile -run '^$' -bench Update -count 5
func BenchmarkUpdate(b *testing.B) {
	for _, n := range []int{100, 1000, 2000} {
		b.Run(fmt.Sprintf("map/%d", n), func(b *testing.B) {
			f, err := statefile.Open[registry](filepath.Join(b.TempDir(), "state.json"))
			if err != nil {
				b.Fatal(err)
			}
			if err := f.Update(func(s *registry) error {
				s.Records = map[string]*record{}
				for i := range n {
					s.Records[strconv.Itoa(i)] = sample(strconv.Itoa(i))
				}
				return nil
			}); err != nil {
				b.Fatal(err)
			}
			for i := 0; b.Loop(); i++ {
				if err := f.Update(func(s *registry) error {
					s.Records[strconv.Itoa(i%n)].Tags[0] = strconv.Itoa(i)
					return nil
				}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("records/%d", n), func(b *testing.B) {
			f, err := statefile.Open[recRegistry](filepath.Join(b.TempDir(), "state.json"))
			if err != nil {
				b.Fatal(err)
			}
			if err := f.Update(func(s *recRegistry) error {
				for i := range n {
					s.Records.Put(strconv.Itoa(i), sample(strconv.Itoa(i)))
				}
				return nil
			}); err != nil {
				b.Fatal(err)
			}
			for i := 0; b.Loop(); i++ {
				if err := f.Update(func(s *recRegistry) error {
					s.Records.Edit(strconv.Itoa(i % n)).Tags[0] = strconv.Itoa(i)
					return nil
				}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
