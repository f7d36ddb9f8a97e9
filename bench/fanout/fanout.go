// Package fanout measures partner fan-out's delivery (docs/fanout.md,
// "Delivery") on Kafka against a franz-go consume→produce pass-through of
// the same records, on the same broker, in the same run:
//
//   - passthrough (the baseline): a consumer group reads the N Kafka
//     deliveries stored in rolodex.fanout.deliveries and produces each
//     unchanged to bench.fanout.passthrough (acks=all, idempotent, the
//     Rolodex partitioner), marking each for commit once its copy is
//     acknowledged.
//   - kafka delivery: webhooks.Fanout as `rolodex run processors` wires it
//     (its Kafka writer rolodex-fanout-kafka and webhook sender
//     rolodex-fanout-webhooks, default config, a fresh Prometheus
//     registry) reads the same N records (Kafka subscriptions) from the
//     start, until all N are on the partners' out topics
//     rolodex.out.<partner> and their N reports on rolodex.fanout.reports
//     (then, untimed, until the writer committed them).
//   - webhook delivery: N more records, of webhook subscriptions, are
//     stored; a new Fanout (the groups go on from their commits) posts
//     them to a local receiver (net/http/httptest, 200 at once, counting
//     distinct webhook-ids and verifying nothing else), until it has all
//     N ids. The send-time check reads the subscriptions, with their
//     secrets, from the store topics, where the run wrote them.
//   - fan-out group: N topic events on rolodex.fanout.input, after the
//     directory (the two topics and six subscriptions, on every
//     partition), and the group rolodex-fanout (fanout.New, fresh LevelDB
//     storage) from the start until it has written every delivery they
//     make (one per event and subscription of its topic, 3.3 per event)
//     to rolodex.fanout.deliveries.
//
// After the phases, untimed, the run checks that exactly the expected
// records were made: the out topics hold each Kafka record once (topic,
// key, body, ce_id), the receiver got exactly the webhook ids, the
// reports are one delivery.succeeded per Kafka record and one
// delivery.attempt plus one delivery.succeeded per webhook, nothing is in
// the dead letter, and the group wrote each delivery it must once.
package fanout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lovoo/goka"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/bench/measure"
	"github.com/rolodex/rolodex/connectors/webhooks"
	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/partners"
	fanoutproc "github.com/rolodex/rolodex/processors/fanout"
	"github.com/rolodex/rolodex/schemas"
)

// Topic and group of the baseline.
const (
	TopicPassthrough = "bench.fanout.passthrough"
	GroupPassthrough = "rolodex-bench-fanout-passthrough"
)

// Config of a run.
type Config struct {
	// Records is how many deliveries each phase handles: N for Kafka
	// subscriptions, then N for webhook ones. Default 20000.
	Records int
	// Partitions of rolodex.fanout.deliveries and the other topics the
	// run creates (an out topic has one, as EnsureFanoutTopics makes it).
	// Default 8.
	Partitions int32
	// Brokers of the Kafka to measure against; it must hold no fan-out
	// deliveries, out records or reports yet. Default: an embedded kfake
	// broker in this process.
	Brokers []string
	// Seed of the generated records and secrets. Default 1.
	Seed uint64
	// Timeout fails a phase that has not ended by then. Default 5m.
	Timeout time.Duration
	// Logger of the delivery; default: discarded.
	Logger *slog.Logger
	// HTTPClient of the webhook sender; default nil: the sender's own
	// default, as `rolodex run processors` runs it (http.DefaultTransport,
	// which keeps 2 idle connections per host).
	HTTPClient *http.Client
}

