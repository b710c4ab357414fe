package backup_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/archive"
	"github.com/cf-redis/redis-for-cf/src/internal/backup"
	"github.com/cf-redis/redis-for-cf/src/testkit/redistest"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemspec"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

// writer writes transactions until stopped: transaction n increments
// "counter", sets "seq:n" and appends n to "log", so any consistent
// snapshot holds exactly transactions 1..counter.
type writer struct {
	rc      *redis.Client
	written atomic.Int64
	stop    chan struct{}
	done    sync.WaitGroup
	err     atomic.Value
}

func startWriter(rc *redis.Client) *writer {
	w := &writer{rc: rc, stop: make(chan struct{})}
	w.done.Add(1)
	go func() {
		defer w.done.Done()
		ctx := context.Background()
		for n := int64(1); ; n++ {
			select {
			case <-w.stop:
				return
			default:
			}
			_, err := rc.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Incr(ctx, "counter")
				p.Set(ctx, "seq:"+strconv.FormatInt(n, 10), n, 0)
				p.RPush(ctx, "log", n)
				return nil
			})
			if err != nil {
				w.err.Store(err)
				return
			}
			w.written.Store(n)
		}
	}()
	return w
}

func (w *writer) halt() int64 {
	close(w.stop)
	w.done.Wait()
	return w.written.Load()
}

// expectPrefixOfWrites checks that the data holds transactions 1..N whole
// and nothing after, and returns N.
func expectPrefixOfWrites(rc *redis.Client) int64 {
	GinkgoHelper()
	ctx := context.Background()
	n, err := rc.Get(ctx, "counter").Int64()
	Expect(err).NotTo(HaveOccurred())
	log, err := rc.LRange(ctx, "log", 0, -1).Result()
	Expect(err).NotTo(HaveOccurred())
	Expect(log).To(HaveLen(int(n)), "the log holds as many entries as the counter says")
	keys := make([]string, n+1)
	for i := range keys {
		keys[i] = "seq:" + strconv.Itoa(i+1)
	}
	vals, err := rc.MGet(ctx, keys...).Result()
	Expect(err).NotTo(HaveOccurred())
	for i := int64(0); i < n; i++ {
		Expect(log[i]).To(Equal(strconv.FormatInt(i+1, 10)))
		Expect(vals[i]).To(Equal(strconv.FormatInt(i+1, 10)), "seq:%d", i+1)
	}
	Expect(vals[n]).To(BeNil(), "nothing after transaction %d", n)
	return n
}

var _ = Describe("a backup taken while clients write", func() {
	It("restores, on both plans, to a consistent dataset: a prefix of the writes with every transaction whole, the same in dump.rdb and appendonlydir", func() {
		prefix := uniquePrefix()
		dest := s3Destination(prefix)
		sys := systemspec.Start(bins, systemtest.Options{Nodes: 1, Backups: &dest})
		cfg := errandConfig(sys, dest)
		ids := []string{"cw-shared", "cw-dedicated"}
		clients := map[string]*redis.Client{}
		writers := map[string]*writer{}
		for _, id := range ids {
			dedicated := id == "cw-dedicated"
			provision(sys, id, dedicated)
			clients[id], _ = bind(sys, id, "b-"+id, dedicated)
			fill(clients[id], id, 2000)
			// A second client for the writer, so that reads do not queue
			// behind it.
			wc, _ := bind(sys, id, "w-"+id, dedicated)
			writers[id] = startWriter(wc)
		}
		for _, id := range ids {
			Eventually(writers[id].written.Load).Should(BeNumerically(">=", 200))
		}
		out, code := errand(cfg)
		Expect(code).To(Equal(0), out)
		for _, id := range ids {
			at := writers[id].written.Load()
			Eventually(writers[id].written.Load).Should(BeNumerically(">", at+100), "writes go on after the backup")
		}
		total := map[string]int64{}
		for _, id := range ids {
			total[id] = writers[id].halt()
			Expect(writers[id].err.Load()).To(BeNil())
		}

		for _, id := range ids {
			// Both forms in the archive hold the same consistent state.
			var n [2]int64
			for i, aof := range []string{"no", "yes"} {
				rc := loadArchive(prefix+"/"+id+"/", aof)
				n[i] = expectPrefixOfWrites(rc)
			}
			Expect(n[0]).To(Equal(n[1]), "dump.rdb and appendonlydir of %s", id)
			Expect(n[0]).To(BeNumerically(">", 0))
			Expect(n[0]).To(BeNumerically("<", total[id]))

			wipe(clients[id])
			out, code := errand(cfg, "restore", "--instance", id, "--from", "latest")
			Expect(code).To(Equal(0), out)
			Expect(expectPrefixOfWrites(clients[id])).To(Equal(n[0]), id)
			fmt.Fprintf(GinkgoWriter, "%s: the backup holds transactions 1..%d of %d written\n", id, n[0], total[id])
		}
	})
})

// loadArchive extracts the one backup under prefix and serves it with a
// bare redis-server, from dump.rdb (appendonly no) or appendonlydir (yes).
func loadArchive(prefix, appendonly string) *redis.Client {
	GinkgoHelper()
	c, err := mio.Client()
	Expect(err).NotTo(HaveOccurred())
	names := objects(prefix)
	Expect(names).To(HaveLen(1))
	obj, err := c.GetObject(context.Background(), bucket, names[0], minio.GetObjectOptions{})
	Expect(err).NotTo(HaveOccurred())
	defer obj.Close()
	dir := GinkgoT().TempDir()
	_, err = archive.Extract(obj, dir)
	Expect(err).NotTo(HaveOccurred())
	srv, err := redistest.Start(dir, "dir "+dir, "appendonly "+appendonly)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(srv.Stop)
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr})
	DeferCleanup(rc.Close)
	return rc
}

var _ = Describe("scheduled backups", func() {
	It("run in every agent and node on their cron schedule, without an operator, keeping the newest", func() {
		dir := filepath.Join(GinkgoT().TempDir(), "backups")
		prefix := uniquePrefix()
		sched := backup.Schedule{Schedule: "@every 2s", Destination: localDestination(dir, prefix), Retention: backup.Retention{KeepNewest: 2}}
		sys := systemspec.Start(bins, systemtest.Options{Nodes: 1, AgentBackups: &sched})
		for _, id := range []string{"sched-shared", "sched-dedicated"} {
			dedicated := id == "sched-dedicated"
			provision(sys, id, dedicated)
			rc, _ := bind(sys, id, "b-"+id, dedicated)
			fill(rc, id, 100)
		}
		count := func(p *systemtest.Process, id string) int {
			n := 0
			for _, l := range splitLines(p.Log()) {
				if containsAll(l, "backup of instance "+id+" (", "): ok, started") {
					n++
				}
			}
			return n
		}
		Eventually(func() int { return count(sys.Agents[0], "sched-shared") }).WithTimeout(time.Minute).Should(BeNumerically(">=", 3))
		Eventually(func() int { return count(sys.Nodes[0], "sched-dedicated") }).WithTimeout(time.Minute).Should(BeNumerically(">=", 3))
		for _, id := range []string{"sched-shared", "sched-dedicated"} {
			Eventually(func() []string { return files(filepath.Join(dir, prefix, id)) }).Should(HaveLen(2), "retention keeps the newest 2 of %s", id)
		}
		Expect(staging(dir)).To(BeEmpty())
	})
})
