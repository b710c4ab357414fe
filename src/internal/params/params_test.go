package params_test

import (
	"encoding/json"
	"slices"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/internal/params"
)

func TestParams(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "params")
}

var _ = Describe("Apply", func() {
	It("keeps the defaults for empty, null and {} parameters", func() {
		for _, raw := range []string{"", "null", "{}", "  "} {
			p, err := params.Apply(params.Defaults(), json.RawMessage(raw))
			Expect(err).NotTo(HaveOccurred(), raw)
			Expect(p).To(Equal(params.Defaults()))
		}
		Expect(params.Defaults().MaxMemoryPolicy).To(Equal("noeviction"))
	})

	It("sets the named parameters and keeps the others", func() {
		base := params.Defaults()
		base.Timeout = 60
		p, err := params.Apply(base, json.RawMessage(`{"maxmemory-policy":"allkeys-lru","notify-keyspace-events":"Ex"}`))
		Expect(err).NotTo(HaveOccurred())
		Expect(p).To(Equal(params.Parameters{MaxMemoryPolicy: "allkeys-lru", NotifyKeyspaceEvents: "Ex", Timeout: 60}))
	})

	DescribeTable("refuses values outside the schema, naming the parameter",
		func(raw, mentions string) {
			p, err := params.Apply(params.Defaults(), json.RawMessage(raw))
			Expect(err).To(MatchError(params.ErrInvalid))
			Expect(err.Error()).To(ContainSubstring(mentions))
			Expect(p).To(Equal(params.Defaults()))
		},
		Entry("unknown name", `{"maxmemory":1}`, `"maxmemory"`),
		Entry("bad policy", `{"maxmemory-policy":"lru"}`, `"maxmemory-policy"`),
		Entry("policy of the wrong type", `{"maxmemory-policy":3}`, `"maxmemory-policy"`),
		Entry("bad event flag", `{"notify-keyspace-events":"Q"}`, `"notify-keyspace-events"`),
		Entry("negative timeout", `{"timeout":-1}`, `"timeout"`),
		Entry("fractional timeout", `{"timeout":1.5}`, `"timeout"`),
		Entry("huge timeout", `{"timeout":99999999999}`, `"timeout"`),
		Entry("timeout as a string", `{"timeout":"5"}`, `"timeout"`),
		Entry("tls_only as a string", `{"tls_only":"true"}`, `"tls_only"`),
		Entry("tls_only null", `{"tls_only":null}`, `"tls_only"`),
		Entry("tls_only as a number", `{"tls_only":1}`, `"tls_only"`),
		Entry("not an object", `[1,2]`, "JSON object"),
		Entry("not JSON", `{"timeout":`, "JSON object"),
	)

	It("turns tls_only on and off", func() {
		p, err := params.Apply(params.Defaults(), json.RawMessage(`{"tls_only":true}`))
		Expect(err).NotTo(HaveOccurred())
		Expect(p.TLSOnly).To(BeTrue())
		Expect(p.Validate()).To(Succeed())
		p, err = params.Apply(p, json.RawMessage(`{"tls_only":false}`))
		Expect(err).NotTo(HaveOccurred())
		Expect(p).To(Equal(params.Defaults()))
	})

	It("validates every value it produces", func() {
		Expect(params.Defaults().Validate()).To(Succeed())
		Expect(params.Parameters{MaxMemoryPolicy: "nope"}.Validate()).To(MatchError(params.ErrInvalid))
	})
})

var _ = Describe("Schema", func() {
	It("describes every parameter and forbids others", func() {
		s := params.Schema()
		Expect(s["$schema"]).To(Equal("http://json-schema.org/draft-04/schema#"))
		Expect(s["additionalProperties"]).To(BeFalse())
		props := s["properties"].(map[string]any)
		Expect(props).To(HaveLen(len(params.Names())))
		for _, name := range params.Names() {
			Expect(props).To(HaveKey(name))
			Expect(props[name].(map[string]any)["description"]).NotTo(BeEmpty())
		}
		_, err := json.Marshal(s)
		Expect(err).NotTo(HaveOccurred())
	})

	It("gives each parameter but tls_only a redis directive of the same name", func() {
		var names []string
		for _, d := range params.Defaults().Directives() {
			names = append(names, d.Name)
		}
		Expect(names).To(Equal(slices.DeleteFunc(params.Names(), func(n string) bool { return n == "tls_only" })))
		Expect(params.Names()).To(ContainElement("tls_only"))
	})
})
