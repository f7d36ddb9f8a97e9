package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/internal/metrics"
	"github.com/rolodex/rolodex/partners"
	"github.com/rolodex/rolodex/schemas"
)

// Partner fan-out's delivery (docs/fanout.md, "Delivery"): two franz-go
// groups over rolodex.fanout.deliveries. rolodex-fanout-kafka writes the
// Kafka subscriptions' records to their partners' out topics, each
// checked against the store first;
// rolodex-fanout-webhooks posts the webhook subscriptions' records, in
// order per key ("<subscription>/<profile>"), different keys at once,
// each attempt checked against the store first.

// Headers of a fan-out record (on an out topic and in the dead letter),
// besides the ce_ ones, content-type, rolodex_tenant and rolodex_kind.
const (
	HeaderSubscription = "rolodex_subscription"
	HeaderTopic        = "rolodex_topic"
	// HeaderReason says why a record is in rolodex.out.deadletter.
	HeaderReason = "rolodex_reason"
)

// Channels of a FanoutReport.
const (
	ChannelKafka   = "kafka"
	ChannelWebhook = "webhook"
)

// DefaultFanoutWindow bounds the records the webhook sender holds per
// partition (read, not yet committed): at that many it stops fetching the
// partition until the oldest ones end.
const DefaultFanoutWindow = 10000

// FanoutWindowBytes bounds the bytes (keys and values) of the records the
// webhook sender holds per partition: at that much it stops fetching the
// partition too, whichever bound comes first. A fetch already under way
// may add up to one fetch's bytes more (franz-go's FetchMaxPartitionBytes,
// or one record larger than it).
const FanoutWindowBytes = 64 << 20

// FanoutConfig configures partner fan-out's delivery.
type FanoutConfig struct {
	// Brokers are the Kafka seed brokers. Required.
	Brokers []string
	// RetrySchedule is the delay before each attempt of a webhook
	// (config fanout.delivery.retry_schedule). Default SvixSchedule.
	RetrySchedule []time.Duration
	// Timeout of one request (config fanout.delivery.timeout). Default
	// DefaultTimeout (15 s).
	Timeout time.Duration
	// HTTPClient sends the webhooks (SenderConfig.HTTPClient's default).
	HTTPClient *http.Client
	// MaxRetryAfter caps a Retry-After. Default DefaultMaxRetryAfter.
	MaxRetryAfter time.Duration
	// Window is how many records the webhook sender holds per partition
	// before it pauses fetching it (or FanoutWindowBytes of them, whichever
	// comes first). Default DefaultFanoutWindow.
	Window int
	// StoreWait bounds one wait, before each attempt, for the store copy
	// to have read every store record written so far; when it passes the
	// record is neither sent nor dropped: it waits RetryBackoff and the
	// check starts again (counted and logged). Default 10s.
	StoreWait time.Duration
	// RetryBackoff is the wait between attempts to write to Kafka while
	// it does not acknowledge. Default 1s.
	RetryBackoff time.Duration
	// SessionTimeout of the groups; 0: kafkaclient.SessionTimeout (6 s).
	SessionTimeout time.Duration
	// Now is the clock of reports, expiry checks and signatures. Default
	// time.Now.
	Now        func() time.Time
	Registerer prometheus.Registerer
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Validate reports a config that cannot work.
func (c *FanoutConfig) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("fanout delivery: no brokers")
	}
	for i, d := range c.RetrySchedule {
		if d < 0 {
			return fmt.Errorf("fanout delivery: retry_schedule: delay %d (%s) is negative", i+1, d)
		}
	}
	if c.Timeout < 0 {
		return fmt.Errorf("fanout delivery: timeout %s is negative", c.Timeout)
	}
	if c.Window < 0 || c.StoreWait < 0 || c.RetryBackoff < 0 || c.SessionTimeout < 0 || c.MaxRetryAfter < 0 {
		return errors.New("fanout delivery: Window, StoreWait, RetryBackoff, SessionTimeout and MaxRetryAfter must not be negative")
	}
	return nil
}

