package broker

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strings"

	"code.cloudfoundry.org/brokerapi/v13"
	"code.cloudfoundry.org/brokerapi/v13/domain/apiresponses"

	"github.com/cf-redis/redis-for-cf/src/internal/jsonhttp"
)

// maxBody bounds OSB request bodies: real ones are a few kilobytes.
const maxBody = 1 << 20

// Handler serves the broker's OSB API with basic auth, the version header
// check, and guards against oversized or non-JSON bodies that brokerapi
// would otherwise read whole.
func (b *Broker) Handler() http.Handler {
	api := brokerapi.New(b, b.logger, brokerapi.BrokerCredentials{
		Username: b.cfg.Credentials.Username,
		Password: b.cfg.Credentials.Password,
	})
	pool := jsonhttp.RequireBasicAuth(b.cfg.Credentials, http.HandlerFunc(b.servePool))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/admin/v1/pool" {
			pool.ServeHTTP(w, r)
			return
		}
		if r.Body != nil && r.ContentLength != 0 && (r.Method == http.MethodPut || r.Method == http.MethodPatch) {
			if ct := r.Header.Get("Content-Type"); ct != "" {
				if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
					writeJSONError(w, http.StatusUnsupportedMediaType, "request bodies must be application/json")
					return
				}
			}
			if r.ContentLength > maxBody {
				writeJSONError(w, http.StatusRequestEntityTooLarge, "request body is larger than 1 MiB")
				return
			}
			// Read the body here, not in brokerapi, so a chunked body over the
			// limit is a 413 too rather than brokerapi's 422 for bad JSON.
			data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
			var tooBig *http.MaxBytesError
			switch {
			case errors.As(err, &tooBig):
				writeJSONError(w, http.StatusRequestEntityTooLarge, "request body is larger than 1 MiB")
				return
			case err != nil:
				writeJSONError(w, http.StatusBadRequest, "the request body could not be read")
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(data))
		}
		api.ServeHTTP(w, r)
	})
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
