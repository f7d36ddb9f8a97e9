package main

import (
	"bytes"
	_ "embed"
	"fmt"
	"os"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/rolodex/rolodex/connectors/httpin"
	"github.com/rolodex/rolodex/internal/normalize"
	"github.com/rolodex/rolodex/internal/partners"
)

//go:embed defaults.yaml
var defaultConfig []byte

// fileConfig is the YAML configuration file (--config).
type fileConfig struct {
	DefaultRegion      string   `yaml:"default_region"`
	BlockedIdentifiers []string `yaml:"blocked_identifiers"`
	HTTP               struct {
		MaxBodyBytes int64         `yaml:"max_body_bytes"`
		MaxBatch     int           `yaml:"max_batch"`
		WriteTimeout time.Duration `yaml:"write_timeout"`
	} `yaml:"http"`
	Topics struct {
		Partitions  int32 `yaml:"partitions"`
		Replication int16 `yaml:"replication"`
	} `yaml:"topics"`
	Identity struct {
		Limits       map[string]int `yaml:"limits"`
		DefaultLimit int            `yaml:"default_limit"`
		DedupeWindow time.Duration  `yaml:"dedupe_window"`
	} `yaml:"identity"`
	Partners []partners.Partner         `yaml:"partners"`
	Mappings map[string]*httpin.Mapping `yaml:"mappings"`
}

// loadConfig reads path, or the built-in defaults when path is empty.
func loadConfig(path string) (*fileConfig, error) {
	data := defaultConfig
	if path != "" {
		var err error
		if data, err = os.ReadFile(path); err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
	}
	var c fileConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("config %s: %w", orDefault(path), err)
	}
	if c.Topics.Partitions == 0 {
		c.Topics.Partitions = 8
	}
	if c.Topics.Replication == 0 {
		c.Topics.Replication = -1
	}
	if c.Topics.Partitions < 0 {
		return nil, fmt.Errorf("config %s: topics.partitions must be positive", orDefault(path))
	}
	return &c, nil
}

func orDefault(path string) string {
	if path == "" {
		return "(built-in defaults)"
	}
	return path
}

func (c *fileConfig) registry() (*partners.Registry, error) { return partners.New(c.Partners) }

func (c *fileConfig) normalizer() (*normalize.Normalizer, error) {
	return normalize.New(normalize.Config{DefaultRegion: c.DefaultRegion, Blocked: c.BlockedIdentifiers})
}
