package instance_test

import (
	"bytes"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/instance"
	"github.com/cf-redis/redis-for-cf/src/internal/secret"
)

var _ = Describe("a Server's snapshot and restore", func() {
	var s *server
	BeforeEach(func(ctx SpecContext) {
		s = newServer(tempDir(), "inst-1", nil)
		s.start(ctx)
	})

	snapshot := func(ctx SpecContext) []byte {
		a, err := s.Snapshot(ctx, "inst-1", agentapi.SnapshotRequest{Timeout: time.Minute})
		Expect(err).NotTo(HaveOccurred())
		defer a.Close()
		var buf bytes.Buffer
		_, err = a.WriteTo(&buf)
		Expect(err).NotTo(HaveOccurred())
		return buf.Bytes()
	}

	It("restores a snapshot's data in place, keeping users, port and parameters", func(ctx SpecContext) {
		c, pw := s.bind(ctx, "b1")
		for i := range 10 {
			Expect(c.Set(ctx, "k"+itoa(i), i, 0).Err()).To(Succeed())
		}
		backup := snapshot(ctx)
		Expect(c.Set(ctx, "after", "x", 0).Err()).To(Succeed())
		Expect(c.Del(ctx, "k0").Err()).To(Succeed())
		c2, _ := s.bind(ctx, "b2")

		res, err := s.Restore(ctx, "inst-1", agentapi.RestoreRequest{FromInstance: "inst-1"}, bytes.NewReader(backup))
		Expect(err).NotTo(HaveOccurred())
		Expect(res.InstanceID).To(Equal("inst-1"))
		Expect(res.Keys).To(Equal(int64(10)))
		Expect(res.Backup.InstanceID).To(Equal("inst-1"))
		Expect(res.Backup.Plan).To(Equal("test"))
		after := s.tenant("b1", pw)
		Expect(after.Get(ctx, "k0").Val()).To(Equal("0"))
		Expect(after.Exists(ctx, "after").Val()).To(BeZero())
		Expect(c2.Ping(ctx).Err()).To(Succeed(), "a user made after the snapshot stays")
		Expect(s.Describe(s.record()).State).To(Equal(agentapi.StateRunning))
	})

	It("refuses a backup of another instance, a corrupt one, and any while the agent starts, keeping the data", func(ctx SpecContext) {
		c, _ := s.bind(ctx, "b1")
		Expect(c.Set(ctx, "k", "v", 0).Err()).To(Succeed())
		backup := snapshot(ctx)
		_, err := s.Restore(ctx, "inst-1", agentapi.RestoreRequest{FromInstance: "inst-9"}, bytes.NewReader(backup))
		Expect(err).To(MatchError(agentapi.ErrInvalid))
		Expect(err).To(MatchError(ContainSubstring("the backup is of instance inst-1, not of inst-9")))
		_, err = s.Restore(ctx, "inst-1", agentapi.RestoreRequest{}, strings.NewReader("junk"))
		Expect(err).To(MatchError(agentapi.ErrInvalid))
		_, err = s.Restore(ctx, "inst-2", agentapi.RestoreRequest{}, bytes.NewReader(backup))
		Expect(err).To(MatchError(agentapi.ErrNotFound))

		s.started.Store(false)
		_, err = s.Restore(ctx, "inst-1", agentapi.RestoreRequest{}, bytes.NewReader(backup))
		Expect(err).To(MatchError(agentapi.ErrUnavailable))
		_, err = s.Snapshot(ctx, "inst-1", agentapi.SnapshotRequest{})
		Expect(err).To(MatchError(agentapi.ErrUnavailable))
		s.started.Store(true)
		Expect(c.Get(ctx, "k").Val()).To(Equal("v"))
	})

	It("runs one snapshot or restore at a time, and fails a snapshot whose instance went away while it streamed", func(ctx SpecContext) {
		a, err := s.Snapshot(ctx, "inst-1", agentapi.SnapshotRequest{})
		Expect(err).NotTo(HaveOccurred())
		_, err = s.Snapshot(ctx, "inst-1", agentapi.SnapshotRequest{})
		Expect(err).To(MatchError(agentapi.ErrConflict))
		_, err = s.Restore(ctx, "inst-1", agentapi.RestoreRequest{}, strings.NewReader("junk"))
		Expect(err).To(MatchError(agentapi.ErrConflict))

		s.store.setGone(true)
		var buf bytes.Buffer
		_, err = a.WriteTo(&buf)
		Expect(err).To(MatchError(agentapi.ErrNotFound))
		Expect(a.Close()).To(Succeed())
		_, err = s.Snapshot(ctx, "inst-1", agentapi.SnapshotRequest{})
		Expect(err).To(MatchError(agentapi.ErrNotFound), "released, and the instance is gone")
	})
})

