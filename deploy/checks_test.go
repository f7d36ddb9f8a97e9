package deploy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Names and places the checks expect.
const (
	// inNetworkBrokers is the Kafka listener other containers use.
	inNetworkBrokers = "kafka:9092"
	// prometheusConfigPath is where the prom/prometheus image reads its
	// configuration unless --config.file says otherwise.
	prometheusConfigPath = "/etc/prometheus/prometheus.yml"
	// alertRulesPath is the alert rules file the compose Prometheus loads.
	alertRulesPath = "deploy/prometheus/alerts.yml"
	// grafanaProvisioningPath is where Grafana reads provisioning files.
	grafanaProvisioningPath = "/etc/grafana/provisioning"
	// minSchemaVersion is the oldest Grafana dashboard schema we accept.
	minSchemaVersion = 39
)

// requiredServices are the services the stack must define.
var requiredServices = []string{
	"kafka", "clickhouse", "prometheus", "grafana",
	"rolodex-ingest", "rolodex-processors", "rolodex-api", "rolodex-sink",
}

// componentDashboards are the uids of the dashboards, one per component.
var componentDashboards = []string{
	"rolodex-ingest", "rolodex-identity", "rolodex-tags", "rolodex-lifecycle",
	"rolodex-routing", "rolodex-delivery", "rolodex-sink",
}

// rolodexComponents maps each `rolodex run <component>` to its service.
var rolodexComponents = map[string]string{
	"ingest":     "rolodex-ingest",
	"processors": "rolodex-processors",
	"api":        "rolodex-api",
	"sink":       "rolodex-sink",
}

// ---------------------------------------------------------------------------
// Checks. Each returns every problem it finds, joined.

var stackChecks = []struct {
	name  string
	check func(*stack) error
}{
	{"services exist with image or build", checkServices},
	{"kafka runs KRaft", checkKafka},
	{"clickhouse", checkClickHouse},
	{"rolodex commands", checkRolodexCommands},
	{"depends_on targets", checkDependsOn},
	{"published ports", checkPorts},
	{"mounts", checkMounts},
	{"prometheus scrape targets", checkPrometheus},
	{"prometheus alert rules", checkPrometheusRules},
	{"grafana datasources", checkGrafanaDatasources},
	{"grafana dashboards", checkGrafanaDashboards},
	{"rolodex config", checkRolodexConfig},
	{"dockerfile", checkDockerfile},
}

func checkServices(s *stack) error {
	var errs []error
	for _, name := range requiredServices {
		if _, err := s.service(name); err != nil {
			errs = append(errs, err)
		}
	}
	for name, svc := range s.compose.Services {
		if svc.Image == "" && svc.Build == nil {
			errs = append(errs, fmt.Errorf("service %q has neither image nor build", name))
		}
	}
	for _, name := range s.rolodexServices() {
		if s.compose.Services[name].Build == nil {
			errs = append(errs, fmt.Errorf("service %q: want build: . (the rolodex image is built here)", name))
		}
	}
	return errors.Join(errs...)
}