func (c *Config) setDefaults() {
	if c.Records == 0 {
		c.Records = 20000
	}
	if c.Partitions == 0 {
		c.Partitions = 8
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Timeout == 0 {
		c.Timeout = 5 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// Validate reports a config that cannot work.
func (c *Config) Validate() error {
	if c.Records < 0 || c.Partitions < 0 || c.Timeout < 0 {
		return errors.New("benchfanout: records, partitions and timeout must be positive")
	}
	if err := measure.CheckBrokers(c.Brokers); err != nil {
		return fmt.Errorf("benchfanout: %w", err)
	}
	return nil
}

// Result of a run. Each phase's Events is Records.
type Result struct {
	Config   Config
	Embedded bool
	// AvgRecordBytes is the mean size of a record on
	// rolodex.fanout.deliveries (JSON), AvgBodyBytes of its body.
	AvgRecordBytes, AvgBodyBytes int
	Passthrough, Kafka, Webhooks measure.Phase
	// Group is the fan-out group (phase 4): its Events are the topic
	// events, which made GroupDeliveries records on
	// rolodex.fanout.deliveries.
	Group           measure.Phase
	GroupDeliveries int
	// KafkaRatio, WebhookRatio and GroupRatio are the phase's records
	// (events) per second over the pass-through's records/s.
	KafkaRatio, WebhookRatio, GroupRatio float64
	// FirstKafka and FirstWebhook are the times from the phase's start
	// (a new Fanout: store copy, group joins) to its first out record
	// seen or first request received.
	FirstKafka, FirstWebhook time.Duration
	// FirstGroup is the time from the group's start (join, recovery) to
	// its first delivery seen.
	FirstGroup time.Duration
	// Requests is how many requests the receiver got (the distinct ids
	// are Records; more means resends).
	Requests int64
	// Conns is how many TCP connections the receiver accepted.
	Conns int64
	// FailedAttempts counts the webhook attempts that failed and were
	// retried, by cause (their reports' errors, shortened): a request the
	// sender could not make (too many open files) waits for the retry
	// schedule's next delay (5 s, then 5 min).
	FailedAttempts map[string]int
	// LoadBefore and LoadAfter are the load averages around the run.
	LoadBefore, LoadAfter string
}

// Run stores the subscriptions and the Kafka deliveries, measures the
// pass-through and the Kafka delivery, stores the webhook deliveries,
// measures their delivery, and checks every phase's records.
func Run(ctx context.Context, cfg Config) (Result, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	res := Result{Config: cfg, LoadBefore: measure.LoadAvg()}
	e, err := Setup(ctx, cfg)
	if err != nil {
		return res, err
	}
	defer e.Close()
	res.Embedded, res.Config.Brokers = e.cluster != nil, e.brokers
	now := time.Now()
	kafkaRecs := Deliveries(cfg.Records, true, cfg.Seed, now)
	hookRecs := Deliveries(cfg.Records, false, cfg.Seed+1, now)
	var bodies int
	for _, d := range kafkaRecs {
		bodies += len(d.Body)
	}
	res.AvgBodyBytes = bodies / max(1, len(kafkaRecs))
	if res.AvgRecordBytes, err = e.Store(ctx, kafkaRecs); err != nil {
		return res, err
	}
	if res.Passthrough, err = e.Passthrough(ctx, cfg.Records); err != nil {
		return res, err
	}
	if res.Kafka, res.FirstKafka, err = e.KafkaDelivery(ctx, cfg.Records); err != nil {
		return res, err
	}
	if _, err = e.Store(ctx, hookRecs); err != nil {
		return res, err
	}
	if res.Webhooks, res.FirstWebhook, err = e.WebhookDelivery(ctx, cfg.Records); err != nil {
		return res, err
	}
	res.Requests, res.Conns = e.recv.requests.Load(), e.recv.conns.Load()
	if res.FailedAttempts, err = e.Check(ctx, kafkaRecs, hookRecs); err != nil {
		return res, err
	}
	want, err := e.StoreEvents(ctx, Events(cfg.Records, cfg.Seed, now))
	if err != nil {
		return res, err
	}
	res.GroupDeliveries = len(want)
	if res.Group, res.FirstGroup, err = e.Group(ctx, cfg.Records, len(want)); err != nil {
		return res, err
	}
	if err := e.CheckGroup(ctx, want); err != nil {
		return res, err
	}
	if r := res.Passthrough.EventsPerSec; r > 0 {
		res.KafkaRatio = res.Kafka.EventsPerSec / r
		res.WebhookRatio = res.Webhooks.EventsPerSec / r
		res.GroupRatio = res.Group.EventsPerSec / r
	}
	res.LoadAfter = measure.LoadAvg()
	return res, nil
}

// Env is a broker with fan-out's topics, the store's topics and
// subscriptions, and the webhook receiver: what every phase runs on.
type Env struct {
	cfg     Config
	brokers []string
	cluster *kfake.Cluster
	cl      *kgo.Client
	adm     *kadm.Client
	recv    *receiver
}

// Setup starts the broker (embedded unless cfg.Brokers) and the receiver,
// creates the topics and stores the topics and subscriptions. cfg gets
// its defaults.
func Setup(ctx context.Context, cfg Config) (*Env, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	brokers, cluster, err := measure.StartBroker(cfg.Brokers, cfg.Partitions)
	if err != nil {
		return nil, fmt.Errorf("benchfanout: %w", err)
	}
	e := &Env{cfg: cfg, brokers: brokers, cluster: cluster, recv: newReceiver()}
	if e.cl, err = kafkaclient.NewClient(kafkaclient.Config{Brokers: brokers, ClientID: "rolodex-bench-fanout"}); err != nil {
		e.Close()
		return nil, fmt.Errorf("benchfanout: %w", err)
	}
	e.adm = kadm.NewClient(e.cl)
	if err := e.setup(ctx); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// Close stops the receiver and the embedded broker.
func (e *Env) Close() {
	e.recv.srv.Close()
	if e.cl != nil {
		e.cl.Close()
	}
	if e.cluster != nil {
		e.cluster.Close()
	}
}

func (e *Env) setup(ctx context.Context) error {
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := measure.Ping(tctx, e.brokers, e.cl); err != nil {
		return fmt.Errorf("benchfanout: %w", err)
	}
	specs := append(fanoutproc.Topics(e.cfg.Partitions), kafkaclient.TopicSpec{Name: TopicPassthrough, Partitions: e.cfg.Partitions})
	if err := kafkaclient.EnsureTopics(tctx, e.cl, -1, specs...); err != nil {
		return fmt.Errorf("benchfanout: create topics: %w", err)
	}
	if err := webhooks.EnsureFanoutTopics(tctx, e.cl, -1, partnerList()); err != nil {
		return fmt.Errorf("benchfanout: %w", err)
	}
	check := append(outTopics(), schemas.TopicFanoutDeliveries, schemas.TopicFanoutReports, schemas.TopicOutDeadLetter, TopicPassthrough)
	ends, err := e.adm.ListEndOffsets(tctx, check...)
	if err != nil {
		return fmt.Errorf("benchfanout: end offsets: %w", err)
	}
	var stale []string
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Offset > 0 {
			stale = append(stale, fmt.Sprintf("%s/%d", o.Topic, o.Partition))
		}
	})
	if len(stale) > 0 {
		return fmt.Errorf("benchfanout: the Kafka at %v is not fresh (%v hold records); the benchmark needs one without fan-out deliveries, out records or reports", e.brokers, stale)
	}
	var recs []*kgo.Record
	for _, t := range Topics() {
		v, err := json.Marshal(schemas.TopicRecord{Topic: t, Version: 1, UpdatedAt: "2026-12-01T00:00:00.000Z", UpdatedBy: Publisher})
		if err != nil {
			return fmt.Errorf("benchfanout: %w", err)
		}
		recs = append(recs, &kgo.Record{Topic: schemas.TopicFanoutTopics, Key: []byte(t.Key()), Value: v})
	}
	for _, s := range Subscriptions(e.recv.srv.URL, e.cfg.Seed) {
		v, err := json.Marshal(s)
		if err != nil {
			return fmt.Errorf("benchfanout: %w", err)
		}
		recs = append(recs, &kgo.Record{Topic: schemas.TopicFanoutSubscriptions, Key: []byte(s.Subscription.ID), Value: v})
	}
	if err := measure.ProduceAll(ctx, e.cl, recs); err != nil {
		return fmt.Errorf("benchfanout: store topics and subscriptions: %w", err)
	}
	return nil
}

func partnerList() []*partners.Partner {
	var ps []*partners.Partner
	for _, p := range Partners {
		ps = append(ps, &partners.Partner{Name: p, Tenant: Tenant})
	}
	return ps
}

func outTopics() []string {
	var ts []string
	for _, p := range Partners {
		ts = append(ts, schemas.OutTopic(p))
	}
	return ts
}

// Store writes ds to rolodex.fanout.deliveries, keyed as the fan-out
// group keys them, and returns the mean record size.
func (e *Env) Store(ctx context.Context, ds []schemas.FanoutDelivery) (int, error) {
	recs := make([]*kgo.Record, 0, len(ds))
	var bytes int
	for i := range ds {
		v, err := json.Marshal(&ds[i])
		if err != nil {
			return 0, fmt.Errorf("benchfanout: %w", err)
		}
		bytes += len(v)
		recs = append(recs, &kgo.Record{Topic: schemas.TopicFanoutDeliveries, Key: []byte(ds[i].DeliveryKey()), Value: v})
	}
	if err := measure.ProduceAll(ctx, e.cl, recs); err != nil {
		return 0, fmt.Errorf("benchfanout: store deliveries: %w", err)
	}
	return bytes / max(1, len(ds)), nil
}

// Passthrough is the baseline: consume the first n records of
// rolodex.fanout.deliveries, produce each unchanged to TopicPassthrough,
// commit each once its copy is acknowledged. It ends when every copy is
// acknowledged.
func (e *Env) Passthrough(ctx context.Context, n int) (measure.Phase, error) {
	return measure.Passthrough(ctx, measure.PassthroughConfig{Brokers: e.brokers, ClientID: "rolodex-bench-fanout-passthrough",
		Group: GroupPassthrough, From: schemas.TopicFanoutDeliveries, To: TopicPassthrough, N: n, What: "benchfanout"})
}

// delivery is a running webhooks.Fanout.
type delivery struct {
	stop context.CancelFunc
	done chan error
	once sync.Once
	err  error
}

// startDelivery runs fan-out's delivery as `rolodex run processors` wires
// it (fanoutDeliveryComponent): default retry schedule and timeout, its
// metrics on a fresh registry.
func (e *Env) startDelivery(ctx context.Context) (*delivery, error) {
	f, err := webhooks.NewFanout(webhooks.FanoutConfig{Brokers: e.brokers, HTTPClient: e.cfg.HTTPClient, Registerer: prometheus.NewRegistry(), Logger: e.cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("benchfanout: %w", err)
	}
	dctx, stop := context.WithCancel(ctx)
	d := &delivery{stop: stop, done: make(chan error, 1)}
	go func() { d.done <- f.Run(dctx) }()
	return d, nil
}

// close stops the delivery and waits for it (once); it returns Run's error.
func (d *delivery) close() error {
	d.once.Do(func() {
		d.stop()
		d.err = <-d.done
	})
	return d.err
}

// ends is the sum of the end offsets of topics.
func (e *Env) ends(ctx context.Context, topics ...string) (int64, error) {
	ends, err := e.adm.ListEndOffsets(ctx, topics...)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return 0, fmt.Errorf("benchfanout: end offsets: %w", err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n, nil
}

// waitFor polls cond every 5 ms until it holds, the delivery stops, or
// the timeout.
func (e *Env) waitFor(ctx context.Context, what string, d *delivery, cond func() (bool, error)) error {
	deadline := time.Now().Add(e.cfg.Timeout)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-d.done:
			d.done <- err
			return fmt.Errorf("benchfanout: %s: the delivery stopped: %v", what, err)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("benchfanout: %s: not done after %s", what, e.cfg.Timeout)
		}
	}
}

// KafkaDelivery runs a new Fanout until n more records are on the out
// topics and n more reports on rolodex.fanout.reports (the Kafka
// deliveries are stored already); then, untimed, until the Kafka writer
// committed every record of rolodex.fanout.deliveries. It returns the phase and the time to
// the first out record seen.
func (e *Env) KafkaDelivery(ctx context.Context, n int) (measure.Phase, time.Duration, error) {
	outs := outTopics()
	out0, err := e.ends(ctx, outs...)
	if err != nil {
		return measure.Phase{}, 0, err
	}
	rep0, err := e.ends(ctx, schemas.TopicFanoutReports)
	if err != nil {
		return measure.Phase{}, 0, err
	}
	start, cpu0 := time.Now(), measure.ProcessCPU()
	d, err := e.startDelivery(ctx)
	if err != nil {
		return measure.Phase{}, 0, err
	}
	defer d.close()
	var first time.Duration
	err = e.waitFor(ctx, "kafka delivery", d, func() (bool, error) {
		o, err := e.ends(ctx, outs...)
		if err != nil {
			return false, err
		}
		if o > out0 && first == 0 {
			first = time.Since(start)
		}
		if o-out0 < int64(n) {
			return false, nil
		}
		r, err := e.ends(ctx, schemas.TopicFanoutReports)
		return r-rep0 >= int64(n), err
	})
	if err != nil {
		return measure.Phase{}, 0, err
	}
	p := measure.NewPhase(n, time.Since(start), measure.ProcessCPU()-cpu0)
	// Untimed: the writer commits a batch after its reports; stopped
	// before that commit it would write the batch again when it next
	// starts (same ids: at least once), and the check counts each once.
	err = e.waitFor(ctx, "kafka delivery commits", d, func() (bool, error) {
		return e.committed(ctx, schemas.GroupFanoutKafka, schemas.TopicFanoutDeliveries)
	})
	if err != nil {
		return p, first, err
	}
	if err := d.close(); err != nil {
		return p, first, fmt.Errorf("benchfanout: kafka delivery: %w", err)
	}
	return p, first, nil
}

// WebhookDelivery runs a new Fanout until the receiver has n more
// distinct webhook ids (the webhook deliveries are stored already); then,
// untimed, until the sender committed every record of
// rolodex.fanout.deliveries (it commits a record once its end report is
// written). It returns the phase and the time to the first request.
func (e *Env) WebhookDelivery(ctx context.Context, n int) (measure.Phase, time.Duration, error) {
	ids0 := e.recv.count()
	start, cpu0 := time.Now(), measure.ProcessCPU()
	e.recv.start(start)
	d, err := e.startDelivery(ctx)
	if err != nil {
		return measure.Phase{}, 0, err
	}
	defer d.close()
	err = e.waitFor(ctx, "webhook delivery", d, func() (bool, error) { return e.recv.count()-ids0 >= n, nil })
	if err != nil {
		return measure.Phase{}, 0, err
	}
	p := measure.NewPhase(n, time.Since(start), measure.ProcessCPU()-cpu0)
	// The sender commits a record only after its end report is written.
	err = e.waitFor(ctx, "webhook reports", d, func() (bool, error) {
		return e.committed(ctx, schemas.GroupFanoutWebhooks, schemas.TopicFanoutDeliveries)
	})
	if err != nil {
		return p, 0, err
	}
	if err := d.close(); err != nil {
		return p, 0, fmt.Errorf("benchfanout: webhook delivery: %w", err)
	}
	return p, e.recv.firstAfter(), nil
}

// committed reports whether group committed every partition of topic up
// to its end offset.
func (e *Env) committed(ctx context.Context, group, topic string) (bool, error) {
	ends, err := e.adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return false, fmt.Errorf("benchfanout: end offsets: %w", err)
	}
	offs, err := e.adm.FetchOffsets(ctx, group)
	if err == nil {
		err = offs.Error()
	}
	if err != nil {
		return false, fmt.Errorf("benchfanout: committed offsets of %s: %w", group, err)
	}
	done := true
	ends.Each(func(o kadm.ListedOffset) {
		if c, ok := offs.Lookup(topic, o.Partition); o.Offset > 0 && (!ok || c.At < o.Offset) {
			done = false
		}
	})
	return done, nil
}

// receiver is the webhook endpoint: 200 at once, counting distinct
// webhook-ids.
type receiver struct {
	srv      *httptest.Server
	requests atomic.Int64
	conns    atomic.Int64 // connections accepted
	mu       sync.Mutex
	ids      map[string]string // webhook id → the URL path it came to
	t0       time.Time
	first    time.Time
}

func newReceiver() *receiver {
	r := &receiver{ids: map[string]string{}}
	r.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, _ = io.Copy(io.Discard, req.Body)
		r.requests.Add(1)
		id := req.Header.Get("webhook-id")
		r.mu.Lock()
		if r.first.IsZero() {
			r.first = time.Now()
		}
		r.ids[id] = req.URL.Path
		r.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	// Accept errors (too many open files, when the sender opens a
	// connection per request) show in the failed attempts' reports.
	r.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	r.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			r.conns.Add(1)
		}
	}
	r.srv.Start()
	return r
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ids)
}

