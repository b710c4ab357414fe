package backup_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/backup"
	"github.com/cf-redis/redis-for-cf/src/internal/store"
	"github.com/cf-redis/redis-for-cf/src/internal/store/dirstore"
)

func TestBackup(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "backup")
}

func at(s string) time.Time {
	GinkgoHelper()
	t, err := time.Parse(time.RFC3339Nano, s)
	Expect(err).NotTo(HaveOccurred())
	return t
}

// folder is a real local store in a temporary folder.
func folder() (store.Store, string) {
	GinkgoHelper()
	dir := GinkgoT().TempDir()
	st, err := dirstore.New(dir)
	Expect(err).NotTo(HaveOccurred())
	return st, dir
}

func put(st store.Store, name string) {
	GinkgoHelper()
	_, err := st.Put(context.Background(), name, strings.NewReader("archive"))
	Expect(err).NotTo(HaveOccurred())
}

var _ = Describe("names", func() {
	It("sort by time and sit under the instance's prefix", func() {
		a := backup.ObjectName("prod/redis", "inst-1", at("2026-01-21T03:00:00.5Z"))
		b := backup.ObjectName("prod/redis", "inst-1", at("2026-01-21T10:00:00Z"))
		Expect(a).To(Equal("prod/redis/inst-1/20260121T030000.500Z.tar.gz"))
		Expect(a < b).To(BeTrue())
		Expect(backup.ObjectName("", "inst-1", at("2026-01-21T03:00:00Z"))).To(Equal("inst-1/20260121T030000.000Z.tar.gz"))
		Expect(backup.InstancePrefix("", "inst-1")).To(Equal("inst-1/"))
		Expect(backup.InstancePrefix("p", "inst-1")).To(Equal("p/inst-1/"))
	})
})

var _ = Describe("Newest", func() {
	It("finds each instance's newest backup under the prefix in one listing, and nothing else", func() {
		st, _ := folder()
		ctx := context.Background()
		for _, n := range []string{
			"p/a/20260101T030000.000Z.tar.gz", "p/a/20260102T030000.000Z.tar.gz", "p/b/20260101T040000.000Z.tar.gz",
			"p/c/notes.txt", "p/a/sub/20260105T030000.000Z.tar.gz", "q/a/20260109T030000.000Z.tar.gz", "p/top.tar.gz",
		} {
			put(st, n)
		}
		got, err := backup.Newest(ctx, st, "p")
		Expect(err).NotTo(HaveOccurred())
		Expect(got).To(HaveLen(2))
		Expect(got["a"].Name).To(Equal("p/a/20260102T030000.000Z.tar.gz"))
		Expect(got["a"].Time).To(Equal(at("2026-01-02T03:00:00Z")))
		Expect(got["a"].Size).To(Equal(int64(len("archive"))))
		Expect(got["b"].Name).To(Equal("p/b/20260101T040000.000Z.tar.gz"))

		all, err := backup.Newest(ctx, st, "")
		Expect(err).NotTo(HaveOccurred())
		Expect(all).To(BeEmpty(), "with no prefix, instance ids are the top-level folders: p and q hold no backups directly")
	})
})

var _ = Describe("Resolve", func() {
	var st store.Store
	ctx := context.Background()
	BeforeEach(func() {
		st, _ = folder()
		for _, t := range []string{"2026-01-20T03:00:00Z", "2026-01-21T03:00:00Z", "2026-01-21T03:05:00Z"} {
			put(st, backup.ObjectName("p", "inst-1", at(t)))
		}
		put(st, backup.ObjectName("p", "inst-2", at("2026-01-22T00:00:00Z")))
		put(st, "p/inst-1/not-a-backup.txt")
		put(st, "p/inst-10/20260125T000000.000Z.tar.gz") // a prefix of inst-1's, but another instance
	})

	DescribeTable("finds the backup a reference names",
		func(ref, want string) {
			b, err := backup.Resolve(ctx, st, "p", "inst-1", ref)
			Expect(err).NotTo(HaveOccurred())
			Expect(b.Name).To(Equal("p/inst-1/" + want + ".tar.gz"))
		},
		Entry("latest", "latest", "20260121T030500.000Z"),
		Entry("its full time", "20260121T030000.000Z", "20260121T030000.000Z"),
		Entry("its file name", "20260120T030000.000Z.tar.gz", "20260120T030000.000Z"),
		Entry("its object name", "p/inst-1/20260120T030000.000Z.tar.gz", "20260120T030000.000Z"),
		Entry("the start of its time", "20260120", "20260120T030000.000Z"),
		Entry("RFC 3339", "2026-01-21T03:05:00Z", "20260121T030500.000Z"),
		Entry("a time without seconds", "2026-01-21 03:05", "20260121T030500.000Z"),
	)

	It("refuses other instances' backups, names that match none, and ambiguous times", func() {
		for _, ref := range []string{"p/inst-2/20260122T000000.000Z.tar.gz", "p/inst-10/20260125T000000.000Z.tar.gz", "p/inst-1/../inst-2/x.tar.gz", "other/inst-1/20260121T030000.000Z.tar.gz"} {
			_, err := backup.Resolve(ctx, st, "p", "inst-1", ref)
			Expect(err).To(MatchError(backup.ErrOtherInstance), ref)
		}
		_, err := backup.Resolve(ctx, st, "p", "inst-1", "20260125")
		Expect(err).To(MatchError(backup.ErrNoBackup))
		Expect(err.Error()).To(ContainSubstring("the newest are 20260121T030500.000Z, 20260121T030000.000Z, 20260120T030000.000Z"))
		_, err = backup.Resolve(ctx, st, "p", "inst-1", "20260121T03")
		Expect(err).To(MatchError(backup.ErrAmbiguous))
		_, err = backup.Resolve(ctx, st, "p", "inst-3", "latest")
		Expect(err).To(MatchError(backup.ErrNoBackup))
	})
})

