package broker

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"code.cloudfoundry.org/brokerapi/v13"
	"code.cloudfoundry.org/brokerapi/v13/domain/apiresponses"

	"github.com/cf-redis/redis-for-cf/src/internal/jsonhttp"
)

// maxBody bounds OSB request bodies: real ones are a few kilobytes.
const maxBody = 1 << 20

// poolPath is the operators' list of the dedicated nodes.
const poolPath = "/admin/v1/pool"

// Handler serves the broker's OSB API and its admin endpoints behind basic
// auth (401 in JSON with a Basic challenge), with the OSB conformance layer
// (conform.go) in front of brokerapi. Every request, refused or not, is
// counted and timed for the metrics (metrics.go).
func (b *Broker) Handler() http.Handler {
	api := b.conform(brokerapi.New(b, b.logger, brokerapi.BrokerCredentials{
		Username: b.cfg.Credentials.Username,
		Password: b.cfg.Credentials.Password,
	}))
	authed := jsonhttp.BasicAuth("redis-broker", b.cfg.Credentials, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == poolPath {
			b.servePool(w, r)
			return
		}
		api.ServeHTTP(w, r)
	}))
	return b.instrument(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The OSB spec: the broker SHOULD echo the platform's request
		// identity in every answer; brokerapi does only in its own.
		if id := r.Header.Get("X-Broker-API-Request-Identity"); id != "" {
			w.Header().Set("X-Broker-API-Request-Identity", id)
		}
		authed.ServeHTTP(w, r)
	}))
}

// servePool answers GET /admin/v1/pool for operators: every dedicated node,
// which instance holds it, and why a quarantined node is out of the pool.
func (b *Broker) servePool(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeJSONError(w, http.StatusMethodNotAllowed, "only GET is supported")
		return
	}
	var nodes []poolNode
	_ = b.state.View(func(s state) {
		for _, p := range s.Pool {
			nodes = append(nodes, *p)
		}
	})
	slices.SortFunc(nodes, func(a, b poolNode) int { return strings.Compare(a.ID, b.ID) })
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"nodes": nodes})
}

func writeJSONError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(apiresponses.ErrorResponse{Description: msg})
}

// RedactAttr is a slog ReplaceAttr that keeps request parameters out of
// logs: brokerapi logs a request's details, and a parameter may one day carry
// a secret (a leader's password, say).
func RedactAttr(groups []string, a slog.Attr) slog.Attr {
	switch a.Key {
	case "instance-details", "binding-details", "details", "parameters", "password", "credentials":
		return slog.String(a.Key, "[redacted]")
	}
	return a
}