// start marks a phase's start: the next request is its first.
func (r *receiver) start(t time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.t0, r.first = t, time.Time{}
}

func (r *receiver) firstAfter() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.first.IsZero() {
		return 0
	}
	return r.first.Sub(r.t0)
}

// Check compares what the phases made with what they must make: the out
// topics hold each of kafkaRecs once (its partner's topic, key the
// profile id, value the body, ce_id the webhook id), the receiver got
// exactly hookRecs' ids (each at its partner's path), the pass-through
// copied len(kafkaRecs) records, the reports are one delivery.succeeded
// per Kafka record and one delivery.attempt (success) and one
// delivery.succeeded per webhook besides failed attempts that were
// retried (returned, counted by cause), and the dead letter is empty.
func (e *Env) Check(ctx context.Context, kafkaRecs, hookRecs []schemas.FanoutDelivery) (map[string]int, error) {
	want := map[string]*schemas.FanoutDelivery{}
	for i := range kafkaRecs {
		want[kafkaRecs[i].WebhookID] = &kafkaRecs[i]
	}
	outs, err := e.readAll(ctx, outTopics()...)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, r := range outs {
		id := header(r, webhooks.HeaderCEID)
		d := want[id]
		switch {
		case d == nil:
			return nil, fmt.Errorf("benchfanout: check: %s holds a record with ce_id %q, not one of the deliveries", r.Topic, id)
		case seen[id]:
			return nil, fmt.Errorf("benchfanout: check: ce_id %q is on the out topics twice", id)
		case r.Topic != schemas.OutTopic(d.Partner) || string(r.Key) != d.ProfileID || string(r.Value) != d.Body:
			return nil, fmt.Errorf("benchfanout: check: %q on %s key %q is not the delivery's record (want %s, key %q, its body)", id, r.Topic, r.Key, schemas.OutTopic(d.Partner), d.ProfileID)
		}
		seen[id] = true
	}
	if len(seen) != len(kafkaRecs) {
		return nil, fmt.Errorf("benchfanout: check: %d records on the out topics, want %d", len(seen), len(kafkaRecs))
	}

	e.recv.mu.Lock()
	got := len(e.recv.ids)
	var bad error
	for _, d := range hookRecs {
		if path, ok := e.recv.ids[d.WebhookID]; !ok || path != "/"+d.Partner {
			bad = fmt.Errorf("benchfanout: check: webhook %q reached %q, want /%s", d.WebhookID, path, d.Partner)
			break
		}
	}
	e.recv.mu.Unlock()
	if bad != nil {
		return nil, bad
	}
	if got != len(hookRecs) {
		return nil, fmt.Errorf("benchfanout: check: the receiver got %d distinct webhook ids, want %d", got, len(hookRecs))
	}

	if n, err := e.ends(ctx, TopicPassthrough); err != nil || n != int64(len(kafkaRecs)) {
		return nil, fmt.Errorf("benchfanout: check: %d records on %s, want %d (%v)", n, TopicPassthrough, len(kafkaRecs), err)
	}
	if n, err := e.ends(ctx, schemas.TopicOutDeadLetter); err != nil || n != 0 {
		return nil, fmt.Errorf("benchfanout: check: %d records in %s, want none (%v)", n, schemas.TopicOutDeadLetter, err)
	}
	reps, err := e.readAll(ctx, schemas.TopicFanoutReports)
	if err != nil {
		return nil, err
	}
	retryKey := webhooks.ChannelWebhook + " " + schemas.ReportAttempt + " " + string(webhooks.Retry)
	counts := map[string]int{}
	ids := map[string]bool{}
	errs := map[string]int{}
	for _, r := range reps {
		var rep schemas.FanoutReport
		if err := json.Unmarshal(r.Value, &rep); err != nil {
			return nil, fmt.Errorf("benchfanout: check: report: %w", err)
		}
		k := rep.Channel + " " + rep.Type + " " + rep.Result
		counts[k]++
		ids[fmt.Sprintf("%s %s %d", k, rep.WebhookID, rep.Attempt)] = true
		if k == retryKey {
			errs[errorClass(rep.Error)]++
		}
	}
	wantCounts := map[string]int{
		webhooks.ChannelKafka + " " + schemas.ReportDeliverySucceeded + " success":   len(kafkaRecs),
		webhooks.ChannelWebhook + " " + schemas.ReportAttempt + " success":           len(hookRecs),
		webhooks.ChannelWebhook + " " + schemas.ReportDeliverySucceeded + " success": len(hookRecs),
	}
	for k, n := range counts {
		if k != retryKey && wantCounts[k] != n {
			return nil, fmt.Errorf("benchfanout: check: reports %v, want %v (and any failed attempts retried)", counts, wantCounts)
		}
	}
	if len(ids) != len(reps) || len(reps) != len(kafkaRecs)+2*len(hookRecs)+counts[retryKey] {
		return nil, fmt.Errorf("benchfanout: check: %d reports of %d distinct (channel, type, id, attempt), want %d", len(reps), len(ids), len(kafkaRecs)+2*len(hookRecs)+counts[retryKey])
	}
	return errs, nil
}