func (c *FanoutConfig) setDefaults() {
	if len(c.RetrySchedule) == 0 {
		c.RetrySchedule = SvixSchedule
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Window == 0 {
		c.Window = DefaultFanoutWindow
	}
	if c.StoreWait == 0 {
		c.StoreWait = 10 * time.Second
	}
	if c.RetryBackoff == 0 {
		c.RetryBackoff = time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// FanoutMetrics are fan-out delivery's metrics (docs/fanout.md, "Metrics").
type FanoutMetrics struct {
	// WebhookAttempts: class (success, gone, permanent, retry).
	WebhookAttempts *prometheus.CounterVec
	// WebhookDeliveries: result (success, gone, permanent, exhausted,
	// inactive, not_allowed, expired, blacklisted).
	WebhookDeliveries *prometheus.CounterVec
	// WebhookRequestSeconds: one request's latency.
	WebhookRequestSeconds prometheus.Histogram
	// WebhookHeld: records read and not yet committed (queued or in
	// flight); WebhookInFlight: keys with a delivery in progress.
	WebhookHeld     prometheus.Gauge
	WebhookInFlight prometheus.Gauge
	// WebhookSkipped: reason (kafka, undecodable, blacklisted: a cancel,
	// nothing to send).
	WebhookSkipped *prometheus.CounterVec
	// KafkaDeliveries: result (success, refused, permanent; dropped at
	// the send-time check: inactive, not_allowed, expired; cancelled by a
	// blacklisting: blacklisted).
	KafkaDeliveries *prometheus.CounterVec
	// KafkaSkipped: reason (webhook, undecodable, blacklisted).
	KafkaSkipped *prometheus.CounterVec
	// StoreUnsynced: channel (kafka, webhook): send-time checks that
	// waited on because the store copy could not be confirmed up to date
	// within StoreWait (or the end offsets could not be listed).
	StoreUnsynced *prometheus.CounterVec
}

func newFanoutMetrics(reg prometheus.Registerer) (*FanoutMetrics, error) {
	m := &FanoutMetrics{
		WebhookAttempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rolodex_fanout_webhook_attempts_total",
			Help: "Fan-out webhook requests, by class of the answer (success, gone, permanent, retry)."}, []string{"class"}),
		WebhookDeliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rolodex_fanout_webhook_deliveries_total",
			Help: "Fan-out webhook deliveries ended, by result (success, gone, permanent, exhausted; dropped at the send-time check: inactive, not_allowed, expired; cancelled by a blacklisting: blacklisted)."},
			[]string{"result"}),
		WebhookRequestSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "rolodex_fanout_webhook_request_seconds",
			Help: "Latency of one fan-out webhook request.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 13)}),
		WebhookHeld: prometheus.NewGauge(prometheus.GaugeOpts{Name: "rolodex_fanout_webhook_held_records",
			Help: "Records of rolodex.fanout.deliveries the webhook sender read and has not committed yet (queued or in flight)."}),
		WebhookInFlight: prometheus.NewGauge(prometheus.GaugeOpts{Name: "rolodex_fanout_webhook_in_flight",
			Help: "Keys (subscription/profile) with a webhook delivery in progress (requests and waits between retries)."}),
		WebhookSkipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rolodex_fanout_webhook_skipped_total",
			Help: "Records of rolodex.fanout.deliveries the webhook sender passes over, by reason (kafka, undecodable, blacklisted: a blacklisting's cancel, which sends nothing)."}, []string{"reason"}),
		KafkaDeliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rolodex_fanout_kafka_deliveries_total",
			Help: "Fan-out Kafka deliveries ended, by result (success; refused: Kafka refused it for good, permanent: an unreadable body, both dead-lettered; dropped at the send-time check: inactive, not_allowed, expired; cancelled by a blacklisting: blacklisted)."},
			[]string{"result"}),
		KafkaSkipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rolodex_fanout_kafka_skipped_total",
			Help: "Records of rolodex.fanout.deliveries the Kafka writer passes over, by reason (webhook, undecodable, blacklisted: a blacklisting's cancel, which writes nothing)."}, []string{"reason"}),
		StoreUnsynced: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rolodex_fanout_store_unsynced_total",
			Help: "Send-time checks that could not confirm the store copy up to date within StoreWait (or list the store's end offsets), by channel (kafka, webhook): the record waits and is checked again, neither sent nor dropped."},
			[]string{"channel"}),
	}
	if reg == nil {
		return m, nil
	}
	var errs [9]error
	m.WebhookAttempts, errs[0] = metrics.Register(reg, m.WebhookAttempts)
	m.WebhookDeliveries, errs[1] = metrics.Register(reg, m.WebhookDeliveries)
	m.WebhookRequestSeconds, errs[2] = metrics.Register(reg, m.WebhookRequestSeconds)
	m.WebhookHeld, errs[3] = metrics.Register(reg, m.WebhookHeld)
	m.WebhookInFlight, errs[4] = metrics.Register(reg, m.WebhookInFlight)
	m.WebhookSkipped, errs[5] = metrics.Register(reg, m.WebhookSkipped)
	m.KafkaDeliveries, errs[6] = metrics.Register(reg, m.KafkaDeliveries)
	m.KafkaSkipped, errs[7] = metrics.Register(reg, m.KafkaSkipped)
	m.StoreUnsynced, errs[8] = metrics.Register(reg, m.StoreUnsynced)
	if err := errors.Join(errs[:]...); err != nil {
		return nil, fmt.Errorf("fanout delivery: metrics: %w", err)
	}
	return m, nil
}

