package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/rolodex/rolodex/connectors/clickhouse"
)

// The operator's view (deploy/grafana/dashboards, deploy/prometheus/alerts.yml)
// names metrics by string: these must be ones Rolodex exports.
const (
	dashboardsDir = "../../deploy/grafana/dashboards"
	alertRules    = "../../deploy/prometheus/alerts.yml"
)

// notYetSampled are label vectors the traffic of TestDashboardAndAlertMetrics
// does not reach (a merge protection refusal, a rule failing at run time, a
// bounce, a skipped record, ...): registered, but without a child, so
// /metrics does not list them. Each must still be a name a non-test Go file
// of Rolodex registers (checked below), and nothing else may be missing.
var notYetSampled = map[string]bool{
	"rolodex_identity_protection_refusals_total":    true,
	"rolodex_tags_rule_errors_total":                true,
	"rolodex_routing_rule_errors_total":             true,
	"rolodex_routing_skipped_records_total":         true,
	"rolodex_routing_feedback_total":                true,
	"rolodex_lifecycle_invalid_transitions_total":   true,
	"rolodex_lifecycle_invalidated_addresses_total": true,
	"rolodex_lifecycle_consent_revoked_total":       true,
	"rolodex_lifecycle_replayed_total":              true,
	// Fan-out: no event of this test carries a topic, so these have no
	// child yet (rolodex_identity_fanout_records_total has: the merge of
	// ev-1's email and phone writes an absorbed record).
	"rolodex_fanout_events_total":               true,
	"rolodex_fanout_skipped_total":              true,
	"rolodex_fanout_invalid_records_total":      true,
	"rolodex_fanout_directory_skipped_total":    true,
	"rolodex_fanout_directory_changes_total":    true,
	"rolodex_fanout_directory_broadcasts_total": true,
	"rolodex_fanout_deliveries_total":           true,
	// No replay is requested in that traffic.
	"rolodex_fanout_replays_total": true,
	// Fan-out delivery: no delivery record without topic events.
	"rolodex_fanout_webhook_attempts_total":   true,
	"rolodex_fanout_webhook_deliveries_total": true,
	"rolodex_fanout_webhook_skipped_total":    true,
	"rolodex_fanout_kafka_deliveries_total":   true,
	"rolodex_fanout_kafka_skipped_total":      true,
}

// lagGroups are the consumer groups of dev mode with the config of
// TestDashboardAndAlertMetrics (all but the sink's, which dev runs only
// with --clickhouse).
var lagGroups = []string{
	"rolodex-ingest-kafka", "rolodex-identity", "rolodex-tags", "rolodex-messages-router", "rolodex-recipients", "rolodex-lifecycle",
	"rolodex-routing", "rolodex-routing-router", "rolodex-lead-delivery", "rolodex-webhook-dealer",
	"rolodex-fanout", "rolodex-fanout-directory", "rolodex-fanout-replay", "rolodex-fanout-kafka", "rolodex-fanout-webhooks",
}

var metricName = regexp.MustCompile(`rolodex_[a-z0-9_]+`)

// operatorMetrics returns every rolodex_* name the Prometheus queries of the
// dashboards and the expressions of the alert rules use, with where.
func operatorMetrics(t *testing.T) map[string][]string {
	t.Helper()
	used := map[string][]string{}
	add := func(where, expr string) {
		for _, m := range metricName.FindAllString(expr, -1) {
			if !slices.Contains(used[m], where) {
				used[m] = append(used[m], where)
			}
		}
	}
	files, err := filepath.Glob(filepath.Join(dashboardsDir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards in %s: %v", dashboardsDir, err)
	}
	type panel struct {
		Title      string `json:"title"`
		Datasource struct {
			Type string `json:"type"`
		} `json:"datasource"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"`
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var db struct {
			Panels []panel `json:"panels"`
		}
		if err := json.Unmarshal(raw, &db); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, p := range db.Panels {
			if p.Datasource.Type != "prometheus" {
				continue // the reports dashboard's ClickHouse queries
			}
			for _, tg := range p.Targets {
				add(filepath.Base(f)+": "+p.Title, tg.Expr)
			}
		}
	}
	raw, err := os.ReadFile(alertRules)
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatalf("%s: %v", alertRules, err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			add("alert "+r.Alert, r.Expr)
		}
	}
	return used
}

// exposed returns the metric names of a Prometheus text exposition: the
// samples' names (histograms as _bucket, _sum and _count) and the families.
func exposed(text string) map[string]bool {
	names := map[string]bool{}
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			names[strings.Fields(rest)[0]] = true
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names
}