var _ = Describe("a Server's process", func() {
	var s *server
	BeforeEach(func() { s = newServer(tempDir(), "inst-1", nil) })

	It("is adopted by the next agent after a crash, which makes it take its files' users and settings", func(ctx SpecContext) {
		s.start(ctx)
		c, _ := s.bind(ctx, "b1")
		Expect(c.Set(ctx, "k", "v", 0).Err()).To(Succeed())
		// An app's connection, open across the agent's restart.
		app := c.Conn()
		defer app.Close()
		appID, err := app.ClientID(ctx).Result()
		Expect(err).NotTo(HaveOccurred())
		pid := s.pid()
		s.Abandon()
		// The agent died between writing its files and telling the server:
		// the server has a user and a setting the files do not.
		admin := s.admin()
		Expect(admin.Do(ctx, "ACL", "SETUSER", "stray", "on", ">"+secret.New(), "~*", "+@all").Err()).To(Succeed())
		Expect(admin.ConfigSet(ctx, "timeout", "99").Err()).To(Succeed())

		s.Server = s.again()
		s.Recover(ctx)
		Expect(s.pid()).To(Equal(pid))
		Expect(s.Describe(s.record()).State).To(Equal(agentapi.StateRunning))
		Expect(admin.Do(ctx, "ACL", "USERS").Val()).To(ConsistOf("b1", "default", instance.AdminUser))
		Expect(admin.ConfigGet(ctx, "timeout").Val()).To(HaveKeyWithValue("timeout", "0"))
		Expect(c.Get(ctx, "k").Val()).To(Equal("v"))
		// The users were set one by one, not reloaded: Redis 7.0's ACL LOAD
		// would have closed every app's connection.
		Expect(app.ClientID(ctx).Result()).To(Equal(appID), "the app's connection stayed open")
	})

	It("starts again in the background, backing off, when its port is taken", func(ctx SpecContext) {
		l, err := net.Listen("tcp", s.addr())
		Expect(err).NotTo(HaveOccurred())
		s.Recover(ctx)
		Expect(s.Describe(s.record()).State).To(Equal(agentapi.StateFailed))
		Expect(l.Close()).To(Succeed())
		Eventually(func() string { return s.Describe(s.record()).State }).WithTimeout(10 * time.Second).Should(Equal(agentapi.StateRunning))
		Expect(s.admin().Ping(ctx).Err()).To(Succeed())
	})

	It("stops a server an earlier agent left running, and finds nothing to stop when none runs", func(ctx SpecContext) {
		Expect(s.Stop(ctx, true)).To(Succeed(), "nothing ran")
		s.start(ctx)
		pid := s.pid()
		s.Abandon()
		s.Server = s.again()
		Expect(s.Stop(ctx, true)).To(Succeed())
		Eventually(func() error { return syscall.Kill(pid, 0) }).Should(HaveOccurred())
		Expect(s.Describe(s.record()).State).To(Equal(agentapi.StateStarting))
	})
})

var _ = Describe("an agent's redis_tls", func() {
	It("refuses TLS files that are missing or do not parse, naming the field", func() {
		dir := tempDir()
		Expect((*instance.RedisTLS)(nil).Check("redis_tls")).To(Succeed())
		Expect((&instance.RedisTLS{}).Validate("redis_tls")).To(MatchError(ContainSubstring("redis_tls.ca_file is required")))
		t := &instance.RedisTLS{CertFile: filepath.Join(dir, "missing.crt"), KeyFile: filepath.Join(dir, "k"), CAFile: filepath.Join(dir, "c")}
		Expect(t.Check("redis_tls")).To(MatchError(ContainSubstring("redis_tls.cert_file")))
		_, err := instance.Setup(t, "redis-server", dir)
		Expect(err).To(MatchError(ContainSubstring("redis_tls.cert_file")))
		_, err = instance.Setup(nil, "no-such-redis-server", dir)
		Expect(err).To(MatchError(ContainSubstring("redis_server")))
	})
})
