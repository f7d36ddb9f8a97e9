// Package fanoutreplay is partner fan-out's subscription replay step
// (docs/fanout.md, "Replay of a subscription"): a franz-go group,
// rolodex-fanout-replay, that reads the compacted store topic
// rolodex.fanout.subscriptions and, for each replay request the API
// recorded there (POST /v1/subscriptions/{id}/replay {since}), reads
// rolodex.fanout.input from the offsets of since and writes each topic
// event of the subscription's tenant and topic again as
// FanoutInput{replay}, keyed by its profile id. The fan-out group decides
// each one (entitled now, the event's webhook id). Like the directory
// broadcast it moves records between topics, no goka group, so it lives
// with the connectors; the binary wires it.
//
// Progress: the group's committed offset on rolodex.fanout.subscriptions
// marks "done up to". On every assignment the step reads each of its
// partitions from the start: the records below the committed offset only
// teach it each subscription's latest replay id; a record at or above it
// whose replay id differs from the subscription's previous one is
// performed, and its offset committed once Kafka acknowledged every
// record the replay wrote. A crash before the commit performs the replay
// again: the same records, the same webhook ids (receivers dedupe).
package fanoutreplay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/internal/metrics"
	"github.com/rolodex/rolodex/schemas"
)

// Results of a replay request (rolodex_fanout_replays_total{result}).
const (
	// ResultDone: the replay was performed.
	ResultDone = "done"
	// ResultInactive: the subscription is not active on the record that
	// carries the request (disabled or deleted since); nothing is written.
	ResultInactive = "inactive"
	// ResultInvalid: the request's since is not an RFC 3339 instant.
	ResultInvalid = "invalid"
)

// Config runs the replay step.
type Config struct {
	Brokers    []string
	Registerer prometheus.Registerer
	// Logger; default slog.Default().
	Logger *slog.Logger
	// SessionTimeout of the group; 0: kafkaclient.SessionTimeout (6 s).
	SessionTimeout time.Duration
	// RetryBackoff is the wait between attempts of a failed write or
	// listing; default one second.
	RetryBackoff time.Duration
	// Batch is how many input records a replay reads before it writes
	// what they make and waits for Kafka's acknowledgement; default 500.
	Batch int
}

// Validate reports a config that cannot work.
func (c *Config) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("fanout replay: no brokers")
	}
	if c.SessionTimeout < 0 || c.RetryBackoff < 0 || c.Batch < 0 {
		return errors.New("fanout replay: negative session timeout, retry backoff or batch")
	}
	return nil
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.RetryBackoff == 0 {
		c.RetryBackoff = time.Second
	}
	if c.Batch == 0 {
		c.Batch = 500
	}
}

// Replayer is the subscription replay step.
type Replayer struct {
	cfg      Config
	replays  *prometheus.CounterVec
	replayed prometheus.Counter
}

// New checks the config and registers the metrics.
func New(cfg Config) (*Replayer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	r := &Replayer{cfg: cfg,
		replays: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rolodex_fanout_replays_total",
			Help: "Subscription replay requests the replay step handled, by result (done, inactive, invalid)."}, []string{"result"}),
		replayed: prometheus.NewCounter(prometheus.CounterOpts{Name: "rolodex_fanout_replayed_events_total",
			Help: "Topic events the replay step wrote again to rolodex.fanout.input as replay records (a replay performed again after a crash counts again)."}),
	}
	if cfg.Registerer != nil {
		var errs [2]error
		r.replays, errs[0] = metrics.Register(cfg.Registerer, r.replays)
		r.replayed, errs[1] = metrics.Register(cfg.Registerer, r.replayed)
		if err := errors.Join(errs[:]...); err != nil {
			return nil, fmt.Errorf("fanout replay: register metrics: %w", err)
		}
	}
	return r, nil
}

// Request is a replay to perform: the subscription, the request, and its
// since in Unix ms.
type Request struct {
	Subscription schemas.Subscription
	Replay       schemas.SubscriptionReplay
	Since        int64
}

// Decide reads one record of rolodex.fanout.subscriptions given the
// subscription's previous replay id (prev, "" when none). It returns the
// replay id to remember ("" for a tombstone or a record without a
// replay), and, when the record carries a replay id other than prev, the
// result: ResultDone with the request to perform, ResultInactive or
// ResultInvalid. An undecodable record keeps prev and asks for nothing.
func Decide(prev string, value []byte) (id string, req *Request, result string) {
	if value == nil {
		return "", nil, ""
	}
	var rec schemas.SubscriptionRecord
	if err := json.Unmarshal(value, &rec); err != nil || rec.Subscription.ID == "" {
		return prev, nil, ""
	}
	if rec.Replay == nil {
		return "", nil, ""
	}
	id = rec.Replay.ID
	if id == prev {
		return id, nil, ""
	}
	if !rec.Subscription.Live() {
		return id, nil, ResultInactive
	}
	since, err := time.Parse(time.RFC3339Nano, rec.Replay.Since)
	if err != nil {
		return id, nil, ResultInvalid
	}
	return id, &Request{Subscription: rec.Subscription, Replay: *rec.Replay, Since: since.UnixMilli()}, ResultDone
}

