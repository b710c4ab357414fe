package dedicatedha_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/testkit/systemspec"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

// A follower lost with its disk and replaced in its slot, as BOSH replaces
// a VM whose persistent disk is gone: the node comes back empty, free by its
// own account, while the broker's pool names it a member of a group. The
// broker's member check takes it back into the group: claimed again,
// joined, with every binding's user; its redis-server syncs the data from
// the leader, and the group can fail over to it.
var _ = Describe("a dedicated-ha follower lost with its disk", func() {
	It("is taken back into its group by the broker: it follows the leader with the data, the bindings work on it, and it can be promoted", func() {
		sys := startSystem(3, systemtest.Options{})
		code, body := systemspec.Provision(sys, "r1", systemtest.HAPlanID, nil)
		Expect(code).To(Equal(http.StatusCreated), "%v", body)
		code, body = systemspec.Bind(sys, "r1", "b1", systemtest.HAPlanID)
		Expect(code).To(Equal(http.StatusCreated), "%v", body)
		creds := systemspec.Credentials(body)
		fc := failoverClient(creds)
		Eventually(func() error { return fc.Set(ctx, "k0", "before", 0).Err() }).Should(Succeed())
		for k := 1; k < 100; k++ {
			Expect(fc.Set(ctx, fmt.Sprintf("k%d", k), "before", 0).Err()).To(Succeed())
		}
		expectBothFollowers(fc)
		leaderAddr, err := sentinelLeader(sys, 0, creds)
		Expect(err).NotTo(HaveOccurred())
		leader := nodeAt(sys, leaderAddr)
		lost := (leader + 1) % 3

		By("losing a follower's VM and disk: its agent, redis-server and Sentinel killed, its data folder emptied")
		sys.Nodes[lost].Kill9()
		for _, port := range []int{sys.NodePorts[lost], sys.SentinelPorts[lost]} {
			pid := listener(sys.NodeHosts[lost], port)
			Expect(syscall.Kill(pid, syscall.SIGKILL)).To(Succeed())
		}
		Eventually(func() error {
			c, err := net.DialTimeout("tcp", net.JoinHostPort(sys.NodeHosts[lost], strconv.Itoa(sys.SentinelPorts[lost])), time.Second)
			if err == nil {
				c.Close()
			}
			return err
		}).ShouldNot(Succeed(), "the lost node's Sentinel still answers")
		Expect(os.RemoveAll(sys.NodeDirs[lost])).To(Succeed())
		Expect(os.MkdirAll(sys.NodeDirs[lost], 0o700)).To(Succeed())
		Expect(fc.Set(ctx, "while-lost", "yes", 0).Err()).To(Succeed(), "the group writes with one follower")

		By("the VM replaced in its slot: a new agent on an empty disk, free by its own account")
		Expect(sys.Nodes[lost].Start()).To(Succeed())
		Eventually(func() string { return systemspec.NodeAgentState(sys, lost).State }).Should(Or(Equal("free"), Equal("claimed")))

		By("the broker taking it back into the group: it follows the leader with every key")
		member := memberClient(sys, lost, creds)
		// The broker checks its groups' members every 30 s.
		Eventually(func() (string, error) { return member.Get(ctx, "while-lost").Result() }).
			WithTimeout(2 * time.Minute).WithPolling(500 * time.Millisecond).Should(Equal("yes"))
		Expect(systemspec.NodeAgentState(sys, lost)).To(Equal(systemspec.AgentState{State: "claimed", InstanceID: "r1"}))
		Expect(member.DBSize(ctx).Val()).To(BeEquivalentTo(101))
		role, err := member.Do(ctx, "ROLE").Slice()
		Expect(err).NotTo(HaveOccurred())
		Expect(role[0]).To(Equal("slave"))
		Eventually(func() (string, error) { return sentinelLeader(sys, lost, creds) }).Should(Equal(leaderAddr),
			"its new Sentinel knows the binding's user and the group's leader")
		expectBothFollowers(fc)
		Expect(expectPoolConsistent(sys)).To(Equal([]string{"r1"}))

		By("a failover that can promote it: the leader's redis-server killed, the group writes again")
		Expect(syscall.Kill(systemspec.RedisPid(sys, leader), syscall.SIGKILL)).To(Succeed())
		Eventually(func() error { return fc.Set(ctx, "after-failover", "yes", 0).Err() }).WithTimeout(time.Minute).Should(Succeed())
		Expect(fc.DBSize(ctx).Val()).To(BeEquivalentTo(102))
		expectBothFollowers(fc)

		Expect(systemspec.Deprovision(sys, "r1", systemtest.HAPlanID)).To(Equal(http.StatusOK))
		expectAllFreeAndClean(sys)
	})
})

// listener is the pid of the process listening on host:port.
func listener(host string, port int) int {
	GinkgoHelper()
	out, err := exec.Command("ss", "-Hltnp", fmt.Sprintf("src %s and sport = :%d", host, port)).CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), string(out))
	m := regexp.MustCompile(`pid=(\d+)`).FindStringSubmatch(string(out))
	Expect(m).NotTo(BeNil(), "nothing listens on %s:%d: %s", host, port, out)
	pid, err := strconv.Atoi(m[1])
	Expect(err).NotTo(HaveOccurred())
	return pid
}