// errorClass shortens a failed attempt's error to its cause: the text
// after the last ": " ("socket: too many open files"), or the whole.
func errorClass(err string) string {
	if i := strings.LastIndex(err, "dial tcp "); i >= 0 {
		if j := strings.Index(err[i:], ": "); j >= 0 {
			return "dial: " + err[i+j+2:]
		}
	}
	return err
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// readAll reads every record of topics up to their end offsets now.
func (e *Env) readAll(ctx context.Context, topics ...string) ([]*kgo.Record, error) {
	ends, err := e.adm.ListEndOffsets(ctx, topics...)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("benchfanout: end offsets: %w", err)
	}
	parts := map[string]map[int32]kgo.Offset{}
	left := map[string]map[int32]int64{}
	var total int64
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset == 0 {
			return
		}
		if parts[o.Topic] == nil {
			parts[o.Topic], left[o.Topic] = map[int32]kgo.Offset{}, map[int32]int64{}
		}
		parts[o.Topic][o.Partition] = kgo.NewOffset().AtStart()
		left[o.Topic][o.Partition] = o.Offset
		total += o.Offset
	})
	if total == 0 {
		return nil, nil
	}
	cl, err := kafkaclient.NewClient(kafkaclient.Config{Brokers: e.brokers, ClientID: "rolodex-bench-fanout-check"}, kgo.ConsumePartitions(parts))
	if err != nil {
		return nil, fmt.Errorf("benchfanout: %w", err)
	}
	defer cl.Close()
	rctx, cancel := context.WithTimeout(ctx, e.cfg.Timeout)
	defer cancel()
	var out []*kgo.Record
	for int64(len(out)) < total {
		fs := cl.PollFetches(rctx)
		if err := rctx.Err(); err != nil {
			return nil, fmt.Errorf("benchfanout: read %v: %d of %d records: %w", topics, len(out), total, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset < left[r.Topic][r.Partition] {
				out = append(out, r)
			}
		})
	}
	return out, nil
}

