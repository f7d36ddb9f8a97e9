// Package kafkain is the Kafka-native ingest connector: it consumes every
// partner's rolodex.ingest.<partner> topic (JSON, or Avro in Confluent
// framing), validates and normalises each record into rolodex.events (a
// record with the header rolodex-topic into that partner fan-out topic,
// checked against the topic store), sends
// bad records to rolodex.deadletter, and commits its offsets only after
// Kafka acknowledged those writes.
package kafkain

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/intake"
	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/partners"
	"github.com/rolodex/rolodex/schemas"
)

// Config of the Kafka ingest connector.
type Config struct {
	Kafka kafkaclient.Config
	// Group is the consumer group. Default schemas.GroupKafkaIngest.
	Group string
	// MaxPollRecords bounds one batch. Default 5000.
	MaxPollRecords int
	// RetryBackoff is the wait between attempts to write a batch while Kafka
	// does not acknowledge it. Default 1s.
	RetryBackoff time.Duration
	// Topics are the partner fan-out topics a record's rolodex-topic
	// header names: the topic must exist in the partner's tenant and the
	// partner must own it, else the record is a dead letter
	// (unknown_topic, not_topic_owner). While the store cannot answer
	// (loading), the batch waits. Nil: every record with the header is a
	// dead letter (unknown_topic: this connector cannot check topics).
	Topics intake.Topics
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Group == "" {
		c.Group = schemas.GroupKafkaIngest
	}
	if c.MaxPollRecords == 0 {
		c.MaxPollRecords = 5000
	}
	if c.RetryBackoff == 0 {
		c.RetryBackoff = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Connector consumes the partners' ingest topics.
type Connector struct {
	cfg       Config
	cl        *kgo.Client
	pub       *intake.Publisher
	partners  *partners.Registry
	validator *intake.Validator
	metrics   *intake.Metrics
}

// New connects the consumer group for every partner's ingest topic.
func New(cfg Config, reg *partners.Registry, v *intake.Validator, m *intake.Metrics) (*Connector, error) {
	cfg.setDefaults()
	if cfg.MaxPollRecords < 0 || cfg.RetryBackoff < 0 {
		return nil, errors.New("kafkain: MaxPollRecords and RetryBackoff must not be negative")
	}
	var topics []string
	for _, p := range reg.All() {
		topics = append(topics, schemas.IngestTopic(p.Name))
	}
	kc := cfg.Kafka
	if kc.ClientID == "" {
		kc.ClientID = "rolodex-ingest-kafka"
	}
	cl, err := kafkaclient.NewClient(kc,
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(topics...),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		return nil, fmt.Errorf("kafkain: %w", err)
	}
	return &Connector{cfg: cfg, cl: cl, pub: intake.NewPublisher(cl), partners: reg, validator: v, metrics: m}, nil
}

// Run consumes until ctx is done. A batch is committed only after every
// record it produced (event or dead letter) was acknowledged; while Kafka
// does not acknowledge, the batch is retried, never skipped.
func (c *Connector) Run(ctx context.Context) error {
	// A poll blocks rebalances until AllowRebalance; leaving Run must not
	// leave the group stuck (Close would wait forever to leave it).
	defer c.cl.AllowRebalance()
	for {
		fetches := c.cl.PollRecords(ctx, c.cfg.MaxPollRecords)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			return nil
		}
		fetches.EachError(func(topic string, part int32, err error) {
			c.cfg.Logger.Warn("kafkain: fetch", "topic", topic, "partition", part, "err", err)
		})
		recs := fetches.Records()
		if len(recs) == 0 {
			c.cl.AllowRebalance()
			continue
		}
		out, counts, err := c.convert(recs)
		for errors.Is(err, errTopicsUnknown) {
			// The topic store is loading: wait, decide the batch again.
			c.cfg.Logger.Warn("kafkain: topic store not ready, waiting", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(c.cfg.RetryBackoff):
			}
			out, counts, err = c.convert(recs)
		}
		if err != nil {
			return err
		}
		for {
			err := c.pub.Records(ctx, out)
			if err == nil {
				break
			}
			c.cfg.Logger.Error("kafkain: write batch, retrying", "records", len(out), "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(c.cfg.RetryBackoff):
			}
		}
		counts.flush(c.metrics)
		if err := c.cl.CommitRecords(ctx, recs...); err != nil {
			// The batch is written; a lost commit only means it is read and
			// written again, which the dedupe stage absorbs.
			c.cfg.Logger.Warn("kafkain: commit", "err", err)
		}
		c.cl.AllowRebalance()
	}
}

// Close leaves the group and closes the client. Call it after Run returned.
func (c *Connector) Close() {
	c.cl.AllowRebalance()
	c.cl.Close()
}

type counts struct {
	accepted map[string]int    // partner -> n
	rejected map[[2]string]int // partner, reason -> n
	dropped  map[[2]string]int // partner, reason -> n
}

func (n *counts) flush(m *intake.Metrics) {
	for p, v := range n.accepted {
		m.Accepted.WithLabelValues(p, "kafka").Add(float64(v))
	}
	for k, v := range n.rejected {
		m.Rejected.WithLabelValues(k[0], "kafka", k[1]).Add(float64(v))
		m.DeadLetter.WithLabelValues("kafka", k[1]).Add(float64(v))
	}
	for k, v := range n.dropped {
		m.Dropped.WithLabelValues(k[0], k[1]).Add(float64(v))
	}
}

// convert turns consumed records into the records to write: one event or
// one dead letter each.
func (c *Connector) convert(recs []*kgo.Record) ([]*kgo.Record, *counts, error) {
	n := &counts{accepted: map[string]int{}, rejected: map[[2]string]int{}, dropped: map[[2]string]int{}}
	out := make([]*kgo.Record, 0, len(recs))
	for _, r := range recs {
		name, _ := schemas.PartnerOfIngestTopic(r.Topic)
		p, ok := c.partners.ByName(name)
		var (
			ev  *schemas.Event
			rej *intake.Rejection
		)
		if !ok {
			rej = &intake.Rejection{Reason: intake.ReasonUnknownPartner, Message: fmt.Sprintf("topic %s belongs to no configured partner", r.Topic)}
		} else {
			var err error
			if ev, rej, err = c.decodeValidate(p, r, n); err != nil {
				return nil, nil, err
			}
		}
		var (
			kr  *kgo.Record
			err error
		)
		if rej == nil {
			kr, err = intake.EventRecord(ev)
			if err != nil {
				rej = &intake.Rejection{Reason: intake.ReasonEncodeFailed, Message: err.Error()}
			}
		}
		if rej != nil {
			var tenant string
			if p != nil {
				tenant = p.Tenant
			}
			kr, err = intake.DeadLetterRecord(intake.NewDeadLetter(time.Now(), name, tenant, intake.FromKafka(r), rej, r.Value))
			if err != nil {
				// Never commit past a record that is neither written nor
				// dead-lettered: stop instead.
				return nil, nil, fmt.Errorf("kafkain: %s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err)
			}
			n.rejected[[2]string{name, rej.Reason}]++
		} else {
			n.accepted[p.Name]++
		}
		out = append(out, kr)
	}
	return out, n, nil
}

// errTopicsUnknown: the topic store cannot answer yet; the batch waits.
var errTopicsUnknown = errors.New("kafkain: the topic store cannot answer yet")

// topicOf returns the record's rolodex-topic header (the first), and
// whether it has one.
func topicOf(r *kgo.Record) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == intake.HeaderTopic {
			return string(h.Value), true
		}
	}
	return "", false
}

