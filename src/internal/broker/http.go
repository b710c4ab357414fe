package broker

import (
	"encoding/json"
	"log/slog"
	"mime"
	"net/http"

	"code.cloudfoundry.org/brokerapi/v13"
	"code.cloudfoundry.org/brokerapi/v13/domain/apiresponses"
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
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
			r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		}
		api.ServeHTTP(w, r)
	})
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