func checkKafka(s *stack) error {
	kafka, err := s.service("kafka")
	if err != nil {
		return err
	}
	var errs []error
	if !strings.HasPrefix(kafka.Image, "apache/kafka:") {
		errs = append(errs, fmt.Errorf("kafka image %q: want the official apache/kafka image", kafka.Image))
	} else if want, err := testedKafkaVersion(s.fsys); err != nil {
		errs = append(errs, err)
	} else if tag := strings.TrimPrefix(kafka.Image, "apache/kafka:"); tag != want {
		errs = append(errs, fmt.Errorf("kafka image %q: want apache/kafka:%s, the version %s installs and the system tests run on", kafka.Image, want, kafkaScript))
	}
	env := kafka.Environment
	roles := strings.Split(env["KAFKA_PROCESS_ROLES"], ",")
	for _, role := range []string{"broker", "controller"} {
		if !slices.Contains(roles, role) {
			errs = append(errs, fmt.Errorf("kafka KAFKA_PROCESS_ROLES %q: missing %q", env["KAFKA_PROCESS_ROLES"], role))
		}
	}
	for _, key := range []string{
		"KAFKA_NODE_ID", "KAFKA_LISTENERS", "KAFKA_ADVERTISED_LISTENERS",
		"KAFKA_CONTROLLER_LISTENER_NAMES", "KAFKA_CONTROLLER_QUORUM_VOTERS",
		"KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "KAFKA_INTER_BROKER_LISTENER_NAME", "CLUSTER_ID",
	} {
		if env[key] == "" {
			errs = append(errs, fmt.Errorf("kafka: %s is not set", key))
		}
	}
	if voters := env["KAFKA_CONTROLLER_QUORUM_VOTERS"]; !strings.HasPrefix(voters, env["KAFKA_NODE_ID"]+"@") {
		errs = append(errs, fmt.Errorf("kafka: KAFKA_CONTROLLER_QUORUM_VOTERS %q does not name node %q", voters, env["KAFKA_NODE_ID"]))
	}
	for _, key := range []string{"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"} {
		if env[key] != "1" {
			errs = append(errs, fmt.Errorf("kafka: %s = %q, want 1 on a single node", key, env[key]))
		}
	}

	// Every listener has a protocol, and the in-network and host listeners
	// are advertised where clients look for them.
	protocols := map[string]bool{}
	for _, pair := range strings.Split(env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"], ",") {
		name, _, _ := strings.Cut(pair, ":")
		protocols[name] = true
	}
	for _, key := range []string{"KAFKA_LISTENERS", "KAFKA_ADVERTISED_LISTENERS"} {
		for _, l := range strings.Split(env[key], ",") {
			name, _, _ := strings.Cut(l, "://")
			if !protocols[name] {
				errs = append(errs, fmt.Errorf("kafka: %s listener %q has no security protocol", key, name))
			}
		}
	}
	for _, key := range []string{"KAFKA_CONTROLLER_LISTENER_NAMES", "KAFKA_INTER_BROKER_LISTENER_NAME"} {
		if !strings.Contains(env["KAFKA_LISTENERS"], env[key]+"://") {
			errs = append(errs, fmt.Errorf("kafka: %s %q is not in KAFKA_LISTENERS", key, env[key]))
		}
	}
	advertised := strings.Split(env["KAFKA_ADVERTISED_LISTENERS"], ",")
	hasAdvertised := func(hostport string) bool {
		return slices.ContainsFunc(advertised, func(l string) bool { return strings.HasSuffix(l, "://"+hostport) })
	}
	if !hasAdvertised(inNetworkBrokers) {
		errs = append(errs, fmt.Errorf("kafka: KAFKA_ADVERTISED_LISTENERS %q does not advertise %s", env["KAFKA_ADVERTISED_LISTENERS"], inNetworkBrokers))
	}
	if !hasAdvertised("localhost:29092") {
		errs = append(errs, fmt.Errorf("kafka: KAFKA_ADVERTISED_LISTENERS %q does not advertise localhost:29092 for host tools", env["KAFKA_ADVERTISED_LISTENERS"]))
	}
	if !slices.ContainsFunc(kafka.Ports, func(p portSpec) bool { return p.Published == "29092" && p.Target == "29092" }) {
		errs = append(errs, errors.New("kafka: port 29092 (EXTERNAL listener) is not published as 29092"))
	}

	if kafka.Healthcheck == nil || !slices.ContainsFunc(kafka.Healthcheck.Test, func(a string) bool {
		return strings.Contains(a, "kafka-broker-api-versions.sh")
	}) {
		errs = append(errs, errors.New("kafka: healthcheck does not run kafka-broker-api-versions.sh"))
	}
	if !slices.ContainsFunc(kafka.Volumes, func(m mountSpec) bool { return m.Type == "volume" && m.Source != "" }) {
		errs = append(errs, errors.New("kafka: no named data volume"))
	}

	// KRaft only: no ZooKeeper setting anywhere in the file (comments aside).
	walkScalars(&s.doc, func(n *yaml.Node) {
		if strings.Contains(strings.ToLower(n.Value), "zookeeper") {
			errs = append(errs, fmt.Errorf("%s line %d: %q: ZooKeeper setting in a KRaft stack", composePath, n.Line, n.Value))
		}
	})
	return errors.Join(errs...)
}

