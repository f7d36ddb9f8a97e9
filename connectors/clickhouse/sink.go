package clickhouse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/schemas"
)

// Group is the consumer group of the ClickHouse sink.
// TODO(lead): move to schemas/names.go as GroupSinkClickHouse.
const Group = schemas.GroupSinkClickHouse

// Tables the sink writes, in the order a batch writes them.
const (
	tableEvents        = "events"
	tableDeadLetters   = "dead_letters"
	tableProfiles      = "profiles"
	tableProfileNodes  = "profile_nodes"
	tableProfileMerges = "profile_merges"
	tableTagChanges    = "tag_changes"
	tableMessageEvents = "message_events"
	tableMessageStates = "message_states"
)

// Tables lists the tables the sink writes (the label values of
// rolodex_sink_rows_written_total), in the order a batch writes them.
var Tables = []string{tableEvents, tableDeadLetters, tableProfiles, tableProfileNodes, tableProfileMerges, tableTagChanges,
	tableMessageEvents, tableMessageStates, tableRoutingDecisions, tableLeadDeliveries, tableLeadFeedback, tableDeliveries}

// Topics lists the topics the sink reads.
var Topics = []string{schemas.TopicEvents, schemas.TopicDeadLetter, schemas.TopicProfiles, schemas.TopicMerges, schemas.TopicProfileTags,
	schemas.TopicLifecycleTable, schemas.TopicRoutingOutcomes, schemas.TopicFanoutReports}

// nodeCacheSize bounds the profiles whose node rows the sink remembers
// having written (about 100 bytes each); past it the memory starts afresh.
const nodeCacheSize = 1 << 20

// Config of the sink.
type Config struct {
	// Kafka says where the topics are (Topics). Required.
	Kafka kafkaclient.Config
	// ClickHouse says where to write. Required: ClickHouse.Addr.
	ClickHouse ConnConfig
	// Group is the consumer group. Default Group ("rolodex-sink-clickhouse").
	Group string
	// BatchRows is the most records in one batch. Default 50,000.
	BatchRows int
	// BatchInterval is the longest a batch waits for more records after its
	// first one. Default 1s.
	BatchInterval time.Duration
	// WriteTimeout bounds one attempt to write a batch. Default 30s.
	WriteTimeout time.Duration
	// RetryBackoff is the wait after the first failed attempt; it doubles
	// after each further failure, up to MaxRetryBackoff. Defaults 100ms and 5s.
	RetryBackoff    time.Duration
	MaxRetryBackoff time.Duration
	// FlushTimeout bounds writing and committing the last batch when Run's
	// context ends. Default 10s. A batch not written by then is not
	// committed; the next sink reads it again.
	FlushTimeout time.Duration
	// SkipMigrate, when set, makes Connect leave the schema alone (run
	// "rolodex clickhouse migrate" yourself). By default Connect migrates.
	SkipMigrate bool
	// Registerer receives the rolodex_sink_* metrics. Nil: not registered.
	Registerer prometheus.Registerer
	// Logger. Default slog.Default().
	Logger *slog.Logger
	// KafkaOpts are extra franz-go options for the consumer (tests use them
	// for short session timeouts).
	KafkaOpts []kgo.Opt
}

