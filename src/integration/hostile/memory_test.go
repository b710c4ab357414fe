package hostile_test

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/testkit/systemspec"
)

// memoryTarget is an instance under a memory attack: a binding, its
// client, its agent and the ceiling its server must stay under.
type memoryTarget struct {
	id      string
	creds   map[string]any
	app     *redis.Client
	place   place
	maxmem  int64
	ceiling int64
	rss     *peakRSS
}

// newMemoryTarget provisions an instance of p and binds it, writes a small
// key the attacks must not lose, and starts watching its server's RSS.
func newMemoryTarget(sys *system, p plan) *memoryTarget {
	GinkgoHelper()
	t := &memoryTarget{id: newID("mem")}
	sys.provision(p, t.id)
	t.creds = sys.bind(p, t.id, newID("app"))
	t.app = client(t.creds)
	t.place = sys.locate(p, t.id)
	t.maxmem = int64(t.place.agentInstance()["maxmemory_bytes"].(float64))
	Expect(t.maxmem).To(Equal(int64(64<<20)), "the systems of these specs give instances 64 MiB")
	t.ceiling = memoryCeiling(t.maxmem)
	Expect(t.app.Set(ctx, "small", "kept", 0).Err()).To(Succeed())
	// A server its kernel stops during an attack restarts from its
	// append-only file: what was written before must be on disk.
	systemspec.WaitForAOF()
	t.rss = watchPeakRSS(t.place)
	return t
}

// expectBounded checks the server's peak RSS against the ceiling, and that
// it serves a new connection and the data it held.
func (t *memoryTarget) expectBounded() {
	GinkgoHelper()
	fmt.Fprintf(GinkgoWriter, "peak RSS of %s's redis-server: %s (ceiling %s)\n", t.id, mib(t.rss.Peak()), mib(t.ceiling))
	Expect(t.rss.Peak()).To(BeNumerically("<=", t.ceiling),
		"peak RSS of the redis-server %s, ceiling %s (3 x maxmemory %s + 64 MiB)", mib(t.rss.Peak()), mib(t.ceiling), mib(t.maxmem))
	Eventually(func() error { return ping(t.creds) }).Should(Succeed(), "the server serves a new connection")
	Expect(client(t.creds).Get(ctx, "small").Val()).To(Equal("kept"))
}

// stopIfOverCeiling ends an Eventually at once when the server's peak is
// already over the ceiling: whatever follows, the attack got through.
func (t *memoryTarget) stopIfOverCeiling() {
	if p := t.rss.Peak(); p > t.ceiling {
		StopTrying(fmt.Sprintf("the redis-server's peak RSS %s is over the ceiling %s (3 x maxmemory %s + 64 MiB)",
			mib(p), mib(t.ceiling), mib(t.maxmem))).Now()
	}
}

// expectOutputBuffersBounded: a 10 MB value, then one connection pipelines
// 150 GETs of it and never reads the replies, which pile up in its output
// buffer.
func expectOutputBuffersBounded(sys *system, p plan) {
	t := newMemoryTarget(sys, p)
	Expect(t.app.Set(ctx, "big", strings.Repeat("x", 10<<20), 0).Err()).To(Succeed())
	admin := t.place.admin(addr(t.creds))

	attacker := authedConn(t.creds)
	// The server lists a client by its address, as it sees it: the
	// attacker's local address.
	listed := "addr=" + attacker.LocalAddr().String() + " "
	Expect(admin.ClientList(ctx).Val()).To(ContainSubstring(listed), "the attacker's connection is listed")
	var pipeline bytes.Buffer
	for range 150 {
		pipeline.Write(resp("GET", "big"))
	}
	_, err := attacker.Write(pipeline.Bytes())
	Expect(err).NotTo(HaveOccurred())

	Eventually(func(g Gomega) {
		t.stopIfOverCeiling()
		list, err := admin.ClientList(ctx).Result()
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(list).NotTo(ContainSubstring(listed), "the server closed the connection that never reads")
	}).Should(Succeed())
	t.expectBounded()
}

