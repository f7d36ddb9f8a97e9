package deploy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"path"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Files the stack is built from, relative to the repository.
const (
	composePath    = "docker-compose.yml"
	dockerfilePath = "Dockerfile"
	dockerignore   = ".dockerignore"
	rolodexConfig  = "deploy/rolodex/config.yaml"
)

// ---------------------------------------------------------------------------
// Compose file model: the part of the Compose specification the checks read.
// Fields that Compose accepts in more than one form (string or list, list or
// map, short or long syntax) decode through the types below.

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image       string         `yaml:"image"`
	Build       any            `yaml:"build"`
	Command     stringList     `yaml:"command"`
	Environment envMap         `yaml:"environment"`
	Ports       []portSpec     `yaml:"ports"`
	Volumes     []mountSpec    `yaml:"volumes"`
	DependsOn   dependsOn      `yaml:"depends_on"`
	Healthcheck *healthcheck   `yaml:"healthcheck"`
	Ulimits     map[string]any `yaml:"ulimits"`
	Restart     string         `yaml:"restart"`
}

type healthcheck struct {
	Test    stringList `yaml:"test"`
	Disable bool       `yaml:"disable"`
}

// stringList is a command or healthcheck test: a YAML list, or one string
// split on spaces.
type stringList []string

func (l *stringList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*l = strings.Fields(n.Value)
		return nil
	case yaml.SequenceNode:
		var s []string
		if err := n.Decode(&s); err != nil {
			return err
		}
		*l = s
		return nil
	}
	return fmt.Errorf("line %d: want a string or a list of strings", n.Line)
}

// envMap is an environment: a map, or a list of KEY=VALUE.
type envMap map[string]string

func (e *envMap) UnmarshalYAML(n *yaml.Node) error {
	m := envMap{}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			m[n.Content[i].Value] = n.Content[i+1].Value
		}
	case yaml.SequenceNode:
		for _, item := range n.Content {
			k, v, _ := strings.Cut(item.Value, "=")
			m[k] = v
		}
	default:
		return fmt.Errorf("line %d: environment: want a map or a list", n.Line)
	}
	*e = m
	return nil
}

// portSpec is one published port, short ("[ip:]host:container[/proto]")
// or long syntax.
type portSpec struct {
	HostIP    string `yaml:"host_ip"`
	Published string `yaml:"published"`
	Target    string `yaml:"target"`
	Protocol  string `yaml:"protocol"`
}

func (p *portSpec) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.MappingNode {
		type plain portSpec
		var v plain
		if err := n.Decode(&v); err != nil {
			return err
		}
		*p = portSpec(v)
	} else {
		spec, proto, _ := strings.Cut(n.Value, "/")
		parts := strings.Split(spec, ":")
		p.Protocol = proto
		switch len(parts) {
		case 1:
			p.Target = parts[0]
		case 2:
			p.Published, p.Target = parts[0], parts[1]
		case 3:
			p.HostIP, p.Published, p.Target = parts[0], parts[1], parts[2]
		default:
			return fmt.Errorf("line %d: port %q: unsupported form", n.Line, n.Value)
		}
	}
	if p.Protocol == "" {
		p.Protocol = "tcp"
	}
	return nil
}

// mountSpec is one entry of a service's volumes, short ("src:dst[:mode]")
// or long syntax.
type mountSpec struct {
	Type   string `yaml:"type"`
	Source string `yaml:"source"`
	Target string `yaml:"target"`
}

func (m *mountSpec) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.MappingNode {
		type plain mountSpec
		var v plain
		if err := n.Decode(&v); err != nil {
			return err
		}
		*m = mountSpec(v)
		return nil
	}
	parts := strings.Split(n.Value, ":")
	switch len(parts) {
	case 1:
		m.Type, m.Target = "volume", parts[0]
		return nil
	case 2, 3:
		m.Source, m.Target = parts[0], parts[1]
	default:
		return fmt.Errorf("line %d: volume %q: unsupported form", n.Line, n.Value)
	}
	if strings.HasPrefix(m.Source, ".") || strings.HasPrefix(m.Source, "/") || strings.HasPrefix(m.Source, "~") {
		m.Type = "bind"
	} else {
		m.Type = "volume"
	}
	return nil
}

// dependsOn maps each dependency to its condition: a list of names
// (condition service_started), or the long map syntax.
type dependsOn map[string]string

func (d *dependsOn) UnmarshalYAML(n *yaml.Node) error {
	m := dependsOn{}
	switch n.Kind {
	case yaml.SequenceNode:
		for _, item := range n.Content {
			m[item.Value] = "service_started"
		}
	case yaml.MappingNode:
		var long map[string]struct {
			Condition string `yaml:"condition"`
		}
		if err := n.Decode(&long); err != nil {
			return err
		}
		for name, dep := range long {
			if dep.Condition == "" {
				dep.Condition = "service_started"
			}
			m[name] = dep.Condition
		}
	default:
		return fmt.Errorf("line %d: depends_on: want a list or a map", n.Line)
	}
	*d = m
	return nil
}

// ---------------------------------------------------------------------------
// Prometheus and Grafana file models.