// sinkMetrics are the names the ClickHouse sink registers (dev runs it only
// with --clickhouse): its metrics on a registry of their own, every vector
// given a child.
func sinkMetrics(t *testing.T) map[string]bool {
	t.Helper()
	reg := prometheus.NewRegistry()
	m := clickhouse.NewMetrics(reg)
	m.Undecodable.WithLabelValues("rolodex.events")
	m.BatchDuration.Observe(0)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
		if mf.GetType().String() == "HISTOGRAM" {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[mf.GetName()+s] = true
			}
		}
	}
	return names
}

// registeredInSource reports whether a non-test Go file of the repository
// names metric as a string literal.
func registeredInSource(t *testing.T, metric string) bool {
	t.Helper()
	found := false
	err := filepath.WalkDir("../..", func(p string, d os.DirEntry, err error) error {
		if err != nil || found {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == ".cache") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		found = strings.Contains(string(raw), `"`+metric+`"`)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// TestDashboardAndAlertMetrics runs dev mode with a webhook dealer, sends
// events, a message, a bad event and a lead, and requires every metric a
// dashboard or an alert rule names to be on /metrics (or the sink's, or a
// documented vector without a child yet).
func TestDashboardAndAlertMetrics(t *testing.T) {
	used := operatorMetrics(t)
	for name := range notYetSampled {
		if !registeredInSource(t, name) {
			t.Errorf("notYetSampled lists %s, which no Go file of Rolodex registers", name)
		}
	}
	sink := sinkMetrics(t)

	crm := newDealerCRM(t, crmAnswer{status: 500}) // then 200: a retry
	cfg := fmt.Sprintf(`routing:
  tick: 200ms
  delivery: {retry_schedule: [0s, 200ms, 200ms]}
partners:
  - name: demo
    tenant: demo
    keys: [{key: demo-key, scopes: [events:write, profiles:read, profiles:write, admin]}]
  - name: dealer
    tenant: demo
    keys: [{key: dealer-key, scopes: [events:write]}]
    delivery: {webhook: {url: %q, secret: %q, timeout: 1s}}
`, crm.srv.URL, crm.secret)
	path := filepath.Join(t.TempDir(), "rolodex.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	api, _ := startDevArgs(t, "--config", path)

	post := func(body string, want int) {
		t.Helper()
		if code, ans := httpAs(t, "demo-key", "POST", api+"/v1/events", body); code != want {
			t.Fatalf("POST /v1/events %s: %d %v, want %d", body, code, ans, want)
		}
	}
	if code, ans := httpAs(t, "demo-key", "PUT", api+"/v1/routing/rules",
		`{"rules":[{"id":"all","condition":"true","strategy":"first","pool":[{"partner":"dealer"}],"sla":"1h"}]}`); code != 200 {
		t.Fatalf("PUT /v1/routing/rules: %d %v", code, ans)
	}
	post(`{"id":"ev-1","type":"profile.updated","identifiers":{"email":"ana@example.com","phone":"+5511987654321"},"traits":{"name":"Ana"}}`, 202)
	post(`{"id":"ev-2","type":"profile.updated","identifiers":{"email":"bob@example.com","phone":"not a phone"}}`, 202)
	post(`{"id":"m1","type":"message.sent","identifiers":{"email":"ana@example.com"},"properties":{"message_id":"camp-1/ana","channel":"email"}}`, 202)
	post(`{"id":"m1-open","type":"message.opened","identifiers":{"email":"ana@example.com"},"properties":{"message_id":"camp-1/ana"}}`, 202)
	post(`{"id":"t1","type":"tag.added","identifiers":{"email":"ana@example.com"},"properties":{"tag":"vip"}}`, 202)
	post(`{"id":"bad","type":""}`, 400)

	var missing []string
	var text string
	deadline := time.Now().Add(90 * time.Second)
	for {
		// A new lead each round (the rules may reach routing after the
		// first): routing decides, delivery dispatches and posts.
		post(fmt.Sprintf(`{"id":"ev-lead-%d","type":"lead.created","identifiers":{"email":"ana@example.com"},"properties":{"lead_id":"L%d"}}`, time.Now().UnixNano(), time.Now().UnixNano()), 202)
		res, err := http.Get(api + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(res.Body)
		res.Body.Close()
		text = string(raw)
		have := exposed(text)
		missing = missing[:0]
		for name := range used {
			if !have[name] && !sink[name] && !notYetSampled[name] {
				missing = append(missing, name+": used by "+strings.Join(used[name], "; ")+", but not on dev's /metrics (nor the sink's, nor notYetSampled)")
			}
		}
		// The lag in seconds is measured for every group dev runs.
		for _, group := range lagGroups {
			if !strings.Contains(text, `rolodex_consumer_lag_seconds{group="`+group+`"`) {
				missing = append(missing, "no rolodex_consumer_lag_seconds for group "+group)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Error(m)
	}
	// A vector the traffic did reach no longer belongs in the list.
	have := exposed(text)
	for name := range notYetSampled {
		if have[name] {
			t.Errorf("%s is on /metrics now: take it out of notYetSampled", name)
		}
	}
}