// walkScalars calls fn for every scalar (keys and values) under n.
func walkScalars(n *yaml.Node, fn func(*yaml.Node)) {
	if n.Kind == yaml.ScalarNode {
		fn(n)
	}
	for _, c := range n.Content {
		walkScalars(c, fn)
	}
}

func checkClickHouse(s *stack) error {
	ch, err := s.service("clickhouse")
	if err != nil {
		return err
	}
	var errs []error
	if !strings.HasPrefix(ch.Image, "clickhouse/clickhouse-server:") {
		errs = append(errs, fmt.Errorf("clickhouse image %q: want clickhouse/clickhouse-server", ch.Image))
	}
	if _, ok := ch.Ulimits["nofile"]; !ok {
		errs = append(errs, errors.New("clickhouse: ulimits.nofile is not set"))
	}
	if ch.Healthcheck == nil || len(ch.Healthcheck.Test) == 0 {
		errs = append(errs, errors.New("clickhouse: no healthcheck"))
	}
	for _, target := range []string{"8123", "9000"} {
		if !slices.ContainsFunc(ch.Ports, func(p portSpec) bool { return p.Target == target && p.Published != "" }) {
			errs = append(errs, fmt.Errorf("clickhouse: container port %s is not published", target))
		}
	}
	return errors.Join(errs...)
}

func checkRolodexCommands(s *stack) error {
	var errs []error
	seen := map[string]string{}
	for _, name := range s.rolodexServices() {
		svc := s.compose.Services[name]
		args := []string(svc.Command)
		if len(args) < 2 || args[0] != "run" {
			errs = append(errs, fmt.Errorf("service %q: command %q: want `run <component> ...`", name, args))
			continue
		}
		component := args[1]
		want, ok := rolodexComponents[component]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("service %q: `run %s`: unknown component", name, component))
		case want != name:
			errs = append(errs, fmt.Errorf("service %q runs component %q, which belongs in service %q", name, component, want))
		}
		if other, dup := seen[component]; dup {
			errs = append(errs, fmt.Errorf("services %q and %q both run %q", other, name, component))
		}
		seen[component] = name
		if b, _ := flagValue(args, "brokers"); b != inNetworkBrokers {
			errs = append(errs, fmt.Errorf("service %q: --brokers %q, want %s (the in-network listener)", name, b, inNetworkBrokers))
		}
		if _, err := metricsPort(args); err != nil {
			errs = append(errs, fmt.Errorf("service %q: %w", name, err))
		}
		if dep, ok := svc.DependsOn["kafka"]; !ok || dep != "service_healthy" {
			errs = append(errs, fmt.Errorf("service %q: want depends_on kafka with condition service_healthy", name))
		}
		if _, ok := flagValue(args, "clickhouse"); ok && svc.DependsOn["clickhouse"] != "service_healthy" {
			errs = append(errs, fmt.Errorf("service %q: uses --clickhouse, want depends_on clickhouse with condition service_healthy", name))
		}
		if svc.Restart != "unless-stopped" {
			errs = append(errs, fmt.Errorf("service %q: restart %q, want unless-stopped", name, svc.Restart))
		}
	}
	for component, service := range rolodexComponents {
		if _, ok := seen[component]; !ok {
			errs = append(errs, fmt.Errorf("no service runs `run %s` (want service %q)", component, service))
		}
	}
	return errors.Join(errs...)
}

func checkDependsOn(s *stack) error {
	var errs []error
	for name, svc := range s.compose.Services {
		for dep, condition := range svc.DependsOn {
			target, ok := s.compose.Services[dep]
			switch {
			case !ok:
				errs = append(errs, fmt.Errorf("service %q depends on unknown service %q", name, dep))
			case dep == name:
				errs = append(errs, fmt.Errorf("service %q depends on itself", name))
			case condition == "service_healthy" && (target.Healthcheck == nil || target.Healthcheck.Disable || len(target.Healthcheck.Test) == 0):
				errs = append(errs, fmt.Errorf("service %q waits for %q to be healthy, but %q has no healthcheck", name, dep, dep))
			}
		}
	}
	return errors.Join(errs...)
}

