// Package tags measures the rule-tag stage (processors/tags).
//
// The per-profile costs are go benchmarks (bench_test.go): evaluating a
// profile update with docs/tags.md's example rules, and what a changed
// rule costs per stored profile. Run measures the stage end to end on
// Kafka against a franz-go consume→produce pass-through of the same
// records, on the same broker, in the same run:
//
//   - passthrough (the baseline): a consumer group reads the profile
//     snapshots stored in rolodex.profiles and produces each unchanged to
//     bench.tags.passthrough (acks=all, idempotent, the Rolodex
//     partitioner), marking each for commit once its copy is acknowledged.
//   - snapshots: the tag processor (tags.New as Rolodex runs it, fresh
//     LevelDB storage, the tenant's four example rules on
//     rolodex.tag.rules) reads the stored snapshots from the start, until
//     every record they make is on rolodex.profile.tags.
//   - rule change: one of the rules gets a new version on
//     rolodex.tag.rules; from that write until every record the change
//     makes is on rolodex.profile.tags (the stage notices within its tick,
//     visits every profile, writes a tick for each whose state changes,
//     and handles the ticks).
//   - restart: the instance stops and a new one starts on its storage,
//     until it has visited every profile (it writes nothing: nothing is
//     due).
//
// The records each phase must make are computed beforehand with tags.Apply
// and tags.Visit, and the rule change's records are compared with them.
// The stage's clock is fixed at the snapshots' timestamp, so that no
// wake comes due during the run and the expected records are exact.
package tags

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lovoo/goka"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/bench/measure"
	"github.com/rolodex/rolodex/internal/kafkaclient"
	tagsproc "github.com/rolodex/rolodex/processors/tags"
	"github.com/rolodex/rolodex/schemas"
)

// Topic and group of the baseline.
const (
	TopicPassthrough = "bench.tags.passthrough"
	GroupPassthrough = "rolodex-bench-tags-passthrough"
)

// Config of a run.
type Config struct {
	// Profiles is how many snapshots are stored in rolodex.profiles (one
	// per profile). Default 20000.
	Profiles int
	// Partitions of every topic the run creates. Default 8.
	Partitions int32
	// Brokers of the Kafka to measure against; it must hold no profiles
	// or tag state yet. Default: an embedded kfake broker in this process.
	Brokers []string
	// Seed of the generated profiles. Default 1.
	Seed uint64
	// Status is the tag configuration (its exclusive groups).
	Status schemas.StatusConfig
	// Timeout fails a phase that has not made every expected record by
	// then. Default 5m.
	Timeout time.Duration
	// Settle is how long the run waits after the rule change's last
	// expected record to check that no other record comes (the stage's
	// scheduler and rule watcher run every second). Default 3s.
	Settle time.Duration
}

