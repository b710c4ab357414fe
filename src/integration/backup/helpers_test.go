package backup_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/backup"
	"github.com/cf-redis/redis-for-cf/src/testkit/miniotest"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

// s3Destination is the suite's MinIO bucket under a prefix of the spec's own.
func s3Destination(prefix string) backup.Destination {
	return backup.Destination{PathPrefix: prefix, S3: &backup.S3{
		Endpoint: mio.Endpoint, Region: "us-east-1", Bucket: bucket, PathStyle: true,
		AccessKeyID: miniotest.AccessKey, SecretAccessKey: miniotest.SecretKey, PartSizeMB: 5,
	}}
}

func localDestination(dir, prefix string) backup.Destination {
	return backup.Destination{PathPrefix: prefix, Local: &backup.Local{Path: dir}}
}

// uniquePrefix is a path prefix no other spec uses.
func uniquePrefix() string {
	return "spec-" + strconv.FormatInt(time.Now().UnixNano(), 36)
}

// errand runs redis-backup with cfg and the given subcommand and flags,
// returning its output and exit status.
func errand(cfg backup.ErrandConfig, args ...string) (string, int) {
	GinkgoHelper()
	path := filepath.Join(GinkgoT().TempDir(), "errand.json")
	Expect(systemtest.WriteJSON(path, cfg)).To(Succeed())
	var cmdArgs []string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmdArgs, args = append(cmdArgs, args[0]), args[1:]
	}
	cmdArgs = append(cmdArgs, "-config", path)
	cmdArgs = append(cmdArgs, args...)
	cmd := exec.Command(bins.Backup, cmdArgs...)
	out, err := cmd.CombinedOutput()
	fmt.Fprintf(GinkgoWriter, "$ redis-backup %s\n%s", strings.Join(cmdArgs, " "), out)
	Expect(string(out)).NotTo(ContainSubstring("DATA RACE"))
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return string(out), exit.ExitCode()
	}
	Expect(err).NotTo(HaveOccurred())
	return string(out), 0
}

// errandConfig is the system's errand config for dest.
func errandConfig(sys *systemtest.System, dest backup.Destination) backup.ErrandConfig {
	GinkgoHelper()
	cfg, err := sys.ErrandConfig(dest)
	Expect(err).NotTo(HaveOccurred())
	return cfg
}

// lineOf returns the errand's line about instance id.
func lineOf(out, id string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "instance "+id+" ") {
			return l
		}
	}
	return ""
}

// --- OSB, as Cloud Controller speaks it ---

func osbCall(sys *systemtest.System, method, path string, body any) (int, map[string]any) {
	GinkgoHelper()
	code, out, err := sys.OSB(method, path, body)
	Expect(err).NotTo(HaveOccurred())
	return code, out
}

func planOf(dedicated bool) string {
	if dedicated {
		return systemtest.DedicatedPlanID
	}
	return systemtest.PlanID
}

// provision creates an instance and waits until it is ready.
func provision(sys *systemtest.System, id string, dedicated bool) {
	GinkgoHelper()
	code, body := osbCall(sys, "PUT", "/v2/service_instances/"+id+"?accepts_incomplete=true", map[string]any{
		"service_id": systemtest.ServiceID, "plan_id": planOf(dedicated), "organization_guid": "org", "space_guid": "space",
	})
	Expect(code).To(BeElementOf(http.StatusCreated, http.StatusOK, http.StatusAccepted), "%v", body)
	if code == http.StatusAccepted {
		waitOperation(sys, id, "create")
	}
}

// deprovision deletes an instance and waits until it is gone.
func deprovision(sys *systemtest.System, id string, dedicated bool) {
	GinkgoHelper()
	code, body := osbCall(sys, "DELETE", fmt.Sprintf("/v2/service_instances/%s?service_id=%s&plan_id=%s&accepts_incomplete=true", id, systemtest.ServiceID, planOf(dedicated)), nil)
	Expect(code).To(BeElementOf(http.StatusOK, http.StatusAccepted), "%v", body)
	if code == http.StatusAccepted {
		Eventually(func() int {
			c, _ := osbCall(sys, "GET", "/v2/service_instances/"+id+"/last_operation", nil)
			return c
		}).WithTimeout(time.Minute).Should(Equal(http.StatusGone))
	}
}

// waitOperation polls last_operation until the operation ends and returns
// its final state and description.
func waitOperation(sys *systemtest.System, id, op string) (string, string) {
	GinkgoHelper()
	var state, desc string
	Eventually(func(g Gomega) string {
		code, body := osbCall(sys, "GET", "/v2/service_instances/"+id+"/last_operation?operation="+op, nil)
		g.Expect(code).To(Equal(http.StatusOK), "%v", body)
		state, _ = body["state"].(string)
		desc, _ = body["description"].(string)
		return state
	}).WithTimeout(2 * time.Minute).ShouldNot(Equal("in progress"))
	return state, desc
}