func checkPorts(s *stack) error {
	var errs []error
	owner := map[string]string{}
	names := make([]string, 0, len(s.compose.Services))
	for name := range s.compose.Services {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		svc := s.compose.Services[name]
		for _, p := range svc.Ports {
			if p.Published == "" {
				continue
			}
			if _, err := strconv.ParseUint(p.Published, 10, 16); err != nil {
				errs = append(errs, fmt.Errorf("service %q: published port %q is not a port number", name, p.Published))
			}
			key := p.Published + "/" + p.Protocol
			if other, dup := owner[key]; dup {
				errs = append(errs, fmt.Errorf("host port %s is published twice, by %q and %q", key, other, name))
			}
			owner[key] = name
		}
		if strings.HasPrefix(name, "rolodex-") {
			listens := listenPorts(svc.Command)
			for _, p := range svc.Ports {
				if !slices.Contains(listens, p.Target) {
					errs = append(errs, fmt.Errorf("service %q publishes container port %s, but its command listens on %v", name, p.Target, listens))
				}
			}
		}
	}
	return errors.Join(errs...)
}

func checkMounts(s *stack) error {
	var errs []error
	for name, svc := range s.compose.Services {
		for _, m := range svc.Volumes {
			switch m.Type {
			case "bind":
				p, err := repoPath(m.Source)
				if err != nil {
					errs = append(errs, fmt.Errorf("service %q: %w", name, err))
					continue
				}
				if _, err := fs.Stat(s.fsys, p); err != nil {
					errs = append(errs, fmt.Errorf("service %q: bind mount %s does not exist in the repository", name, m.Source))
				}
			case "volume":
				if m.Source == "" {
					continue // anonymous volume
				}
				if _, ok := s.compose.Volumes[m.Source]; !ok {
					errs = append(errs, fmt.Errorf("service %q: named volume %q is not declared under top-level volumes", name, m.Source))
				}
			}
		}
		// A --config file must be mounted into the container.
		if cfg, ok := flagValue(svc.Command, "config"); ok {
			p, err := s.hostPath(name, cfg)
			if err != nil {
				errs = append(errs, fmt.Errorf("--config %s: %w", cfg, err))
			} else if _, err := fs.Stat(s.fsys, p); err != nil {
				errs = append(errs, fmt.Errorf("service %q: --config %s comes from %s, which does not exist", name, cfg, p))
			}
		}
	}
	return errors.Join(errs...)
}

// checkPrometheusRules checks that the compose Prometheus loads the alert
// rules: every rule_files entry is a file mounted from the repository, and
// deploy/prometheus/alerts.yml is one of them. (alerts_test.go checks the
// rules themselves, with promtool.)
func checkPrometheusRules(s *stack) error {
	cfg, hostCfg, err := s.prometheusConfig()
	if err != nil {
		return err
	}
	var errs []error
	loaded := map[string]bool{}
	for _, rf := range cfg.RuleFiles {
		if !path.IsAbs(rf) {
			errs = append(errs, fmt.Errorf("%s: rule_files entry %q: want the absolute path it is mounted at", hostCfg, rf))
			continue
		}
		p, err := s.hostPath("prometheus", rf)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: rule_files entry %s: %w", hostCfg, rf, err))
			continue
		}
		if _, err := fs.Stat(s.fsys, p); err != nil {
			errs = append(errs, fmt.Errorf("%s: rule_files entry %s comes from %s, which does not exist", hostCfg, rf, p))
			continue
		}
		loaded[p] = true
	}
	if !loaded[alertRulesPath] {
		errs = append(errs, fmt.Errorf("%s: rule_files does not load %s", hostCfg, alertRulesPath))
	}
	return errors.Join(errs...)
}

// prometheusConfig reads the compose Prometheus's configuration file.
func (s *stack) prometheusConfig() (prometheusConfig, string, error) {
	var cfg prometheusConfig
	prom, err := s.service("prometheus")
	if err != nil {
		return cfg, "", err
	}
	cfgPath := prometheusConfigPath
	if v, ok := flagValue(prom.Command, "config.file"); ok {
		cfgPath = v
	}
	hostCfg, err := s.hostPath("prometheus", cfgPath)
	if err != nil {
		return cfg, "", err
	}
	raw, err := fs.ReadFile(s.fsys, hostCfg)
	if err != nil {
		return cfg, "", err
	}
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		return cfg, "", fmt.Errorf("%s: %w", hostCfg, err)
	}
	return cfg, hostCfg, nil
}

