package sharedagent_test

import (
	"context"
	"encoding/json"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/cgroup"
	"github.com/cf-redis/redis-for-cf/src/internal/instance"
	"github.com/cf-redis/redis-for-cf/src/internal/secret"
)

// endlessScript writes, then loops: redis-server answers BUSY to everyone
// and, as the script wrote, refuses SCRIPT KILL (UNKILLABLE).
const endlessScript = "redis.call('set', KEYS[1], 'x') while true do end"

// hogScript writes 1000 values of 1 MB from one script: maxmemory is only
// checked before a script, not while it runs.
const hogScript = "local v = string.rep('x', 1048576) for i = 1, 1000 do redis.call('set', 'k' .. i, v) end return 1"

// cgroupDirs are the cgroup dirs of the agent on dir's instance id, as the
// agent makes them (v1: memory and cpu; v2: one).
func cgroupDirs(dir, id string) []string {
	t, err := cgroup.Open(cgroup.Required, cgroup.Name(dir), slog.New(slog.DiscardHandler))
	Expect(err).NotTo(HaveOccurred())
	return t.Group(id).Dirs()
}

var _ = Describe("a shared agent's bounds", func() {
	var (
		dir string
		a   *agent
	)
	BeforeEach(func() {
		dir = tempDir()
		cfg := config(dir)
		cfg.Cgroups = cgroup.Required
		a = startAgent(cfg)
		DeferCleanup(func() {
			a.stop()
			for _, d := range cgroupDirs(dir, "x") {
				// cgroupDirs made the subtree again: it must be empty.
				Expect(os.Remove(filepath.Dir(d))).To(Succeed(), "no cgroup left behind")
			}
		})
	})

	bind := func(ctx context.Context, inst agentapi.Instance, id string) *redis.Client {
		pw := secret.New()
		_, err := a.client.Bind(ctx, inst.ID, id, agentapi.BindingRequest{Password: pw})
		Expect(err).NotTo(HaveOccurred())
		// No retries: a retried script would kill its server again.
		c := redis.NewClient(&redis.Options{Addr: net.JoinHostPort(inst.Host, strconv.Itoa(inst.Port)), Username: id, Password: pw, MaxRetries: -1, ReadTimeout: time.Minute})
		DeferCleanup(c.Close)
		return c
	}

	It("deletes an instance stuck in an endless script on the first request, with its cgroup", func(ctx SpecContext) {
		inst, err := a.client.Create(ctx, "busy", request(16))
		Expect(err).NotTo(HaveOccurred())
		dirs := cgroupDirs(dir, "busy")
		for _, d := range dirs {
			Expect(d).To(BeADirectory())
		}
		c := bind(ctx, inst, "b1")
		go func() { _ = c.Eval(context.Background(), endlessScript, []string{"k"}).Err() }()
		Eventually(func() error { return tenant(inst, "b1", c.Options().Password).Ping(ctx).Err() }).
			WithTimeout(30 * time.Second).Should(MatchError(ContainSubstring("BUSY")))
		pid := pidOf(dir, "busy")

		Expect(a.client.Delete(ctx, "busy")).To(Succeed())
		Expect(syscall.Kill(pid, 0)).To(MatchError(syscall.ESRCH))
		for _, d := range dirs {
			Expect(d).NotTo(BeADirectory())
		}
		Expect(a.client.Get(ctx, "busy")).Error().To(MatchError(agentapi.ErrNotFound))
	}, NodeTimeout(25*time.Second)) // a graceful stop waits 30s

	It("has the kernel stop an instance at its memory ceiling, restarts it, and leaves its neighbour alone", func(ctx SpecContext) {
		hog, err := a.client.Create(ctx, "hog", request(64))
		Expect(err).NotTo(HaveOccurred())
		neighbour, err := a.client.Create(ctx, "neighbour", request(64))
		Expect(err).NotTo(HaveOccurred())
		n := bind(ctx, neighbour, "n")
		Expect(n.Set(ctx, "kept", "yes", 0).Err()).To(Succeed())
		neighbourPid := pidOf(dir, "neighbour")

		h := bind(ctx, hog, "h")
		Expect(h.Eval(ctx, hogScript, nil).Err()).To(HaveOccurred(), "the server dies under the script")
		Eventually(func() agentapi.Instance {
			got, err := a.client.Get(ctx, "hog")
			Expect(err).NotTo(HaveOccurred())
			return got
		}).WithTimeout(30 * time.Second).Should(And(HaveField("State", "running"), HaveField("Restarts", 1),
			HaveField("LastError", ContainSubstring("killed by the kernel for exceeding its memory ceiling"))))

		Expect(pidOf(dir, "neighbour")).To(Equal(neighbourPid))
		Expect(n.Get(ctx, "kept").Val()).To(Equal("yes"))
		got, err := a.client.Get(ctx, "neighbour")
		Expect(err).NotTo(HaveOccurred())
		Expect(got.Restarts).To(BeZero())
	}, NodeTimeout(2*time.Minute))

	It("keeps its files private: dirs 0700, data files 0600, logs 0640 at most", func(ctx SpecContext) {
		inst, err := a.client.Create(ctx, "files", request(16))
		Expect(err).NotTo(HaveOccurred())
		c := bind(ctx, inst, "b1")
		Expect(c.Set(ctx, "k", "v", 0).Err()).To(Succeed())
		admin := adminOf(ctx, dir, inst)
		Expect(admin.BgSave(ctx).Err()).To(Succeed())
		// At redisconf.SharedHz (one tick a second) the server notices its
		// snapshot child ended up to a second later: more than Eventually's
		// default wait.
		Eventually(func() string { return admin.Info(ctx, "persistence").Val() }).WithTimeout(30 * time.Second).Should(ContainSubstring("rdb_bgsave_in_progress:0"))
		Expect(filepath.Join(dir, "instances", "files", "data", "dump.rdb")).To(BeARegularFile())
		logs := filepath.Join(dir, "logs")
		Expect(filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, err := d.Info()
			Expect(err).NotTo(HaveOccurred())
			mode := info.Mode().Perm()
			switch {
			case path == dir:
				// The test's temp dir; the agent's data_dir is BOSH's.
			case d.IsDir():
				Expect(mode).To(Equal(fs.FileMode(0o700)), path)
			case filepath.Dir(path) == logs:
				Expect(mode&^0o640).To(BeZero(), "%s is %v", path, mode)
			default:
				Expect(mode).To(Equal(fs.FileMode(0o600)), "%s is %v", path, mode)
			}
			return nil
		})).To(Succeed())
	})
})

// adminOf is a client of inst as the platform's admin, with the password
// in the agent's state file, as only root on the VM could.
func adminOf(ctx context.Context, dir string, inst agentapi.Instance) *redis.Client {
	var st struct {
		Instances map[string]struct {
			AdminPassword string `json:"admin_password"`
		} `json:"instances"`
	}
	data, err := os.ReadFile(filepath.Join(dir, "state.json"))
	Expect(err).NotTo(HaveOccurred())
	Expect(json.Unmarshal(data, &st)).To(Succeed())
	return tenant(inst, instance.AdminUser, st.Instances[inst.ID].AdminPassword)
}

var _ = Describe("a shared agent's config", func() {
	It("takes cgroups auto (the default), required or off, and nothing else", func() {
		cfg := config(tempDir())
		Expect(cfg.Validate()).To(Succeed())
		Expect(cfg.Cgroups).To(Equal(cgroup.Auto))
		cfg.Cgroups = "always"
		Expect(cfg.Validate()).To(MatchError(ContainSubstring(`cgroups: "always" is not one of auto, required, off`)))
	})
})
