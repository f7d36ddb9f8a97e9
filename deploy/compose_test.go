package deploy

// Static checks of the docker-compose stack: docker-compose.yml, the
// Dockerfile and everything under deploy/. There is no Docker engine in CI,
// so these tests read the files and check that they agree with each other:
// service names, ports, listeners, mounts, scrape targets, dashboards.
//
// Every check reads through an fs.FS, so TestComposeChecksCatchBreakage can
// run the same checks on broken copies of the files and prove each one
// fails when it should.
//
// The package lives in deploy/, with most of the files it checks, and reads
// the repository root (repoRoot): every path in a check and in its messages
// is relative to the repository, as docker compose sees it. The file model
// is in model_test.go, the checks in checks_test.go.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"testing"
	"testing/fstest"
)

// repoRoot is the repository, seen from this folder (go test runs a
// package's tests in its folder).
const repoRoot = ".."

func TestCompose(t *testing.T) {
	s, err := loadStack(os.DirFS(repoRoot))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range stackChecks {
		t.Run(c.name, func(t *testing.T) {
			if err := c.check(s); err != nil {
				t.Error(err)
			}
		})
	}
}

// overlayFS serves replaced files from files and everything else from base.
type overlayFS struct {
	base  fs.FS
	files fstest.MapFS
}

func (o overlayFS) Open(name string) (fs.File, error) {
	if _, ok := o.files[name]; ok {
		return o.files.Open(name)
	}
	return o.base.Open(name)
}

