package metrics_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/cf-redis/redis-for-cf/src/internal/metrics"
)

// Requests are labelled with the mux's pattern, never the raw path, and
// counted by status, also when a wrapper answers before the mux (401).
func TestRequestsByRoute(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/instances/{id}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("PUT /v1/instances/{id}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusCreated) })
	authed := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	})
	m := metrics.NewRequests(metrics.RequestsOpts{Total: "t_requests_total", TotalHelp: "h", Duration: "t_seconds", DurationHelp: "h", Label: "route", Buckets: prometheus.DefBuckets})
	reg := prometheus.NewRegistry()
	if err := m.Register(reg); err != nil {
		t.Fatal(err)
	}
	h := m.Instrument(authed, metrics.Route(mux))
	for _, c := range []struct {
		method, path string
		auth         bool
	}{
		{"GET", "/v1/instances/a", true}, {"GET", "/v1/instances/b", true}, {"PUT", "/v1/instances/c", true},
		{"GET", "/v1/instances/d", false}, {"GET", "/nowhere/e", true},
	} {
		r := httptest.NewRequest(c.method, c.path, nil)
		if c.auth {
			r.Header.Set("Authorization", "x")
		}
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		byName[f.GetName()] = f
	}
	for _, c := range []struct {
		route, code string
		want        float64
	}{
		{"GET /v1/instances/{id}", "200", 2},
		{"PUT /v1/instances/{id}", "201", 1},
		{"GET /v1/instances/{id}", "401", 1},
		{metrics.UnmatchedRoute, "404", 1},
	} {
		if got, ok := metrics.Find(byName, "t_requests_total", "route", c.route, "code", c.code); !ok || got != c.want {
			t.Errorf("t_requests_total{route=%q,code=%s} = %v (%v), want %v", c.route, c.code, got, ok, c.want)
		}
	}
	if got, ok := metrics.Find(byName, "t_seconds", "route", "GET /v1/instances/{id}"); !ok || got != 3 {
		t.Errorf("t_seconds{GET} count = %v (%v), want 3", got, ok)
	}
	for _, f := range fams {
		for _, s := range f.Metric {
			for _, l := range s.Label {
				if l.GetName() == "route" && (l.GetValue() == "/v1/instances/a" || l.GetValue() == "GET /v1/instances/a") {
					t.Errorf("a raw path as a label: %v", l)
				}
			}
		}
	}
}