// bind creates a binding and returns a client logged in with its
// credentials, and the credentials.
func bind(sys *systemtest.System, id, bindingID string, dedicated bool) (*redis.Client, map[string]any) {
	GinkgoHelper()
	code, body := osbCall(sys, "PUT", "/v2/service_instances/"+id+"/service_bindings/"+bindingID, map[string]any{
		"service_id": systemtest.ServiceID, "plan_id": planOf(dedicated), "app_guid": "app-" + bindingID,
	})
	Expect(code).To(BeElementOf(http.StatusCreated, http.StatusOK), "%v", body)
	creds, ok := body["credentials"].(map[string]any)
	Expect(ok).To(BeTrue(), "%v", body)
	return client(creds), creds
}

func client(creds map[string]any) *redis.Client {
	GinkgoHelper()
	opt, err := redis.ParseURL(creds["uri"].(string))
	Expect(err).NotTo(HaveOccurred())
	opt.MaxRetries = -1
	opt.DialTimeout = 2 * time.Second
	opt.ReadTimeout = 10 * time.Second
	c := redis.NewClient(opt)
	DeferCleanup(c.Close)
	return c
}

// restoreThroughBroker asks the broker to restore ref into instance id,
// as `cf update-service -c '{"restore": ref}'` does, and returns the status
// and body of its answer.
func restoreThroughBroker(sys *systemtest.System, id string, dedicated bool, ref string) (int, map[string]any) {
	GinkgoHelper()
	return osbCall(sys, "PATCH", "/v2/service_instances/"+id+"?accepts_incomplete=true", map[string]any{
		"service_id": systemtest.ServiceID, "plan_id": planOf(dedicated), "parameters": map[string]any{"restore": ref},
	})
}

// --- data ---

// key is one key's value, written out canonically (members sorted, so two
// servers holding the same set compare equal whatever their hash tables'
// order), and its absolute expiry.
type key struct {
	Dump     string
	ExpireAt int64 // PEXPIRETIME: -1 without a TTL
}

// dataset maps "db:key" to its value.
type dataset map[string]key

// fill writes known data of every type, with and without TTLs, into
// databases 0 and 2, under prefix.
func fill(rc *redis.Client, prefix string, n int) {
	GinkgoHelper()
	ctx := context.Background()
	conn := rc.Conn()
	defer conn.Close()
	_, err := conn.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range n {
			p.Set(ctx, fmt.Sprintf("%s:str:%d", prefix, i), strings.Repeat("x", i%50)+strconv.Itoa(i), 0)
		}
		p.Set(ctx, prefix+":ttl:ex", "expires in an hour", time.Hour)
		p.SetArgs(ctx, prefix+":ttl:px", "expires in two hours", redis.SetArgs{TTL: 2 * time.Hour})
		p.HSet(ctx, prefix+":hash", "a", "1", "b", "2", "c", "3")
		p.Expire(ctx, prefix+":hash", 90*time.Minute)
		p.RPush(ctx, prefix+":list", "one", "two", "three")
		p.SAdd(ctx, prefix+":set", "x", "y", "z")
		p.ZAdd(ctx, prefix+":zset", redis.Z{Score: 1, Member: "a"}, redis.Z{Score: 2.5, Member: "b"})
		p.XAdd(ctx, &redis.XAddArgs{Stream: prefix + ":stream", ID: "1-1", Values: []string{"f", "v"}})
		p.Do(ctx, "SELECT", 2)
		p.Set(ctx, prefix+":db2", "in database 2", 0)
		p.Set(ctx, prefix+":db2:ttl", "in database 2 with a TTL", 3*time.Hour)
		return nil
	})
	Expect(err).NotTo(HaveOccurred())
}

// snapshotData reads every key of databases 0-15 with its value and expiry.
func snapshotData(rc *redis.Client) dataset {
	GinkgoHelper()
	ctx := context.Background()
	conn := rc.Conn()
	defer conn.Close()
	out := dataset{}
	for db := range 16 {
		Expect(conn.Do(ctx, "SELECT", db).Err()).To(Succeed())
		var cursor uint64
		for {
			keys, next, err := conn.Scan(ctx, cursor, "*", 1000).Result()
			Expect(err).NotTo(HaveOccurred())
			for _, k := range keys {
				dump, err := value(ctx, conn, k)
				if errors.Is(err, redis.Nil) {
					continue // expired meanwhile
				}
				Expect(err).NotTo(HaveOccurred())
				exp, err := conn.Do(ctx, "PEXPIRETIME", k).Int64()
				Expect(err).NotTo(HaveOccurred())
				out[fmt.Sprintf("%d:%s", db, k)] = key{Dump: dump, ExpireAt: exp}
			}
			if cursor = next; cursor == 0 {
				break
			}
		}
	}
	return out
}

// wipe flushes every database and writes a key the restore must remove.
func wipe(rc *redis.Client) {
	GinkgoHelper()
	ctx := context.Background()
	Expect(rc.FlushAll(ctx).Err()).To(Succeed())
	Expect(rc.Set(ctx, "written-after-the-backup", "must go", 0).Err()).To(Succeed())
}