var _ = Describe("Prune", func() {
	It("keeps the newest N and everything younger than D days, and touches nothing else", func() {
		st, _ := folder()
		now := at("2026-01-31T12:00:00Z")
		for _, days := range []int{0, 1, 2, 5, 9, 20, 40} {
			put(st, backup.ObjectName("", "inst-1", now.AddDate(0, 0, -days)))
		}
		put(st, backup.ObjectName("", "inst-2", now.AddDate(0, 0, -40)))
		put(st, "inst-1/keep-me.txt")
		deleted, err := backup.Prune(context.Background(), st, "", "inst-1", backup.Retention{KeepNewest: 2, KeepDays: 7}, now)
		Expect(err).NotTo(HaveOccurred())
		Expect(deleted).To(ConsistOf(
			backup.ObjectName("", "inst-1", now.AddDate(0, 0, -9)),
			backup.ObjectName("", "inst-1", now.AddDate(0, 0, -20)),
			backup.ObjectName("", "inst-1", now.AddDate(0, 0, -40)),
		))
		left, err := backup.List(context.Background(), st, "", "inst-1")
		Expect(err).NotTo(HaveOccurred())
		Expect(left).To(HaveLen(4))
		inst2, _ := backup.List(context.Background(), st, "", "inst-2")
		Expect(inst2).To(HaveLen(1))

		deleted, err = backup.Prune(context.Background(), st, "", "inst-1", backup.Retention{KeepNewest: 1}, now)
		Expect(err).NotTo(HaveOccurred())
		Expect(deleted).To(HaveLen(3))
	})
})

// source is an in-process backup source whose snapshots are bytes, or a
// stream that breaks.
type source struct {
	ids    []string
	broken map[string]bool
	// skip are the instances the source leaves to another member of their
	// HA group, with the reason.
	skip map[string]string
}

type brokenReader struct{ r io.Reader }

func (b brokenReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if errors.Is(err, io.EOF) {
		return n, errors.New("the agent's stream broke")
	}
	return n, err
}

func (s *source) Source() backup.Source {
	return backup.Source{
		Name: "agent test",
		Instances: func(ctx context.Context) ([]agentapi.Instance, error) {
			var list []agentapi.Instance
			for _, id := range s.ids {
				list = append(list, agentapi.Instance{ID: id, BackupSkip: s.skip[id]})
			}
			return list, nil
		},
		Snapshot: func(ctx context.Context, id string) (io.ReadCloser, error) {
			data := bytes.Repeat([]byte(id), 1000)
			if s.broken[id] {
				return io.NopCloser(brokenReader{bytes.NewReader(data)}), nil
			}
			return io.NopCloser(bytes.NewReader(data)), nil
		},
	}
}