func checkPrometheus(s *stack) error {
	cfg, hostCfg, err := s.prometheusConfig()
	if err != nil {
		return err
	}
	if len(cfg.ScrapeConfigs) == 0 {
		return fmt.Errorf("%s: no scrape_configs", hostCfg)
	}

	var errs []error
	scraped := map[string]bool{}
	jobs := map[string]bool{}
	check := func(job, metricsPath, host, port string) {
		svc, ok := s.compose.Services[host]
		if !ok {
			errs = append(errs, fmt.Errorf("%s job %q: target %s:%s is not a compose service", hostCfg, job, host, port))
			return
		}
		if !strings.HasPrefix(host, "rolodex-") {
			return
		}
		scraped[host] = true
		want, err := metricsPort(svc.Command)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s job %q: service %q: %w", hostCfg, job, host, err))
		} else if port != want {
			errs = append(errs, fmt.Errorf("%s job %q: scrapes %s:%s, but %q serves metrics on port %s", hostCfg, job, host, port, host, want))
		}
		if metricsPath != "" && metricsPath != "/metrics" {
			errs = append(errs, fmt.Errorf("%s job %q: metrics_path %q, want /metrics", hostCfg, job, metricsPath))
		}
	}
	for _, sc := range cfg.ScrapeConfigs {
		if sc.JobName == "" || jobs[sc.JobName] {
			errs = append(errs, fmt.Errorf("%s: job name %q is empty or repeated", hostCfg, sc.JobName))
		}
		jobs[sc.JobName] = true
		for _, st := range sc.StaticConfigs {
			for _, target := range st.Targets {
				host, port, err := net.SplitHostPort(target)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s job %q: target %q: %w", hostCfg, sc.JobName, target, err))
					continue
				}
				check(sc.JobName, sc.MetricsPath, host, port)
			}
		}
		for _, dns := range sc.DNSSDConfigs {
			if dns.Type != "A" || dns.Port == 0 {
				errs = append(errs, fmt.Errorf("%s job %q: dns_sd_configs want type A and a port", hostCfg, sc.JobName))
			}
			for _, host := range dns.Names {
				check(sc.JobName, sc.MetricsPath, host, strconv.Itoa(dns.Port))
			}
		}
	}
	for _, name := range s.rolodexServices() {
		if !scraped[name] {
			errs = append(errs, fmt.Errorf("%s: service %q is not scraped", hostCfg, name))
		}
	}
	return errors.Join(errs...)
}

// grafanaFiles reads every YAML file in one provisioning subdirectory.
func (s *stack) grafanaFiles(subdir string) (map[string][]byte, error) {
	dir, err := s.hostPath("grafana", path.Join(grafanaProvisioningPath, subdir))
	if err != nil {
		return nil, err
	}
	entries, err := fs.ReadDir(s.fsys, dir)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	for _, e := range entries {
		if e.IsDir() || (path.Ext(e.Name()) != ".yml" && path.Ext(e.Name()) != ".yaml") {
			continue
		}
		p := path.Join(dir, e.Name())
		raw, err := fs.ReadFile(s.fsys, p)
		if err != nil {
			return nil, err
		}
		files[p] = raw
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: no provisioning files", dir)
	}
	return files, nil
}

// datasourceUIDs parses the provisioned datasources and returns their uids.
func (s *stack) datasourceUIDs() (map[string]string, error) {
	files, err := s.grafanaFiles("datasources")
	if err != nil {
		return nil, err
	}
	uids := map[string]string{}
	var errs []error
	for p, raw := range files {
		var ds grafanaDatasources
		if err := yaml.Unmarshal(raw, &ds); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
			continue
		}
		if ds.APIVersion != 1 || len(ds.Datasources) == 0 {
			errs = append(errs, fmt.Errorf("%s: want apiVersion 1 and at least one datasource", p))
		}
		for _, d := range ds.Datasources {
			if d.Name == "" || d.Type == "" || d.UID == "" {
				errs = append(errs, fmt.Errorf("%s: datasource %q: want name, type and uid", p, d.Name))
			}
			if _, dup := uids[d.UID]; dup {
				errs = append(errs, fmt.Errorf("%s: datasource uid %q repeated", p, d.UID))
			}
			uids[d.UID] = d.Type
		}
	}
	return uids, errors.Join(errs...)
}