// checkTopic checks the record's rolodex-topic header, if any: the topic
// it names, or the rejection; err when the store cannot answer yet.
func (c *Connector) checkTopic(p *partners.Partner, r *kgo.Record) (topic string, rej *intake.Rejection, err error) {
	name, ok := topicOf(r)
	if !ok {
		return "", nil, nil
	}
	if c.cfg.Topics == nil {
		return "", &intake.Rejection{Reason: intake.ReasonUnknownTopic, Message: fmt.Sprintf("header %s: %q cannot be checked: this ingest reads no topic store", intake.HeaderTopic, name)}, nil
	}
	rej, err = intake.CheckTopic(c.cfg.Topics, p, name)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %w", errTopicsUnknown, err)
	}
	if rej != nil {
		rej.Message = "header " + intake.HeaderTopic + ": " + rej.Message
	}
	return name, rej, nil
}

func (c *Connector) decodeValidate(p *partners.Partner, r *kgo.Record, n *counts) (*schemas.Event, *intake.Rejection, error) {
	topic, rej, err := c.checkTopic(p, r)
	if err != nil || rej != nil {
		return nil, rej, err
	}
	ev, rej := c.decodeValidateEvent(p, r, n)
	if ev != nil {
		ev.Topic = topic
	}
	return ev, rej, nil
}

func (c *Connector) decodeValidateEvent(p *partners.Partner, r *kgo.Record, n *counts) (*schemas.Event, *intake.Rejection) {
	var raw *schemas.RawEvent
	v := r.Value
	switch {
	case len(v) > 0 && v[0] == 0:
		var err error
		if raw, err = schemas.DecodeIngestAvro(v); err != nil {
			return nil, intake.DecodeFailed(intake.ReasonInvalidAvro, err)
		}
	default:
		t := bytes.TrimSpace(v)
		if len(t) == 0 || t[0] != '{' {
			return nil, &intake.Rejection{Reason: intake.ReasonInvalidJSON, Message: "a record must be one JSON event object or Avro in Confluent framing"}
		}
		var err error
		if raw, err = schemas.DecodeRawEventJSON(t); err != nil {
			return nil, intake.DecodeFailed(intake.ReasonInvalidJSON, err)
		}
	}
	// The record's timestamp stands in for the receive time, so a replayed
	// record becomes the very same event.
	ev, dropped, rej := c.validator.Validate(p, raw, r.Timestamp)
	if rej == nil {
		for _, d := range dropped {
			n.dropped[[2]string{p.Name, d.Reason}]++
		}
	}
	return ev, rej
}
