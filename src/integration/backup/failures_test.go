package backup_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/archive"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemspec"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

// Every failure is caused for real, and each must end the same way: a clear
// error for the instance it hit, the other instances backed up, no object
// under a final name for the failed one, no temporary file anywhere.
var _ = Describe("a backup that fails", Ordered, func() {
	var (
		sys     *systemtest.System
		prefix  string
		clients = map[string]*redis.Client{}
		ids     = []string{"fail-shared-1", "fail-shared-2", "fail-dedicated"}
	)
	dedicated := func(id string) bool { return id == "fail-dedicated" }

	BeforeAll(func() {
		prefix = uniquePrefix()
		dest := s3Destination(prefix)
		sys = systemspec.Start(bins, systemtest.Options{Nodes: 1, Backups: &dest})
		for _, id := range ids {
			provision(sys, id, dedicated(id))
			clients[id], _ = bind(sys, id, "b-"+id, dedicated(id))
			fill(clients[id], id, 300)
		}
	})

	// expectOutcome checks the errand's lines: the failed instances FAILED
	// with want in their line, the others ok; and that nothing was left.
	expectOutcome := func(out string, failed map[string]string) {
		GinkgoHelper()
		for _, id := range ids {
			line := lineOf(out, id)
			if want, ok := failed[id]; ok {
				Expect(line).To(ContainSubstring(": FAILED, started "), out)
				Expect(line).To(ContainSubstring(want), out)
			} else if line != "" {
				Expect(line).To(ContainSubstring(": ok, "), out)
			}
		}
		Expect(out).To(ContainSubstring(fmt.Sprintf(", %d failed (", len(failed))))
		Expect(incompleteUploads(prefix)).To(BeEmpty())
		Expect(staging(sys.Dir)).To(BeEmpty())
		for _, p := range []string{"temp-rewriteaof-*", "temp-*.rdb"} {
			shared, _ := filepath.Glob(filepath.Join(sys.Dir, "agent-*", "instances", "*", "data", p))
			nodes, _ := filepath.Glob(filepath.Join(sys.Dir, "node-*", "data", "data", p))
			Expect(append(shared, nodes...)).To(BeEmpty())
		}
	}
	count := func(id string) int { return len(objects(prefix + "/" + id + "/")) }

	It("reports S3 down for every instance, and the broker's restore answers 503", func() {
		Expect(mio.Stop()).To(Succeed())
		DeferCleanup(mio.Start)
		out, code := errand(errandConfig(sys, s3Destination(prefix)))
		Expect(code).To(Equal(1), out)
		Expect(out).To(ContainSubstring("backup finished: 0 of 3 instances backed up"))
		code, body := restoreThroughBroker(sys, ids[0], false, "latest")
		Expect(code).To(Equal(http.StatusServiceUnavailable), "%v", body)
		Expect(body["description"]).To(ContainSubstring("could not be listed"))
		Expect(mio.Start()).To(Succeed())
		expectOutcome(out, map[string]string{ids[0]: "unreachable", ids[1]: "unreachable", ids[2]: "unreachable"})
		Expect(objects(prefix)).To(BeEmpty())
	})

	It("reports wrong credentials without showing the secret", func() {
		dest := s3Destination(prefix)
		dest.S3.SecretAccessKey = "not-the-secret-key-0123456789"
		out, code := errand(errandConfig(sys, dest))
		Expect(code).To(Equal(1), out)
		expectOutcome(out, map[string]string{ids[0]: "refused the access key", ids[1]: "refused the access key", ids[2]: "refused the access key"})
		Expect(out).NotTo(ContainSubstring("not-the-secret-key"))
		Expect(objects(prefix)).To(BeEmpty())
	})

	It("reports a bucket that does not exist", func() {
		dest := s3Destination(prefix)
		dest.S3.Bucket = "no-such-bucket"
		out, code := errand(errandConfig(sys, dest))
		Expect(code).To(Equal(1), out)
		expectOutcome(out, map[string]string{ids[0]: `bucket "no-such-bucket" does not exist`, ids[1]: "does not exist", ids[2]: "does not exist"})
	})

	It("stops a snapshot that does not finish in time, and the instance stays writable", func() {
		slowSnapshots(sys, ids[0], 100000) // 0.1 s a key: half a minute for 300 keys
		cfg := errandConfig(sys, s3Destination(prefix))
		cfg.SnapshotTimeoutSeconds = 2
		out, code := errand(cfg)
		Expect(code).To(Equal(1), out)
		expectOutcome(out, map[string]string{ids[0]: "did not finish within 2s"})
		Expect(count(ids[0])).To(Equal(0))
		Expect(count(ids[1])).To(Equal(1))
		Expect(count(ids[2])).To(Equal(1))
		Expect(clients[ids[0]].Set(context.Background(), "still", "writable", 0).Err()).To(Succeed())
		slowSnapshots(sys, ids[0], 0)
	})

	It("reports an instance deleted while its snapshot runs, and backs up the others", func() {
		victim := ids[1]
		before := count(victim)
		slowSnapshots(sys, victim, 20000) // 6 s for 300 keys
		done := make(chan string, 1)
		go func() {
			defer GinkgoRecover()
			out, code := errand(errandConfig(sys, s3Destination(prefix)))
			Expect(code).To(Equal(1), out)
			done <- out
		}()
		waitSnapshotRunning(sys, victim)
		deprovision(sys, victim, false)
		var out string
		Eventually(done).WithTimeout(2 * time.Minute).Should(Receive(&out))
		expectOutcome(out, map[string]string{victim: "deleted during its backup"})
		Expect(count(victim)).To(Equal(before))
		Expect(count(ids[0])).To(Equal(1))
		ids = []string{ids[0], ids[2]}
	})

	It("reports a redis-server killed during its snapshot, which comes back with its data", func() {
		victim := ids[1] // the dedicated instance
		Expect(victim).To(Equal("fail-dedicated"))
		before := count(victim)
		want := snapshotData(clients[victim])
		slowSnapshots(sys, victim, 20000)
		done := make(chan string, 1)
		go func() {
			defer GinkgoRecover()
			out, code := errand(errandConfig(sys, s3Destination(prefix)))
			Expect(code).To(Equal(1), out)
			done <- out
		}()
		waitSnapshotRunning(sys, victim)
		inst, err := sys.FindInstance(victim)
		Expect(err).NotTo(HaveOccurred())
		Expect(inst.Pid).To(BeNumerically(">", 0))
		Expect(syscall.Kill(inst.Pid, syscall.SIGKILL)).To(Succeed())
		var out string
		Eventually(done).WithTimeout(2 * time.Minute).Should(Receive(&out))
		expectOutcome(out, map[string]string{victim: "went away during the snapshot"})
		Expect(count(victim)).To(Equal(before))
		// The node's supervisor restarted it from its AOF.
		Eventually(func() error { return clients[victim].Ping(context.Background()).Err() }).Should(Succeed())
		expectSame(snapshotData(clients[victim]), want)
		// Nothing of the killed server's snapshot is left.
		Eventually(func() []string {
			m, _ := filepath.Glob(filepath.Join(inst.Dir, "data", "temp-*"))
			return m
		}).Should(BeEmpty())
	})

	It("refuses a damaged archive and keeps the data", func() {
		id := ids[0]
		want := snapshotData(clients[id])
		dir := GinkgoT().TempDir()
		out, code := errand(errandConfig(sys, localDestination(dir, prefix)))
		Expect(code).To(Equal(0), out)
		file := filepath.Join(dir, prefix, id, files(filepath.Join(dir, prefix, id))[0])
		data, err := os.ReadFile(file)
		Expect(err).NotTo(HaveOccurred())
		data[len(data)/2] ^= 0x55
		bad := filepath.Join(dir, "damaged.tar.gz")
		Expect(os.WriteFile(bad, data, 0o600)).To(Succeed())
		out, code = errand(errandConfig(sys, localDestination(dir, prefix)), "restore", "--instance", id, "--from", bad)
		Expect(code).To(Equal(1), out)
		Expect(out).To(ContainSubstring("damaged"))
		Expect(out).To(ContainSubstring("keeps its data"))
		expectSame(snapshotData(clients[id]), want)
		Expect(staging(sys.Dir)).To(BeEmpty())
		// An archive whose checksums hold but whose data does not match its
		// manifest (five keys more than it holds) is loaded, found wrong, and
		// rolled back.
		lying := filepath.Join(dir, "lying.tar.gz")
		rewriteArchive(file, lying, func(m *archive.Manifest) { m.Keys += 5 })
		out, code = errand(errandConfig(sys, localDestination(dir, prefix)), "restore", "--instance", id, "--from", lying)
		Expect(code).To(Equal(1), out)
		Expect(out).To(ContainSubstring("did not verify"))
		Expect(out).To(ContainSubstring("rolled back and serves its previous data"))
		expectSame(snapshotData(clients[id]), want)
		Expect(staging(sys.Dir)).To(BeEmpty())
		// Another instance's backup is refused unless the operator says so.
		out, code = errand(errandConfig(sys, localDestination(dir, prefix)), "restore", "--instance", id, "--from",
			filepath.Join(dir, prefix, ids[1], files(filepath.Join(dir, prefix, ids[1]))[0]))
		Expect(code).To(Equal(1), out)
		Expect(out).To(ContainSubstring("the backup is of instance " + ids[1] + ", not of " + id))
		expectSame(snapshotData(clients[id]), want)
	})
})