func checkGrafanaDatasources(s *stack) error {
	grafana, err := s.service("grafana")
	if err != nil {
		return err
	}
	files, err := s.grafanaFiles("datasources")
	if err != nil {
		return err
	}
	var errs []error
	types := map[string]bool{}
	for p, raw := range files {
		var ds grafanaDatasources
		if err := yaml.Unmarshal(raw, &ds); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
			continue
		}
		for _, d := range ds.Datasources {
			types[d.Type] = true
			switch d.Type {
			case "prometheus":
				u, err := url.Parse(d.URL)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: datasource %q: url: %w", p, d.Name, err))
					break
				}
				if _, ok := s.compose.Services[u.Hostname()]; !ok || u.Hostname() != "prometheus" || u.Port() != "9090" {
					errs = append(errs, fmt.Errorf("%s: datasource %q: url %q, want http://prometheus:9090", p, d.Name, d.URL))
				}
			case "grafana-clickhouse-datasource":
				host := fmt.Sprint(d.JSONData["host"])
				if _, ok := s.compose.Services[host]; !ok {
					errs = append(errs, fmt.Errorf("%s: datasource %q: host %q is not a compose service", p, d.Name, host))
				}
				wantPort := map[string]string{"native": "9000", "http": "8123"}[fmt.Sprint(d.JSONData["protocol"])]
				if got := fmt.Sprint(d.JSONData["port"]); wantPort == "" || got != wantPort {
					errs = append(errs, fmt.Errorf("%s: datasource %q: protocol %v port %s, want native 9000 or http 8123", p, d.Name, d.JSONData["protocol"], got))
				}
				plugins := strings.Split(grafana.Environment["GF_INSTALL_PLUGINS"], ",")
				if !slices.ContainsFunc(plugins, func(pl string) bool { return strings.HasPrefix(strings.TrimSpace(pl), d.Type) }) {
					errs = append(errs, fmt.Errorf("%s: datasource %q needs plugin %s in GF_INSTALL_PLUGINS", p, d.Name, d.Type))
				}
			}
		}
	}
	for _, want := range []string{"prometheus", "grafana-clickhouse-datasource"} {
		if !types[want] {
			errs = append(errs, fmt.Errorf("no %s datasource is provisioned", want))
		}
	}
	if _, err := s.datasourceUIDs(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func checkGrafanaDashboards(s *stack) error {
	files, err := s.grafanaFiles("dashboards")
	if err != nil {
		return err
	}
	uids, err := s.datasourceUIDs()
	if err != nil {
		return err
	}
	var errs []error
	var dirs []string
	for p, raw := range files {
		var prov grafanaProviders
		if err := yaml.Unmarshal(raw, &prov); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
			continue
		}
		if prov.APIVersion != 1 || len(prov.Providers) == 0 {
			errs = append(errs, fmt.Errorf("%s: want apiVersion 1 and at least one provider", p))
		}
		for _, pr := range prov.Providers {
			if pr.Type != "file" {
				continue
			}
			dir, err := s.hostPath("grafana", pr.Options.Path)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: provider %q: %w", p, pr.Name, err))
				continue
			}
			dirs = append(dirs, dir)
		}
	}
	if len(dirs) == 0 {
		errs = append(errs, errors.New("no file dashboard provider reads a mounted directory"))
	}

	dashUIDs := map[string]string{}
	metrics := map[string]bool{}
	byDash := map[string]map[string]bool{} // dashboard uid -> names in its queries
	for _, dir := range dirs {
		var found int
		err := fs.WalkDir(s.fsys, dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || path.Ext(p) != ".json" {
				return err
			}
			found++
			raw, err := fs.ReadFile(s.fsys, p)
			if err != nil {
				return err
			}
			var db dashboard
			if err := json.Unmarshal(raw, &db); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", p, err))
				return nil
			}
			if other, dup := dashUIDs[db.UID]; dup && db.UID != "" {
				errs = append(errs, fmt.Errorf("%s: dashboard uid %q is also used by %s", p, db.UID, other))
			}
			dashUIDs[db.UID] = p
			for _, e := range checkDashboard(db, uids) {
				errs = append(errs, fmt.Errorf("%s: %w", p, e))
			}
			byDash[db.UID] = map[string]bool{}
			for _, expr := range dashboardExprs(db.Panels) {
				for _, f := range strings.FieldsFunc(expr, func(r rune) bool {
					return !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
				}) {
					metrics[f] = true
					byDash[db.UID][f] = true
				}
			}
			return nil
		})
		if err != nil {
			errs = append(errs, err)
		}
		if found == 0 {
			errs = append(errs, fmt.Errorf("%s: no dashboard JSON files", dir))
		}
	}
	// A dashboard per component, each with its groups' lag in records and
	// in seconds (docs/operations.md).
	for _, uid := range componentDashboards {
		names, ok := byDash[uid]
		if !ok {
			errs = append(errs, fmt.Errorf("no dashboard with uid %s", uid))
			continue
		}
		for _, m := range []string{"rolodex_consumer_lag_records", "rolodex_consumer_lag_seconds"} {
			if !names[m] {
				errs = append(errs, fmt.Errorf("dashboard %s does not query %s", uid, m))
			}
		}
	}
	// The ingest dashboard shows what the ingest component exports.
	for _, m := range []string{
		"rolodex_ingest_events_accepted_total",
		"rolodex_ingest_events_rejected_total",
		"rolodex_http_request_duration_seconds_bucket",
	} {
		if !metrics[m] {
			errs = append(errs, fmt.Errorf("no dashboard queries %s", m))
		}
	}
	return errors.Join(errs...)
}

