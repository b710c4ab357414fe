package backup_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/archive"
	"github.com/cf-redis/redis-for-cf/src/internal/backup"
	"github.com/cf-redis/redis-for-cf/src/testkit/redistest"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemspec"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

var _ = Describe("a round trip through a backup", Ordered, func() {
	const (
		shared1   = "rt-shared-1"
		shared2   = "rt-shared-2"
		dedicated = "rt-dedicated"
	)
	var (
		sys      *systemtest.System
		prefix   string
		localDir string
		s3cfg    backup.ErrandConfig
		localcfg backup.ErrandConfig
		clients  = map[string]*redis.Client{}
		creds    = map[string]map[string]any{}
		before   = map[string]dataset{}
		all      = []string{shared1, shared2, dedicated}
	)
	isDedicated := func(id string) bool { return id == dedicated }

	BeforeAll(func() {
		prefix = uniquePrefix()
		localDir = filepath.Join(GinkgoT().TempDir(), "backups")
		dest := s3Destination(prefix)
		sys = systemspec.Start(bins, systemtest.Options{Nodes: 1, Backups: &dest})
		s3cfg = errandConfig(sys, dest)
		localcfg = errandConfig(sys, localDestination(localDir, prefix))
		for i, id := range all {
			provision(sys, id, isDedicated(id))
			clients[id], creds[id] = bind(sys, id, "binding-"+id, isDedicated(id))
			fill(clients[id], id, 200+100*i)
			before[id] = snapshotData(clients[id])
			Expect(before[id]).To(HaveLen(200 + 100*i + 9))
		}
	})

	It("backs up every instance of both plans to S3 and to a local folder, a line each and a summary", func() {
		// A key that expires between the backup and the restore: the
		// manifest counts it, the restored server drops it.
		Expect(clients[shared1].Set(context.Background(), "expires-soon", "x", 1500*time.Millisecond).Err()).To(Succeed())
		for _, cfg := range []backup.ErrandConfig{s3cfg, localcfg} {
			out, code := errand(cfg)
			Expect(code).To(Equal(0), out)
			for _, id := range all {
				line := lineOf(out, id)
				Expect(line).To(MatchRegexp(`^backup of instance %s \((agent shared-0|node node-0)\): ok, started \S+Z, [0-9.]+ MB in \S+ \([0-9.]+ MB/s\), \S+/%s/%s/\d{8}T\d{6}\.\d{3}Z\.tar\.gz$`, id, prefix, id), out)
			}
			Expect(out).To(ContainSubstring("backup finished: 3 of 3 instances backed up"))
		}
		for _, id := range all {
			Expect(objects(prefix + "/" + id + "/")).To(HaveLen(1))
			Expect(files(filepath.Join(localDir, prefix, id))).To(HaveLen(1))
		}
		Expect(incompleteUploads(prefix)).To(BeEmpty())
		Expect(staging(sys.Dir)).To(BeEmpty())
		Expect(staging(localDir)).To(BeEmpty())
		out, code := errand(s3cfg, "list", "--instance", shared1)
		Expect(code).To(Equal(0), out)
		Expect(out).To(ContainSubstring("1 backups of instance " + shared1))
	})

	It("restores with the operator's command, from S3 and from a local file: every key and TTL back, credentials and bindings kept", func() {
		time.Sleep(1600 * time.Millisecond) // expires-soon is gone
		wipe(clients[shared1])
		out, code := errand(s3cfg, "restore", "--instance", shared1, "--from", "latest")
		Expect(code).To(Equal(0), out)
		Expect(out).To(MatchRegexp(`restore of instance %s \(agent shared-0\): ok, from s3://%s/%s/%s/\S+ \(backup of %s taken \S+\), %d keys`, shared1, bucket, prefix, shared1, shared1, len(before[shared1])))
		// The client logged in before the restore still works: its user and
		// password survived; so does the binding as the broker reports it.
		expectSame(snapshotData(clients[shared1]), before[shared1])

		file := filepath.Join(localDir, prefix, dedicated, files(filepath.Join(localDir, prefix, dedicated))[0])
		wipe(clients[dedicated])
		out, code = errand(localcfg, "restore", "--instance", dedicated, "--from", file)
		Expect(code).To(Equal(0), out)
		Expect(out).To(ContainSubstring("restore of instance " + dedicated + " (node node-0): ok, from " + file))
		expectSame(snapshotData(clients[dedicated]), before[dedicated])

		for _, id := range []string{shared1, dedicated} {
			code, body := osbCall(sys, "GET", "/v2/service_instances/"+id+"/service_bindings/binding-"+id, nil)
			Expect(code).To(Equal(http.StatusOK))
			Expect(body["credentials"]).To(Equal(creds[id]))
			// Bindings still come and go.
			c, _ := bind(sys, id, "after-restore-"+id, isDedicated(id))
			Expect(c.Get(context.Background(), id+":str:1").Val()).To(Equal("x1"))
			code, _ = osbCall(sys, "DELETE", fmt.Sprintf("/v2/service_instances/%s/service_bindings/after-restore-%s?service_id=%s&plan_id=%s", id, id, systemtest.ServiceID, planOf(isDedicated(id))), nil)
			Expect(code).To(Equal(http.StatusOK))
		}
		Expect(staging(sys.Dir)).To(BeEmpty())
	})

	It("restores through the broker's restore parameter, by time or latest, on both plans", func() {
		backups := objects(prefix + "/" + shared2 + "/")
		stamp := strings.TrimSuffix(filepath.Base(backups[0]), ".tar.gz")
		for id, ref := range map[string]string{shared2: stamp, dedicated: "latest"} {
			wipe(clients[id])
			code, body := restoreThroughBroker(sys, id, isDedicated(id), ref)
			Expect(code).To(Equal(http.StatusAccepted), "%v", body)
			Expect(body["operation"]).To(Equal("restore"))
			state, desc := waitOperation(sys, id, "restore")
			Expect(state).To(Equal("succeeded"), desc)
			Expect(desc).To(MatchRegexp(`^restored backup \d{8}T\d{6}\.\d{3}Z \(taken \S+, %d keys\)$`, len(before[id])))
			expectSame(snapshotData(clients[id]), before[id])
			code, body = osbCall(sys, "GET", "/v2/service_instances/"+id+"/service_bindings/binding-"+id, nil)
			Expect(code).To(Equal(http.StatusOK))
			Expect(body["credentials"]).To(Equal(creds[id]))
		}
	})

	It("restores through the broker synchronously when the caller does not accept an asynchronous answer", func() {
		wipe(clients[shared1])
		code, body := osbCall(sys, "PATCH", "/v2/service_instances/"+shared1, map[string]any{
			"service_id": systemtest.ServiceID, "plan_id": systemtest.PlanID, "parameters": map[string]any{"restore": "latest"},
		})
		Expect(code).To(Equal(http.StatusOK), "%v", body)
		expectSame(snapshotData(clients[shared1]), before[shared1])
		code, body = osbCall(sys, "GET", "/v2/service_instances/"+shared1+"/last_operation", nil)
		Expect(code).To(Equal(http.StatusOK))
		Expect(body["state"]).To(Equal("succeeded"))
		Expect(body["description"]).To(HavePrefix("restored backup "))
	})

	It("refuses through the broker a backup of another instance, a name that matches none, and restore mixed with parameters", func() {
		other := objects(prefix + "/" + shared2 + "/")[0]
		code, body := restoreThroughBroker(sys, shared1, false, other)
		Expect(code).To(Equal(http.StatusForbidden), "%v", body)
		Expect(body["description"]).To(ContainSubstring("only backups of this instance"))
		code, body = restoreThroughBroker(sys, shared1, false, "../"+shared2+"/x.tar.gz")
		Expect(code).To(Equal(http.StatusForbidden), "%v", body)
		code, body = restoreThroughBroker(sys, shared1, false, "20990101")
		Expect(code).To(Equal(http.StatusBadRequest), "%v", body)
		Expect(body["description"]).To(ContainSubstring("no backup of instance " + shared1 + " matches"))
		code, body = osbCall(sys, "PATCH", "/v2/service_instances/"+shared1+"?accepts_incomplete=true", map[string]any{
			"service_id": systemtest.ServiceID, "plan_id": systemtest.PlanID,
			"parameters": map[string]any{"restore": "latest", "maxmemory-policy": "allkeys-lru"},
		})
		Expect(code).To(Equal(http.StatusBadRequest), "%v", body)
		Expect(body["description"]).To(ContainSubstring("cannot be combined"))
		expectSame(snapshotData(clients[shared1]), before[shared1])
	})

	It("makes archives that redis-server reads by hand, from dump.rdb and from appendonlydir, with a manifest that checks", func() {
		file := filepath.Join(localDir, prefix, shared2, files(filepath.Join(localDir, prefix, shared2))[0])
		dir := GinkgoT().TempDir()
		tar := exec.Command("tar", "xzf", file)
		tar.Dir = dir
		out, err := tar.CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		entries, err := os.ReadDir(dir)
		Expect(err).NotTo(HaveOccurred())
		Expect(entries).To(HaveLen(1))
		folder := filepath.Join(dir, entries[0].Name())
		Expect(entries[0].Name()).To(HavePrefix(shared2 + "-"))

		var m archive.Manifest
		data, err := os.ReadFile(filepath.Join(folder, "manifest.json"))
		Expect(err).NotTo(HaveOccurred())
		Expect(json.Unmarshal(data, &m)).To(Succeed())
		Expect(m.InstanceID).To(Equal(shared2))
		Expect(m.Plan).To(Equal("shared-vm"))
		Expect(m.RedisVersion).To(HavePrefix("7."))
		Expect(m.Keys).To(BeEquivalentTo(len(before[shared2])))
		Expect(m.Files).To(HaveKey("dump.rdb"))
		Expect(m.Files).To(HaveLen(4))
		for name, f := range m.Files {
			content, err := os.ReadFile(filepath.Join(folder, name))
			Expect(err).NotTo(HaveOccurred())
			sum := sha256.Sum256(content)
			Expect(hex.EncodeToString(sum[:])).To(Equal(f.SHA256), name)
			Expect(int64(len(content))).To(Equal(f.Size), name)
		}

		for _, args := range [][]string{{}, {"--appendonly", "yes"}} {
			port, err := redistest.FreePort()
			Expect(err).NotTo(HaveOccurred())
			// As the product documents say: cd into the folder, run redis-server.
			srv := exec.Command(redistest.MustProgram(GinkgoT(), "redis-server"), append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", ""}, args...)...)
			srv.Dir = folder
			srv.Stdout, srv.Stderr = GinkgoWriter, GinkgoWriter
			Expect(srv.Start()).To(Succeed())
			rc := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
			Eventually(func() error { return rc.Ping(context.Background()).Err() }).Should(Succeed())
			Eventually(func() string { return rc.Info(context.Background(), "persistence").Val() }).Should(ContainSubstring("loading:0"))
			expectSame(snapshotData(rc), before[shared2])
			rc.Close()
			Expect(srv.Process.Kill()).To(Succeed())
			_ = srv.Wait()
		}
	})
})