func (c *Config) setDefaults() {
	if c.Profiles == 0 {
		c.Profiles = 20000
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
	if c.Settle == 0 {
		c.Settle = 3 * time.Second
	}
}

// Validate reports a config that cannot work.
func (c *Config) Validate() error {
	if c.Profiles < 0 || c.Partitions < 0 || c.Timeout < 0 || c.Settle < 0 {
		return errors.New("benchtags: profiles, partitions, timeout and settle must be positive")
	}
	if err := measure.CheckBrokers(c.Brokers); err != nil {
		return fmt.Errorf("benchtags: %w", err)
	}
	return nil
}

// Result of a run. Each phase's Events is the number of profiles.
type Result struct {
	Config   Config
	Embedded bool
	// AvgSnapshotBytes is the mean size of a snapshot on rolodex.profiles.
	AvgSnapshotBytes int
	Passthrough      measure.Phase
	Snapshots        measure.Phase
	RuleChange       measure.Phase
	// Restart is a new instance on the kept storage, from its start until
	// it visited every profile (rolodex_tags_visits_total): what the
	// scheduler needs after a crash or a rebalance.
	Restart measure.Phase
	// FirstVisit is the time from the restart to its first visit:
	// starting, joining the group, recovering the partitions.
	FirstVisit time.Duration
	// SnapshotRecords and RuleChangeRecords are the records each phase
	// made on rolodex.profile.tags (as expected); Ticks the records on
	// rolodex.tag.ticks after the rule change, one per profile the
	// change affects (WantTicks, computed beforehand).
	SnapshotRecords, RuleChangeRecords int
	Ticks, WantTicks                   int64
	// SnapshotRatio and RuleChangeRatio are the phase's profiles/s over
	// the pass-through's records/s.
	SnapshotRatio, RuleChangeRatio, RestartRatio float64
	// FirstChange is the time from the rule change's write to its first
	// record on rolodex.profile.tags: noticing the change (the stage reads
	// its rules every tick, 1 s) and the first visits and ticks.
	FirstChange time.Duration
	// PerMillion is the rule change scaled to 1,000,000 profiles: its
	// first record's delay, plus the rest of its time scaled;
	// RestartPerMillion the restart's: the time to its first visit, plus
	// the rest scaled.
	PerMillion, RestartPerMillion time.Duration
	// LoadBefore and LoadAfter are the load averages around the run.
	LoadBefore, LoadAfter string
}

// Run stores the snapshots and the rules, then measures the pass-through,
// the snapshots and the rule change.
func Run(ctx context.Context, cfg Config) (Result, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	res := Result{Config: cfg, LoadBefore: measure.LoadAvg()}
	t0 := time.Now().Truncate(time.Second)
	profiles := Profiles(cfg.Profiles, cfg.Seed, t0)
	want, err := expect(profiles, t0, cfg.Status)
	if err != nil {
		return res, err
	}
	res.SnapshotRecords, res.RuleChangeRecords, res.WantTicks = want.snapshots, len(want.change), want.ticks

	brokers, cluster, err := measure.StartBroker(cfg.Brokers, cfg.Partitions)
	if err != nil {
		return res, fmt.Errorf("benchtags: %w", err)
	}
	if cluster != nil {
		defer cluster.Close()
	}
	res.Embedded, res.Config.Brokers = cluster != nil, brokers
	cl, err := kafkaclient.NewClient(kafkaclient.Config{Brokers: brokers, ClientID: "rolodex-bench-tags"})
	if err != nil {
		return res, fmt.Errorf("benchtags: %w", err)
	}
	defer cl.Close()
	if res.AvgSnapshotBytes, err = setup(ctx, cl, cfg, profiles, t0); err != nil {
		return res, err
	}
	profiles = nil // stored in the broker now

	if res.Passthrough, err = passthrough(ctx, brokers, cfg.Profiles); err != nil {
		return res, err
	}
	out, err := watch(ctx, brokers)
	if err != nil {
		return res, err
	}
	defer out.close()

	storage, err := os.MkdirTemp("", "rolodex-bench-tags-")
	if err != nil {
		return res, fmt.Errorf("benchtags: %w", err)
	}
	defer os.RemoveAll(storage)
	start, cpu0 := time.Now(), measure.ProcessCPU()
	first, err := startStage(ctx, brokers, storage, cfg.Status, t0, nil)
	if err != nil {
		return res, err
	}
	defer first.close()
	done := first.done
	if err := out.wait(ctx, want.snapshots, cfg.Timeout, done); err != nil {
		return res, fmt.Errorf("benchtags: snapshots: %w", err)
	}
	res.Snapshots = measure.NewPhase(cfg.Profiles, time.Since(start), measure.ProcessCPU()-cpu0)

	start, cpu0 = time.Now(), measure.ProcessCPU()
	if err := produceRules(ctx, cl, ChangedRules()[:1]); err != nil {
		return res, err
	}
	if err := out.wait(ctx, want.snapshots+len(want.change), cfg.Timeout, done); err != nil {
		return res, fmt.Errorf("benchtags: rule change: %w", err)
	}
	res.RuleChange = measure.NewPhase(cfg.Profiles, time.Since(start), measure.ProcessCPU()-cpu0)
	res.FirstChange = out.arrival(want.snapshots).Sub(start)
	if err := out.check(want); err != nil {
		return res, err
	}
	// Nothing more may come: the stage's next tick finds nothing to do.
	select {
	case <-time.After(cfg.Settle):
	case <-ctx.Done():
		return res, ctx.Err()
	}
	if n := out.count(); n != want.snapshots+len(want.change) {
		return res, fmt.Errorf("benchtags: %d records on %s after the rule change settled, want %d", n, schemas.TopicProfileTags, want.snapshots+len(want.change))
	}

	// The restart: a new instance on the storage the first one kept
	// visits every profile (nothing is due, so it writes nothing).
	first.close()
	reg := prometheus.NewRegistry()
	start, cpu0 = time.Now(), measure.ProcessCPU()
	second, err := startStage(ctx, brokers, storage, cfg.Status, t0, reg)
	if err != nil {
		return res, err
	}
	defer second.close()
	for n := 0; n < cfg.Profiles; n = visits(reg) {
		if n > 0 && res.FirstVisit == 0 {
			res.FirstVisit = time.Since(start)
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case err := <-second.done:
			return res, fmt.Errorf("benchtags: restart: the tag processor stopped: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Since(start) > cfg.Timeout {
			return res, fmt.Errorf("benchtags: restart: %d profiles visited after %s, want %d", visits(reg), cfg.Timeout, cfg.Profiles)
		}
	}
	res.Restart = measure.NewPhase(cfg.Profiles, time.Since(start), measure.ProcessCPU()-cpu0)
	if res.FirstVisit == 0 {
		res.FirstVisit = res.Restart.Elapsed // every visit came within one poll
	}
	second.close()
	if n := out.count(); n != want.snapshots+len(want.change) {
		return res, fmt.Errorf("benchtags: %d records on %s after the restart, want %d", n, schemas.TopicProfileTags, want.snapshots+len(want.change))
	}

	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, schemas.TopicTagTicks)
	if err != nil {
		return res, fmt.Errorf("benchtags: end offsets: %w", err)
	}
	ends.Each(func(o kadm.ListedOffset) { res.Ticks += o.Offset })

	if r := res.Passthrough.EventsPerSec; r > 0 {
		res.SnapshotRatio = res.Snapshots.EventsPerSec / r
		res.RuleChangeRatio = res.RuleChange.EventsPerSec / r
		res.RestartRatio = res.Restart.EventsPerSec / r
	}
	res.PerMillion = res.FirstChange + time.Duration(float64(res.RuleChange.Elapsed-res.FirstChange)*1e6/float64(max(1, cfg.Profiles)))
	res.RestartPerMillion = res.FirstVisit + time.Duration(float64(res.Restart.Elapsed-res.FirstVisit)*1e6/float64(max(1, cfg.Profiles)))
	res.LoadAfter = measure.LoadAvg()
	return res, nil
}

// stage is a running tag processor.
type stage struct {
	stop context.CancelFunc
	done chan error
	once sync.Once
}

// startStage runs the tag processor as Rolodex does, with its clock fixed
// at t0 and its metrics on reg (nil: none).
func startStage(ctx context.Context, brokers []string, storage string, status schemas.StatusConfig, t0 time.Time, reg prometheus.Registerer) (*stage, error) {
	proc, err := tagsproc.New(tagsproc.Config{Brokers: brokers, StorageDir: storage, Status: status, Registerer: reg,
		Now:    func() time.Time { return t0 },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		goka.WithLogger(log.New(io.Discard, "", 0)))
	if err != nil {
		return nil, fmt.Errorf("benchtags: %w", err)
	}
	pctx, stop := context.WithCancel(ctx)
	s := &stage{stop: stop, done: make(chan error, 1)}
	go func() { s.done <- proc.Run(pctx) }()
	return s, nil
}

// close stops the processor and waits for it (once).
func (s *stage) close() {
	s.once.Do(func() {
		s.stop()
		<-s.done
	})
}

// visits reads rolodex_tags_visits_total.
func visits(reg *prometheus.Registry) int {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "rolodex_tags_visits_total" && len(mf.GetMetric()) > 0 {
			return int(mf.GetMetric()[0].GetCounter().GetValue())
		}
	}
	return 0
}

// expected is what the stage must write: the number of records of the
// snapshots, and the rule change's records.
type expected struct {
	snapshots int
	change    []string // changeKey of each record, sorted
	ticks     int64    // profiles the rule change affects (a tick each)
}

func changeKey(c schemas.TagChange) string {
	return fmt.Sprintf("%s %s %s %s %s %d", c.Tenant, c.Profile, c.Tag, c.Op, c.Cause, c.Time)
}

// expect evaluates the profiles as the stage will: each snapshot at t0
// under ExampleRules, then a visit at t0 under ChangedRules and, where it
// asks for one, the tick.
func expect(profiles []*schemas.Profile, t0 time.Time, status schemas.StatusConfig) (expected, error) {
	groups := tagsproc.NewGroups(status)
	rs1, errs1 := tagsproc.NewRuleSet(ExampleRules())
	rs2, errs2 := tagsproc.NewRuleSet(ChangedRules())
	if err := errors.Join(append(errs1, errs2...)...); err != nil {
		return expected{}, fmt.Errorf("benchtags: rules: %w", err)
	}
	env1, env2 := &tagsproc.Env{Rules: rs1, Groups: groups}, &tagsproc.Env{Rules: rs2, Groups: groups}
	var w expected
	at := t0.UnixMilli()
	for _, p := range profiles {
		r := tagsproc.Apply(nil, p.ID, tagsproc.Message{Snapshot: p, Origin: 1, At: at}, env1)
		w.snapshots += len(r.Changes)
		tick, ok := tagsproc.Visit(r.State, p.ID, at, env2)
		if !ok {
			continue
		}
		w.ticks++
		r = tagsproc.Apply(r.State, p.ID, tagsproc.Message{Tick: true, Origin: 1, At: tick}, env2)
		for _, c := range r.Changes {
			w.change = append(w.change, changeKey(c))
		}
	}
	sort.Strings(w.change)
	return w, nil
}

// setup creates the topics and stores the rules and the snapshots (each
// with timestamp t0). It returns the mean snapshot size.
func setup(ctx context.Context, cl *kgo.Client, cfg Config, profiles []*schemas.Profile, t0 time.Time) (int, error) {
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := measure.Ping(tctx, cfg.Brokers, cl); err != nil {
		return 0, fmt.Errorf("benchtags: %w", err)
	}
	specs := append([]kafkaclient.TopicSpec{
		{Name: schemas.TopicProfiles, Partitions: cfg.Partitions},
		{Name: TopicPassthrough, Partitions: cfg.Partitions},
	}, tagsproc.Topics(cfg.Partitions)...)
	if err := kafkaclient.EnsureTopics(tctx, cl, -1, specs...); err != nil {
		return 0, fmt.Errorf("benchtags: create topics: %w", err)
	}
	ends, err := kadm.NewClient(cl).ListEndOffsets(tctx, schemas.TopicProfiles, schemas.TopicProfileTags, schemas.TopicTagRules, TopicPassthrough)
	if err != nil {
		return 0, fmt.Errorf("benchtags: end offsets: %w", err)
	}
	var stale []string
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Offset > 0 {
			stale = append(stale, fmt.Sprintf("%s/%d", o.Topic, o.Partition))
		}
	})
	if len(stale) > 0 {
		return 0, fmt.Errorf("benchtags: the Kafka at %v is not fresh (%v hold records); the benchmark needs one without profiles or tag state", cfg.Brokers, stale)
	}
	if err := produceRules(ctx, cl, ExampleRules()); err != nil {
		return 0, err
	}
	var bytes int
	recs := make([]*kgo.Record, 0, len(profiles))
	for _, p := range profiles {
		v, err := schemas.JSONCodec[schemas.Profile]{}.Encode(p)
		if err != nil {
			return 0, fmt.Errorf("benchtags: %w", err)
		}
		bytes += len(v)
		recs = append(recs, &kgo.Record{Topic: schemas.TopicProfiles, Key: []byte(p.ID), Value: v, Timestamp: t0})
	}
	if err := measure.ProduceAll(ctx, cl, recs); err != nil {
		return 0, fmt.Errorf("benchtags: store snapshots: %w", err)
	}
	return bytes / max(1, len(profiles)), nil
}