// checkDashboard checks one parsed dashboard against the provisioned
// datasource uids.
func checkDashboard(db dashboard, datasources map[string]string) []error {
	var errs []error
	if strings.TrimSpace(db.Title) == "" {
		errs = append(errs, errors.New("dashboard has no title"))
	}
	if db.UID == "" {
		errs = append(errs, errors.New("dashboard has no uid"))
	}
	if db.SchemaVersion < minSchemaVersion {
		errs = append(errs, fmt.Errorf("schemaVersion %d, want %d or later", db.SchemaVersion, minSchemaVersion))
	}
	if len(db.Panels) == 0 {
		errs = append(errs, errors.New("dashboard has no panels"))
	}
	ids := map[int]bool{}
	checkRef := func(where string, ref *datasourceRef) {
		if ref == nil || ref.UID == "" || strings.HasPrefix(ref.UID, "$") || strings.HasPrefix(ref.UID, "-- ") {
			return
		}
		if typ, ok := datasources[ref.UID]; !ok {
			errs = append(errs, fmt.Errorf("%s: datasource uid %q is not provisioned", where, ref.UID))
		} else if ref.Type != "" && ref.Type != typ {
			errs = append(errs, fmt.Errorf("%s: datasource %q has type %q, not %q", where, ref.UID, typ, ref.Type))
		}
	}
	var walk func([]dashboardPanel)
	walk = func(panels []dashboardPanel) {
		for _, p := range panels {
			where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
			if p.ID == 0 || ids[p.ID] {
				errs = append(errs, fmt.Errorf("%s: panel id missing or repeated", where))
			}
			ids[p.ID] = true
			if p.Type == "" || p.Title == "" || p.GridPos == nil {
				errs = append(errs, fmt.Errorf("%s: want type, title and gridPos", where))
			}
			checkRef(where, p.Datasource)
			if p.Type != "row" && p.Type != "text" && len(p.Targets) == 0 {
				errs = append(errs, fmt.Errorf("%s: no queries", where))
			}
			for _, t := range p.Targets {
				checkRef(where, t.Datasource)
				if t.RefID == "" {
					errs = append(errs, fmt.Errorf("%s: query without refId", where))
				}
			}
			walk(p.Panels)
		}
	}
	walk(db.Panels)
	return errs
}

