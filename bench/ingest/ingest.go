// Package ingest measures HTTP ingest throughput against raw Kafka
// produce on the same machine, in the same run, against the same broker,
// with the same event bytes, and reports the ratio.
//
// A run generates the events once, creates the topics, then alternates its
// phases round by round (raw, raw batched, HTTP, HTTP floor; raw, raw
// batched, HTTP, HTTP floor; ...) and reports each phase's median rate:
//
//   - raw: every event's JSON produced as one record to TopicRaw through a
//     kafkaclient.NewClient client (acks=all, idempotent, the Rolodex
//     partitioner, the key the event gets on rolodex.events), as fast as
//     the client takes them, until every record is acknowledged. This is
//     the baseline.
//   - raw batched: the same records, but produced the way the HTTP path
//     produces them: Concurrency goroutines each produce BatchSize records
//     and wait for all their acknowledgements before the next batch. It
//     separates the cost of waiting for acks per request from the cost of
//     HTTP, decoding, validation and Avro.
//   - http: Concurrency clients POST the events in batches of BatchSize to
//     an in-process httpin.Server on a real TCP listener, wired as "rolodex
//     run ingest" wires it; the phase ends when every request was answered
//     202 (any other answer fails the run).
//   - http floor: the same requests from the same clients to a handler on
//     the same http.Server that does only what any HTTP ingest must do:
//     read the body, split the array (jsonscan.SplitArray), produce each
//     element as it is to TopicRaw through the ingest server's producer,
//     wait for every acknowledgement, answer 202 (floorHandler). No
//     decoding, validation, normalisation or Avro: what is left of the
//     HTTP phase's CPU once those are gone.
package ingest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/rolodex/rolodex/bench/measure"
	"github.com/rolodex/rolodex/connectors/httpin"
	"github.com/rolodex/rolodex/intake"
	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/normalize"
	"github.com/rolodex/rolodex/partners"
	"github.com/rolodex/rolodex/schemas"
)

// TopicRaw is the topic of the raw baseline.
const TopicRaw = "bench.raw"

// Config of a benchmark run.
type Config struct {
	// Events is how many events each phase sends. Default 200000.
	Events int
	// BatchSize is the events per HTTP request (and per raw batch).
	// Default 100.
	BatchSize int
	// Concurrency is the number of parallel HTTP clients (and raw batch
	// producers). Default 8.
	Concurrency int
	// Brokers are the seed brokers of the Kafka to measure against. Default:
	// an embedded kfake broker in this process on 127.0.0.1:0.
	Brokers []string
	// Partitions of rolodex.events, rolodex.deadletter and bench.raw when
	// they are created. Default 8.
	Partitions int32
	// Rounds is how many times each phase runs, alternating. Default 3.
	Rounds int
	// Seed makes the generated events reproducible. Default 1.
	Seed uint64
}

