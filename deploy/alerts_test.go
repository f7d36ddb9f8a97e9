package deploy

// The alert rules (deploy/prometheus/alerts.yml) checked by Prometheus's own
// promtool: `promtool check rules` and the unit tests of
// deploy/prometheus/alerts_test.yml (`promtool test rules`). Then what
// promtool does not know: every alert names its runbook section, that
// section exists in docs/operations.md, and every alert has a test case
// where it fires and one where it does not.
//
// promtool comes from $ROLODEX_PROMTOOL (scripts/promtool env sets it;
// scripts/test does) or the PATH. Without it the test fails: the rules are
// not checked otherwise.

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

const (
	alertTestsPath = "deploy/prometheus/alerts_test.yml"
	runbookPath    = "docs/operations.md"
)

// promtool finds the promtool binary, or fails the test.
func promtool(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("ROLODEX_PROMTOOL"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("ROLODEX_PROMTOOL=%s: %v", p, err)
		}
		return p
	}
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal(`promtool not found: run eval "$(./scripts/promtool env)" (sets ROLODEX_PROMTOOL) or put promtool on the PATH`)
	}
	return p
}

func runPromtool(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command(promtool(t), args...)
	cmd.Dir = repoRoot
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	t.Logf("promtool %s:\n%s", strings.Join(args, " "), out.String())
}

func TestAlertRulesPromtool(t *testing.T) {
	t.Run("check rules", func(t *testing.T) { runPromtool(t, "check", "rules", alertRulesPath) })
	t.Run("test rules", func(t *testing.T) { runPromtool(t, "test", "rules", alertTestsPath) })
}

type alertRules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

type alertTests struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		AlertRuleTest []struct {
			Alertname string `yaml:"alertname"`
			ExpAlerts []any  `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// readAlertRules parses alerts.yml.
func readAlertRules(t *testing.T) alertRules {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot, alertRulesPath))
	if err != nil {
		t.Fatal(err)
	}
	var rules alertRules
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatalf("%s: %v", alertRulesPath, err)
	}
	return rules
}

// headingAnchors returns the anchors GitHub gives the headings of a
// Markdown file: lower case, spaces to hyphens, punctuation dropped.
func headingAnchors(md string) map[string]bool {
	anchors := map[string]bool{}
	drop := regexp.MustCompile(`[^a-z0-9 _-]`)
	for _, line := range strings.Split(md, "\n") {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		h := strings.TrimSpace(strings.TrimLeft(line, "#"))
		h = drop.ReplaceAllString(strings.ToLower(h), "")
		anchors[strings.ReplaceAll(h, " ", "-")] = true
	}
	return anchors
}

func TestAlertRulesRunbookAndCases(t *testing.T) {
	rules := readAlertRules(t)
	md, err := os.ReadFile(filepath.Join(repoRoot, runbookPath))
	if err != nil {
		t.Fatal(err)
	}
	anchors := headingAnchors(string(md))

	raw, err := os.ReadFile(filepath.Join(repoRoot, alertTestsPath))
	if err != nil {
		t.Fatal(err)
	}
	var tests alertTests
	if err := yaml.Unmarshal(raw, &tests); err != nil {
		t.Fatalf("%s: %v", alertTestsPath, err)
	}
	if len(tests.RuleFiles) != 1 || tests.RuleFiles[0] != filepath.Base(alertRulesPath) {
		t.Errorf("%s: rule_files %v, want [%s]", alertTestsPath, tests.RuleFiles, filepath.Base(alertRulesPath))
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}

	var errs []error
	seen := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			if seen[r.Alert] {
				errs = append(errs, errors.New(r.Alert+": alert defined twice"))
			}
			seen[r.Alert] = true
			if sev := r.Labels["severity"]; sev != "warning" && sev != "critical" {
				errs = append(errs, errors.New(r.Alert+`: want label severity "warning" or "critical", not "`+sev+`"`))
			}
			if r.Annotations["summary"] == "" {
				errs = append(errs, errors.New(r.Alert+": no summary annotation"))
			}
			anchor, ok := strings.CutPrefix(r.Annotations["runbook"], runbookPath+"#")
			if !ok {
				errs = append(errs, errors.New(r.Alert+": runbook annotation "+r.Annotations["runbook"]+" is not "+runbookPath+"#<section>"))
			} else if !anchors[anchor] {
				errs = append(errs, errors.New(r.Alert+": "+runbookPath+" has no section #"+anchor))
			}
			if !fires[r.Alert] {
				errs = append(errs, errors.New(r.Alert+": "+alertTestsPath+" has no case where it fires"))
			}
			if !quiet[r.Alert] {
				errs = append(errs, errors.New(r.Alert+": "+alertTestsPath+" has no case where it stays quiet"))
			}
		}
	}
	// The alerts issue 19 asks for, by name.
	for _, want := range []string{
		"RolodexConsumerLagGrowing", "RolodexConsumerLagHigh", "RolodexDeadLettersAboveNormal", "RolodexSinkRetrying",
		"RolodexConsumerGroupWithoutMembers", "RolodexWebhookGone", "RolodexWebhookDeliveriesFailing",
		"RolodexWebhookQueueGrowing", "RolodexSinkBehind",
	} {
		if !seen[want] {
			errs = append(errs, errors.New("no alert "+want))
		}
	}
	for name := range fires {
		if !seen[name] {
			errs = append(errs, errors.New(alertTestsPath+": tests alert "+name+", which alerts.yml does not define"))
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Error(err)
	}
}