func dashboardExprs(panels []dashboardPanel) []string {
	var exprs []string
	for _, p := range panels {
		for _, t := range p.Targets {
			exprs = append(exprs, t.Expr)
		}
		exprs = append(exprs, dashboardExprs(p.Panels)...)
	}
	return exprs
}

func checkRolodexConfig(s *stack) error {
	raw, err := fs.ReadFile(s.fsys, rolodexConfig)
	if err != nil {
		return err
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		return fmt.Errorf("%s: %w", rolodexConfig, err)
	}
	partners, _ := cfg["partners"].([]any)
	if len(partners) == 0 {
		return fmt.Errorf("%s: partners: want at least one partner", rolodexConfig)
	}
	var errs []error
	first, _ := partners[0].(map[string]any)
	for _, key := range []string{"name", "tenant"} {
		if v, _ := first[key].(string); strings.TrimSpace(v) == "" {
			errs = append(errs, fmt.Errorf("%s: partners[0].%s: want a non-empty string", rolodexConfig, key))
		}
	}
	keys, _ := first["keys"].([]any)
	if len(keys) == 0 {
		errs = append(errs, fmt.Errorf("%s: partners[0].keys: want at least one key", rolodexConfig))
	}
	for i, k := range keys {
		if v, _ := k.(string); v == "" {
			errs = append(errs, fmt.Errorf("%s: partners[0].keys[%d]: want a non-empty string", rolodexConfig, i))
		}
	}
	return errors.Join(errs...)
}

func checkDockerfile(s *stack) error {
	raw, err := fs.ReadFile(s.fsys, dockerfilePath)
	if err != nil {
		return err
	}
	var froms, runs []string
	var user, entrypoint string
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			froms = append(froms, line)
		case "RUN":
			runs = append(runs, line)
		case "USER":
			user = strings.Join(f[1:], " ")
		case "ENTRYPOINT":
			entrypoint = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), f[0]))
		}
	}
	var errs []error
	if len(froms) < 2 || !strings.Contains(froms[0], "golang:1.26") {
		errs = append(errs, fmt.Errorf("%s: want a multi-stage build from golang:1.26, got FROM lines %q", dockerfilePath, froms))
	}
	// Build commands may continue over several lines; look at the whole file.
	if !strings.Contains(string(raw), "go build") || !strings.Contains(string(raw), "./cmd/rolodex") || !strings.Contains(string(raw), "CGO_ENABLED=0") {
		errs = append(errs, fmt.Errorf("%s: want CGO_ENABLED=0 go build ... ./cmd/rolodex", dockerfilePath))
	}
	if user == "" || strings.HasPrefix(user, "root") || strings.HasPrefix(user, "0") {
		errs = append(errs, fmt.Errorf("%s: USER %q: the runtime stage must not run as root", dockerfilePath, user))
	}
	var ep []string
	if err := json.Unmarshal([]byte(entrypoint), &ep); err != nil || !slices.Equal(ep, []string{"/rolodex"}) {
		errs = append(errs, fmt.Errorf(`%s: ENTRYPOINT %s, want ["/rolodex"]`, dockerfilePath, entrypoint))
	}

	ignore, err := fs.ReadFile(s.fsys, dockerignore)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, line := range strings.Split(string(ignore), "\n") {
		pattern := strings.TrimSuffix(strings.TrimSpace(line), "/")
		switch pattern {
		case "go.mod", "go.sum", "cmd", "*.go", "**/*.go", "*", "**":
			errs = append(errs, fmt.Errorf("%s: %q keeps what the build needs out of the context", dockerignore, pattern))
		}
	}
	return errors.Join(errs...)
}

// kafkaScript installs and starts the Apache Kafka the system tests run on;
// its KAFKA_VERSION line pins the version.
const kafkaScript = "scripts/kafka"

// testedKafkaVersion returns the version scripts/kafka pins.
func testedKafkaVersion(fsys fs.FS) (string, error) {
	b, err := fs.ReadFile(fsys, kafkaScript)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "KAFKA_VERSION="); ok && v != "" {
			return strings.Trim(v, `"'`), nil
		}
	}
	return "", fmt.Errorf("%s: no KAFKA_VERSION= line", kafkaScript)
}
