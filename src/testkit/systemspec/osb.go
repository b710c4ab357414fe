package systemspec

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

// This file holds the OSB calls and node checks the dedicated suites share:
// each call plays Cloud Controller against a system's broker for one plan.

// OSB is systemtest.System.OSB for a broker that is expected to answer.
func OSB(sys *systemtest.System, method, path string, body any) (int, map[string]any) {
	GinkgoHelper()
	code, out, err := sys.OSB(method, path, body)
	Expect(err).NotTo(HaveOccurred())
	return code, out
}

// ProvisionBody is the body of a provision of plan with params (none when
// nil).
func ProvisionBody(plan string, params map[string]any) map[string]any {
	body := map[string]any{
		"service_id": systemtest.ServiceID, "plan_id": plan,
		"organization_guid": "org", "space_guid": "space",
	}
	if params != nil {
		body["parameters"] = params
	}
	return body
}

// ProvisionPath is the path of an asynchronous provision of instance id.
func ProvisionPath(id string) string {
	return "/v2/service_instances/" + id + "?accepts_incomplete=true"
}

// DeletePath is the path of an asynchronous delete of instance id of plan.
func DeletePath(id, plan string) string {
	return fmt.Sprintf("/v2/service_instances/%s?service_id=%s&plan_id=%s&accepts_incomplete=true", id, systemtest.ServiceID, plan)
}

// Provision provisions instance id of plan with params (none when nil) and
// returns the broker's answer.
func Provision(sys *systemtest.System, id, plan string, params map[string]any) (int, map[string]any) {
	GinkgoHelper()
	return OSB(sys, "PUT", ProvisionPath(id), ProvisionBody(plan, params))
}

// Deprovision deletes instance id of plan and, when the broker answers 202,
// polls last_operation until it is gone, as Cloud Controller does; a failed
// delete fails the spec. It returns the broker's answer, 200 for a delete
// that completed.
func Deprovision(sys *systemtest.System, id, plan string) int {
	GinkgoHelper()
	code, body := OSB(sys, "DELETE", DeletePath(id, plan), nil)
	if code != http.StatusAccepted {
		return code
	}
	Eventually(func() int {
		c, b := OSB(sys, "GET", "/v2/service_instances/"+id+"/last_operation?operation=delete", nil)
		Expect(b["state"]).NotTo(Equal("failed"), "the delete failed: %v", b)
		return c
	}).WithTimeout(2*time.Minute).WithPolling(50*time.Millisecond).Should(Equal(http.StatusGone), "%v", body)
	return http.StatusOK
}