var _ = Describe("Runner", func() {
	It("backs up every instance, goes on after a failure, prunes only after a success, and summarises", func() {
		st, dir := folder()
		src := &source{ids: []string{"a", "b", "c"}, broken: map[string]bool{"b": true}}
		now := at("2026-01-31T12:00:00Z")
		for _, id := range src.ids {
			put(st, backup.ObjectName("pre", id, now.AddDate(0, 0, -30)))
		}
		var out bytes.Buffer
		r := backup.Runner{Store: st, Prefix: "pre", Retention: backup.Retention{KeepNewest: 1}, Out: &out, Now: func() time.Time { return now }}
		sum := r.Run(context.Background(), []backup.Source{src.Source()})
		Expect(sum.Failed()).To(Equal(1))
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		Expect(lines).To(HaveLen(4))
		Expect(lines[0]).To(MatchRegexp(`^backup of instance a \(agent test\): ok, started 2026-01-31T12:00:00Z, 0\.0 MB in 0s \([0-9.]+ MB/s\), .*/pre/a/20260131T120000\.000Z\.tar\.gz, 1 older backups deleted$`))
		Expect(lines[1]).To(Equal("backup of instance b (agent test): FAILED, started 2026-01-31T12:00:00Z, after 0s: writing " +
			filepath.Join(dir, "pre/b/20260131T120000.000Z.tar.gz") + ": the agent's stream broke"))
		Expect(lines[3]).To(Equal("backup finished: 2 of 3 instances backed up, 1 failed (b); 0.0 MB in 0s"))
		// b keeps its old backup, and no piece of the failed one.
		entries, err := os.ReadDir(filepath.Join(dir, "pre", "b"))
		Expect(err).NotTo(HaveOccurred())
		Expect(entries).To(HaveLen(1))
		for _, id := range []string{"a", "c"} {
			bs, err := backup.List(context.Background(), st, "pre", id)
			Expect(err).NotTo(HaveOccurred())
			Expect(bs).To(HaveLen(1))
			Expect(bs[0].Time).To(Equal(now))
		}
	})
})

var _ = Describe("Runner and HA groups", func() {
	It("leaves an instance another member of its HA group backs up, with a line saying so", func() {
		st, _ := folder()
		var out bytes.Buffer
		r := backup.Runner{Store: st, Out: &out}
		leader := &source{ids: []string{"ha"}, skip: map[string]string{"ha": "node n-1 backs it up"}}
		follower := &source{ids: []string{"ha"}}
		sum := r.Run(context.Background(), []backup.Source{leader.Source(), follower.Source()})
		Expect(sum.Failed()).To(BeZero())
		Expect(sum.Results).To(HaveLen(1))
		Expect(sum.Skipped).To(Equal([]string{"ha (agent test)"}))
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		Expect(lines).To(HaveLen(3))
		Expect(lines[0]).To(Equal("backup of instance ha (agent test): skipped, another member of its HA group backs it up: node n-1 backs it up"))
		Expect(lines[1]).To(HavePrefix("backup of instance ha (agent test): ok"))
		Expect(lines[2]).To(HavePrefix("backup finished: 1 of 1 instances backed up, 1 left to another member of their HA group; "))
		bs, err := backup.List(context.Background(), st, "", "ha")
		Expect(err).NotTo(HaveOccurred())
		Expect(bs).To(HaveLen(1))
	})
})

var _ = Describe("Runner.Record", func() {
	It("gets every backup's result but one cut short by its context's end", func() {
		st, _ := folder()
		var got []backup.Result
		r := backup.Runner{Store: st, Out: io.Discard, Record: func(res backup.Result) { got = append(got, res) }}
		src := &source{ids: []string{"a", "b"}, broken: map[string]bool{"b": true}}
		r.Run(context.Background(), []backup.Source{src.Source()})
		Expect(got).To(HaveLen(2))
		Expect(got[0].Err).NotTo(HaveOccurred())
		Expect(got[1].Err).To(HaveOccurred(), "a broken stream is the backup's failure")

		got = nil
		ctx, cancel := context.WithCancel(context.Background())
		stopping := backup.Source{
			Name:      "stopping agent",
			Instances: func(context.Context) ([]agentapi.Instance, error) { return []agentapi.Instance{{ID: "c"}}, nil },
			Snapshot: func(context.Context, string) (io.ReadCloser, error) {
				cancel() // the agent shuts down while the snapshot streams
				return nil, context.Canceled
			},
		}
		Expect(r.Run(ctx, []backup.Source{stopping}).Failed()).To(Equal(1))
		Expect(got).To(BeEmpty(), "shutting down is not the backup's failure")
	})
})

var _ = Describe("config", func() {
	It("names the field at fault", func() {
		d := backup.Destination{}
		Expect(d.Validate("backups")).To(MatchError(ContainSubstring("backups: set s3 or local")))
		d = backup.Destination{S3: &backup.S3{Endpoint: "s3.example.com"}, PathPrefix: "/a/../b/"}
		err := d.Validate("backups")
		Expect(err).To(MatchError(ContainSubstring("backups.s3.endpoint must be an http or https URL")))
		Expect(err).To(MatchError(ContainSubstring("backups.s3.bucket is required")))
		Expect(err).To(MatchError(ContainSubstring("backups.path_prefix")))
		s := backup.Schedule{Schedule: "every day", Destination: backup.Destination{Local: &backup.Local{Path: "/x"}}}
		Expect(s.Validate("backups")).To(MatchError(ContainSubstring("backups.schedule")))
		r := backup.Retention{}
		Expect(r.Validate("retention")).To(Succeed())
		Expect(r.KeepNewest).To(Equal(backup.DefaultKeepNewest))
	})
})