func (c *Config) setDefaults() {
	if c.Events == 0 {
		c.Events = 200000
	}
	if c.BatchSize == 0 {
		c.BatchSize = 100
	}
	if c.Concurrency == 0 {
		c.Concurrency = 8
	}
	if c.Partitions == 0 {
		c.Partitions = 8
	}
	if c.Rounds == 0 {
		c.Rounds = 3
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
}

// Validate reports a config that cannot work.
func (c *Config) Validate() error {
	switch {
	case c.Events < 0:
		return errors.New("benchingest: events must be positive")
	case c.BatchSize < 0:
		return errors.New("benchingest: batch size must be positive")
	case c.Concurrency < 0:
		return errors.New("benchingest: concurrency must be positive")
	case c.Partitions < 0:
		return errors.New("benchingest: partitions must be positive")
	case c.Rounds < 0:
		return errors.New("benchingest: rounds must be positive")
	}
	if err := measure.CheckBrokers(c.Brokers); err != nil {
		return fmt.Errorf("benchingest: %w", err)
	}
	return nil
}

// Phase is one measured pass over the events.
type Phase struct {
	measure.Phase
	// Latencies of each request (HTTP, HTTP floor) or batch (raw
	// batched), sorted;
	// empty for the raw phase, which has no requests.
	Latencies []time.Duration `json:"-"`
}

// Round is one round of the phases.
type Round struct {
	Raw, RawBatched, HTTP Phase
	// HTTPFloor is the HTTP floor phase (floorHandler), run after HTTP.
	HTTPFloor Phase
}

// Summary is a phase over every round.
type Summary struct {
	// EventsPerSec and CPUPerEvent are medians over the rounds.
	EventsPerSec float64
	CPUPerEvent  time.Duration
	// P50, P99 and Max are over every request (or batch) of every round;
	// zero for the raw phase.
	P50, P99, Max time.Duration
}

// Result of a run.
type Result struct {
	// Config is the configuration used, defaults filled in.
	Config Config
	// Embedded is true when the run started its own kfake broker.
	Embedded bool
	// AvgEventBytes is the mean size of one event's JSON.
	AvgEventBytes int
	// Raw is the baseline, RawBatched raw produce shaped like the HTTP
	// requests, HTTP the Rolodex HTTP ingest.
	Raw, RawBatched, HTTP Summary
	// HTTPFloor is the HTTP floor: the same requests to a handler that
	// only reads, splits and produces (floorHandler).
	HTTPFloor Summary
	// Ratio is HTTP.EventsPerSec / Raw.EventsPerSec.
	Ratio float64
	// BatchedRatio is HTTP.EventsPerSec / RawBatched.EventsPerSec.
	BatchedRatio float64
	// CPURatio is Raw.CPUPerEvent / HTTP.CPUPerEvent: the ratio in CPU
	// cost instead of wall-clock time, 0 where CPU time is not measured.
	CPURatio float64
	// FloorRatio is HTTPFloor.EventsPerSec / Raw.EventsPerSec, HTTPOfFloor
	// HTTP.EventsPerSec / HTTPFloor.EventsPerSec, and FloorCPURatio
	// Raw.CPUPerEvent / HTTPFloor.CPUPerEvent (0 where CPU time is not
	// measured).
	FloorRatio, HTTPOfFloor, FloorCPURatio float64
	Rounds                                 []Round
}

// Run generates cfg.Events events and measures raw produce, HTTP ingest
// and the HTTP floor of them, alternating, cfg.Rounds times.
func Run(ctx context.Context, cfg Config) (Result, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	w, err := generate(cfg.Events, cfg.BatchSize, cfg.Seed, newRunID(), time.Now())
	if err != nil {
		return Result{}, err
	}
	b, err := start(ctx, cfg)
	if err != nil {
		return Result{}, err
	}
	defer b.Close()

	res := Result{Config: cfg, Embedded: b.cluster != nil, AvgEventBytes: w.jsonBytes / max(1, cfg.Events)}
	res.Config.Brokers = b.brokers
	for range cfg.Rounds {
		var r Round
		prepare()
		if r.Raw, err = b.raw(ctx, w); err != nil {
			return res, err
		}
		prepare()
		if r.RawBatched, err = b.rawBatched(ctx, w, cfg.Concurrency); err != nil {
			return res, err
		}
		prepare()
		if r.HTTP, err = b.http(ctx, w, cfg.Concurrency); err != nil {
			return res, err
		}
		prepare()
		if r.HTTPFloor, err = b.httpFloor(ctx, w, cfg.Concurrency); err != nil {
			return res, err
		}
		res.Rounds = append(res.Rounds, r)
	}
	res.Raw = summarize(res.Rounds, func(r Round) Phase { return r.Raw })
	res.RawBatched = summarize(res.Rounds, func(r Round) Phase { return r.RawBatched })
	res.HTTP = summarize(res.Rounds, func(r Round) Phase { return r.HTTP })
	res.HTTPFloor = summarize(res.Rounds, func(r Round) Phase { return r.HTTPFloor })
	res.Ratio = ratio(res.HTTP.EventsPerSec, res.Raw.EventsPerSec)
	res.BatchedRatio = ratio(res.HTTP.EventsPerSec, res.RawBatched.EventsPerSec)
	res.CPURatio = ratio(float64(res.Raw.CPUPerEvent), float64(res.HTTP.CPUPerEvent))
	res.FloorRatio = ratio(res.HTTPFloor.EventsPerSec, res.Raw.EventsPerSec)
	res.HTTPOfFloor = ratio(res.HTTP.EventsPerSec, res.HTTPFloor.EventsPerSec)
	res.FloorCPURatio = ratio(float64(res.Raw.CPUPerEvent), float64(res.HTTPFloor.CPUPerEvent))
	return res, nil
}

// ratio is num/den, 0 where den is not measured (0).
func ratio(num, den float64) float64 {
	if den > 0 {
		return num / den
	}
	return 0
}

func newRunID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func summarize(rounds []Round, phase func(Round) Phase) Summary {
	var rates, cpus []float64
	var lat []time.Duration
	for _, r := range rounds {
		p := phase(r)
		rates = append(rates, p.EventsPerSec)
		cpus = append(cpus, float64(p.CPUPerEvent))
		lat = append(lat, p.Latencies...)
	}
	slices.Sort(rates)
	slices.Sort(cpus)
	slices.Sort(lat)
	s := Summary{
		EventsPerSec: median(rates), CPUPerEvent: time.Duration(median(cpus)),
		P50: percentile(lat, 50), P99: percentile(lat, 99),
	}
	if len(lat) > 0 {
		s.Max = lat[len(lat)-1]
	}
	return s
}

func median(sorted []float64) float64 {
	n := len(sorted)
	switch {
	case n == 0:
		return 0
	case n%2 == 1:
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// percentile is the nearest-rank percentile of sorted.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := (p*len(sorted) + 99) / 100 // ceil(p/100 * n)
	return sorted[max(rank, 1)-1]
}

// bench is the system under test: a broker, the raw producer and the HTTP
// ingest server (with the HTTP floor beside it), started once and measured
// phase after phase.
type bench struct {
	brokers []string
	cluster *kfake.Cluster // nil against external brokers
	rawCl   *kgo.Client    // the baseline's producer
	pubCl   *kgo.Client    // the HTTP server's producer
	srv     *http.Server
	served  chan error
	url     string
	floor   string // the HTTP floor's URL
	key     string
	hc      *http.Client
}

// start starts the broker (unless cfg.Brokers is set), creates the topics
// and starts the HTTP ingest server and the HTTP floor.
func start(ctx context.Context, cfg Config) (_ *bench, err error) {
	b := &bench{}
	defer func() {
		if err != nil {
			b.Close()
		}
	}()
	if b.brokers, b.cluster, err = measure.StartBroker(cfg.Brokers, cfg.Partitions); err != nil {
		return nil, fmt.Errorf("benchingest: %w", err)
	}

	// The raw producer: the same client options as the ingest publisher,
	// without the metrics hooks Rolodex adds.
	if b.rawCl, err = kafkaclient.NewClient(kafkaclient.Config{Brokers: b.brokers, ClientID: "rolodex-bench-raw"}); err != nil {
		return nil, fmt.Errorf("benchingest: %w", err)
	}
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = kafkaclient.EnsureTopics(tctx, b.rawCl, -1,
		kafkaclient.TopicSpec{Name: schemas.TopicEvents, Partitions: cfg.Partitions},
		kafkaclient.TopicSpec{Name: schemas.TopicDeadLetter, Partitions: cfg.Partitions},
		kafkaclient.TopicSpec{Name: TopicRaw, Partitions: cfg.Partitions},
	)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("benchingest: create topics on %v: %w", b.brokers, err)
	}

	// The HTTP ingest server, wired as runIngest (cmd/rolodex) wires it.
	b.key = "bench-key-" + newRunID()
	reg, err := partners.New([]partners.Partner{{
		Name: "bench", Tenant: benchTenant, Keys: []string{b.key},
		RateLimit: partners.RateLimit{RPS: -1},
	}})
	if err != nil {
		return nil, fmt.Errorf("benchingest: %w", err)
	}
	norm, err := normalize.New(normalize.Config{DefaultRegion: "BR"})
	if err != nil {
		return nil, fmt.Errorf("benchingest: %w", err)
	}
	prom := prometheus.NewRegistry()
	if b.pubCl, err = kafkaclient.NewClient(kafkaclient.Config{
		Brokers: b.brokers, ClientID: "rolodex-ingest-http", Metrics: kafkaclient.NewMetrics(prom),
	}); err != nil {
		return nil, fmt.Errorf("benchingest: %w", err)
	}
	// The limits must admit the largest request of the run.
	maxBody := int64(1 << 20)
	if need := int64(cfg.BatchSize) * 2048; need > maxBody {
		maxBody = need
	}
	srv, err := httpin.New(httpin.Config{
		MaxBodyBytes: maxBody, MaxBatch: max(1000, cfg.BatchSize),
		Logger: slog.New(slog.DiscardHandler),
	}, reg, intake.NewValidator(norm), intake.NewPublisher(b.pubCl), intake.NewMetrics(prom), prom)
	if err != nil {
		return nil, fmt.Errorf("benchingest: %w", err)
	}
	mux := http.NewServeMux()
	srv.Register(mux)
	// The HTTP floor on the same mux and server, with the same body limit
	// and the same producer client.
	mux.Handle("POST "+floorPath, &floorHandler{pub: intake.NewPublisher(b.pubCl), maxBody: maxBody, seed: maphash.MakeSeed()})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("benchingest: http: %w", err)
	}
	b.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	b.served = make(chan error, 1)
	go func() { b.served <- b.srv.Serve(ln) }()
	b.url = "http://" + ln.Addr().String() + "/v1/events"
	b.floor = "http://" + ln.Addr().String() + floorPath
	b.hc = &http.Client{
		Timeout: time.Minute,
		Transport: &http.Transport{
			// One kept-alive connection per client goroutine.
			MaxIdleConns:        cfg.Concurrency,
			MaxIdleConnsPerHost: cfg.Concurrency,
			DisableCompression:  true,
		},
	}

	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := measure.Ping(pctx, b.brokers, b.rawCl, b.pubCl); err != nil {
		return nil, fmt.Errorf("benchingest: %w", err)
	}
	return b, nil
}

