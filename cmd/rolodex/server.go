package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/rolodex/rolodex/connectors/httpin"
	"github.com/rolodex/rolodex/connectors/ingest"
	"github.com/rolodex/rolodex/connectors/kafkain"
	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/processors/identity"
	"github.com/rolodex/rolodex/schemas"
	"github.com/rolodex/rolodex/views"
)

// env is what every component of a server gets.
type env struct {
	cfg     *fileConfig
	kafka   kafkaclient.Config
	admin   *kgo.Client
	prom    *prometheus.Registry
	mux     *http.ServeMux
	g       *errgroup.Group
	ctx     context.Context
	logger  *slog.Logger
	closers []func()
}

// component starts one part of Rolodex inside a server: it mounts its routes
// on e.mux and runs its loops in e.g.
type component func(e *env) error

type serverOptions struct {
	brokers    []string
	httpAddr   string
	configPath string
	// cfg, when set, is the configuration already read from configPath
	// (by loadServerConfig).
	cfg *fileConfig
	// ready, when set, is called once the HTTP server listens.
	ready func(cfg *fileConfig, httpAddr string)
}

// runServer runs components behind one HTTP server that also serves
// /metrics and /healthz, until ctx is done or a component fails.
func runServer(ctx context.Context, o serverOptions, logger *slog.Logger, components ...component) error {
	cfg := o.cfg
	if cfg == nil {
		var err error
		if cfg, err = loadServerConfig(o.configPath); err != nil {
			return err
		}
	}
	prom := prometheus.NewRegistry()
	prom.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	kcfg := kafkaclient.Config{Brokers: o.brokers, ClientID: "rolodex-admin", Metrics: kafkaclient.NewMetrics(prom)}
	admin, err := kafkaclient.NewClient(kcfg)
	if err != nil {
		return err
	}
	defer admin.Close()
	if err := ensureBaseTopics(ctx, admin, cfg); err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	e := &env{cfg: cfg, kafka: kcfg, admin: admin, prom: prom, mux: http.NewServeMux(), g: g, ctx: gctx, logger: logger}
	defer func() {
		for i := len(e.closers) - 1; i >= 0; i-- {
			e.closers[i]()
		}
	}()
	for _, c := range components {
		if err := c(e); err != nil {
			return err
		}
	}
	e.mux.Handle("/metrics", promhttp.HandlerFor(prom, promhttp.HandlerOpts{Registry: prom}))
	e.mux.HandleFunc("/healthz", healthz(admin))

	ln, err := net.Listen("tcp", o.httpAddr)
	if err != nil {
		return fmt.Errorf("http: %w", err)
	}
	srv := &http.Server{Handler: e.mux, ReadHeaderTimeout: 10 * time.Second}
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	logger.Info("rolodex running", "http", ln.Addr().String(), "brokers", o.brokers)
	if o.ready != nil {
		o.ready(cfg, ln.Addr().String())
	}
	err = g.Wait()
	logger.Info("rolodex stopped")
	return err
}

