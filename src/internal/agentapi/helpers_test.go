package agentapi_test

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"

	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/testkit/tlstest"
)

func tlsTrusting(ca *tlstest.CA) *tls.Config {
	pool := x509.NewCertPool()
	Expect(pool.AppendCertsFromPEM([]byte(ca.PEM))).To(BeTrue())
	return &tls.Config{RootCAs: pool}
}

func mustAuthed(req *http.Request, err error) func(agentapi.Credentials) *http.Request {
	Expect(err).NotTo(HaveOccurred())
	return func(c agentapi.Credentials) *http.Request {
		req.SetBasicAuth(c.Username, c.Password)
		return req
	}
}