// ReplayRecord returns the record a replay of req writes for one record
// of rolodex.fanout.input, or nil: only a topic event of the
// subscription's tenant and topic that reached the input at or after
// req.Since (its Kafka timestamp) makes one; directory records, status
// changes, other replays, other tenants and other topics make none. The
// replay record is keyed by the event's profile id (the input record's
// key when the event carries no profile), so it lands in the partition of
// the profile's own records, after them.
func ReplayRecord(r *kgo.Record, req *Request) *kgo.Record {
	if strings.HasPrefix(string(r.Key), schemas.DirectoryKeyPrefix) || r.Value == nil || r.Timestamp.UnixMilli() < req.Since {
		return nil
	}
	var in schemas.FanoutInput
	if err := json.Unmarshal(r.Value, &in); err != nil {
		return nil
	}
	ev := in.Event
	if ev == nil || in.Status != nil || in.Replay != nil || in.Directory() ||
		ev.Tenant != req.Subscription.Tenant || ev.Topic != req.Subscription.Topic {
		return nil
	}
	key := r.Key
	if ev.Profile != nil && ev.Profile.ID != "" {
		key = []byte(ev.Profile.ID)
	}
	value, err := json.Marshal(&schemas.FanoutInput{Replay: &schemas.FanoutReplay{Subscription: req.Subscription.ID, Event: *ev}})
	if err != nil {
		return nil
	}
	return &kgo.Record{Topic: schemas.TopicFanoutInput, Key: key, Value: value}
}

// progress is what the step knows of its partitions of
// rolodex.fanout.subscriptions: the committed offset (the first record not
// done) and each subscription's latest replay id. The group goroutine
// sets it on assignment; the poll loop reads it between polls.
type progress struct {
	mu        sync.Mutex
	committed map[int32]int64
	seen      map[int32]map[string]string
}

// assigned starts every assigned partition from its first record,
// remembering its committed offset (none: 0, every record is to do).
func (p *progress) assigned(_ context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, parts := range offsets {
		for part, o := range parts {
			c := o.EpochOffset().Offset
			if c < 0 {
				c = 0
			}
			p.committed[part] = c
			p.seen[part] = map[string]string{}
			parts[part] = kgo.NewOffset().AtStart()
		}
	}
	return offsets, nil
}

func (p *progress) revoked(_ context.Context, _ *kgo.Client, parts map[string][]int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, ps := range parts {
		for _, part := range ps {
			delete(p.committed, part)
			delete(p.seen, part)
		}
	}
}

// next reads one record: whether it is to do (at or above the committed
// offset) and, if so, the replay to perform and the result.
func (p *progress) next(r *kgo.Record) (todo bool, req *Request, result string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := p.seen[r.Partition]
	if seen == nil {
		seen = map[string]string{}
		p.seen[r.Partition] = seen
	}
	key := string(r.Key)
	id, req, result := Decide(seen[key], r.Value)
	if id == "" {
		delete(seen, key)
	} else {
		seen[key] = id
	}
	if r.Offset < p.committed[r.Partition] {
		return false, nil, ""
	}
	return true, req, result
}

// Run reads rolodex.fanout.subscriptions and performs the replays not yet
// done, until ctx is done (nil).
func (r *Replayer) Run(ctx context.Context) error {
	prog := &progress{committed: map[int32]int64{}, seen: map[int32]map[string]string{}}
	opts := []kgo.Opt{
		kgo.ConsumerGroup(schemas.GroupFanoutReplay),
		kgo.ConsumeTopics(schemas.TopicFanoutSubscriptions),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.AdjustFetchOffsetsFn(prog.assigned),
		kgo.OnPartitionsRevoked(prog.revoked),
		kgo.OnPartitionsLost(prog.revoked),
	}
	opts = append(opts, kafkaclient.GroupSession(r.cfg.SessionTimeout)...)
	cl, err := kafkaclient.NewClient(kafkaclient.Config{Brokers: r.cfg.Brokers, ClientID: schemas.GroupFanoutReplay}, opts...)
	if err != nil {
		return fmt.Errorf("fanout replay: %w", err)
	}
	defer cl.Close()
	defer cl.AllowRebalance()
	for {
		fetches := cl.PollRecords(ctx, 100)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			return nil
		}
		fetches.EachError(func(topic string, part int32, err error) {
			r.cfg.Logger.Warn("fanout replay: fetch", "topic", topic, "partition", part, "err", err)
		})
		var done []*kgo.Record // to commit: at or above the committed offset
		for _, rec := range fetches.Records() {
			todo, req, result := prog.next(rec)
			if !todo {
				continue
			}
			done = append(done, rec)
			switch result {
			case "":
				continue
			case ResultDone:
			default:
				r.replays.WithLabelValues(result).Inc()
				r.cfg.Logger.Warn("fanout replay: request not performed", "subscription", string(rec.Key), "reason", result)
				continue
			}
			n, err := r.Replay(ctx, cl, req)
			if err != nil {
				return nil // ctx done: not committed, performed again
			}
			r.replays.WithLabelValues(ResultDone).Inc()
			r.cfg.Logger.Info("fanout replay: done", "subscription", req.Subscription.ID, "replay", req.Replay.ID,
				"since", req.Replay.Since, "events", n)
			r.commit(ctx, cl, done)
			done = nil
		}
		r.commit(ctx, cl, done)
		cl.AllowRebalance()
	}
}

