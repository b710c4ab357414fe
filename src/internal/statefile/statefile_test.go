package statefile_test

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/sys/unix"

	"github.com/cf-redis/redis-for-cf/src/internal/statefile"
)

func TestStatefile(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "statefile")
}

type counter struct {
	N     int      `json:"n"`
	Items []string `json:"items"`
}

// TestMain lets the test binary act as a writer that a test kills with -9
// in the middle of its writes.
func TestMain(m *testing.M) {
	if path := os.Getenv("STATEFILE_RECORDS_WRITER"); path != "" {
		recordsWriter(path)
	}
	if path := os.Getenv("STATEFILE_WRITER"); path != "" {
		f, err := statefile.Open[counter](path)
		if err != nil {
			os.Exit(3)
		}
		for {
			_ = f.Update(func(c *counter) error {
				c.N++
				// Each state is self-checking: N items, all equal to N.
				c.Items = make([]string, c.N%200)
				for i := range c.Items {
					c.Items[i] = strconv.Itoa(c.N)
				}
				return nil
			})
		}
	}
	os.Exit(m.Run())
}

var _ = Describe("File", func() {
	var path string
	BeforeEach(func() { path = filepath.Join(GinkgoT().TempDir(), "state.json") })

	It("starts from the zero value and keeps what Update stored across Open", func() {
		f, err := statefile.Open[counter](path)
		Expect(err).NotTo(HaveOccurred())
		Expect(f.Update(func(c *counter) error { c.N = 7; return nil })).To(Succeed())
		g, err := statefile.Open[counter](path)
		Expect(err).NotTo(HaveOccurred())
		Expect(g.View(func(c counter) { Expect(c.N).To(Equal(7)) })).To(Succeed())
		info, err := os.Stat(path)
		Expect(err).NotTo(HaveOccurred())
		Expect(info.Mode().Perm()).To(Equal(os.FileMode(0o600)))
	})

	It("leaves the state unchanged when the update function fails", func() {
		f, _ := statefile.Open[counter](path)
		Expect(f.Update(func(c *counter) error { c.N = 1; return nil })).To(Succeed())
		boom := errors.New("boom")
		Expect(f.Update(func(c *counter) error { c.N = 2; return boom })).To(MatchError(boom))
		Expect(f.View(func(c counter) { Expect(c.N).To(Equal(1)) })).To(Succeed())
	})

	It("commits concurrent updates together, dropping only the failed ones", func() {
		f, _ := statefile.Open[counter](path)
		want := updateAtOnce(func(i int, refuse error) error {
			return f.Update(func(c *counter) error {
				c.Items = append(c.Items, strconv.Itoa(i))
				if refuse != nil {
					return refuse
				}
				c.N++
				return nil
			})
		})
		check := func(c counter) {
			Expect(c.N).To(Equal(56))
			Expect(c.Items).To(ConsistOf(want))
		}
		Expect(f.View(check)).To(Succeed())
		reopened, err := statefile.Open[counter](path)
		Expect(err).NotTo(HaveOccurred())
		Expect(reopened.View(check)).To(Succeed())
	})

	It("hands View a copy the caller cannot change the state through", func() {
		f, _ := statefile.Open[counter](path)
		Expect(f.Update(func(c *counter) error { c.Items = []string{"a"}; return nil })).To(Succeed())
		Expect(f.View(func(c counter) { c.Items[0] = "changed" })).To(Succeed())
		Expect(f.View(func(c counter) { Expect(c.Items).To(Equal([]string{"a"})) })).To(Succeed())
	})

	It("hands Peek the current state, which a later Update replaces rather than changes", func() {
		f, _ := statefile.Open[counter](path)
		Expect(f.Update(func(c *counter) error { c.N, c.Items = 1, []string{"a"}; return nil })).To(Succeed())
		var seen counter
		f.Peek(func(c counter) { seen = c })
		Expect(seen).To(Equal(counter{N: 1, Items: []string{"a"}}))
		Expect(f.Update(func(c *counter) error { c.N, c.Items[0] = 2, "b"; return nil })).To(Succeed())
		Expect(seen).To(Equal(counter{N: 1, Items: []string{"a"}}), "what Peek gave is not changed by the Update")
		f.Peek(func(c counter) { Expect(c).To(Equal(counter{N: 2, Items: []string{"b"}})) })
	})

	It("swaps the state file with its temporary file, so writes reuse two inodes instead of making one each", func() {
		f, _ := statefile.Open[counter](path)
		Expect(f.Update(func(c *counter) error { c.N = 1; return nil })).To(Succeed())
		// Whether this file system can exchange two names (ext4, xfs, btrfs
		// and tmpfs can): where it cannot, each write renames a new file.
		a, b := path+".probe-a", path+".probe-b"
		Expect(os.WriteFile(a, nil, 0o600)).To(Succeed())
		Expect(os.WriteFile(b, nil, 0o600)).To(Succeed())
		exchanges := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE) == nil
		Expect(os.Remove(a)).To(Succeed())
		Expect(os.Remove(b)).To(Succeed())

		inodes := map[uint64]bool{}
		for n := 2; n <= 10; n++ {
			Expect(f.Update(func(c *counter) error { c.N, c.Items = n, make([]string, 11-n); return nil })).To(Succeed())
			var st unix.Stat_t
			Expect(unix.Stat(path, &st)).To(Succeed())
			inodes[st.Ino] = true
			// What a program reading the file sees (Open would remove the
			// temporary file).
			var c counter
			data, err := os.ReadFile(path)
			Expect(err).NotTo(HaveOccurred())
			Expect(json.Unmarshal(data, &c)).To(Succeed())
			Expect(c.N).To(Equal(n))
			Expect(c.Items).To(HaveLen(11 - n))
		}
		if exchanges {
			Expect(inodes).To(HaveLen(2), "the state file alternates between two inodes")
			Expect(path+".tmp").To(BeARegularFile(), "the temporary file keeps the state before the last write")
		} else {
			Expect(inodes).To(HaveLen(9), "each write renames a new file over the state file")
		}
	})

	It("keeps the state file private even when an earlier version left it readable", func() {
		Expect(os.WriteFile(path, []byte(`{"n":1}`), 0o644)).To(Succeed())
		f, err := statefile.Open[counter](path)
		Expect(err).NotTo(HaveOccurred())
		for n := 2; n <= 4; n++ {
			Expect(f.Update(func(c *counter) error { c.N = n; return nil })).To(Succeed())
			fi, err := os.Stat(path)
			Expect(err).NotTo(HaveOccurred())
			Expect(fi.Mode().Perm()).To(Equal(os.FileMode(0o600)), "after write %d", n)
		}
	})

	It("refuses a corrupt file rather than start from nothing", func() {
		Expect(os.WriteFile(path, []byte("{not json"), 0o600)).To(Succeed())
		_, err := statefile.Open[counter](path)
		Expect(err).To(MatchError(ContainSubstring("not valid JSON")))
	})

	It("reports a write that cannot happen and keeps the old state", func() {
		dir := filepath.Dir(path)
		f, _ := statefile.Open[counter](path)
		Expect(f.Update(func(c *counter) error { c.N = 1; return nil })).To(Succeed())
		Expect(os.Chmod(dir, 0o500)).To(Succeed())
		DeferCleanup(os.Chmod, dir, os.FileMode(0o700))
		if os.Geteuid() == 0 {
			// root ignores directory permissions; fill the name slot instead.
			Expect(os.Chmod(dir, 0o700)).To(Succeed())
			Expect(os.Mkdir(path+".tmp", 0o700)).To(Succeed())
		}
		Expect(f.Update(func(c *counter) error { c.N = 2; return nil })).NotTo(Succeed())
		Expect(f.View(func(c counter) { Expect(c.N).To(Equal(1)) })).To(Succeed())
	})

	It("survives kill -9 in the middle of writes with a whole state", func() {
		for round := range 5 {
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), "STATEFILE_WRITER="+path)
			Expect(cmd.Start()).To(Succeed())
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			Eventually(func() int {
				f, err := statefile.Open[counter](path)
				if err != nil {
					return -1
				}
				n := 0
				_ = f.View(func(c counter) { n = c.N })
				return n
			}).WithTimeout(10 * time.Second).Should(BeNumerically(">", 50*(round+1)))
			Expect(cmd.Process.Signal(syscall.SIGKILL)).To(Succeed())
			<-done

			f, err := statefile.Open[counter](path)
			Expect(err).NotTo(HaveOccurred())
			Expect(f.View(func(c counter) {
				Expect(c.Items).To(HaveLen(c.N % 200))
				for _, it := range c.Items {
					Expect(it).To(Equal(strconv.Itoa(c.N)))
				}
			})).To(Succeed())
		}
	})
})