// TestComposeChecksCatchBreakage breaks the real files one way at a time
// and requires the checks to notice, with an error that says what broke.
func TestComposeChecksCatchBreakage(t *testing.T) {
	tests := []struct {
		name     string
		file     string
		from, to string // replace the first from with to; from "" replaces the whole file
		want     string // a substring of the expected error
	}{
		{
			name: "alert rules not loaded",
			file: "deploy/prometheus/prometheus.yml",
			from: "  - /etc/prometheus/alerts.yml\n", to: "",
			want: "rule_files does not load deploy/prometheus/alerts.yml",
		},
		{
			name: "alert rules not mounted",
			file: composePath,
			from: "      - ./deploy/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro\n", to: "",
			want: "nothing is mounted at /etc/prometheus/alerts.yml",
		},
		{
			name: "misnamed service",
			file: composePath,
			from: "\n  rolodex-sink:\n", to: "\n  rolodex-snk:\n",
			want: `service "rolodex-sink" is missing`,
		},
		{
			name: "component in the wrong service",
			file: composePath,
			from: "      - run\n      - sink\n", to: "      - run\n      - api\n",
			want: `runs component "api"`,
		},
		{
			name: "command without run",
			file: composePath,
			from: "      - run\n      - ingest\n", to: "      - serve\n      - ingest\n",
			want: "want `run <component> ...`",
		},
		{
			name: "host broker address",
			file: composePath,
			from: "      - processors\n      - --brokers\n      - kafka:9092\n", to: "      - processors\n      - --brokers\n      - localhost:29092\n",
			want: `--brokers "localhost:29092"`,
		},
		{
			name: "kafka broker only",
			file: composePath,
			from: "KAFKA_PROCESS_ROLES: broker,controller", to: "KAFKA_PROCESS_ROLES: broker",
			want: `missing "controller"`,
		},
		{
			name: "zookeeper setting",
			file: composePath,
			from: "      KAFKA_NODE_ID: 1\n", to: "      KAFKA_NODE_ID: 1\n      KAFKA_ZOOKEEPER_CONNECT: zookeeper:2181\n",
			want: "ZooKeeper",
		},
		{
			name: "kafka not official image",
			file: composePath,
			from: "image: apache/kafka:", to: "image: bitnami/kafka:",
			want: "official apache/kafka",
		},
		{
			name: "kafka image of another version than the tests",
			file: composePath,
			from: "image: apache/kafka:4.4.0", to: "image: apache/kafka:4.1.0",
			want: "want apache/kafka:4.4.0",
		},
		{
			name: "tests pinned to another version than the image",
			file: "scripts/kafka",
			from: "KAFKA_VERSION=4.4.0", to: "KAFKA_VERSION=4.5.0",
			want: "want apache/kafka:4.5.0",
		},
		{
			name: "in-network listener not advertised",
			file: composePath,
			from: "PLAINTEXT://kafka:9092", to: "PLAINTEXT://localhost:9092",
			want: "does not advertise kafka:9092",
		},
		{
			name: "depends_on unknown service",
			file: composePath,
			from: "\n  clickhouse:\n    image:", to: "\n  ch:\n    image:",
			want: `depends on unknown service "clickhouse"`,
		},
		{
			name: "healthy condition without healthcheck",
			file: composePath,
			from: "      test: [\"CMD\", \"clickhouse-client\"", to: "      disable: true\n      test: [\"CMD\", \"clickhouse-client\"",
			want: `has no healthcheck`,
		},
		{
			name: "host port published twice",
			file: composePath,
			from: `"8081:8081"`, to: `"8080:8081"`,
			want: "published twice",
		},
		{
			name: "published port nobody listens on",
			file: composePath,
			from: `"8081:8081"`, to: `"8081:8082"`,
			want: "publishes container port 8082",
		},
		{
			name: "missing bind mount source",
			file: composePath,
			from: "./deploy/prometheus/prometheus.yml:", to: "./deploy/prometheus/missing.yml:",
			want: "does not exist",
		},
		{
			name: "config not mounted",
			file: composePath,
			from: "      - --config\n      - /etc/rolodex/config.yaml\n    ports:\n      - \"8080", to: "      - --config\n      - /etc/rolodex/other.yaml\n    ports:\n      - \"8080",
			want: "nothing is mounted at /etc/rolodex/other.yaml",
		},
		{
			name: "undeclared named volume",
			file: composePath,
			from: "\n  grafana-data:\n", to: "\n",
			want: `named volume "grafana-data" is not declared`,
		},
		{
			name: "listen port changed under prometheus",
			file: composePath,
			from: "      - 0.0.0.0:9100\n", to: "      - 0.0.0.0:9200\n",
			want: `serves metrics on port 9200`,
		},
		{
			name: "scrape target port",
			file: "deploy/prometheus/prometheus.yml",
			from: "rolodex-ingest:8080", to: "rolodex-ingest:9999",
			want: "scrapes rolodex-ingest:9999",
		},
		{
			name: "scrape target unknown service",
			file: "deploy/prometheus/prometheus.yml",
			from: `"rolodex-api:8081"`, to: `"rolodex-query:8081"`,
			want: "not a compose service",
		},
		{
			name: "component not scraped",
			file: "deploy/prometheus/prometheus.yml",
			from: `names: ["rolodex-sink"]`, to: `names: []`,
			want: `service "rolodex-sink" is not scraped`,
		},
		{
			name: "prometheus config does not parse",
			file: "deploy/prometheus/prometheus.yml",
			from: "scrape_configs:", to: "scrape_configs: [",
			want: "prometheus.yml",
		},
		{
			name: "dashboard does not parse",
			file: "deploy/grafana/dashboards/ingest.json",
			from: "", to: `{"title": "broken",`,
			want: "ingest.json",
		},
		{
			name: "dashboard without title",
			file: "deploy/grafana/dashboards/ingest.json",
			from: `"title": "Rolodex / Ingest"`, to: `"title": ""`,
			want: "no title",
		},
		{
			name: "dashboard without panels",
			file: "deploy/grafana/dashboards/ingest.json",
			from: "", to: `{"title": "empty", "uid": "empty", "schemaVersion": 39, "panels": []}`,
			want: "no panels",
		},
		{
			name: "dashboard unknown datasource",
			file: "deploy/grafana/dashboards/ingest.json",
			from: `"uid": "prometheus"`, to: `"uid": "prom"`,
			want: `datasource uid "prom" is not provisioned`,
		},
		{
			name: "dashboard provider path not mounted",
			file: "deploy/grafana/provisioning/dashboards/dashboards.yml",
			from: "path: /var/lib/grafana/dashboards", to: "path: /dashboards",
			want: "nothing is mounted at /dashboards",
		},
		{
			name: "datasources do not parse",
			file: "deploy/grafana/provisioning/datasources/datasources.yml",
			from: "datasources:", to: "datasources: [",
			want: "datasources.yml",
		},
		{
			name: "clickhouse plugin not installed",
			file: composePath,
			from: "GF_INSTALL_PLUGINS: grafana-clickhouse-datasource", to: "GF_INSTALL_PLUGINS: \"\"",
			want: "GF_INSTALL_PLUGINS",
		},
		{
			name: "partner without keys",
			file: rolodexConfig,
			from: "keys: [compose-local-key]", to: "keys: []",
			want: "partners[0].keys",
		},
		{
			name: "partner without tenant",
			file: rolodexConfig,
			from: "tenant: demo", to: "tenant: \"\"",
			want: "partners[0].tenant",
		},
		{
			name: "dockerfile runs as root",
			file: dockerfilePath,
			from: "USER nonroot:nonroot", to: "USER root",
			want: "must not run as root",
		},
		{
			name: "dockerfile entrypoint",
			file: dockerfilePath,
			from: `ENTRYPOINT ["/rolodex"]`, to: `ENTRYPOINT ["/bin/rolodex"]`,
			want: "ENTRYPOINT",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig, err := fs.ReadFile(os.DirFS(repoRoot), tt.file)
			if err != nil {
				t.Fatal(err)
			}
			broken := tt.to
			if tt.from != "" {
				if !strings.Contains(string(orig), tt.from) {
					t.Fatalf("%s no longer contains %q; update this case", tt.file, tt.from)
				}
				broken = strings.Replace(string(orig), tt.from, tt.to, 1)
			}
			fsys := overlayFS{
				base:  os.DirFS(repoRoot),
				files: fstest.MapFS{tt.file: {Data: []byte(broken), Mode: 0o644}},
			}
			s, err := loadStack(fsys)
			var errs []error
			if err != nil {
				errs = append(errs, err)
			} else {
				for _, c := range stackChecks {
					if err := c.check(s); err != nil {
						errs = append(errs, fmt.Errorf("%s: %w", c.name, err))
					}
				}
			}
			got := errors.Join(errs...)
			if got == nil {
				t.Fatalf("checks passed on a broken %s", tt.file)
			}
			if !strings.Contains(got.Error(), tt.want) {
				t.Errorf("errors do not mention %q:\n%v", tt.want, got)
			}
		})
	}
}