// commit commits recs (a lost commit only means a replay is performed
// again).
func (r *Replayer) commit(ctx context.Context, cl *kgo.Client, recs []*kgo.Record) {
	if len(recs) == 0 {
		return
	}
	if err := cl.CommitRecords(ctx, recs...); err != nil && ctx.Err() == nil {
		r.cfg.Logger.Warn("fanout replay: commit", "err", err)
	}
}

// Replay performs req: for each partition of rolodex.fanout.input it reads
// from the first offset whose timestamp is at or after req.Since (not
// before the partition's start: retention is the replay window) to the
// end offset when the replay began, and writes the replay record of each
// record that makes one (ReplayRecord) through cl, waiting for Kafka's
// acknowledgement. It returns how many it wrote, or ctx's error.
func (r *Replayer) Replay(ctx context.Context, cl *kgo.Client, req *Request) (int, error) {
	ranges, err := r.ranges(ctx, cl, req.Since)
	if err != nil {
		return 0, err
	}
	if len(ranges) == 0 {
		return 0, nil
	}
	from := map[int32]kgo.Offset{}
	ends := map[int32]int64{}
	for p, rg := range ranges {
		from[p] = kgo.NewOffset().At(rg[0])
		ends[p] = rg[1]
	}
	reader, err := kafkaclient.NewClient(kafkaclient.Config{Brokers: r.cfg.Brokers, ClientID: schemas.GroupFanoutReplay + "-reader"},
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{schemas.TopicFanoutInput: from}),
		// Records removed by retention meanwhile: read on from the start.
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return 0, fmt.Errorf("fanout replay: %w", err)
	}
	defer reader.Close()
	written := 0
	for len(ends) > 0 {
		fetches := reader.PollRecords(ctx, r.cfg.Batch)
		if ctx.Err() != nil {
			return written, ctx.Err()
		}
		fetches.EachError(func(topic string, part int32, err error) {
			r.cfg.Logger.Warn("fanout replay: read", "topic", topic, "partition", part, "err", err)
		})
		var out []*kgo.Record
		for _, rec := range fetches.Records() {
			end, ok := ends[rec.Partition]
			if !ok || rec.Offset >= end {
				delete(ends, rec.Partition)
				continue
			}
			if rec.Offset+1 >= end {
				delete(ends, rec.Partition)
			}
			if o := ReplayRecord(rec, req); o != nil {
				out = append(out, o)
			}
		}
		if len(out) == 0 {
			continue
		}
		if err := kafkaclient.ProduceUntilAcked(ctx, cl, r.cfg.RetryBackoff, func(err error) {
			r.cfg.Logger.Error("fanout replay: write, retrying", "records", len(out), "err", err)
		}, out...); err != nil {
			return written, err
		}
		written += len(out)
		r.replayed.Add(float64(len(out)))
	}
	return written, nil
}

// ranges lists, per partition of rolodex.fanout.input with something to
// read, [first offset at or after since, end offset now), retrying until
// the listing succeeds or ctx is done.
func (r *Replayer) ranges(ctx context.Context, cl *kgo.Client, since int64) (map[int32][2]int64, error) {
	adm := kadm.NewClient(cl)
	for {
		out, err := listRanges(ctx, adm, since)
		if err == nil {
			return out, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		r.cfg.Logger.Error("fanout replay: list offsets, retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(r.cfg.RetryBackoff):
		}
	}
}

func listRanges(ctx context.Context, adm *kadm.Client, since int64) (map[int32][2]int64, error) {
	// The end first: a record written after it is after the request,
	// never part of the replay.
	ends, err := adm.ListEndOffsets(ctx, schemas.TopicFanoutInput)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("end offsets: %w", err)
	}
	starts, err := adm.ListStartOffsets(ctx, schemas.TopicFanoutInput)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("start offsets: %w", err)
	}
	after, err := adm.ListOffsetsAfterMilli(ctx, since, schemas.TopicFanoutInput)
	if err == nil {
		err = after.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("offsets after %d: %w", since, err)
	}
	out := map[int32][2]int64{}
	ends.Each(func(e kadm.ListedOffset) {
		from := e.Offset
		if a, ok := after.Lookup(e.Topic, e.Partition); ok {
			from = a.Offset
		}
		if s, ok := starts.Lookup(e.Topic, e.Partition); ok && s.Offset > from {
			from = s.Offset
		}
		if from < e.Offset {
			out[e.Partition] = [2]int64{from, e.Offset}
		}
	})
	return out, nil
}