// loadServerConfig reads the configuration at path (the built-in one when
// path is empty) and checks what the components would refuse, so that a
// server fails before it starts or connects to anything: the partners
// (names, keys, signing secrets), the normalizer and the webhook mappings.
func loadServerConfig(path string) (*fileConfig, error) {
	cfg, err := loadConfig(path)
	if err != nil {
		return nil, err
	}
	reg, err := cfg.registry()
	if err == nil {
		_, err = cfg.normalizer()
	}
	if err == nil {
		// The HTTP connector refuses bad mappings and signing secrets.
		_, err = httpin.New(httpConfig(cfg, nil), reg, nil, nil, nil, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", orDefault(path), err)
	}
	return cfg, nil
}

// httpConfig is the HTTP ingest connector's part of cfg.
func httpConfig(cfg *fileConfig, logger *slog.Logger) httpin.Config {
	return httpin.Config{
		MaxBodyBytes: cfg.HTTP.MaxBodyBytes, MaxBatch: cfg.HTTP.MaxBatch, WriteTimeout: cfg.HTTP.WriteTimeout,
		Mappings: cfg.Mappings, Logger: logger,
	}
}

// ensureBaseTopics creates the topics every component relies on.
func ensureBaseTopics(ctx context.Context, admin *kgo.Client, cfg *fileConfig) error {
	reg, err := cfg.registry()
	if err != nil {
		return err
	}
	topics := []kafkaclient.TopicSpec{
		{Name: schemas.TopicEvents, Partitions: cfg.Topics.Partitions},
		{Name: schemas.TopicDeadLetter, Partitions: cfg.Topics.Partitions},
	}
	for _, p := range reg.All() {
		topics = append(topics, kafkaclient.TopicSpec{Name: schemas.IngestTopic(p.Name), Partitions: cfg.Topics.Partitions})
	}
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := kafkaclient.EnsureTopics(tctx, admin, cfg.Topics.Replication, topics...); err != nil {
		return fmt.Errorf("create topics (is Kafka reachable?): %w", err)
	}
	return nil
}

// ingestComponent serves the HTTP ingest API and runs the Kafka-native
// ingest connector.
func ingestComponent(e *env) error {
	reg, err := e.cfg.registry()
	if err != nil {
		return err
	}
	norm, err := e.cfg.normalizer()
	if err != nil {
		return err
	}
	pcfg := e.kafka
	pcfg.ClientID = "rolodex-ingest-http"
	producer, err := kafkaclient.NewClient(pcfg)
	if err != nil {
		return err
	}
	e.closers = append(e.closers, producer.Close)
	metrics := ingest.NewMetrics(e.prom)
	validator := ingest.NewValidator(norm)
	httpSrv, err := httpin.New(httpConfig(e.cfg, e.logger), reg, validator, ingest.NewPublisher(producer), metrics, e.prom)
	if err != nil {
		return err
	}
	httpSrv.Register(e.mux)
	kcfg := e.kafka
	kcfg.ClientID = "rolodex-ingest-kafka"
	kin, err := kafkain.New(kafkain.Config{Kafka: kcfg, Logger: e.logger}, reg, validator, metrics)
	if err != nil {
		return err
	}
	e.closers = append(e.closers, kin.Close)
	e.g.Go(func() error { return kin.Run(e.ctx) })
	return nil
}

// eventsPartitions is the partition count of rolodex.events: the identity
// group's topics must have the same (goka co-partitioning).
func eventsPartitions(ctx context.Context, admin *kgo.Client) (int32, error) {
	td, err := kadm.NewClient(admin).ListTopics(ctx, schemas.TopicEvents)
	if err != nil {
		return 0, fmt.Errorf("describe %s: %w", schemas.TopicEvents, err)
	}
	t, ok := td[schemas.TopicEvents]
	if !ok || t.Err != nil {
		return 0, fmt.Errorf("describe %s: %v", schemas.TopicEvents, t.Err)
	}
	return int32(len(t.Partitions)), nil
}

// ensureIdentityTopics creates the identity group's topics (its table,
// loopback and outputs) with the partition count of rolodex.events, if they
// are missing. Both the processors and the query API (whose view reads the
// table) call it, so that neither depends on the other having started
// first.
func ensureIdentityTopics(e *env) (partitions int32, err error) {
	parts, err := eventsPartitions(e.ctx, e.admin)
	if err != nil {
		return 0, err
	}
	tctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	return parts, kafkaclient.EnsureTopics(tctx, e.admin, e.cfg.Topics.Replication, identity.Topics(parts)...)
}

// identityComponent runs the identity processor, keeping its LevelDB
// storage in dir.
func identityComponent(dir string) component {
	return func(e *env) error {
		parts, err := ensureIdentityTopics(e)
		if err != nil {
			return err
		}
		repl := int(e.cfg.Topics.Replication)
		if repl < 1 {
			repl = 1
		}
		// A processor that fails (a write Kafka refused for good: sarama's
		// idempotent producer after a leader change, docs/kafka.md) stops;
		// the supervisor builds a new one, which recovers its partitions
		// from the table topic and replays what was not committed.
		build := func() (func(context.Context) error, error) {
			p, err := identity.New(identity.ProcessorConfig{
				Engine:  identity.Config{Limits: e.cfg.Identity.Limits, DefaultLimit: e.cfg.Identity.DefaultLimit, DedupeWindow: e.cfg.Identity.DedupeWindow},
				Brokers: e.kafka.Brokers, StorageDir: filepath.Join(dir, "identity"), Replication: repl, Registerer: e.prom,
			})
			if err != nil {
				return nil, err
			}
			e.logger.Info("identity processor started", "storage", filepath.Join(dir, "identity"), "partitions", parts,
				"kept_storage", p.KeptStorage()) // false: recovering its partitions from the table topic
			return p.Run, nil
		}
		first, err := build()
		if err != nil {
			return err
		}
		sup := newSupervisor("identity", e.prom, e.logger)
		e.g.Go(func() error { return sup.run(e.ctx, first, build) })
		lag := kafkaclient.NewLagMetrics(e.prom)
		e.g.Go(func() error { return lag.Run(e.ctx, e.admin, schemas.GroupIdentity, 5*time.Second) })
		return nil
	}
}

// apiComponent serves the query API from a view kept in dir.
func apiComponent(dir string) component {
	return func(e *env) error {
		reg, err := e.cfg.registry()
		if err != nil {
			return err
		}
		norm, err := e.cfg.normalizer()
		if err != nil {
			return err
		}
		if _, err := ensureIdentityTopics(e); err != nil {
			return err
		}
		v, err := views.NewView(e.kafka.Brokers, filepath.Join(dir, "view"))
		if err != nil {
			return err
		}
		views.NewAPI(v, reg, norm).Register(e.mux)
		e.g.Go(func() error { return v.Run(e.ctx) })
		return nil
	}
}

// sinkComponent runs the ClickHouse sink into addr.
func sinkComponent(addr string) component {
	return func(e *env) error { return startSink(e.ctx, e.g, addr, e.kafka.Brokers, e.prom, e.logger) }
}

// stateDir returns dir, or a fresh temporary directory removed by the
// returned cleanup when dir is empty.
func stateDir(dir string) (string, func(), error) {
	if dir != "" {
		return dir, func() {}, os.MkdirAll(dir, 0o755)
	}
	tmp, err := os.MkdirTemp("", "rolodex-state-")
	if err != nil {
		return "", nil, err
	}
	return tmp, func() { os.RemoveAll(tmp) }, nil
}

// healthz answers 200 when Kafka answers a ping within two seconds.
func healthz(cl *kgo.Client) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "application/json")
		if err := cl.Ping(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(map[string]string{"status": "unavailable", "kafka": err.Error()})
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"status": "ok"})
	}
}
