package dedicatedvm_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/systemtest"
)

// startSystem starts a broker with n dedicated nodes and no shared VM load.
func startSystem(n int) *systemtest.System {
	dir := GinkgoT().TempDir()
	sys, err := systemtest.Start(bins, dir, systemtest.Options{Nodes: n})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(sys.Stop)
	return sys
}

// osbCall sends one OSB request as Cloud Controller would and returns the
// status and decoded body.
func osbCall(sys *systemtest.System, method, path string, body any) (int, map[string]any) {
	var r io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		Expect(err).NotTo(HaveOccurred())
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, sys.BrokerURL+path, r)
	Expect(err).NotTo(HaveOccurred())
	req.SetBasicAuth(sys.Username, sys.Password)
	req.Header.Set("X-Broker-API-Version", "2.17")
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 2 * time.Minute}).Do(req)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	out := map[string]any{}
	data, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(data, &out)
	return resp.StatusCode, out
}

func provision(sys *systemtest.System, id string, params map[string]any) (int, map[string]any) {
	body := map[string]any{
		"service_id": systemtest.ServiceID, "plan_id": systemtest.DedicatedPlanID,
		"organization_guid": "org", "space_guid": "space",
	}
	if params != nil {
		body["parameters"] = params
	}
	return osbCall(sys, "PUT", "/v2/service_instances/"+id+"?accepts_incomplete=true", body)
}

// deprovision deletes an instance and, when the broker answers 202, polls
// last_operation until it is gone, as Cloud Controller does.
func deprovision(sys *systemtest.System, id string) int {
	q := fmt.Sprintf("?service_id=%s&plan_id=%s&accepts_incomplete=true", systemtest.ServiceID, systemtest.DedicatedPlanID)
	code, _ := osbCall(sys, "DELETE", "/v2/service_instances/"+id+q, nil)
	if code != http.StatusAccepted {
		return code
	}
	Eventually(func() int {
		c, _ := osbCall(sys, "GET", "/v2/service_instances/"+id+"/last_operation?operation=delete", nil)
		return c
	}).WithTimeout(time.Minute).WithPolling(50 * time.Millisecond).Should(Equal(http.StatusGone))
	return http.StatusOK
}

func bind(sys *systemtest.System, id, bindingID string) (int, map[string]any) {
	return osbCall(sys, "PUT", "/v2/service_instances/"+id+"/service_bindings/"+bindingID, map[string]any{
		"service_id": systemtest.ServiceID, "plan_id": systemtest.DedicatedPlanID, "app_guid": "app-" + bindingID,
	})
}

func client(creds map[string]any) *redis.Client {
	opt, err := redis.ParseURL(creds["uri"].(string))
	Expect(err).NotTo(HaveOccurred())
	c := redis.NewClient(opt)
	DeferCleanup(c.Close)
	return c
}

func credentials(body map[string]any) map[string]any {
	c, ok := body["credentials"].(map[string]any)
	Expect(ok).To(BeTrue(), "no credentials in %v", body)
	return c
}

func pool(sys *systemtest.System) map[string]map[string]any {
	req, err := http.NewRequest("GET", sys.BrokerURL+"/admin/v1/pool", nil)
	Expect(err).NotTo(HaveOccurred())
	req.SetBasicAuth(sys.Username, sys.Password)
	resp, err := http.DefaultClient.Do(req)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	Expect(resp.StatusCode).To(Equal(http.StatusOK))
	var out struct {
		Nodes []map[string]any `json:"nodes"`
	}
	Expect(json.NewDecoder(resp.Body).Decode(&out)).To(Succeed())
	m := map[string]map[string]any{}
	for _, n := range out.Nodes {
		m[n["id"].(string)] = n
	}
	return m
}

var ctx = context.Background()