// --- leftovers ---

// staging lists the snapshot and restore staging folders and temporary
// files under dir (an agent's or a destination's folder).
func staging(dir string) []string {
	var out []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		name := d.Name()
		if strings.HasPrefix(name, "snapshot-") || strings.HasPrefix(name, "restore-") || strings.Contains(name, ".partial-") ||
			strings.HasSuffix(name, ".previous") || strings.HasSuffix(name, ".discard") {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// objects lists the bucket's objects under prefix.
func objects(prefix string) []string {
	GinkgoHelper()
	c, err := mio.Client()
	Expect(err).NotTo(HaveOccurred())
	var out []string
	for o := range c.ListObjects(context.Background(), bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		Expect(o.Err).NotTo(HaveOccurred())
		out = append(out, o.Key)
	}
	slices.Sort(out)
	return out
}

// incompleteUploads lists multipart uploads under prefix that were neither
// completed nor aborted.
func incompleteUploads(prefix string) []string {
	GinkgoHelper()
	c, err := mio.Client()
	Expect(err).NotTo(HaveOccurred())
	var out []string
	for u := range c.ListIncompleteUploads(context.Background(), bucket, prefix, true) {
		Expect(u.Err).NotTo(HaveOccurred())
		out = append(out, u.Key)
	}
	return out
}

// files lists the regular files under dir, relative to it.
func files(dir string) []string {
	var out []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	slices.Sort(out)
	return out
}

// slowSnapshots makes the instance's snapshots take about a second per
// thousand keys (redis-server's rdb-key-save-delay, in microseconds per
// key), as only the platform can.
func slowSnapshots(sys *systemtest.System, id string, microsPerKey int) {
	GinkgoHelper()
	inst, err := sys.FindInstance(id)
	Expect(err).NotTo(HaveOccurred())
	admin := inst.Admin()
	defer admin.Close()
	Expect(admin.ConfigSet(context.Background(), "rdb-key-save-delay", strconv.Itoa(microsPerKey)).Err()).To(Succeed())
}

// waitSnapshotRunning waits until the instance's snapshot child runs.
func waitSnapshotRunning(sys *systemtest.System, id string) {
	GinkgoHelper()
	inst, err := sys.FindInstance(id)
	Expect(err).NotTo(HaveOccurred())
	admin := inst.Admin()
	defer admin.Close()
	Eventually(func() string {
		return admin.Info(context.Background(), "persistence").Val()
	}).Should(ContainSubstring("aof_rewrite_in_progress:1"))
}

// mountTmpfs mounts a tmpfs of size (e.g. "8m") on dir until the spec
// ends; it skips the spec where mounting is not allowed.
func mountTmpfs(dir, size string) {
	GinkgoHelper()
	Expect(os.MkdirAll(dir, 0o700)).To(Succeed())
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		Skip("cannot mount a tmpfs here (root needed): " + err.Error())
	}
	DeferCleanup(func() {
		// The system (registered later) stops first; its processes may take
		// a moment to release the mount.
		Eventually(func() error { return syscall.Unmount(dir, 0) }).Should(Succeed())
	})
}

// expectSame checks two datasets key by key and reports the differences,
// not both datasets whole.
func expectSame(got, want dataset) {
	GinkgoHelper()
	var diffs []string
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			diffs = append(diffs, "missing "+k)
		case g.Dump != w.Dump:
			diffs = append(diffs, "other value for "+k)
		case g.ExpireAt != w.ExpireAt:
			diffs = append(diffs, fmt.Sprintf("%s expires at %d, want %d", k, g.ExpireAt, w.ExpireAt))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			diffs = append(diffs, "extra "+k)
		}
	}
	slices.Sort(diffs)
	if len(diffs) > 20 {
		diffs = append(diffs[:20], fmt.Sprintf("... %d differences in all", len(diffs)))
	}
	Expect(diffs).To(BeEmpty(), "%d keys wanted, %d found", len(want), len(got))
}

// value writes out the value of key k by its type, canonically.
func value(ctx context.Context, conn *redis.Conn, k string) (string, error) {
	typ, err := conn.Type(ctx, k).Result()
	if err != nil {
		return "", err
	}
	var v any
	switch typ {
	case "none":
		return "", redis.Nil
	case "string":
		v, err = conn.Get(ctx, k).Result()
	case "hash":
		var m map[string]string
		m, err = conn.HGetAll(ctx, k).Result()
		v = m
	case "list":
		v, err = conn.LRange(ctx, k, 0, -1).Result()
	case "set":
		var members []string
		members, err = conn.SMembers(ctx, k).Result()
		slices.Sort(members)
		v = members
	case "zset":
		v, err = conn.ZRangeWithScores(ctx, k, 0, -1).Result()
	case "stream":
		v, err = conn.XRange(ctx, k, "-", "+").Result()
	default:
		return "", fmt.Errorf("key %s has type %s, which the test does not compare", k, typ)
	}
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s %v", typ, v), nil
}

func splitLines(s string) []string { return strings.Split(s, "\n") }

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