// StoreEvents writes the fan-out group's input: the directory (Topics and
// Subscriptions, secrets left out, as the broadcast step writes it: to
// every partition under its directory key) and then evs, keyed by
// profile id with the Rolodex partitioner (as the identity group writes
// them). It returns the webhook ids the group must make: one per event
// and subscription of its topic.
func (e *Env) StoreEvents(ctx context.Context, evs []*schemas.FanoutEvent) (map[string]bool, error) {
	parts, err := kafkaclient.Partitions(ctx, e.cl, schemas.TopicFanoutInput)
	if err != nil {
		return nil, fmt.Errorf("benchfanout: %w", err)
	}
	hash := kafkaclient.Partitioner()
	prod, err := kafkaclient.NewClient(kafkaclient.Config{Brokers: e.brokers, ClientID: "rolodex-bench-fanout-input"},
		kgo.RecordPartitioner(kgo.BasicConsistentPartitioner(func(topic string) func(*kgo.Record, int) int {
			h := hash.ForTopic(topic)
			return func(r *kgo.Record, n int) int {
				if strings.HasPrefix(string(r.Key), schemas.DirectoryKeyPrefix) {
					return int(r.Partition)
				}
				return h.Partition(r, n)
			}
		})))
	if err != nil {
		return nil, fmt.Errorf("benchfanout: %w", err)
	}
	defer prod.Close()
	var dir []schemas.FanoutInput
	for _, t := range Topics() {
		dir = append(dir, schemas.FanoutInput{Topic: &schemas.TopicRecord{Topic: t, Version: 1}})
	}
	subs := map[string][]string{} // topic → subscription ids
	for _, s := range Subscriptions(e.recv.srv.URL, e.cfg.Seed) {
		s.Secret = ""
		dir = append(dir, schemas.FanoutInput{Subscription: &s})
		subs[s.Subscription.Topic] = append(subs[s.Subscription.Topic], s.Subscription.ID)
	}
	var recs []*kgo.Record
	for _, in := range dir {
		v, err := json.Marshal(&in)
		if err != nil {
			return nil, fmt.Errorf("benchfanout: %w", err)
		}
		for p := range parts {
			recs = append(recs, &kgo.Record{Topic: schemas.TopicFanoutInput, Partition: p, Key: []byte(schemas.DirectoryKey(p, parts)), Value: v})
		}
	}
	want := map[string]bool{}
	for _, ev := range evs {
		v, err := json.Marshal(&schemas.FanoutInput{Event: ev})
		if err != nil {
			return nil, fmt.Errorf("benchfanout: %w", err)
		}
		recs = append(recs, &kgo.Record{Topic: schemas.TopicFanoutInput, Key: []byte(ev.Profile.ID), Value: v})
		for _, s := range subs[ev.Topic] {
			want[fanoutproc.WebhookID(s, ev.EventID)] = true
		}
	}
	if err := measure.ProduceAll(ctx, prod, recs); err != nil {
		return nil, fmt.Errorf("benchfanout: store the group's input: %w", err)
	}
	return want, nil
}

