package sharedvm_test

import (
	"net"
	"net/http"
	"net/url"
	"strconv"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

var _ = Describe("Bindings", Ordered, ContinueOnFailure, func() {
	var sys *system
	var instA, instB string

	BeforeAll(func() {
		sys = startSystem(systemtest.Options{})
		instA, instB = newID("inst-a"), newID("inst-b")
		sys.provision(instA, nil)
		sys.provision(instB, nil)
	})

	It("hands out host, hostname, port, username, a long password and a URI, with endpoints", func() {
		status, r := sys.bindRaw(instA, newID("bind"), "app-1")
		Expect(status).To(Equal(http.StatusCreated), r.Description)
		c := r.creds()
		Expect(c.Host).NotTo(BeEmpty())
		Expect(c.Hostname).To(Equal(c.Host))
		Expect(c.Port).To(BeNumerically(">", 0))
		Expect(c.Username).NotTo(BeEmpty())
		Expect(len(c.Password)).To(BeNumerically(">=", 32))

		u, err := url.Parse(c.URI)
		Expect(err).NotTo(HaveOccurred())
		Expect(u.Scheme).To(Equal("redis"))
		Expect(u.User.Username()).To(Equal(c.Username))
		password, _ := u.User.Password()
		Expect(password).To(Equal(c.Password))
		Expect(u.Host).To(Equal(net.JoinHostPort(c.Host, strconv.Itoa(c.Port))))

		Expect(r.Endpoints).To(HaveLen(1))
		Expect(r.Endpoints[0].Host).To(Equal(c.Host))
		Expect(r.Endpoints[0].Ports).To(Equal([]string{strconv.Itoa(c.Port)}))
	})

	It("gives credentials that go-redis ParseURL and redis-cli -u read and use", func(ctx SpecContext) {
		c := sys.bind(instA, newID("bind"))
		opts, err := redis.ParseURL(c.URI)
		Expect(err).NotTo(HaveOccurred())
		Expect(opts.Addr).To(Equal(net.JoinHostPort(c.Host, strconv.Itoa(c.Port))))
		Expect(opts.Username).To(Equal(c.Username))
		Expect(opts.Password).To(Equal(c.Password))

		rc := connect(c)
		Expect(rc.Set(ctx, "from-go", "1", 0).Err()).To(Succeed())
		Expect(redisCLI(c.URI, "PING")).To(Equal("PONG"))
		Expect(redisCLI(c.URI, "SET", "from-cli", "hello")).To(Equal("OK"))
		Expect(redisCLI(c.URI, "GET", "from-go")).To(Equal("1"))
		Expect(rc.Get(ctx, "from-cli").Val()).To(Equal("hello"))
	})

	It("gives two bindings of one instance users and passwords of their own over the same keys", func(ctx SpecContext) {
		c1 := sys.bind(instA, newID("bind"))
		c2 := sys.bind(instA, newID("bind"))
		Expect(c2.Username).NotTo(Equal(c1.Username))
		Expect(c2.Password).NotTo(Equal(c1.Password))
		Expect(c2.Port).To(Equal(c1.Port))

		rc1, rc2 := connect(c1), connect(c2)
		Expect(rc1.Set(ctx, "shared", "from-1", 0).Err()).To(Succeed())
		Expect(rc2.Get(ctx, "shared").Val()).To(Equal("from-1"))
		Expect(rc2.Set(ctx, "shared", "from-2", 0).Err()).To(Succeed())
		Expect(rc1.Get(ctx, "shared").Val()).To(Equal("from-2"))
	})

	It("isolates instances: a key of one is not in the other, and one's credentials fail AUTH on the other", func(ctx SpecContext) {
		ca, cb := sys.bind(instA, newID("bind")), sys.bind(instB, newID("bind"))
		Expect(cb.Port).NotTo(Equal(ca.Port))
		ra, rb := connect(ca), connect(cb)
		Expect(ra.Set(ctx, "only-in-a", "x", 0).Err()).To(Succeed())
		Expect(rb.Get(ctx, "only-in-a").Err()).To(Equal(redis.Nil))
		Expect(rb.Exists(ctx, "only-in-a").Val()).To(BeZero())

		wrong := ca
		wrong.Port = cb.Port
		wrong.URI = (&url.URL{Scheme: "redis", User: url.UserPassword(ca.Username, ca.Password), Host: net.JoinHostPort(cb.Host, strconv.Itoa(cb.Port))}).String()
		err := connect(wrong).Ping(ctx).Err()
		Expect(err).To(MatchError(ContainSubstring("WRONGPASS")))
	})

	It("answers an identical rebind with 200 and the same credentials, and the same id for another app with 409", func() {
		id := newID("bind")
		status, first := sys.bindRaw(instA, id, "app-1")
		Expect(status).To(Equal(http.StatusCreated), first.Description)

		status, again := sys.bindRaw(instA, id, "app-1")
		Expect(status).To(Equal(http.StatusOK), again.Description)
		Expect(again.creds()).To(Equal(first.creds()))

		status, other := sys.bindRaw(instA, id, "app-2")
		Expect(status).To(Equal(http.StatusConflict), other.Description)
		Expect(string(other.Credentials)).To(BeEmpty())
	})

	It("returns a binding's credentials and endpoints on GET, and 404 for a binding that does not exist", func() {
		id := newID("bind")
		c := sys.bind(instA, id)
		status, got := sys.getBinding(instA, id)
		Expect(status).To(Equal(http.StatusOK), got.Description)
		Expect(got.creds()).To(Equal(c))
		Expect(got.Endpoints).To(HaveLen(1))
		Expect(got.Endpoints[0].Ports).To(Equal([]string{strconv.Itoa(c.Port)}))

		status, _ = sys.getBinding(instA, newID("bind"))
		Expect(status).To(Equal(http.StatusNotFound))
	})

	It("answers a bind to an instance that does not exist with 404, and a bind with parameters with 400", func() {
		status, r := sys.bindRaw(newID("inst"), newID("bind"), "app-1")
		Expect(status).To(Equal(http.StatusNotFound), r.Description)

		status, body := sys.do(http.MethodPut, bindingPath(instA, newID("bind")), map[string]any{
			"service_id": systemtest.ServiceID, "plan_id": systemtest.PlanID, "app_guid": "app-1",
			"parameters": map[string]any{"role": "admin"},
		})
		Expect(status).To(Equal(http.StatusBadRequest), string(body))
		Expect(description(body)).To(ContainSubstring(`"role"`))
	})

	Context("unbinding", func() {
		It("closes the unbound user's open connection and refuses its AUTH, while the other binding's connection keeps working", func(ctx SpecContext) {
			gone, kept := newID("bind"), newID("bind")
			cGone, cKept := sys.bind(instA, gone), sys.bind(instA, kept)
			connGone := connect(cGone).Conn()
			DeferCleanup(connGone.Close)
			connKept := connect(cKept).Conn()
			DeferCleanup(connKept.Close)
			Expect(connGone.Ping(ctx).Err()).To(Succeed())
			Expect(connKept.Ping(ctx).Err()).To(Succeed())

			sys.unbind(instA, gone)

			Eventually(func() error { return connGone.Ping(ctx).Err() }).Should(HaveOccurred())
			err := connect(cGone).Ping(ctx).Err()
			Expect(err).To(MatchError(ContainSubstring("WRONGPASS")))
			out, _ := redisCLIResult(cGone.URI, "PING")
			Expect(out).To(ContainSubstring("WRONGPASS"))

			Expect(connKept.Ping(ctx).Err()).To(Succeed())
			Expect(connKept.Set(ctx, "after-unbind", "ok", 0).Err()).To(Succeed())
		})

		It("answers a second unbind with 410 and GET of the binding with 404", func() {
			id := newID("bind")
			sys.bind(instA, id)
			sys.unbind(instA, id)

			status, body := sys.do(http.MethodDelete, bindingPath(instA, id)+
				"?service_id="+systemtest.ServiceID+"&plan_id="+systemtest.PlanID, nil)
			Expect(status).To(Equal(http.StatusGone), string(body))
			status, _ = sys.getBinding(instA, id)
			Expect(status).To(Equal(http.StatusNotFound))
		})

		It("lets the binding id be used again after an unbind, with a new password", func(ctx SpecContext) {
			id := newID("bind")
			old := sys.bind(instA, id)
			sys.unbind(instA, id)
			renewed := sys.bind(instA, id)
			Expect(renewed.Password).NotTo(Equal(old.Password))
			Expect(connect(renewed).Ping(ctx).Err()).To(Succeed())
			Expect(connect(old).Ping(ctx).Err()).To(MatchError(ContainSubstring("WRONGPASS")))
		})
	})
})
