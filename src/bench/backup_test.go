package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/archive"
	"github.com/cf-redis/redis-for-cf/src/internal/backup"
	"github.com/cf-redis/redis-for-cf/src/internal/store"
	"github.com/cf-redis/redis-for-cf/src/testkit/miniotest"
	"github.com/cf-redis/redis-for-cf/src/testkit/redistest"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

// Sizes of the backup benchmark.
var (
	backupMB   = flag.Int("backup.mb", 1024, "MB of values the backup benchmark's instance holds")
	backupRuns = flag.Int("backup.runs", 2, "backups and restores the backup benchmark times")
)

// backupValueSize is the size of each value the backup benchmark writes:
// a JSON document of about 512 bytes, as a cache of API responses or
// sessions holds, with random numbers and words from a small vocabulary, so
// values are unique and compress as such text does.
const backupValueSize = 512

var words = []string{"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
	"kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango", "uniform", "victor",
	"whiskey", "xray", "yankee", "zulu", "redis", "cloud", "foundry", "backup", "restore", "session", "cart", "user"}

// jsonValue appends a value of about backupValueSize bytes to dst.
func jsonValue(dst []byte, rng *rand.Rand, id int64) []byte {
	dst = fmt.Appendf(dst, `{"id":%d,"user":"user-%d","score":%.6f,"created":%d,"tags":["%s","%s"],"text":"`,
		id, rng.IntN(1_000_000), rng.Float64(), 1_700_000_000+rng.IntN(100_000_000), words[rng.IntN(len(words))], words[rng.IntN(len(words))])
	for len(dst) < backupValueSize-2 {
		dst = append(dst, words[rng.IntN(len(words))]...)
		dst = append(dst, ' ')
	}
	return append(dst[:backupValueSize-2], '"', '}')
}

