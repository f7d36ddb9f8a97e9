package main

import (
	"bytes"
	_ "embed"
	"fmt"
	"os"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/rolodex/rolodex/connectors/httpin"
	"github.com/rolodex/rolodex/connectors/webhooks"
	"github.com/rolodex/rolodex/normalize"
	"github.com/rolodex/rolodex/partners"
	"github.com/rolodex/rolodex/processors/fanout"
	"github.com/rolodex/rolodex/processors/lifecycle"
	"github.com/rolodex/rolodex/processors/routing"
	"github.com/rolodex/rolodex/schemas"
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
	// Tags: default tags and tag groups (docs/profile-status.md).
	Tags schemas.StatusConfig `yaml:"tags"`
	// Lifecycle: what message events do to the recipient's profile
	// (docs/lifecycle.md, "What reaches the profile").
	Lifecycle lifecycleConfig `yaml:"lifecycle"`
	// Routing: lead routing (docs/routing.md).
	Routing routingConfig `yaml:"routing"`
	// Fanout: partner fan-out (docs/fanout.md).
	Fanout   fanoutConfig               `yaml:"fanout"`
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
	if err := c.Tags.Validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", orDefault(path), err)
	}
	if err := c.Lifecycle.Recipients().Validate(); err != nil {
		return nil, fmt.Errorf("config %s: lifecycle: %w", orDefault(path), err)
	}
	if err := c.checkRouting(); err != nil {
		return nil, fmt.Errorf("config %s: %w", orDefault(path), err)
	}
	if err := c.checkDeliveries(); err != nil {
		return nil, fmt.Errorf("config %s: %w", orDefault(path), err)
	}
	if err := c.Fanout.check(); err != nil {
		return nil, fmt.Errorf("config %s: %w", orDefault(path), err)
	}
	return &c, nil
}

// fanoutConfig is the fanout: section (docs/fanout.md, "Delivery").
// Absent keys keep their defaults.
type fanoutConfig struct {
	// ReplayRetention is retention.ms of rolodex.fanout.input, the window
	// a subscription replay reaches back; absent:
	// fanout.DefaultReplayRetention (7 days).
	ReplayRetention time.Duration `yaml:"replay_retention"`
	Delivery        struct {
		// RetrySchedule is the delay before each attempt of a webhook;
		// absent: webhooks.SvixSchedule (immediately, 5s, 5m, 30m, 2h,
		// 5h, 10h, 10h).
		RetrySchedule []time.Duration `yaml:"retry_schedule"`
		// Timeout of one webhook request; absent: 15s.
		Timeout time.Duration `yaml:"timeout"`
	} `yaml:"delivery"`
}

// check refuses a fanout section that cannot work.
func (c *fanoutConfig) check() error {
	if c.ReplayRetention < 0 {
		return fmt.Errorf("fanout: replay_retention %s is negative", c.ReplayRetention)
	}
	for _, d := range c.Delivery.RetrySchedule {
		if d < 0 {
			return fmt.Errorf("fanout: delivery: retry_schedule: %s is negative", d)
		}
	}
	if c.Delivery.Timeout < 0 {
		return fmt.Errorf("fanout: delivery: timeout: %s is negative", c.Delivery.Timeout)
	}
	return nil
}

// routingConfig is the routing: section (docs/routing.md). Absent keys
// keep their defaults.
type routingConfig struct {
	// LeadTypes are the event types that are leads; absent:
	// [lead.created]; [] routes nothing.
	LeadTypes []string `yaml:"lead_types"`
	// FollowTypes are the event types (with properties.lead_id) forwarded
	// to the partner holding the lead; absent: routing.DefaultFollowTypes.
	FollowTypes []string `yaml:"follow_types"`
	// Retention is how long a closed lead is kept so that its id sent
	// again is a duplicate; absent: 30 days (720h).
	Retention time.Duration `yaml:"retention"`
	// Tick is how often the SLA scheduler looks for due deadlines;
	// absent: 1s.
	Tick     time.Duration `yaml:"tick"`
	Delivery struct {
		// RetrySchedule is the delay before each attempt of a lead's
		// webhook; absent: webhooks.DefaultLeadSchedule.
		RetrySchedule []time.Duration `yaml:"retry_schedule"`
	} `yaml:"delivery"`
}