var _ = Describe("SyncDir", func() {
	It("fsyncs a directory, and names one it cannot open", func() {
		dir := GinkgoT().TempDir()
		Expect(os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o600)).To(Succeed())
		Expect(statefile.SyncDir(dir)).To(Succeed())
		missing := filepath.Join(dir, "missing")
		Expect(statefile.SyncDir(missing)).To(MatchError(And(ContainSubstring("syncing directory"), ContainSubstring("missing"))))
	})
})

// updateAtOnce calls update(i, refuse) for i in 0-63 at once, each in a
// goroutine of its own; every eighth gets a non-nil refuse, which its
// update must return. It checks that exactly those failed, with refuse,
// and returns the others' i, as strings.
func updateAtOnce(update func(i int, refuse error) error) []string {
	GinkgoHelper()
	refused := errors.New("refused")
	var wg sync.WaitGroup
	errs := make([]error, 64)
	for i := range 64 {
		wg.Go(func() {
			var refuse error
			if i%8 == 0 {
				refuse = refused
			}
			errs[i] = update(i, refuse)
		})
	}
	wg.Wait()
	var kept []string
	for i, err := range errs {
		if i%8 == 0 {
			Expect(err).To(MatchError(refused), "update %d", i)
		} else {
			Expect(err).NotTo(HaveOccurred(), "update %d", i)
			kept = append(kept, strconv.Itoa(i))
		}
	}
	return kept
}