// BenchmarkBackup backs up and restores an instance holding -backup.mb MB
// of values, against S3 on a local MinIO (the real one, started here) and
// a bare redis-server, all in the same run on the same machine:
//
//   - backup: from the snapshot request to the agent to the completed
//     object, through the path the errand takes (agent API stream in, S3
//     multipart upload out, from this process), snapshot included; the
//     archive streams while Redis writes the snapshot (a late head), so
//     snapshot-s (the first byte) is about the fork and streamed-s the end
//     of the archive. The
//     baseline is a plain S3 PUT of the same archive bytes (read from a
//     local file) from this process with the same client library: x-put is
//     the ratio of the throughputs (target at least 0.8); x-put-stream
//     leaves the snapshot out (from the first byte of the archive).
//     A BGSAVE of the same data is timed too: x-bgsave+put compares the
//     backup with Redis writing its snapshot and then the plain PUT, the
//     floor of any design that snapshots before it uploads.
//   - restore: from the first byte read from S3 to the agent's answer that
//     the data loaded and verified, the way the operator command does it;
//     restore-stage-s is when the agent had read the whole archive
//     (unpacked and verified while it came), the rest is stopping the
//     server, swapping the data, loading it and counting its keys.
//     The baseline is a bare redis-server started on the archive's
//     dump.rdb, from exec to the end of loading: x-bare-load is the ratio of
//     the times.
func BenchmarkBackup(b *testing.B) {
	ctx := context.Background()
	mio, err := miniotest.Start(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer mio.Stop()
	const bucketName = "bench"
	if err := mio.MakeBucket(bucketName); err != nil {
		b.Fatal(err)
	}
	memMB := int64(*backupMB)*2 + 512
	sys, c := startSystem(b, systemtest.Options{MaxMemoryMB: memMB, AgentMemoryMB: memMB + 512})
	t, _, err := provisionBindPing(ctx, c)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	keys, err := fillUnique(ctx, t.uri, *backupMB)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("filled %d keys (%d MB of values) in %.1f s", keys, *backupMB, time.Since(start).Seconds())
	usedMB, err := usedMemoryMB(ctx, t.uri)
	if err != nil {
		b.Fatal(err)
	}

	dest := backup.Destination{S3: &backup.S3{
		Endpoint: mio.Endpoint, Region: "us-east-1", Bucket: bucketName, PathStyle: true,
		AccessKeyID: miniotest.AccessKey, SecretAccessKey: miniotest.SecretKey,
	}}
	st, err := dest.Open()
	if err != nil {
		b.Fatal(err)
	}
	cfg, err := sys.ErrandConfig(dest)
	if err != nil {
		b.Fatal(err)
	}
	agent, err := agentapi.NewClient(cfg.Agents[0].ClientConfig)
	if err != nil {
		b.Fatal(err)
	}
	mc, err := mio.Client()
	if err != nil {
		b.Fatal(err)
	}
	core := minio.Core{Client: mc}

	inst, err := sys.FindInstance(t.instanceID)
	if err != nil {
		b.Fatal(err)
	}
	admin := inst.Admin()
	defer admin.Close()

	var backupS, snapS, streamedS, putS, restoreS, stageS, bareS, bgsaveS, archiveMB, rdbMB []float64
	for range b.N {
		for run := range *backupRuns {
			// What Redis itself takes to write the same snapshot: a BGSAVE.
			syscall.Sync()
			d, err := bgsave(ctx, admin)
			if err != nil {
				b.Fatal(err)
			}
			bgsaveS = append(bgsaveS, d.Seconds())
			syscall.Sync()
			// The backup, as the errand runs it.
			var firstByte, lastByte time.Duration
			src := backup.SourceOf("agent", agent, 0)
			snapshot := src.Snapshot
			var begin time.Time
			src.Snapshot = func(ctx context.Context, id string) (io.ReadCloser, error) {
				r, err := snapshot(ctx, id)
				if err != nil {
					return nil, err
				}
				return &firstByteReader{r: r, at: &firstByte, end: &lastByte, start: begin}, nil
			}
			r := backup.Runner{Store: st, Prefix: "bench", Retention: backup.Retention{KeepNewest: 100}}
			begin = time.Now()
			res := r.Backup(ctx, src, t.instanceID)
			if res.Err != nil {
				b.Fatal(res.Err)
			}
			backupS = append(backupS, res.Duration.Seconds())
			snapS = append(snapS, firstByte.Seconds())
			streamedS = append(streamedS, lastByte.Seconds())
			archiveMB = append(archiveMB, float64(res.Bytes)/1e6)

			// The baseline PUT of the same bytes, from a local file.
			file := filepath.Join(b.TempDir(), "archive.tar.gz")
			if err := download(ctx, mc, bucketName, res.Object, file); err != nil {
				b.Fatal(err)
			}
			syscall.Sync()
			f, err := os.Open(file)
			if err != nil {
				b.Fatal(err)
			}
			put := time.Now()
			if _, err := core.PutObject(ctx, bucketName, fmt.Sprintf("plain/%d", run), f, res.Bytes, "", "", minio.PutObjectOptions{ContentType: "application/gzip"}); err != nil {
				f.Close()
				b.Fatal(err)
			}
			putS = append(putS, time.Since(put).Seconds())
			f.Close()

			// The restore, as the operator command runs it.
			syscall.Sync()
			restore := time.Now()
			body, err := st.Get(ctx, res.Object)
			if err != nil {
				b.Fatal(err)
			}
			var staged time.Duration
			out, err := agent.Restore(ctx, t.instanceID, agentapi.RestoreRequest{FromInstance: t.instanceID},
				&firstByteReader{r: body, at: new(time.Duration), end: &staged, start: restore})
			body.Close()
			if err != nil {
				b.Fatal(err)
			}
			restoreS = append(restoreS, time.Since(restore).Seconds())
			stageS = append(stageS, staged.Seconds())
			if out.Keys != keys {
				b.Fatalf("the restored instance holds %d keys, not %d", out.Keys, keys)
			}

			// The baseline: a bare redis-server loading the archive's dump.rdb.
			dir := b.TempDir()
			af, err := os.Open(file)
			if err != nil {
				b.Fatal(err)
			}
			m, err := archive.Extract(af, dir)
			af.Close()
			if err != nil {
				b.Fatal(err)
			}
			rdbMB = append(rdbMB, float64(m.Files[archive.RDBName].Size)/1e6)
			syscall.Sync()
			d, err = bareLoad(dir)
			if err != nil {
				b.Fatal(err)
			}
			bareS = append(bareS, d.Seconds())
			b.Logf("run %d: BGSAVE %.1f s; backup %.1f s (first byte %.1f s, last %.1f s) of %.0f MB archive; PUT %.1f s; restore %.1f s (archive read by %.1f s); bare load %.1f s",
				run+1, bgsaveS[len(bgsaveS)-1], res.Duration.Seconds(), firstByte.Seconds(), lastByte.Seconds(), float64(res.Bytes)/1e6, putS[len(putS)-1],
				restoreS[len(restoreS)-1], staged.Seconds(), d.Seconds())
		}
	}
	// The agent's own account of each restore's install.
	for _, line := range strings.Split(sys.Agents[0].Log(), "\n") {
		if strings.Contains(line, "restore installed") {
			b.Log(line)
		}
	}
	bs := summarize(backupS)
	ps := summarize(putS)
	rs := summarize(restoreS)
	ls := summarize(bareS)
	amb := summarize(archiveMB).p50
	b.ReportMetric(float64(len(backupS)), "samples")
	b.ReportMetric(float64(*backupMB), "values-MB")
	b.ReportMetric(usedMB, "used-memory-MB")
	b.ReportMetric(summarize(rdbMB).p50, "rdb-MB")
	b.ReportMetric(amb, "archive-MB")
	b.ReportMetric(bs.p50, "backup-s-p50")
	b.ReportMetric(bs.min, "backup-s-min")
	b.ReportMetric(bs.max, "backup-s-max")
	b.ReportMetric(summarize(snapS).p50, "snapshot-s-p50")
	b.ReportMetric(summarize(streamedS).p50, "streamed-s-p50")
	b.ReportMetric(ps.p50, "put-s-p50")
	b.ReportMetric(amb/bs.p50, "backup-MB/s")
	b.ReportMetric(amb/ps.p50, "put-MB/s")
	b.ReportMetric(ps.p50/bs.p50, "x-put")
	// Without the snapshot, the streaming alone against the PUT.
	b.ReportMetric(ps.p50/(bs.p50-summarize(snapS).p50), "x-put-stream")
	gs := summarize(bgsaveS)
	b.ReportMetric(gs.p50, "bgsave-s-p50")
	// Against the floor of any snapshot-then-upload design: Redis writing
	// the snapshot, then the plain PUT.
	b.ReportMetric((gs.p50+ps.p50)/bs.p50, "x-bgsave+put")
	b.ReportMetric(rs.p50, "restore-s-p50")
	b.ReportMetric(summarize(stageS).p50, "restore-stage-s-p50")
	b.ReportMetric(rs.min, "restore-s-min")
	b.ReportMetric(rs.max, "restore-s-max")
	b.ReportMetric(ls.p50, "bare-load-s-p50")
	b.ReportMetric(rs.p50/ls.p50, "x-bare-load")
	b.ReportMetric(0, "ns/op")
}

// firstByteReader notes when the first byte of an archive arrived and
// when it ended (EOF): for a backup, when the agent forked the snapshot
// (or, for an agent that streams only complete snapshots, when it was
// written) and when its archive was all sent; for a restore, when the
// agent had read (so unpacked and verified) the whole archive.
type firstByteReader struct {
	r     io.ReadCloser
	at    *time.Duration
	end   *time.Duration
	start time.Time
	once  sync.Once
}

func (f *firstByteReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if n > 0 {
		f.once.Do(func() { *f.at = time.Since(f.start) })
	}
	if errors.Is(err, io.EOF) && f.end != nil && *f.end == 0 {
		*f.end = time.Since(f.start)
	}
	return n, err
}

func (f *firstByteReader) Close() error { return f.r.Close() }

// Head passes on the archive's late head (store.LateHead).
func (f *firstByteReader) Head() []byte {
	if lh, ok := f.r.(store.LateHead); ok {
		return lh.Head()
	}
	return nil
}

// fillUnique writes mb MB of unique values through a tenant's uri, with
// four connections of pipelines, and waits until redis-server has written
// them to its AOF; it returns the number of keys.
func fillUnique(ctx context.Context, uri string, mb int) (int64, error) {
	opts, err := redis.ParseURL(uri)
	if err != nil {
		return 0, err
	}
	opts.ReadTimeout = time.Minute
	opts.WriteTimeout = time.Minute
	opts.PoolSize = 4
	rc := redis.NewClient(opts)
	defer rc.Close()
	total := int64(mb) << 20 / backupValueSize
	const workers, batch = 4, 500
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewChaCha8([32]byte{byte(w)}))
			for i := int64(w) * batch; i < total; i += workers * batch {
				_, err := rc.Pipelined(ctx, func(p redis.Pipeliner) error {
					for j := i; j < min(i+batch, total); j++ {
						p.Set(ctx, "k:"+strconv.FormatInt(j, 10), jsonValue(make([]byte, 0, backupValueSize), rng, j), 0)
					}
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	if n, err := rc.DBSize(ctx).Result(); err != nil || n != total {
		return 0, fmt.Errorf("the instance holds %d keys, not %d (%v)", n, total, err)
	}
	for {
		p, err := rc.InfoMap(ctx, "persistence").Result()
		if err != nil {
			return 0, err
		}
		s := p["Persistence"]
		if s["aof_rewrite_in_progress"] == "0" && s["aof_rewrite_scheduled"] == "0" && s["rdb_bgsave_in_progress"] == "0" && s["aof_buffer_length"] == "0" {
			return total, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func usedMemoryMB(ctx context.Context, uri string) (float64, error) {
	v, err := infoField(ctx, uri, "memory", "used_memory")
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseFloat(v, 64)
	return n / 1e6, err
}

func download(ctx context.Context, mc *minio.Client, bucketName, name, file string) error {
	obj, err := mc.GetObject(ctx, bucketName, name, minio.GetObjectOptions{})
	if err != nil {
		return err
	}
	defer obj.Close()
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, obj); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// bareLoad starts a bare redis-server on dir (holding dump.rdb, AOF off)
// and times it from exec to the end of loading.
func bareLoad(dir string) (time.Duration, error) {
	port, err := redistest.FreePort()
	if err != nil {
		return 0, err
	}
	server, err := redisServerPath()
	if err != nil {
		return 0, err
	}
	start := time.Now()
	cmd := exec.Command(server, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir, "--appendonly", "no", "--save", "")
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	rc := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port), MaxRetries: -1, DialerRetries: 1})
	defer rc.Close()
	deadline := time.Now().Add(10 * time.Minute)
	for time.Now().Before(deadline) {
		if info, err := rc.InfoMap(context.Background(), "persistence").Result(); err == nil && info["Persistence"]["loading"] == "0" {
			return time.Since(start), nil
		}
		time.Sleep(2 * time.Millisecond)
	}
	return 0, fmt.Errorf("the bare redis-server did not load %s within 10 minutes", dir)
}

// bgsave times a BGSAVE of the server admin is connected to.
func bgsave(ctx context.Context, admin *redis.Client) (time.Duration, error) {
	start := time.Now()
	if err := admin.BgSave(ctx).Err(); err != nil {
		return 0, err
	}
	for {
		info, err := admin.InfoMap(ctx, "persistence").Result()
		if err != nil {
			return 0, err
		}
		if p := info["Persistence"]; p["rdb_bgsave_in_progress"] == "0" {
			if p["rdb_last_bgsave_status"] != "ok" {
				return 0, fmt.Errorf("BGSAVE failed")
			}
			return time.Since(start), nil
		}
		time.Sleep(5 * time.Millisecond)
	}
}