func produceRules(ctx context.Context, cl *kgo.Client, rs []schemas.TagRule) error {
	var recs []*kgo.Record
	for i := range rs {
		v, err := schemas.JSONCodec[schemas.TagRule]{}.Encode(&rs[i])
		if err != nil {
			return fmt.Errorf("benchtags: %w", err)
		}
		recs = append(recs, &kgo.Record{Topic: schemas.TopicTagRules, Key: []byte(schemas.RuleKey(rs[i].Tenant, rs[i].ID)), Value: v})
	}
	if err := measure.ProduceAll(ctx, cl, recs); err != nil {
		return fmt.Errorf("benchtags: write rules: %w", err)
	}
	return nil
}

// passthrough is the baseline: consume the n snapshots, produce each
// unchanged to TopicPassthrough, commit each once its copy is acknowledged.
// It ends when every copy is acknowledged.
func passthrough(ctx context.Context, brokers []string, n int) (measure.Phase, error) {
	return measure.Passthrough(ctx, measure.PassthroughConfig{Brokers: brokers, ClientID: "rolodex-bench-tags-passthrough",
		Group: GroupPassthrough, From: schemas.TopicProfiles, To: TopicPassthrough, N: n, What: "benchtags"})
}

// watcher reads rolodex.profile.tags from the start and keeps every
// record.
type watcher struct {
	cl     *kgo.Client
	mu     sync.Mutex
	recs   [][]byte
	at     []time.Time // when each record was read
	n      atomic.Int64
	cancel context.CancelFunc
	done   chan struct{}
}

