package systemtest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"time"
)

// osbHTTP opens a connection per request: tests kill and restart brokers,
// and a kept-alive connection to a dead one would fail a request the new
// one would answer.
var osbHTTP = &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{DisableKeepAlives: true}}

// OSB sends one raw OSB request to the broker as Cloud Controller would
// (basic auth, API version 2.17, body as JSON when not nil) and returns the
// status and the decoded JSON body (empty when it is not a JSON object),
// or the error of a request that got no answer. Unlike Client, it sends
// whatever a test wants, and shows every status as it came.
func (s *System) OSB(method, path string, body any) (int, map[string]any, error) {
	var r io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, s.BrokerURL+path, r)
	if err != nil {
		return 0, nil, err
	}
	req.SetBasicAuth(s.Username, s.Password)
	req.Header.Set("X-Broker-API-Version", "2.17")
	req.Header.Set("Content-Type", "application/json")
	resp, err := osbHTTP.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, err
	}
	out := map[string]any{}
	_ = json.Unmarshal(data, &out)
	return resp.StatusCode, out, nil
}