// Group runs the fan-out group (fanout.New as `rolodex run processors`
// runs it, fresh LevelDB storage) from the start of rolodex.fanout.input
// until it has written want more records to rolodex.fanout.deliveries.
// The phase's events are the topic events, n. It returns the time to the
// first delivery seen.
func (e *Env) Group(ctx context.Context, n, want int) (measure.Phase, time.Duration, error) {
	base, err := e.ends(ctx, schemas.TopicFanoutDeliveries)
	if err != nil {
		return measure.Phase{}, 0, err
	}
	storage, err := os.MkdirTemp("", "rolodex-bench-fanout-")
	if err != nil {
		return measure.Phase{}, 0, fmt.Errorf("benchfanout: %w", err)
	}
	defer os.RemoveAll(storage)
	start, cpu0 := time.Now(), measure.ProcessCPU()
	proc, err := fanoutproc.New(fanoutproc.Config{Brokers: e.brokers, StorageDir: storage, Registerer: prometheus.NewRegistry(), Logger: e.cfg.Logger},
		goka.WithLogger(log.New(io.Discard, "", 0)))
	if err != nil {
		return measure.Phase{}, 0, fmt.Errorf("benchfanout: %w", err)
	}
	pctx, stop := context.WithCancel(ctx)
	d := &delivery{stop: stop, done: make(chan error, 1)}
	go func() { d.done <- proc.Run(pctx) }()
	defer d.close()
	var first time.Duration
	err = e.waitFor(ctx, "fan-out group", d, func() (bool, error) {
		o, err := e.ends(ctx, schemas.TopicFanoutDeliveries)
		if o > base && first == 0 {
			first = time.Since(start)
		}
		return o-base >= int64(want), err
	})
	if err != nil {
		return measure.Phase{}, 0, err
	}
	p := measure.NewPhase(n, time.Since(start), measure.ProcessCPU()-cpu0)
	if err := d.close(); err != nil {
		return p, first, fmt.Errorf("benchfanout: fan-out group: %w", err)
	}
	return p, first, nil
}