// expectQueryBuffersBounded: three connections each start a 499 MB bulk
// string and send it as fast as the server takes it.
func expectQueryBuffersBounded(sys *system, p plan) {
	t := newMemoryTarget(sys, p)
	const size = 499 << 20
	chunk := bytes.Repeat([]byte("y"), 1<<20)
	var wg sync.WaitGroup
	sent := make([]int64, 3)
	for i := range 3 {
		c := authedConn(t.creds)
		wg.Add(1)
		go func() {
			defer GinkgoRecover()
			defer wg.Done()
			key := "bulk-" + strconv.Itoa(i)
			header := fmt.Sprintf("*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n", len(key), key, size)
			// A server that stops reading without closing would hold the
			// writer forever; the deadline ends the attack, not the check.
			_ = c.SetWriteDeadline(time.Now().Add(90 * time.Second))
			if _, err := c.Write([]byte(header)); err != nil {
				return
			}
			for sent[i] < size {
				n, err := c.Write(chunk[:min(len(chunk), int(size-sent[i]))])
				sent[i] += int64(n)
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	fmt.Fprintf(GinkgoWriter, "bytes the three clients got into the server: %v\n", sent)
	t.expectBounded()
}

// fillScript writes 1000 values of 1 MiB in one EVAL: a script that
// started under maxmemory is not stopped by it.
const fillScript = `for i=1,1000 do redis.call('SET','k'..i, string.rep('x',1048576)) end`

// expectScriptBounded runs fillScript; the script must fail, or its server
// be stopped (killed in its memory cgroup and restarted by its agent), and
// never hold more than the ceiling. A neighbour on the same shared VM,
// when there is one, keeps its server and answers throughout.
func expectScriptBounded(sys *system, p plan) {
	var neighbour *redis.Client
	var neighbourPlace place
	neighbourPid := 0
	if p == sharedPlan {
		nid := newID("neighbour")
		sys.provision(p, nid)
		neighbour = client(sys.bind(p, nid, newID("app")))
		neighbourPlace = sys.locate(p, nid)
		neighbourPid = neighbourPlace.redisPid()
		Expect(neighbourPid).NotTo(BeZero())
	}
	t := newMemoryTarget(sys, p)

	var mu sync.Mutex
	var missed []string
	stop := make(chan struct{})
	pinged := make(chan struct{})
	go func() {
		defer close(pinged)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if neighbour == nil {
				continue
			}
			if err := neighbour.Ping(ctx).Err(); err != nil {
				mu.Lock()
				missed = append(missed, time.Now().Format(time.TimeOnly)+" "+err.Error())
				mu.Unlock()
			}
		}
	}()
	DeferCleanup(func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-pinged
	})

	opt := *t.app.Options()
	opt.ReadTimeout = 3 * time.Minute
	opt.PoolSize = 1
	script := redis.NewClient(&opt)
	DeferCleanup(script.Close)
	evalErr := script.Eval(ctx, fillScript, nil).Err()
	fmt.Fprintf(GinkgoWriter, "EVAL of 1000 x 1 MiB answered: %v\n", evalErr)

	Expect(t.rss.Peak()).To(BeNumerically("<=", t.ceiling),
		"peak RSS of the instance's redis-server %s, ceiling %s (3 x maxmemory %s + 64 MiB)", mib(t.rss.Peak()), mib(t.ceiling), mib(t.maxmem))
	Expect(evalErr).To(HaveOccurred(), "the script wrote 1000 MiB into a 64 MiB instance and succeeded")
	Eventually(func() error { return ping(t.creds) }).WithTimeout(time.Minute).Should(Succeed(), "the instance serves again")
	Eventually(func() (string, error) { return t.place.liveConfig(addr(t.creds), "maxmemory") }).
		Should(Equal(strconv.FormatInt(t.maxmem, 10)), "the instance keeps its plan's limit")

	close(stop)
	<-pinged
	if neighbour != nil {
		Expect(neighbour.Ping(ctx).Err()).To(Succeed(), "the neighbour answers after the attack")
		Expect(neighbourPlace.redisPid()).To(Equal(neighbourPid), "the neighbour's redis-server is the one it had before")
		mu.Lock()
		defer mu.Unlock()
		Expect(missed).To(BeEmpty(), "PINGs the neighbour did not answer during the attack")
	}
}
