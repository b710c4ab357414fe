package spec

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"

	"github.com/cf-redis/redis-for-cf/src/testkit/redistest"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
	"github.com/cf-redis/redis-for-cf/src/testkit/tlstest"
)

// The alert rules and the dashboard in manifests/monitoring: promtool checks
// and unit-tests the rules, and every metric name they use must be one the
// programs serve, as a real scrape of the built broker, shared agent and
// dedicated node shows.
var _ = Describe("manifests/monitoring", func() {
	rules := filepath.Join(root, "manifests/monitoring/redis-for-cf.rules.yml")
	tests := filepath.Join(root, "manifests/monitoring/redis-for-cf.rules.test.yml")
	dashboard := filepath.Join(root, "manifests/monitoring/redis-for-cf.dashboard.json")

	It("passes promtool check rules and promtool test rules", func() {
		promtool := promtoolBinary()
		out, err := exec.Command(promtool, "check", "rules", rules).CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "%s", out)
		Expect(string(out)).To(ContainSubstring("SUCCESS"))
		out, err = exec.Command(promtool, "test", "rules", tests).CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "%s", out)
	})

	It("unit-tests every alert firing and not firing", func() {
		alerts, _ := alertRules(rules)
		var t struct {
			Tests []struct {
				AlertRuleTest []struct {
					Alertname string `yaml:"alertname"`
					ExpAlerts []any  `yaml:"exp_alerts"`
				} `yaml:"alert_rule_test"`
			} `yaml:"tests"`
		}
		Expect(yaml.Unmarshal(must(os.ReadFile(tests)), &t)).To(Succeed())
		fires, silent := map[string]bool{}, map[string]bool{}
		for _, tc := range t.Tests {
			for _, a := range tc.AlertRuleTest {
				if len(a.ExpAlerts) > 0 {
					fires[a.Alertname] = true
				} else {
					silent[a.Alertname] = true
				}
			}
		}
		for _, a := range alerts {
			Expect(fires).To(HaveKey(a), "a test where %s fires", a)
			Expect(silent).To(HaveKey(a), "a test where %s does not fire", a)
		}
	})

	It("uses only metric names the broker, the shared agent and the node serve (a real scrape of each)", func(ctx SpecContext) {
		_, exprs := alertRules(rules)
		used := usedMetrics(append(exprs, dashboardExprs(dashboard)...))
		served := scrapeSystem(ctx)
		var missing []string
		for name, exprs := range used {
			if !served[name] {
				missing = append(missing, fmt.Sprintf("%s (in %q)", name, exprs[0]))
			}
		}
		slices.Sort(missing)
		Expect(missing).To(BeEmpty(), "metric names no program serves")
	})
})

// promtoolBinary is the promtool scripts/setup builds into .local/bin from
// the version src/tools/monitoring/go.mod pins.
func promtoolBinary() string {
	GinkgoHelper()
	promtool, err := filepath.Abs(filepath.Join(root, ".local/bin/promtool"))
	Expect(err).NotTo(HaveOccurred())
	var version string
	for line := range strings.Lines(string(must(os.ReadFile(filepath.Join(root, "src/tools/monitoring/go.mod"))))) {
		f := strings.Fields(line)
		if i := slices.Index(f, "github.com/prometheus/prometheus"); i >= 0 && i+1 < len(f) {
			version = f[i+1]
		}
	}
	Expect(version).NotTo(BeEmpty(), "src/tools/monitoring/go.mod pins github.com/prometheus/prometheus")
	out, err := exec.Command("go", "version", "-m", promtool).CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "promtool is not installed: run scripts/setup\n%s", out)
	Expect(string(out)).To(MatchRegexp(`\sgithub.com/prometheus/prometheus\s+`+regexp.QuoteMeta(version)+`\s`), "%s is promtool %s", promtool, version)
	return promtool
}