// CheckGroup compares the group's records on rolodex.fanout.deliveries
// (event ids "g-...") with want: each webhook id once, keyed
// "<subscription>/<profile>".
func (e *Env) CheckGroup(ctx context.Context, want map[string]bool) error {
	recs, err := e.readAll(ctx, schemas.TopicFanoutDeliveries)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, r := range recs {
		var d schemas.FanoutDelivery
		if err := json.Unmarshal(r.Value, &d); err != nil {
			return fmt.Errorf("benchfanout: check group: %w", err)
		}
		if !strings.HasPrefix(d.EventID, "g-") {
			continue // the delivery phases' records
		}
		switch {
		case !want[d.WebhookID]:
			return fmt.Errorf("benchfanout: check group: delivery %q is not one the group must make", d.WebhookID)
		case seen[d.WebhookID]:
			return fmt.Errorf("benchfanout: check group: delivery %q written twice", d.WebhookID)
		case string(r.Key) != d.DeliveryKey():
			return fmt.Errorf("benchfanout: check group: delivery %q keyed %q", d.WebhookID, r.Key)
		}
		seen[d.WebhookID] = true
	}
	if len(seen) != len(want) {
		return fmt.Errorf("benchfanout: check group: %d deliveries, want %d", len(seen), len(want))
	}
	return nil
}