func watch(ctx context.Context, brokers []string) (*watcher, error) {
	cl, err := kafkaclient.NewClient(kafkaclient.Config{Brokers: brokers, ClientID: "rolodex-bench-tags-watch"},
		kgo.ConsumeTopics(schemas.TopicProfileTags), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return nil, fmt.Errorf("benchtags: watch: %w", err)
	}
	wctx, cancel := context.WithCancel(ctx)
	w := &watcher{cl: cl, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for wctx.Err() == nil {
			fs := cl.PollFetches(wctx)
			now := time.Now()
			fs.EachRecord(func(r *kgo.Record) {
				w.mu.Lock()
				w.recs, w.at = append(w.recs, r.Value), append(w.at, now)
				w.mu.Unlock()
				w.n.Add(1)
			})
		}
	}()
	return w, nil
}

func (w *watcher) count() int { return int(w.n.Load()) }

// arrival is when the i-th record was read.
func (w *watcher) arrival(i int) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.at[i]
}

// wait waits until n records were read, the processor stopped, or timeout.
func (w *watcher) wait(ctx context.Context, n int, timeout time.Duration, proc <-chan error) error {
	deadline := time.Now().Add(timeout)
	for w.count() < n {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-proc:
			return fmt.Errorf("the tag processor stopped: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d records on %s after %s, want %d", w.count(), schemas.TopicProfileTags, timeout, n)
		}
	}
	return nil
}

// check compares the records after the snapshots' with the rule change's
// expected records.
func (w *watcher) check(want expected) error {
	w.mu.Lock()
	recs := w.recs[want.snapshots:]
	w.mu.Unlock()
	got := make([]string, 0, len(recs))
	for _, v := range recs {
		c, err := schemas.JSONCodec[schemas.TagChange]{}.Decode(v)
		if err != nil {
			return fmt.Errorf("benchtags: %w", err)
		}
		got = append(got, changeKey(*c.(*schemas.TagChange)))
	}
	sort.Strings(got)
	for i := range got {
		if i >= len(want.change) || got[i] != want.change[i] {
			return fmt.Errorf("benchtags: the rule change's records differ from the expected ones (first difference at %d: %q)", i, got[i])
		}
	}
	return nil
}

func (w *watcher) close() {
	w.cancel()
	<-w.done
	w.cl.Close()
}
