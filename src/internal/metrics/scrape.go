package metrics

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Scrape fetches url as a scraper does, with the client TLS config given
// (its client certificate and the server's CA), and parses the text
// exposition into metric families by name.
func Scrape(ctx context.Context, url string, tlsConf *tls.Config) (map[string]*dto.MetricFamily, error) {
	code, body, err := Get(ctx, url, tlsConf)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("scraping %s: %d %s: %.512s", url, code, http.StatusText(code), body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(bytes.NewReader(body))
}

// Get fetches url as a scraper does and returns the status and body
// whatever the status: what a test of the endpoint's refusals reads.
func Get(ctx context.Context, url string, tlsConf *tls.Config) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Accept", "text/plain")
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConf}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// Value scrapes url and finds the one series of name whose labels include
// the pairs given, as Find does; an error says which failed. Tests poll it.
func Value(ctx context.Context, url string, tlsConf *tls.Config, name string, labels ...string) (float64, error) {
	fams, err := Scrape(ctx, url, tlsConf)
	if err != nil {
		return 0, err
	}
	v, ok := Find(fams, name, labels...)
	if !ok {
		return 0, fmt.Errorf("not exactly one series %s%v", name, labels)
	}
	return v, nil
}

// Find is the value of the series of name whose labels include the pairs
// given (name, value, name, value...): a gauge's or counter's value, a
// histogram's sample count. It reports false when no series matches and
// when more than one does.
func Find(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
	var found []float64
next:
	for _, m := range f.Metric {
		got := map[string]string{}
		for _, l := range m.Label {
			got[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if got[labels[i]] != labels[i+1] {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			found = append(found, m.Gauge.GetValue())
		case m.Counter != nil:
			found = append(found, m.Counter.GetValue())
		case m.Histogram != nil:
			found = append(found, float64(m.Histogram.GetSampleCount()))
		case m.Untyped != nil:
			found = append(found, m.Untyped.GetValue())
		}
	}
	if len(found) != 1 {
		return 0, false
	}
	return found[0], true
}