// Fanout delivers partner fan-out's records.
type Fanout struct {
	cfg    FanoutConfig
	sender *Sender
	m      *FanoutMetrics
	book   *storeBook
	// unsyncedLog paces the warnings of syncStore.
	unsyncedLog rateLog
	// windowBytes is FanoutWindowBytes (tests make it smaller).
	windowBytes int64
}

// NewFanout checks the config and registers the metrics.
func NewFanout(cfg FanoutConfig) (*Fanout, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	s, err := NewSender(SenderConfig{Schedule: cfg.RetrySchedule, HTTPClient: cfg.HTTPClient,
		MaxRetryAfter: cfg.MaxRetryAfter, Now: cfg.Now, UserAgent: "rolodex-fanout"})
	if err != nil {
		return nil, err
	}
	m, err := newFanoutMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Fanout{cfg: cfg, sender: s, m: m, book: newStoreBook(cfg.Logger), windowBytes: FanoutWindowBytes}, nil
}

// Metrics returns the metrics.
func (f *Fanout) Metrics() *FanoutMetrics { return f.m }

// Groups are the consumer groups of the delivery, for lag metrics.
func (f *Fanout) Groups() []string {
	return []string{schemas.GroupFanoutKafka, schemas.GroupFanoutWebhooks}
}

// FanoutOutTopics are the out topics of every partner (any partner may
// subscribe on Kafka) plus the reports and the dead letter, as
// OutTopics makes them.
func FanoutOutTopics(ps []*partners.Partner) []kafkaclient.TopicSpec {
	big := strconv.Itoa(MaxOutRecordBytes)
	var out []kafkaclient.TopicSpec
	for _, p := range ps {
		out = append(out, kafkaclient.TopicSpec{Name: schemas.OutTopic(p.Name), Partitions: 1,
			Configs: map[string]*string{"max.message.bytes": &big}})
	}
	return out
}

// EnsureFanoutTopics creates what fan-out delivery writes to: every
// partner's out topic (FanoutOutTopics; existing topics, a lead partner's
// included, are left as they are), rolodex.fanout.reports and
// rolodex.out.deadletter (partitions of rolodex.fanout.deliveries, which
// must exist; the dead letter's max.message.bytes MaxOutRecordBytes).
func EnsureFanoutTopics(ctx context.Context, admin *kgo.Client, replication int16, ps []*partners.Partner) error {
	_, err := kafkaclient.EnsureTopicsLike(ctx, admin, replication, schemas.TopicFanoutDeliveries, func(n int32) []kafkaclient.TopicSpec {
		big := strconv.Itoa(MaxOutRecordBytes)
		return append(FanoutOutTopics(ps),
			kafkaclient.TopicSpec{Name: schemas.TopicFanoutReports, Partitions: n},
			kafkaclient.TopicSpec{Name: schemas.TopicOutDeadLetter, Partitions: n, Configs: map[string]*string{"max.message.bytes": &big}})
	})
	if err != nil {
		return fmt.Errorf("fanout delivery: %w", err)
	}
	return nil
}

// Run runs the Kafka writer, the webhook sender and the store copy until
// ctx is done (nil) or one of them fails. Call it once.
func (f *Fanout) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return f.runKafka(gctx) })
	g.Go(func() error { return f.runWebhooks(gctx) })
	g.Go(func() error {
		cl, err := f.client("rolodex-fanout-store")
		if err != nil {
			return err
		}
		defer cl.Close()
		adm := kadm.NewClient(cl)
		go f.book.syncLoop(gctx, cl)
		return f.book.run(gctx, adm, func(opts ...kgo.Opt) (*kgo.Client, error) {
			return f.client("rolodex-fanout-store", opts...)
		})
	})
	return g.Wait()
}