// Close stops everything start started.
func (b *bench) Close() {
	if b.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = b.srv.Shutdown(ctx)
		cancel()
		<-b.served
	}
	if b.hc != nil {
		b.hc.CloseIdleConnections()
	}
	if b.pubCl != nil {
		b.pubCl.Close()
	}
	if b.rawCl != nil {
		b.rawCl.Close()
	}
	if b.cluster != nil {
		b.cluster.Close()
	}
}

// prepare makes the phases start alike, with no garbage left by the
// previous one. It runs outside the timed part.
func prepare() { runtime.GC() }

func phaseOf(events int, elapsed, cpu time.Duration, lat []time.Duration) Phase {
	slices.Sort(lat)
	return Phase{Phase: measure.NewPhase(events, elapsed, cpu), Latencies: lat}
}

// raw produces every event to TopicRaw as fast as the client accepts them
// and returns when all are acknowledged.
func (b *bench) raw(ctx context.Context, w *workload) (Phase, error) {
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	done := func(_ *kgo.Record, err error) {
		if err != nil {
			errOnce.Do(func() { firstErr = err })
		}
		wg.Done()
	}
	startT, cpu0 := time.Now(), measure.ProcessCPU()
	wg.Add(len(w.events))
	for i, v := range w.events {
		b.rawCl.Produce(ctx, &kgo.Record{Topic: TopicRaw, Key: w.keys[i], Value: v}, done)
	}
	wg.Wait()
	elapsed, cpu := time.Since(startT), measure.ProcessCPU()-cpu0
	if firstErr != nil {
		return Phase{}, fmt.Errorf("benchingest: raw produce: %w", firstErr)
	}
	return phaseOf(len(w.events), elapsed, cpu, nil), nil
}