// fanoutConfig is the fanout: section (docs/fanout.md). Absent keys keep
// their defaults.
// replayRetention is fanout.replay_retention with its default.
func (c *fileConfig) replayRetention() time.Duration {
	if c.Fanout.ReplayRetention == 0 {
		return fanout.DefaultReplayRetention
	}
	return c.Fanout.ReplayRetention
}

// leadTypes is routing.lead_types with its default.
func (c *fileConfig) leadTypes() []string {
	if c.Routing.LeadTypes == nil {
		return []string{schemas.DefaultLeadType}
	}
	return c.Routing.LeadTypes
}

// partnerRouting is every partner's time zone and working hours.
func (c *fileConfig) partnerRouting() []schemas.PartnerRouting {
	out := make([]schemas.PartnerRouting, 0, len(c.Partners))
	for i := range c.Partners {
		out = append(out, c.Partners[i].Routing())
	}
	return out
}

// checkRouting refuses a routing section or a partner's time zone or
// working hours that cannot work.
func (c *fileConfig) checkRouting() error {
	if c.Routing.Retention < 0 || c.Routing.Tick < 0 {
		return fmt.Errorf("routing: retention and tick must not be negative")
	}
	for _, d := range c.Routing.Delivery.RetrySchedule {
		if d < 0 {
			return fmt.Errorf("routing: delivery: retry_schedule: %s is negative", d)
		}
	}
	for _, t := range c.leadTypes() {
		if t == "" || t == schemas.EventLeadAccepted || t == schemas.EventLeadRejected {
			return fmt.Errorf("routing: lead_types: %q cannot be a lead type", t)
		}
	}
	if _, err := routing.NewEnv(c.partnerRouting(), 0); err != nil {
		return fmt.Errorf("partners: %w", err)
	}
	return nil
}

// checkDeliveries checks every partner's delivery: webhook or kafka, URL,
// secret, per_minute, timeout, mapping (docs/routing.md, "Delivery").
func (c *fileConfig) checkDeliveries() error {
	for i := range c.Partners {
		if err := webhooks.ValidateDelivery(c.Partners[i].Name, c.Partners[i].Delivery); err != nil {
			return err
		}
	}
	return nil
}

// lifecycleConfig is the lifecycle: section. An absent key keeps its
// default (docs/lifecycle.md).
type lifecycleConfig struct {
	// SoftBounceLimit: this many soft bounces in a row invalidate the
	// address; 0 never; absent: lifecycle.DefaultSoftBounceLimit (3).
	SoftBounceLimit *int `yaml:"soft_bounce_limit"`
	// Purposes: channel -> the consent purpose a spam complaint or an
	// unsubscribe revokes; a channel listed here replaces its default,
	// "" revokes nothing for that channel.
	Purposes map[string]string `yaml:"purposes"`
}

// Recipients is the recipients group's configuration: the defaults with
// the keys the file sets.
func (c lifecycleConfig) Recipients() lifecycle.RecipientsConfig {
	rc := lifecycle.DefaultRecipientsConfig()
	if c.SoftBounceLimit != nil {
		rc.SoftBounceLimit = *c.SoftBounceLimit
	}
	for ch, p := range c.Purposes {
		rc.Purposes[ch] = p
	}
	return rc
}

func orDefault(path string) string {
	if path == "" {
		return "(built-in defaults)"
	}
	return path
}

func (c *fileConfig) registry() (*partners.Registry, error) { return partners.New(c.Partners) }

// builtinKeys maps each bearer key of the built-in configuration to its
// partner. These keys are public (printed by "rolodex dev", written in the
// README): they are for dev mode only.
func builtinKeys() map[string]string {
	keys := map[string]string{}
	c, err := loadConfig("")
	if err != nil {
		return keys // TestDefaultConfig keeps the built-in configuration loadable
	}
	for _, p := range c.Partners {
		for _, k := range p.AllKeys() {
			keys[k.Key] = p.Name
		}
	}
	return keys
}

// publicKeys lists, as "partner (key)", the partners of c that use a key
// of the built-in configuration.
func (c *fileConfig) publicKeys() []string {
	builtin := builtinKeys()
	var out []string
	for _, p := range c.Partners {
		for _, k := range p.AllKeys() {
			if _, ok := builtin[k.Key]; ok {
				out = append(out, fmt.Sprintf("%s (key %q)", p.Name, k.Key))
			}
		}
	}
	return out
}

func (c *fileConfig) normalizer() (*normalize.Normalizer, error) {
	return normalize.New(normalize.Config{DefaultRegion: c.DefaultRegion, Blocked: c.BlockedIdentifiers})
}