type ruleFile struct {
	Groups []struct {
		Rules []struct {
			Alert string `yaml:"alert"`
			Expr  string `yaml:"expr"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func readRules(path string) ruleFile {
	GinkgoHelper()
	var f ruleFile
	Expect(yaml.Unmarshal(must(os.ReadFile(path)), &f)).To(Succeed())
	return f
}

// alertRules returns the alerts of the rules file at path, and their
// expressions.
func alertRules(path string) (alerts, exprs []string) {
	GinkgoHelper()
	for _, g := range readRules(path).Groups {
		for _, r := range g.Rules {
			alerts, exprs = append(alerts, r.Alert), append(exprs, r.Expr)
		}
	}
	Expect(alerts).NotTo(BeEmpty())
	return alerts, exprs
}

// grafanaVars are the dashboard's variables as a PromQL parser can take
// them: a value that selects anything, a rate window.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "${plan}", ".*", "$plan", ".*",
	"${service_instance_id}", ".*", "$service_instance_id", ".*")

// labelValues is a Grafana variable query: label_values(SELECTOR, LABEL).
var labelValues = regexp.MustCompile(`^label_values\((.*),\s*[a-zA-Z_]+\)$`)

// dashboardExprs are the PromQL of every panel's targets and of every
// variable's label_values query.
func dashboardExprs(path string) []string {
	GinkgoHelper()
	var d struct {
		Panels []struct {
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	Expect(json.Unmarshal(must(os.ReadFile(path)), &d)).To(Succeed())
	var out []string
	for _, p := range d.Panels {
		for _, t := range p.Targets {
			Expect(t.Expr).NotTo(BeEmpty())
			out = append(out, grafanaVars.Replace(t.Expr))
		}
	}
	vars := 0
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(map[string]any)["query"].(string)
		m := labelValues.FindStringSubmatch(q)
		Expect(m).NotTo(BeNil(), "variable query %q is label_values(SELECTOR, LABEL)", q)
		out = append(out, grafanaVars.Replace(m[1]))
		vars++
	}
	Expect(vars).To(Equal(2), "the plan and service_instance_id variables")
	return out
}

// usedMetrics maps each metric name the expressions use to the expressions
// using it, as src/tools/monitoring/cmd/promql-metrics reads them with
// Prometheus's own PromQL parser.
func usedMetrics(exprs []string) map[string][]string {
	GinkgoHelper()
	bin := filepath.Join(GinkgoT().TempDir(), "promql-metrics")
	build := exec.Command("go", "build", "-o", bin, "./cmd/promql-metrics")
	build.Dir = filepath.Join(root, "src/tools/monitoring")
	out, err := build.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "%s", out)
	cmd := exec.Command(bin)
	cmd.Stdin = bytes.NewReader(must(json.Marshal(exprs)))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err = cmd.Output()
	Expect(err).NotTo(HaveOccurred(), "promql-metrics: %s", stderr.String())
	var results []struct {
		Expr    string   `json:"expr"`
		Metrics []string `json:"metrics"`
	}
	Expect(json.Unmarshal(out, &results)).To(Succeed())
	Expect(results).To(HaveLen(len(exprs)))
	used := map[string][]string{}
	for _, r := range results {
		Expect(r.Metrics).NotTo(BeEmpty(), "%q uses no metric", r.Expr)
		for _, m := range r.Metrics {
			used[m] = append(used[m], r.Expr)
		}
	}
	return used
}

// promSynthetic are the series Prometheus makes of every scrape itself.
var promSynthetic = []string{"up", "scrape_duration_seconds", "scrape_samples_scraped"}

// scrapeSystem starts the built programs (a broker, a shared agent and a
// dedicated node, each serving its metrics over HTTPS with a certificate of
// a metrics CA), provisions an instance of each plan, makes one shared
// instance follow the other and lets scheduled backups run, so that every
// per-instance series exists, then scrapes every program and returns the
// names of the series it serves (a histogram's _bucket, _sum and _count),
// with Prometheus's own synthetic series.
func scrapeSystem(ctx context.Context) map[string]bool {
	GinkgoHelper()
	dir := GinkgoT().TempDir()
	DeferCleanup(systemtest.KillStrays, dir)
	bins, err := systemtest.Build(filepath.Join(dir, "bin"), false)
	Expect(err).NotTo(HaveOccurred())
	ca, err := tlstest.NewCA("metrics")
	Expect(err).NotTo(HaveOccurred())
	certDir := filepath.Join(dir, "metrics")
	Expect(os.MkdirAll(certDir, 0o700)).To(Succeed())
	cert, key, caFile, err := ca.RedisFiles(certDir, "127.0.0.1")
	Expect(err).NotTo(HaveOccurred())
	port, err := redistest.FreePort()
	Expect(err).NotTo(HaveOccurred())
	brokerMetrics := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	opts := systemtest.Options{
		Nodes:     1,
		MetricsCA: ca, // the shared agent's and the node's endpoints
		BrokerConfig: map[string]any{"metrics": map[string]any{
			"listen": brokerMetrics, "cert_file": cert, "key_file": key, "ca_file": caFile}},
		// Scheduled backups to a folder, often, so that the backup series
		// exist within the spec.
		AgentConfig: map[string]any{"backups": map[string]any{
			"schedule":    "@every 2s",
			"destination": map[string]any{"local": map[string]any{"path": filepath.Join(dir, "backups")}},
			"retention":   map[string]any{"keep_newest": 1},
		}},
	}
	for _, d := range []string{"backups", "system"} {
		Expect(os.MkdirAll(filepath.Join(dir, d), 0o700)).To(Succeed())
	}
	sys, err := systemtest.Start(bins, filepath.Join(dir, "system"), opts)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(sys.Stop)

	leader, follower, dedicated := "monitoring-leader", "monitoring-follower", "monitoring-dedicated"
	osbProvision(sys, leader, systemtest.PlanID)
	osbProvision(sys, follower, systemtest.PlanID)
	osbProvision(sys, dedicated, systemtest.DedicatedPlanID)
	code, body, err := sys.OSB("PATCH", "/v2/service_instances/"+follower+"?accepts_incomplete=true", map[string]any{
		"service_id": systemtest.ServiceID, "parameters": map[string]any{"replica_of": leader}})
	Expect(err).NotTo(HaveOccurred())
	Expect(code).To(BeElementOf(http.StatusOK, http.StatusAccepted), "%v", body)

	scraper := ca.ClientTLS(GinkgoT(), certDir, "scraper")
	targets := map[string]string{
		"redis-broker":       "https://" + brokerMetrics + "/metrics",
		"redis-shared-agent": sys.Agents[0].MetricsURL,
		"redis-node":         sys.Nodes[0].MetricsURL,
	}
	served := map[string]bool{}
	for _, name := range promSynthetic {
		served[name] = true
	}
	// Per-instance series appear with an agent's next background sweep,
	// backups with the schedule's next run.
	Eventually(func(g Gomega) {
		for job, url := range targets {
			fams, err := scrape(ctx, url, scraper)
			g.Expect(err).NotTo(HaveOccurred(), job)
			for name, f := range fams {
				served[name] = true
				switch f.GetType() {
				case dto.MetricType_HISTOGRAM, dto.MetricType_SUMMARY:
					served[name+"_sum"], served[name+"_count"] = true, true
					if f.GetType() == dto.MetricType_HISTOGRAM {
						served[name+"_bucket"] = true
					}
				}
			}
		}
		// One series of each program and of each kind of instance the
		// system holds: a follower, a backed-up instance, a node.
		for _, name := range []string{"redis_broker_instances", "redis_master_link_up", "redis_for_cf_last_backup_timestamp_seconds", "redis_for_cf_node_state", "redis_for_cf_agent_ports_free"} {
			g.Expect(served).To(HaveKey(name))
		}
	}).WithContext(ctx).WithTimeout(2 * time.Minute).WithPolling(2 * time.Second).Should(Succeed())
	return served
}

// osbProvision creates an instance of plan as Cloud Controller does, polling
// last_operation when the broker works asynchronously.
func osbProvision(sys *systemtest.System, id, plan string) {
	GinkgoHelper()
	code, body, err := sys.OSB("PUT", "/v2/service_instances/"+id+"?accepts_incomplete=true", map[string]any{
		"service_id": systemtest.ServiceID, "plan_id": plan, "organization_guid": "org", "space_guid": "space"})
	Expect(err).NotTo(HaveOccurred())
	Expect(code).To(BeElementOf(http.StatusCreated, http.StatusAccepted), "%v", body)
	if code == http.StatusAccepted {
		Eventually(func() any {
			_, b, _ := sys.OSB("GET", "/v2/service_instances/"+id+"/last_operation", nil)
			return b["state"]
		}).WithTimeout(time.Minute).Should(Equal("succeeded"))
	}
}

func scrape(ctx context.Context, url string, client *tls.Config) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain")
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: client}}
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(resp.Body)
}