// DeleteUntilGone plays Cloud Controller and its user deleting instance id
// of plan through failures: a delete without an answer, a 5xx or a failed
// last_operation is sent again, until the broker says the instance is gone.
func DeleteUntilGone(sys *systemtest.System, id, plan string) {
	GinkgoHelper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		Expect(time.Now()).To(BeTemporally("<", deadline), "instance %s is still not deleted", id)
		code, body, err := sys.OSB("DELETE", DeletePath(id, plan), nil)
		switch {
		case err != nil || code >= 500:
			time.Sleep(200 * time.Millisecond)
			continue
		case code == http.StatusOK || code == http.StatusGone:
			return
		}
		Expect(code).To(Equal(http.StatusAccepted), "delete of %s: %v", id, body)
		for {
			code, body, err := sys.OSB("GET", "/v2/service_instances/"+id+"/last_operation?operation=delete", nil)
			if err == nil && code == http.StatusGone {
				return
			}
			if err == nil && code == http.StatusOK && body["state"] == "failed" {
				// Sent again, as the user of `cf delete-service` would.
				break
			}
			Expect(time.Now()).To(BeTemporally("<", deadline), "instance %s is still being deleted: %d %v %v", id, code, body, err)
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// ProvisionUntilDone sends a provision of instance id of plan (without
// parameters) again until the broker says the instance exists, as Cloud
// Controller's retry of a request that got no answer does; any other 4xx
// fails the spec at once.
func ProvisionUntilDone(sys *systemtest.System, id, plan string) {
	GinkgoHelper()
	Eventually(func(g Gomega) int {
		code, body, err := sys.OSB("PUT", ProvisionPath(id), ProvisionBody(plan, nil))
		g.Expect(err).NotTo(HaveOccurred())
		if code < 500 && code != http.StatusCreated && code != http.StatusOK {
			StopTrying(fmt.Sprintf("a provision retry answered %d: %v", code, body)).Now()
		}
		return code
	}).WithTimeout(2 * time.Minute).WithPolling(200 * time.Millisecond).Should(BeElementOf(http.StatusCreated, http.StatusOK))
}

// Bind creates binding bindingID of instance id of plan, for the app
// "app-"+bindingID, and returns the broker's answer.
func Bind(sys *systemtest.System, id, bindingID, plan string) (int, map[string]any) {
	GinkgoHelper()
	return OSB(sys, "PUT", "/v2/service_instances/"+id+"/service_bindings/"+bindingID, map[string]any{
		"service_id": systemtest.ServiceID, "plan_id": plan, "app_guid": "app-" + bindingID,
	})
}

// Credentials are the credentials of a binding's body; a body without any
// fails the spec.
func Credentials(body map[string]any) map[string]any {
	GinkgoHelper()
	c, ok := body["credentials"].(map[string]any)
	Expect(ok).To(BeTrue(), "no credentials in %v", body)
	return c
}

// Attributes are the metadata attributes of a GET of an instance (nil when
// it has none).
func Attributes(body map[string]any) map[string]any {
	md, _ := body["metadata"].(map[string]any)
	attrs, _ := md["attributes"].(map[string]any)
	return attrs
}

// adminClient opens a connection per request: the broker is killed and
// restarted in the specs, and a kept-alive connection to the dead one would
// fail a request that the new one would answer.
var adminClient = &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{DisableKeepAlives: true}}

// PoolNodes returns GET /admin/v1/pool's nodes as the broker sent them.
func PoolNodes(sys *systemtest.System) []map[string]any {
	GinkgoHelper()
	req, err := http.NewRequest("GET", sys.BrokerURL+"/admin/v1/pool", nil)
	Expect(err).NotTo(HaveOccurred())
	req.SetBasicAuth(sys.Username, sys.Password)
	resp, err := adminClient.Do(req)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	Expect(resp.StatusCode).To(Equal(http.StatusOK))
	var out struct {
		Nodes []map[string]any `json:"nodes"`
	}
	Expect(json.NewDecoder(resp.Body).Decode(&out)).To(Succeed())
	return out.Nodes
}

// Pool returns PoolNodes by node id.
func Pool(sys *systemtest.System) map[string]map[string]any {
	GinkgoHelper()
	m := map[string]map[string]any{}
	for _, n := range PoolNodes(sys) {
		m[n["id"].(string)] = n
	}
	return m
}

// AgentState is what a node agent's state file says of its node.
type AgentState struct {
	State      string `json:"state"`
	InstanceID string `json:"instance_id"`
	ResetError string `json:"reset_error"`
}

// NodeAgentState reads node i's state file, as its agent last wrote it
// (atomically, so never half).
func NodeAgentState(sys *systemtest.System, i int) AgentState {
	GinkgoHelper()
	data, err := os.ReadFile(filepath.Join(sys.NodeDirs[i], "state.json"))
	Expect(err).NotTo(HaveOccurred())
	var s AgentState
	Expect(json.Unmarshal(data, &s)).To(Succeed())
	return s
}

// RedisPid reads the pid file node i's agent keeps for its redis-server.
func RedisPid(sys *systemtest.System, i int) int {
	GinkgoHelper()
	data, err := os.ReadFile(filepath.Join(sys.NodeDirs[i], "redis.pid"))
	Expect(err).NotTo(HaveOccurred())
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	Expect(err).NotTo(HaveOccurred())
	return pid
}

// Answer is what a request to the broker got: a status and body, or an
// error when no answer came.
type Answer struct {
	Code int
	Body map[string]any
	Err  error
}

// KillDuring sends a request (send, typically a sys.OSB call) in the
// background, kills victim with kill -9 after delay, and returns the
// request's answer, waiting up to a minute for it. It does not start victim
// again.
func KillDuring(victim *systemtest.Process, delay time.Duration, send func() (int, map[string]any, error)) Answer {
	GinkgoHelper()
	answered := make(chan Answer, 1)
	go func() {
		var a Answer
		a.Code, a.Body, a.Err = send()
		answered <- a
	}()
	time.Sleep(delay)
	victim.Kill9()
	var a Answer
	Eventually(answered).WithTimeout(time.Minute).Should(Receive(&a))
	return a
}