func (c *Config) setDefaults() {
	c.ClickHouse.setDefaults()
	if c.Group == "" {
		c.Group = Group
	}
	if c.BatchRows == 0 {
		c.BatchRows = 50_000
	}
	if c.BatchInterval == 0 {
		c.BatchInterval = time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 30 * time.Second
	}
	if c.RetryBackoff == 0 {
		c.RetryBackoff = 100 * time.Millisecond
	}
	if c.MaxRetryBackoff == 0 {
		c.MaxRetryBackoff = 5 * time.Second
	}
	if c.FlushTimeout == 0 {
		c.FlushTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports a config that cannot work. Call it after the defaults
// are in place (NewSink does).
func (c *Config) Validate() error {
	if err := c.Kafka.Validate(); err != nil {
		return fmt.Errorf("sink: %w", err)
	}
	if err := c.ClickHouse.Validate(); err != nil {
		return fmt.Errorf("sink: %w", err)
	}
	if c.BatchRows < 1 {
		return fmt.Errorf("sink: BatchRows %d: want at least 1", c.BatchRows)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"BatchInterval", c.BatchInterval}, {"WriteTimeout", c.WriteTimeout}, {"RetryBackoff", c.RetryBackoff},
		{"MaxRetryBackoff", c.MaxRetryBackoff}, {"FlushTimeout", c.FlushTimeout},
	} {
		if d.v < 0 {
			return fmt.Errorf("sink: %s %s: must not be negative", d.name, d.v)
		}
	}
	if c.MaxRetryBackoff < c.RetryBackoff {
		return fmt.Errorf("sink: MaxRetryBackoff %s is below RetryBackoff %s", c.MaxRetryBackoff, c.RetryBackoff)
	}
	return nil
}

// Sink copies, in batches, rolodex.events into the events table,
// rolodex.deadletter into dead_letters, rolodex.profiles into profiles and
// profile_nodes, rolodex.profile.merges into profile_merges,
// rolodex.profile.tags into tag_changes, the message events of
// rolodex.events also into message_events, and the lifecycle's table topic
// (rolodex-lifecycle-table) into message_states (messages.go), and the
// lead outcomes of rolodex.routing.outcomes into routing_decisions,
// lead_deliveries and lead_feedback by type (leads.go), and the fan-out
// delivery reports of rolodex.fanout.reports into deliveries
// (deliveries.go).
// Lifecycle: NewSink, Connect, Run, Close.
//
// All eight topics are read by one consumer group, so one batch holds
// records of all of them and one commit covers them: the commit rules are
// the same for every table, and no table needs records of another to be
// right (every version column comes from the record itself, profiles.go),
// so the topics need no ordering between them.
//
// A batch's offsets are committed only after ClickHouse accepted all of its
// rows. While ClickHouse fails, the same batch is retried with backoff,
// never dropped and never committed past. A crash between insert and commit
// writes the batch again on restart; the tables collapse such copies
// (package doc).
type Sink struct {
	cfg     Config
	metrics *Metrics
	conn    driver.Conn
	// http writes the events table when ClickHouse.HTTPAddr is set.
	http *httpInserter
	cl   *kgo.Client
	db   string
	// nodesWritten remembers, per profile, the member count whose node
	// rows are in profile_nodes: one root with one member count always has
	// the same members, so a snapshot with the same count (every event of
	// the profile makes one) needs no node rows again. Only Run's
	// goroutine touches it.
	nodesWritten map[string]uint32
	// hook, when set (tests only), is called at named points of a flush:
	// "<table>-written" after each table's insert, "written" before the
	// commit. Crash tests kill the process there.
	hook func(point string)
	// view is the events record being decoded (add; Run's goroutine),
	// reset after each.
	view schemas.EventView
}

// NewSink checks the config and creates the metrics. It does not connect.
func NewSink(cfg Config) (*Sink, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Sink{cfg: cfg, metrics: NewMetrics(cfg.Registerer), db: cfg.ClickHouse.Database, nodesWritten: map[string]uint32{}}, nil
}

// Metrics returns the sink's metrics.
func (s *Sink) Metrics() *Metrics { return s.metrics }

// Connect opens ClickHouse, applies the migrations (unless SkipMigrate)
// and joins the consumer group. Call Close afterwards even if it failed.
func (s *Sink) Connect(ctx context.Context) error {
	conn, err := Open(ctx, s.cfg.ClickHouse)
	if err != nil {
		return fmt.Errorf("sink: %w", err)
	}
	s.conn = conn
	if s.cfg.ClickHouse.HTTPAddr != "" {
		s.http = newHTTPInserter(s.cfg.ClickHouse)
		if err := s.http.ping(ctx); err != nil {
			return fmt.Errorf("sink: %w", err)
		}
	}
	if !s.cfg.SkipMigrate {
		if err := Migrate(ctx, conn, s.db); err != nil {
			return fmt.Errorf("sink: %w", err)
		}
	}
	kc := s.cfg.Kafka
	if kc.ClientID == "" {
		kc.ClientID = "rolodex-sink-clickhouse"
	}
	opts := append([]kgo.Opt{
		kgo.ConsumerGroup(s.cfg.Group),
		kgo.ConsumeTopics(Topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
	}, s.cfg.KafkaOpts...)
	cl, err := kafkaclient.NewClient(kc, opts...)
	if err != nil {
		return fmt.Errorf("sink: %w", err)
	}
	s.cl = cl
	return nil
}

// Ping checks that ClickHouse and Kafka answer (for /healthz).
func (s *Sink) Ping(ctx context.Context) error {
	if s.conn == nil || s.cl == nil {
		return errors.New("sink: not connected")
	}
	if err := s.conn.Ping(ctx); err != nil {
		return fmt.Errorf("clickhouse: %w", err)
	}
	if s.http != nil {
		if err := s.http.ping(ctx); err != nil {
			return err
		}
	}
	if err := s.cl.Ping(ctx); err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	return nil
}

// Close leaves the group and closes both connections. Call it after Run
// returned.
func (s *Sink) Close() {
	if s.cl != nil {
		// Run may have returned holding a poll; leaving the group would
		// wait for AllowRebalance forever.
		s.cl.CloseAllowingRebalance()
		s.cl = nil
	}
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
	if s.http != nil {
		s.http.close()
	}
}

// batch is what has been polled and not yet committed.
type batch struct {
	events      EventRows
	deadLetters DeadLetterRows
	profiles    ProfileRows
	merges      MergeRows
	tagChanges  TagChangeRows
	msgEvents   MessageEventRows
	msgStates   MessageStateRows
	leads       LeadOutcomeRows
	deliveries  DeliveryRows
	// nodes are the profile_nodes rows of the batch's profiles, made at
	// the first write attempt and kept for the retries.
	nodes   *ProfileNodeRows
	records int
	// last is the last record per partition, what the commit covers.
	last     map[topicPartition]*kgo.Record
	deadline time.Time // flush when reached
	oldest   time.Time // the oldest record timestamp in the batch
	// done holds the tables this batch was inserted into, so that a retry
	// after a later table failed does not insert them again.
	done map[string]bool
}

type topicPartition struct {
	topic     string
	partition int32
}

func (b *batch) reset() {
	b.events.Reset()
	b.deadLetters.Reset()
	b.profiles.Reset()
	b.merges.Reset()
	b.tagChanges.Reset()
	b.msgEvents.Reset()
	b.msgStates.Reset()
	b.leads.Reset()
	b.deliveries.Reset()
	b.nodes = nil
	b.records = 0
	b.last = map[topicPartition]*kgo.Record{}
	b.deadline = time.Time{}
	b.oldest = time.Time{}
	b.done = map[string]bool{}
}

// Run consumes until ctx is done. On the way out it writes and commits the
// batch in hand within FlushTimeout. It returns an error only for what
// cannot be retried (the Kafka client closed under it).
//
// Flushes are synchronous: fetching and decoding the next batch while the
// previous one is inserted (tried in e04d8ca) gained 1.04–1.16× rows/s for
// 15–18% more CPU per row on two cores shared with the server
// (docs/benchmarks.md, 2026-12-07), not worth a second batch in hand.
func (s *Sink) Run(ctx context.Context) error {
	if s.cl == nil {
		return errors.New("sink: Run before Connect")
	}
	defer s.cl.AllowRebalance()
	b := &batch{}
	if s.http != nil {
		b.events.block = s.http.block // decoded straight into the Native columns
	}
	b.reset()
	for {
		if ctx.Err() != nil {
			return s.shutdown(b)
		}
		pctx, cancel := ctx, context.CancelFunc(func() {})
		if b.records > 0 {
			pctx, cancel = context.WithDeadline(ctx, b.deadline)
		}
		fetches := s.cl.PollRecords(pctx, s.cfg.BatchRows-b.records)
		cancel()
		if fetches.IsClientClosed() {
			return errors.New("sink: kafka client closed")
		}
		fetches.EachError(func(topic string, part int32, err error) {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return
			}
			s.cfg.Logger.Warn("sink: fetch", "topic", topic, "partition", part, "err", err)
		})
		fetches.EachRecord(func(r *kgo.Record) { s.add(b, r) })
		switch {
		case b.records == 0:
			// Nothing held: let a pending rebalance through.
			s.cl.AllowRebalance()
		case b.records >= s.cfg.BatchRows || !time.Now().Before(b.deadline):
			if err := s.flush(ctx, b); err != nil {
				// Only ctx ends a flush early: nothing was committed.
				return s.shutdown(b)
			}
		}
	}
}

// addEventView adds the events record r to the batch's Native block
// straight from its bytes (over HTTP); msg reports a message event, which
// the messages table needs decoded as well.
func (s *Sink) addEventView(b *batch, r *kgo.Record) (msg bool, err error) {
	defer s.view.Reset() // the view keeps nothing of r past add
	if err := schemas.DecodeEventView(r.Value, &s.view); err != nil {
		return false, err
	}
	b.events.block.addView(&s.view, r.Key, r.Partition, r.Offset)
	return isMessageEventType(s.view.Type), nil
}

// isMessageEventType is schemas.IsMessageEvent of a type in bytes,
// without a string for the types that cannot be one.
func isMessageEventType(typ []byte) bool {
	return bytes.HasPrefix(typ, messagePrefix) && schemas.IsMessageEvent(string(typ))
}

var messagePrefix = []byte(schemas.EventMessagePrefix)

// add decodes one record into the batch. A record that does not decode is
// counted and skipped: it was validated upstream, so it is a bug or a
// foreign producer, and holding the partition for it would stop the sink.
func (s *Sink) add(b *batch, r *kgo.Record) {
	if b.records == 0 {
		b.deadline = time.Now().Add(s.cfg.BatchInterval)
	}
	b.records++
	b.last[topicPartition{r.Topic, r.Partition}] = r
	if b.oldest.IsZero() || r.Timestamp.Before(b.oldest) {
		b.oldest = r.Timestamp
	}
	switch r.Topic {
	case schemas.TopicEvents:
		viewed := b.events.block != nil && len(r.Key) > 0
		if viewed {
			msg, err := s.addEventView(b, r)
			if err != nil {
				s.undecodable(r, err)
				return
			}
			if !msg {
				return
			}
		}
		ev, err := schemas.DecodeEvent(r.Value)
		if err != nil {
			s.undecodable(r, err)
			return
		}
		if !viewed {
			b.events.Add(ev, string(r.Key), r.Partition, r.Offset)
		}
		if schemas.IsMessageEvent(ev.Type) {
			b.msgEvents.Add(ev, string(r.Key), r.Partition, r.Offset)
		}
	case schemas.TopicDeadLetter:
		d, err := schemas.DecodeDeadLetter(r.Value)
		if err != nil {
			s.undecodable(r, err)
			return
		}
		b.deadLetters.Add(d, r.Topic, r.Partition, r.Offset)
	case schemas.TopicProfiles:
		if r.Value == nil {
			// A tombstone: the identity stage writes none, and a deleted
			// key leaves the table as it was.
			return
		}
		p, err := DecodeProfile(r.Value, string(r.Key), r.Timestamp, r.Partition, r.Offset)
		if err != nil {
			s.undecodable(r, err)
			return
		}
		b.profiles.Add(p)
	case schemas.TopicMerges:
		m, err := DecodeMerge(r.Value, r.Partition, r.Offset)
		if err != nil {
			s.undecodable(r, err)
			return
		}
		b.merges.Add(m)
	case schemas.TopicProfileTags:
		c, err := DecodeTagChange(r.Value, string(r.Key), r.Partition, r.Offset)
		if err != nil {
			s.undecodable(r, err)
			return
		}
		b.tagChanges.Add(c)
	case schemas.TopicLifecycleTable:
		if r.Value == nil {
			return // a tombstone: the lifecycle writes none
		}
		m, err := DecodeMessageState(r.Value, string(r.Key), r.Partition, r.Offset)
		if err != nil {
			s.undecodable(r, err)
			return
		}
		b.msgStates.Add(m)
	case schemas.TopicRoutingOutcomes:
		o, err := DecodeLeadOutcome(r.Value, string(r.Key), r.Partition, r.Offset)
		if err != nil {
			s.undecodable(r, err)
			return
		}
		b.leads.Add(o) // lead.forwarded: no table keeps it
	case schemas.TopicFanoutReports:
		d, err := DecodeFanoutReport(r.Value, string(r.Key), r.Partition, r.Offset)
		if err != nil {
			s.undecodable(r, err)
			return
		}
		b.deliveries.Add(d)
	default:
		s.undecodable(r, errors.New("unexpected topic"))
	}
}

func (s *Sink) undecodable(r *kgo.Record, err error) {
	s.metrics.Undecodable.WithLabelValues(r.Topic).Inc()
	s.cfg.Logger.Error("sink: skipping a record that does not decode", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
}

// flush writes the batch, retrying until ClickHouse accepts it or ctx ends,
// then commits its offsets and lets rebalances through. It returns an error
// only when ctx ended first; the batch is then neither committed nor reset.
func (s *Sink) flush(ctx context.Context, b *batch) error {
	start := time.Now()
	backoff := s.cfg.RetryBackoff
	for {
		err := s.write(ctx, b)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.metrics.Retries.Inc()
		s.cfg.Logger.Error("sink: write batch, retrying", "events", b.events.Len(), "dead_letters", b.deadLetters.Len(),
			"profiles", b.profiles.Len(), "merges", b.merges.Len(), "tag_changes", b.tagChanges.Len(),
			"message_events", b.msgEvents.Len(), "message_states", b.msgStates.Len(), "routing_decisions", b.leads.Decisions.Len(),
			"lead_deliveries", b.leads.Deliveries.Len(), "lead_feedback", b.leads.Feedback.Len(), "deliveries", b.deliveries.Len(), "backoff", backoff, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, s.cfg.MaxRetryBackoff)
	}
	s.metrics.BatchDuration.Observe(time.Since(start).Seconds())
	if s.hook != nil {
		s.hook("written")
	}
	s.commit(ctx, b)
	s.cl.AllowRebalance()
	b.reset()
	return nil
}

// write inserts the batch's rows, one INSERT per table, each attempt bounded
// by WriteTimeout. Tables already written by an earlier attempt are skipped.
func (s *Sink) write(ctx context.Context, b *batch) error {
	wctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
	defer cancel()
	if b.nodes == nil {
		b.nodes = s.nodeRows(&b.profiles)
	}
	insertEvents := b.events.Insert
	if s.http != nil {
		insertEvents = func(ctx context.Context, _ driver.Conn, db string) error {
			return s.http.insertEvents(ctx, &b.events, db, tableEvents)
		}
	}
	for _, t := range []struct {
		table  string
		n      int
		insert func(context.Context, driver.Conn, string) error
	}{
		{tableEvents, b.events.Len(), insertEvents},
		{tableDeadLetters, b.deadLetters.Len(), b.deadLetters.Insert},
		{tableProfiles, b.profiles.Len(), b.profiles.Insert},
		{tableProfileNodes, b.nodes.Len(), b.nodes.Insert},
		{tableProfileMerges, b.merges.Len(), b.merges.Insert},
		{tableTagChanges, b.tagChanges.Len(), b.tagChanges.Insert},
		{tableMessageEvents, b.msgEvents.Len(), b.msgEvents.Insert},
		{tableMessageStates, b.msgStates.Len(), b.msgStates.Insert},
		{tableRoutingDecisions, b.leads.Decisions.Len(), b.leads.Decisions.Insert},
		{tableLeadDeliveries, b.leads.Deliveries.Len(), b.leads.Deliveries.Insert},
		{tableLeadFeedback, b.leads.Feedback.Len(), b.leads.Feedback.Insert},
		{tableDeliveries, b.deliveries.Len(), b.deliveries.Insert},
	} {
		if t.n == 0 || b.done[t.table] {
			continue
		}
		if err := t.insert(wctx, s.conn, s.db); err != nil {
			return err
		}
		b.done[t.table] = true
		s.metrics.RowsWritten.WithLabelValues(t.table).Add(float64(t.n))
		if s.hook != nil {
			s.hook(t.table + "-written")
		}
	}
	s.rememberNodes(&b.profiles)
	return nil
}

// nodeRows returns the profile_nodes rows of the batch's live profiles
// whose member count's rows are not known to be written already.
func (s *Sink) nodeRows(ps *ProfileRows) *ProfileNodeRows {
	out := &ProfileNodeRows{}
	for _, p := range ps.Rows() {
		if p.Merged() {
			continue
		}
		if m, ok := s.nodesWritten[p.Tenant+"\x00"+p.ProfileID]; ok && m == p.Members {
			continue
		}
		out.Add(p)
	}
	return out
}

// rememberNodes records that the node rows of the batch's profiles are in
// ClickHouse; a merged-away id is never a root again and is forgotten.
func (s *Sink) rememberNodes(ps *ProfileRows) {
	if len(s.nodesWritten) >= nodeCacheSize {
		clear(s.nodesWritten)
	}
	for _, p := range ps.Rows() {
		k := p.Tenant + "\x00" + p.ProfileID
		if p.Merged() {
			delete(s.nodesWritten, k)
		} else {
			s.nodesWritten[k] = p.Members
		}
	}
}

// commit commits the offsets after the batch's last records. A failed
// commit is logged, not retried: the rows are written, and the records are
// then read and written again by whoever owns the partition next; the
// tables collapse the copies.
func (s *Sink) commit(ctx context.Context, b *batch) {
	recs := make([]*kgo.Record, 0, len(b.last))
	for _, r := range b.last {
		recs = append(recs, r)
	}
	if err := s.cl.CommitRecords(ctx, recs...); err != nil {
		s.metrics.CommitFailures.Inc()
		s.cfg.Logger.Warn("sink: commit", "err", err)
		return
	}
	now := time.Now()
	s.metrics.Batches.Inc()
	s.metrics.LastCommit.Set(float64(now.UnixNano()) / 1e9)
	if !b.oldest.IsZero() {
		s.metrics.LastCommitLag.Set(now.Sub(b.oldest).Seconds())
	}
}

// shutdown writes and commits the batch in hand within FlushTimeout.
func (s *Sink) shutdown(b *batch) error {
	if b.records == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.FlushTimeout)
	defer cancel()
	if err := s.flush(ctx, b); err != nil {
		s.cfg.Logger.Warn("sink: last batch not written on shutdown; it will be read again", "records", b.records, "err", err)
	}
	return nil
}
