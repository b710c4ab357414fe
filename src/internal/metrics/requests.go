package metrics

import (
	"context"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Requests counts and times an HTTP API's requests by one label that names
// what a request asked for (a route or an operation, never a raw path with
// ids in it, so that the series stay few) and, for the count, the status
// code. The broker and both agents serve their APIs through it.
type Requests struct {
	label    string
	total    *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// RequestsOpts names a Requests' two metrics.
type RequestsOpts struct {
	// Total is the counter's name and help (labels Label and "code").
	Total, TotalHelp string
	// Duration is the histogram's name and help (label Label).
	Duration, DurationHelp string
	// Label is the name of the label that names the request.
	Label string
	// Buckets are the histogram's buckets in seconds.
	Buckets []float64
}

// NewRequests makes the metrics opts name.
func NewRequests(opts RequestsOpts) *Requests {
	return &Requests{
		label: opts.Label,
		total: prometheus.NewCounterVec(prometheus.CounterOpts{Name: opts.Total, Help: opts.TotalHelp},
			[]string{opts.Label, "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: opts.Duration, Help: opts.DurationHelp, Buckets: opts.Buckets},
			[]string{opts.Label}),
	}
}

// Collectors are the two metrics, for a registry.
func (m *Requests) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.total, m.duration}
}

// Register registers the two metrics with reg.
func (m *Requests) Register(reg prometheus.Registerer) error {
	for _, c := range m.Collectors() {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

type requestLabelKey struct{}

// Instrument counts and times every request to h, labelled with what
// labelOf says of it; labelOf sees the request before h does.
func (m *Requests) Instrument(h http.Handler, labelOf func(*http.Request) string) http.Handler {
	fromCtx := promhttp.WithLabelFromCtx(m.label, func(ctx context.Context) string {
		v, _ := ctx.Value(requestLabelKey{}).(string)
		return v
	})
	h = promhttp.InstrumentHandlerDuration(m.duration, h, fromCtx)
	h = promhttp.InstrumentHandlerCounter(m.total, h, fromCtx)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestLabelKey{}, labelOf(r))))
	})
}

// UnmatchedRoute is the route label of a request no pattern of the mux
// matches.
const UnmatchedRoute = "other"

// Route labels a request with the pattern of mux that serves it ("PUT
// /v1/instances/{id}"), or UnmatchedRoute: never the raw path.
func Route(mux *http.ServeMux) func(*http.Request) string {
	return func(r *http.Request) string {
		if _, pattern := mux.Handler(r); pattern != "" {
			return pattern
		}
		return UnmatchedRoute
	}
}