func (f *Fanout) client(id string, opts ...kgo.Opt) (*kgo.Client, error) {
	return newClient(f.cfg.Brokers, f.cfg.SessionTimeout, "fanout delivery", id, opts...)
}

func (f *Fanout) produce(ctx context.Context, cl *kgo.Client, recs ...*kgo.Record) error {
	return produceAcked(ctx, cl, f.cfg.Logger, f.cfg.RetryBackoff, "fanout delivery", recs)
}

// syncStore waits until the store copy has read every store record
// written before the call, however long that takes: a check that could
// not confirm it (StoreWait passed, the end offsets not listed) is not an
// attempt and ends nothing; it is counted, logged at most every 10 s, and
// made again after RetryBackoff. False only when ctx is done.
func (f *Fanout) syncStore(ctx context.Context, channel string) bool {
	for {
		if f.book.sync(ctx, f.cfg.StoreWait) {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		f.m.StoreUnsynced.WithLabelValues(channel).Inc()
		if n, ok := f.unsyncedLog.allow(10 * time.Second); ok {
			f.cfg.Logger.Warn("fanout delivery: store copy not confirmed up to date; the record waits and is checked again",
				"channel", channel, "store_wait", f.cfg.StoreWait, "not_logged_since", n)
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(f.cfg.RetryBackoff):
		}
	}
}

// CESourceTopic is the ce_source of a topic's records.
func CESourceTopic(tenant, topic string) string {
	return "/rolodex/tenants/" + tenant + "/topics/" + topic
}

// FanoutHeaders are a fan-out record's headers: CloudEvents binary mode
// (ce_id the webhook id) and the rolodex_ ones.
func FanoutHeaders(d *schemas.FanoutDelivery) []kgo.RecordHeader {
	return []kgo.RecordHeader{
		{Key: HeaderCESpecVersion, Value: []byte("1.0")},
		{Key: HeaderCEID, Value: []byte(d.WebhookID)},
		{Key: HeaderCEType, Value: []byte(d.Type)},
		{Key: HeaderCESource, Value: []byte(CESourceTopic(d.Tenant, d.Topic))},
		{Key: HeaderCETime, Value: []byte(time.UnixMilli(d.At).UTC().Format(time.RFC3339Nano))},
		{Key: HeaderCESubject, Value: []byte(d.ProfileID)},
		{Key: HeaderContentType, Value: []byte("application/json")},
		{Key: HeaderKind, Value: []byte(d.Kind)},
		{Key: HeaderSubscription, Value: []byte(d.Subscription)},
		{Key: HeaderTopic, Value: []byte(d.Topic)},
		{Key: HeaderTenant, Value: []byte(d.Tenant)},
	}
}

// decodeDelivery reads a record of rolodex.fanout.deliveries.
func decodeDelivery(r *kgo.Record) (*schemas.FanoutDelivery, error) {
	var d schemas.FanoutDelivery
	if err := json.Unmarshal(r.Value, &d); err != nil {
		return nil, err
	}
	if d.Subscription == "" || d.WebhookID == "" || d.Partner == "" || d.Tenant == "" {
		return nil, errors.New("no subscription, webhook id, partner or tenant")
	}
	return &d, nil
}

// report is a FanoutReport record of d, keyed by subscription id.
func (f *Fanout) report(d *schemas.FanoutDelivery, typ, channel, result string, attempt, status int, latency time.Duration, err error) *kgo.Record {
	rep := schemas.FanoutReport{Type: typ, Tenant: d.Tenant, Partner: d.Partner, Topic: d.Topic, Subscription: d.Subscription,
		WebhookID: d.WebhookID, Attempt: attempt, Status: status, Result: result, LatencyMs: latency.Milliseconds(),
		At: f.cfg.Now().UnixMilli(), Kind: d.Kind, Channel: channel, ProfileID: d.ProfileID, EventID: d.EventID}
	if err != nil {
		rep.Error = err.Error()
	}
	v, _ := json.Marshal(rep) // plain strings and numbers: cannot fail
	return &kgo.Record{Topic: schemas.TopicFanoutReports, Key: []byte(d.Subscription), Value: v}
}

// deadLetter is d's record on rolodex.out.deadletter.
func deadLetter(d *schemas.FanoutDelivery, reason string) *kgo.Record {
	return &kgo.Record{Topic: schemas.TopicOutDeadLetter, Key: []byte(d.Subscription), Value: []byte(d.Body),
		Headers: append(FanoutHeaders(d), kgo.RecordHeader{Key: HeaderReason, Value: []byte(reason)})}
}

// runKafka writes each Kafka subscription's record to its partner's out
// topic and reports it, committing a batch only after Kafka acknowledged
// everything it produced.
func (f *Fanout) runKafka(ctx context.Context) error {
	return runBatches(ctx, f.client, f.cfg.Logger, "fanout delivery", "rolodex-fanout-kafka",
		schemas.GroupFanoutKafka, schemas.TopicFanoutDeliveries, f.kafkaBatch)
}

// kafkaBatch writes a batch of rolodex.fanout.deliveries' Kafka
// subscriptions (a batchFunc).
func (f *Fanout) kafkaBatch(ctx context.Context, cl *kgo.Client, recs []*kgo.Record) (bool, error) {
	type kafkaRec struct {
		d         *schemas.FanoutDelivery
		key       string
		cancelled bool // a KindBlacklisted record of key came after it
	}
	var kds []*kafkaRec
	for _, r := range recs {
		d, err := decodeDelivery(r)
		switch {
		case err != nil:
			f.cfg.Logger.Warn("fanout delivery: undecodable delivery", "partition", r.Partition, "offset", r.Offset, "err", err)
			f.m.KafkaSkipped.WithLabelValues("undecodable").Inc()
			continue
		case !d.Kafka:
			f.m.KafkaSkipped.WithLabelValues("webhook").Inc()
			continue
		case d.Kind == schemas.KindBlacklisted:
			// Cancels its key's data records read before it in this batch
			// (those of earlier batches are written already); writes
			// nothing itself. Revocations go on.
			f.m.KafkaSkipped.WithLabelValues(schemas.KindBlacklisted).Inc()
			key := string(r.Key)
			for _, q := range kds {
				if q.key == key && q.d.Kind == schemas.KindTopicEvent {
					q.cancelled = true
				}
			}
			continue
		}
		kds = append(kds, &kafkaRec{d: d, key: string(r.Key)})
	}
	// The send-time check, as for a webhook: one sync for the batch,
	// after it was read.
	if len(kds) > 0 && !f.syncStore(ctx, ChannelKafka) {
		return false, nil // ctx done: the batch is read again
	}
	var out, after []*kgo.Record
	ds := map[*kgo.Record]*schemas.FanoutDelivery{}
	ended := map[string]int{}
	for _, k := range kds {
		d := k.d
		if k.cancelled {
			after = append(after, f.report(d, schemas.ReportDeliveryDropped, ChannelKafka, schemas.FanoutBlacklisted, 0, 0, 0, nil))
			ended[schemas.FanoutBlacklisted]++
			continue
		}
		expires, err := consentExpires(d.Body)
		if err != nil {
			reason := "undecodable body: " + err.Error()
			after = append(after, deadLetter(d, reason),
				f.report(d, schemas.ReportDeliveryFailed, ChannelKafka, string(ResultPermanent), 0, 0, 0, errors.New(reason)))
			ended[string(ResultPermanent)]++
			continue
		}
		if why := f.recheck(d, expires); why != "" {
			after = append(after, f.report(d, schemas.ReportDeliveryDropped, ChannelKafka, why, 0, 0, 0, nil))
			ended[why]++
			continue
		}
		o := &kgo.Record{Topic: schemas.OutTopic(d.Partner), Key: []byte(d.ProfileID), Value: []byte(d.Body), Headers: FanoutHeaders(d)}
		ds[o] = d
		out = append(out, o)
	}
	refused, err := produceOut(ctx, cl, f.cfg.Logger, f.cfg.RetryBackoff, "fanout delivery", out)
	if err != nil {
		return false, nil // ctx done: the batch is read again
	}
	for _, o := range out {
		d := ds[o]
		if err := refused[o]; err != nil {
			after = append(after, deadLetter(d, "refused: "+err.Error()),
				f.report(d, schemas.ReportDeliveryFailed, ChannelKafka, schemas.ReportResultRefused, 1, 0, 0, err))
			ended[schemas.ReportResultRefused]++
			continue
		}
		after = append(after, f.report(d, schemas.ReportDeliverySucceeded, ChannelKafka, string(ResultSuccess), 1, 0, 0, nil))
		ended[string(ResultSuccess)]++
	}
	if len(after) > 0 {
		if err := f.produce(ctx, cl, after...); err != nil {
			return false, nil // ctx done: the batch is read again
		}
	}
	for result, n := range ended {
		f.m.KafkaDeliveries.WithLabelValues(result).Add(float64(n))
	}
	return true, nil
}
