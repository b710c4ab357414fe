package dedicatedha_test

import (
	"errors"
	"net/http"
	"os/exec"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/internal/backup"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemspec"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

var _ = Describe("a restore of an instance of the dedicated-ha plan", func() {
	It("goes to the leader, which keeps leading, and every member holds the backup's data afterwards", func() {
		dest := backup.Destination{Local: &backup.Local{Path: filepath.Join(GinkgoT().TempDir(), "backups")}}
		sys := startSystem(3, systemtest.Options{Backups: &dest})
		code, body := systemspec.Provision(sys, "h1", systemtest.HAPlanID, nil)
		Expect(code).To(Equal(http.StatusCreated), "%v", body)
		code, body = systemspec.Bind(sys, "h1", "b1", systemtest.HAPlanID)
		Expect(code).To(Equal(http.StatusCreated), "%v", body)
		creds := systemspec.Credentials(body)
		fc := failoverClient(creds)
		systemspec.WriteKeys(ctx, fc, "kept", 100)
		expectBothFollowers(fc)
		leaderAddr, err := sentinelLeader(sys, 0, creds)
		Expect(err).NotTo(HaveOccurred())
		leader := nodeAt(sys, leaderAddr)

		By("backing up the instance from a follower with the backup errand")
		cfg, err := sys.ErrandConfig(dest)
		Expect(err).NotTo(HaveOccurred())
		follower := (leader + 1) % 3
		cfg.Nodes = cfg.Nodes[follower : follower+1]
		path := filepath.Join(GinkgoT().TempDir(), "errand.json")
		Expect(systemtest.WriteJSON(path, cfg)).To(Succeed())
		out, err := exec.Command(bins.Backup, "backup", "-config", path).CombinedOutput()
		GinkgoWriter.Printf("$ redis-backup backup\n%s", out)
		var exit *exec.ExitError
		Expect(errors.As(err, &exit) || err != nil).To(BeFalse(), "%s", out)

		By("changing the data after the backup")
		Expect(fc.Del(ctx, "kept:1").Err()).To(Succeed())
		systemspec.WriteKeys(ctx, fc, "later", 20)
		expectBothFollowers(fc)

		By("restoring the latest backup through the broker")
		code, body = systemspec.OSB(sys, "PATCH", "/v2/service_instances/h1?accepts_incomplete=true", map[string]any{
			"service_id": systemtest.ServiceID, "parameters": map[string]any{"restore": "latest"}})
		Expect(code).To(BeElementOf(http.StatusOK, http.StatusAccepted), "%v", body)
		Eventually(func() map[string]any {
			_, b := systemspec.OSB(sys, "GET", "/v2/service_instances/h1/last_operation?operation=restore", nil)
			return b
		}).WithTimeout(2 * time.Minute).Should(HaveKeyWithValue("state", Not(Equal("in progress"))))
		_, body = systemspec.OSB(sys, "GET", "/v2/service_instances/h1/last_operation?operation=restore", nil)
		Expect(body).To(HaveKeyWithValue("state", "succeeded"))

		By("the group takes writes as soon as the restore has succeeded: a follower is in sync")
		Expect(fc.Set(ctx, "after-restore", "1", 0).Err()).To(Succeed())
		Expect(sentinelLeader(sys, 0, creds)).To(Equal(leaderAddr), "the leader kept leading")

		By("every member holds the backup's data, through the binding made before")
		for i := range sys.Nodes {
			rc := memberClient(sys, i, creds)
			// A follower holds the data of before until its full resync
			// from the restored leader ends (one of them may still be at
			// it), then exactly the backup's and what came after.
			Eventually(func() ([]int64, error) {
				later, err := rc.Exists(ctx, "later:1").Result()
				if err != nil {
					return nil, err
				}
				after, err := rc.Exists(ctx, "after-restore").Result()
				return []int64{later, after}, err
			}).WithTimeout(time.Minute).Should(Equal([]int64{0, 1}), "node %d: later:1 gone, after-restore there", i)
			systemspec.ExpectKeys(ctx, rc, "kept", 100)
		}
		expectBothFollowers(fc)
		Expect(systemspec.Deprovision(sys, "h1", systemtest.HAPlanID)).To(Equal(http.StatusOK))
		expectAllFreeAndClean(sys)
	})
})