// randomData writes n bytes of incompressible values in 64 KB keys.
func randomData(rc *redis.Client, prefix string, n int) {
	GinkgoHelper()
	ctx := context.Background()
	for i := 0; i*65536 < n; i++ {
		v := make([]byte, 65536)
		_, _ = rand.Read(v)
		Expect(rc.Set(ctx, fmt.Sprintf("%s:%d", prefix, i), v, 0).Err()).To(Succeed())
	}
}

var _ = Describe("a full disk", Ordered, func() {
	var (
		sys          *systemtest.System
		prefix       string
		full, spare  string // instances on the small disk and on the other agent
		fullC        *redis.Client
		spareC       *redis.Client
		fullDataWant dataset
	)

	BeforeAll(func() {
		prefix = uniquePrefix()
		dir := GinkgoT().TempDir()
		// Agent 0 keeps all its instances on an 8 MB disk.
		mountTmpfs(filepath.Join(dir, "agent-0"), "8m")
		sys = systemspec.StartIn(dir, bins, systemtest.Options{Agents: 2})
		for _, id := range []string{"disk-a", "disk-b"} {
			provision(sys, id, false)
			inst, err := sys.FindInstance(id)
			Expect(err).NotTo(HaveOccurred())
			if strings.HasPrefix(inst.Dir, filepath.Join(dir, "agent-0")+"/") {
				full = id
			} else {
				spare = id
			}
		}
		Expect(full).NotTo(BeEmpty(), "no instance landed on the small disk")
		Expect(spare).NotTo(BeEmpty(), "both instances landed on the small disk")
		fullC, _ = bind(sys, full, "b-full", false)
		spareC, _ = bind(sys, spare, "b-spare", false)
		// redis-server will not shut down when its final RDB save fails
		// for want of space: empty the instance before the system stops,
		// so the stop does not wait for the agent's SIGKILL.
		DeferCleanup(func() { _ = fullC.FlushAll(context.Background()).Err() })
		// 5 MB of AOF on the 8 MB disk: the snapshot's 5 MB cannot fit.
		randomData(fullC, "big", 5<<20)
		randomData(spareC, "big", 4<<20)
		fullDataWant = snapshotData(fullC)
	})

	It("fails the snapshot of an instance whose disk is full, naming the disk, and backs up the others", func() {
		out, code := errand(errandConfig(sys, s3Destination(prefix)))
		Expect(code).To(Equal(1), out)
		Expect(lineOf(out, full)).To(ContainSubstring("FAILED"))
		Expect(lineOf(out, full)).To(ContainSubstring("the disk holding the data is full"))
		Expect(lineOf(out, spare)).To(ContainSubstring(": ok, "))
		Expect(objects(prefix + "/" + full + "/")).To(BeEmpty())
		Expect(objects(prefix + "/" + spare + "/")).To(HaveLen(1))
		Expect(incompleteUploads(prefix)).To(BeEmpty())
		Expect(staging(sys.Dir)).To(BeEmpty())
		expectSame(snapshotData(fullC), fullDataWant)
	})

	It("refuses a restore that does not fit, keeping the data", func() {
		out, code := errand(errandConfig(sys, s3Destination(prefix)), "restore", "--instance", full,
			"--from", objects(prefix + "/" + spare + "/")[0], "--allow-other-instance")
		Expect(code).To(Equal(1), out)
		Expect(out).To(ContainSubstring("no space left on the disk of instance " + full))
		Expect(staging(sys.Dir)).To(BeEmpty())
		expectSame(snapshotData(fullC), fullDataWant)
	})

	It("fails a backup to a local folder on a full disk without leaving a partial file", func() {
		dir := filepath.Join(GinkgoT().TempDir(), "small")
		mountTmpfs(dir, "1m")
		out, code := errand(errandConfig(sys, localDestination(dir, prefix)))
		Expect(code).To(Equal(1), out)
		Expect(lineOf(out, spare)).To(ContainSubstring("no space left on device"))
		Expect(files(dir)).To(BeEmpty())
	})
})

// rewriteArchive writes the backup in src again as dst, with its manifest
// changed by edit and every checksum recomputed.
func rewriteArchive(src, dst string, edit func(*archive.Manifest)) {
	GinkgoHelper()
	dir := GinkgoT().TempDir()
	f, err := os.Open(src)
	Expect(err).NotTo(HaveOccurred())
	m, err := archive.Extract(f, dir)
	f.Close()
	Expect(err).NotTo(HaveOccurred())
	var entries []archive.Entry
	for _, name := range []string{"dump.rdb"} {
		entries = append(entries, archive.Entry{Name: name, Path: filepath.Join(dir, name), Size: m.Files[name].Size})
	}
	for name, f := range m.Files {
		if name != "dump.rdb" {
			entries = append(entries, archive.Entry{Name: name, Path: filepath.Join(dir, name), Size: f.Size})
		}
	}
	edit(&m)
	out, err := os.Create(dst)
	Expect(err).NotTo(HaveOccurred())
	_, err = archive.Write(out, m, entries)
	Expect(err).NotTo(HaveOccurred())
	Expect(out.Close()).To(Succeed())
}