// rawBatched produces the events to TopicRaw from concurrency goroutines,
// one batch at a time each, waiting for the batch's acknowledgements as the
// ingest publisher does.
func (b *bench) rawBatched(ctx context.Context, w *workload, concurrency int) (Phase, error) {
	pub := intake.NewPublisher(b.rawCl)
	return b.workers(ctx, w, concurrency, func(ctx context.Context, i int) error {
		lo, hi := w.span(i)
		recs := make([]*kgo.Record, 0, hi-lo)
		for j := lo; j < hi; j++ {
			recs = append(recs, &kgo.Record{Topic: TopicRaw, Key: w.keys[j], Value: w.events[j]})
		}
		if err := pub.Records(ctx, recs); err != nil {
			return fmt.Errorf("benchingest: raw batched produce: %w", err)
		}
		return nil
	})
}

// http posts the request bodies from concurrency clients; every answer
// must be 202.
func (b *bench) http(ctx context.Context, w *workload, concurrency int) (Phase, error) {
	return b.post(ctx, w, concurrency, b.url, "request")
}

// httpFloor posts the same requests as http, from as many clients, to the
// HTTP floor (floorHandler); every answer must be 202.
func (b *bench) httpFloor(ctx context.Context, w *workload, concurrency int) (Phase, error) {
	return b.post(ctx, w, concurrency, b.floor, "http floor request")
}

// post posts the request bodies of w to url from concurrency clients, each
// with the partner's key; every answer must be 202. what names a request
// in errors.
func (b *bench) post(ctx context.Context, w *workload, concurrency int, url, what string) (Phase, error) {
	return b.workers(ctx, w, concurrency, func(ctx context.Context, i int) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(w.bodies[i]))
		if err != nil {
			return fmt.Errorf("benchingest: %w", err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+b.key)
		resp, err := b.hc.Do(req)
		if err != nil {
			return fmt.Errorf("benchingest: %s %d: %w", what, i, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("benchingest: %s %d: read answer: %w", what, i, err)
		}
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("benchingest: %s %d: got %s, want 202 Accepted: %s", what, i, resp.Status, bytes.TrimSpace(body))
		}
		return nil
	})
}

// workers runs do for every batch of w from concurrency goroutines and
// times each call.
func (b *bench) workers(ctx context.Context, w *workload, concurrency int, do func(context.Context, int) error) (Phase, error) {
	var next atomic.Int64
	lats := make([][]time.Duration, concurrency)
	g, gctx := errgroup.WithContext(ctx)
	startT, cpu0 := time.Now(), measure.ProcessCPU()
	for c := range concurrency {
		g.Go(func() error {
			for {
				i := int(next.Add(1) - 1)
				if i >= w.batches() {
					return nil
				}
				t0 := time.Now()
				if err := do(gctx, i); err != nil {
					return err
				}
				lats[c] = append(lats[c], time.Since(t0))
			}
		})
	}
	err := g.Wait()
	elapsed, cpu := time.Since(startT), measure.ProcessCPU()-cpu0
	if err != nil {
		return Phase{}, err
	}
	return phaseOf(len(w.events), elapsed, cpu, slices.Concat(lats...)), nil
}