type prometheusConfig struct {
	RuleFiles     []string `yaml:"rule_files"`
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		MetricsPath   string `yaml:"metrics_path"`
		StaticConfigs []struct {
			Targets []string `yaml:"targets"`
		} `yaml:"static_configs"`
		DNSSDConfigs []struct {
			Names []string `yaml:"names"`
			Type  string   `yaml:"type"`
			Port  int      `yaml:"port"`
		} `yaml:"dns_sd_configs"`
	} `yaml:"scrape_configs"`
}

type grafanaDatasources struct {
	APIVersion  int `yaml:"apiVersion"`
	Datasources []struct {
		Name     string         `yaml:"name"`
		UID      string         `yaml:"uid"`
		Type     string         `yaml:"type"`
		URL      string         `yaml:"url"`
		JSONData map[string]any `yaml:"jsonData"`
	} `yaml:"datasources"`
}

type grafanaProviders struct {
	APIVersion int `yaml:"apiVersion"`
	Providers  []struct {
		Name    string `yaml:"name"`
		Type    string `yaml:"type"`
		Options struct {
			Path string `yaml:"path"`
		} `yaml:"options"`
	} `yaml:"providers"`
}

type dashboard struct {
	UID           string           `json:"uid"`
	Title         string           `json:"title"`
	SchemaVersion int              `json:"schemaVersion"`
	Panels        []dashboardPanel `json:"panels"`
}

type dashboardPanel struct {
	ID         int              `json:"id"`
	Type       string           `json:"type"`
	Title      string           `json:"title"`
	GridPos    *json.RawMessage `json:"gridPos"`
	Datasource *datasourceRef   `json:"datasource"`
	Targets    []struct {
		RefID      string         `json:"refId"`
		Expr       string         `json:"expr"`
		Datasource *datasourceRef `json:"datasource"`
	} `json:"targets"`
	Panels []dashboardPanel `json:"panels"` // collapsed rows
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// ---------------------------------------------------------------------------
// The stack as loaded from a file system.

type stack struct {
	fsys    fs.FS
	compose composeFile
	doc     yaml.Node // the whole compose document, for scans of every value
}

func loadStack(fsys fs.FS) (*stack, error) {
	raw, err := fs.ReadFile(fsys, composePath)
	if err != nil {
		return nil, err
	}
	s := &stack{fsys: fsys}
	if err := yaml.Unmarshal(raw, &s.doc); err != nil {
		return nil, fmt.Errorf("%s: %w", composePath, err)
	}
	if err := s.doc.Decode(&s.compose); err != nil {
		return nil, fmt.Errorf("%s: %w", composePath, err)
	}
	if len(s.compose.Services) == 0 {
		return nil, fmt.Errorf("%s: no services", composePath)
	}
	return s, nil
}

// service returns the named service or an error naming it.
func (s *stack) service(name string) (composeService, error) {
	svc, ok := s.compose.Services[name]
	if !ok {
		return svc, fmt.Errorf("service %q is missing", name)
	}
	return svc, nil
}

// rolodexServices returns the names of the services that run the rolodex
// image, sorted.
func (s *stack) rolodexServices() []string {
	var names []string
	for name := range s.compose.Services {
		if strings.HasPrefix(name, "rolodex-") {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// hostPath maps the target of a service's bind mount (or a file below it)
// to its path in the repository.
func (s *stack) hostPath(service, target string) (string, error) {
	svc, err := s.service(service)
	if err != nil {
		return "", err
	}
	for _, m := range svc.Volumes {
		if m.Type != "bind" {
			continue
		}
		rel, ok := strings.CutPrefix(target, m.Target)
		if !ok || (rel != "" && !strings.HasPrefix(rel, "/")) {
			continue
		}
		src, err := repoPath(m.Source)
		if err != nil {
			return "", err
		}
		return path.Join(src, rel), nil
	}
	return "", fmt.Errorf("service %q: nothing is mounted at %s", service, target)
}

// repoPath turns a bind-mount source into a path inside the repository.
func repoPath(source string) (string, error) {
	if !strings.HasPrefix(source, "./") {
		return "", fmt.Errorf("bind mount %q: want a path relative to the repository, starting with ./", source)
	}
	p := path.Clean(source)
	if !fs.ValidPath(p) {
		return "", fmt.Errorf("bind mount %q: leaves the repository", source)
	}
	return p, nil
}

// flagValue returns the value of a --name flag in args, given as
// "--name value" or "--name=value", with one or two dashes.
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		trimmed := strings.TrimLeft(a, "-")
		if trimmed == a {
			continue
		}
		if trimmed == name && i+1 < len(args) {
			return args[i+1], true
		}
		if v, ok := strings.CutPrefix(trimmed, name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// metricsPort is the port a rolodex command serves /metrics on:
// --metrics-addr when given, else --http-addr.
func metricsPort(args []string) (string, error) {
	for _, flag := range []string{"metrics-addr", "http-addr"} {
		if addr, ok := flagValue(args, flag); ok {
			_, port, err := net.SplitHostPort(addr)
			if err != nil {
				return "", fmt.Errorf("--%s %q: %w", flag, addr, err)
			}
			return port, nil
		}
	}
	return "", errors.New("neither --metrics-addr nor --http-addr is set")
}

// listenPorts are the ports a rolodex command listens on.
func listenPorts(args []string) []string {
	var ports []string
	for _, flag := range []string{"http-addr", "metrics-addr"} {
		if addr, ok := flagValue(args, flag); ok {
			if _, port, err := net.SplitHostPort(addr); err == nil {
				ports = append(ports, port)
			}
		}
	}
	return ports
}
