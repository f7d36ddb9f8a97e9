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
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/rolodex/rolodex/connectors/fanoutdir"
	"github.com/rolodex/rolodex/connectors/fanoutreplay"
	"github.com/rolodex/rolodex/connectors/httpin"
	"github.com/rolodex/rolodex/connectors/kafkain"
	"github.com/rolodex/rolodex/connectors/webhooks"
	"github.com/rolodex/rolodex/intake"
	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/normalize"
	"github.com/rolodex/rolodex/partners"
	"github.com/rolodex/rolodex/processors/fanout"
	"github.com/rolodex/rolodex/processors/identity"
	"github.com/rolodex/rolodex/processors/lifecycle"
	"github.com/rolodex/rolodex/processors/routing"
	"github.com/rolodex/rolodex/processors/tags"
	"github.com/rolodex/rolodex/schemas"
	"github.com/rolodex/rolodex/views"
)

// env is what every component of a server gets.
type env struct {
	cfg     *fileConfig // nil for a server that reads no configuration (run sink)
	reg     *partners.Registry
	norm    *normalize.Normalizer
	kafka   kafkaclient.Config
	admin   *kgo.Client
	prom    *prometheus.Registry
	mux     *router
	g       *errgroup.Group
	ctx     context.Context
	logger  *slog.Logger
	closers []func()
	// health lists what /healthz checks besides Kafka (the sink's
	// ClickHouse, for one).
	health []func(context.Context) error
	// pub is the server's one event publisher (acks=all), built by the
	// first component that needs it (publisher): ingest and the API's
	// status changes share it.
	pub *intake.Publisher
	// topics is the server's one fan-out topic store, built and run by
	// the first component that needs it (fanoutTopics): ingest checks
	// topic events with it, the API serves and writes it.
	topics *views.TopicStore
}

// fanoutTopics returns the server's fan-out topic store, creating the
// store topics (fanoutStoreTopics), building the store and running it on
// first use.
func (e *env) fanoutTopics() (*views.TopicStore, error) {
	if e.topics != nil {
		return e.topics, nil
	}
	if err := fanoutStoreTopics(e); err != nil {
		return nil, err
	}
	tcfg := e.kafka
	tcfg.ClientID = "rolodex-fanout-topics"
	topics, err := views.NewTopicStore(views.RuleStoreConfig{Kafka: tcfg, Registerer: e.prom, Logger: e.logger})
	if err != nil {
		return nil, err
	}
	e.closers = append(e.closers, topics.Close)
	e.g.Go(func() error { return topics.Run(e.ctx) })
	e.topics = topics
	return topics, nil
}

// publisher returns the server's event publisher, building its producer
// (named clientID) on first use.
func (e *env) publisher(clientID string) (*intake.Publisher, error) {
	if e.pub != nil {
		return e.pub, nil
	}
	pcfg := e.kafka
	pcfg.ClientID = clientID
	producer, err := kafkaclient.NewClient(pcfg)
	if err != nil {
		return nil, err
	}
	e.closers = append(e.closers, producer.Close)
	e.pub = intake.NewPublisher(producer)
	return e.pub, nil
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
	cfg *serverConfig
	// noConfig: the components read no configuration file (run sink), so
	// none is loaded and no partner topics are created.
	noConfig bool
	// dev allows the public keys of the built-in configuration (dev mode
	// only: production commands refuse them).
	dev bool
	// ready, when set, is called once the HTTP server listens.
	ready func(cfg *fileConfig, httpAddr string)
	// mounted, when set, is called with every route pattern the server
	// mounted, before it listens (the route test).
	mounted func(patterns []string)
}

// runServer runs components behind one HTTP server that also serves
// /metrics and /healthz, until ctx is done or a component fails.
func runServer(ctx context.Context, o serverOptions, logger *slog.Logger, components ...component) error {
	sc := o.cfg
	if sc == nil && !o.noConfig {
		var err error
		if sc, err = loadServerConfig(o.configPath); err != nil {
			return err
		}
	}
	if sc != nil {
		if public := sc.file.publicKeys(); len(public) > 0 && !o.dev {
			return fmt.Errorf("config %s: partners %s use the public key of the built-in demo configuration: anyone could send as them; "+
				"give them secret keys (the demo key is for \"rolodex dev\" only)", orDefault(o.configPath), strings.Join(public, ", "))
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
	e := &env{kafka: kcfg, admin: admin, prom: prom, mux: newRouter(), logger: logger}
	if sc != nil {
		e.cfg, e.reg, e.norm = sc.file, sc.reg, sc.norm
		if err := ensureBaseTopics(ctx, admin, sc); err != nil {
			return err
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	e.g, e.ctx = g, gctx
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
	e.mux.Handle("GET /metrics", promhttp.HandlerFor(prom, promhttp.HandlerOpts{Registry: prom}))
	e.mux.HandleFunc("GET /healthz", healthz(append([]func(context.Context) error{admin.Ping}, e.health...)))
	if o.mounted != nil {
		o.mounted(e.mux.patterns)
	}

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
		o.ready(e.cfg, ln.Addr().String())
	}
	err = g.Wait()
	logger.Info("rolodex stopped")
	return err
}

// serverConfig is a server's configuration with the parts every component
// shares, each built once: the partner registry (one set of rate limiters
// per partner, whichever components serve it) and the normalizer.
type serverConfig struct {
	file *fileConfig
	reg  *partners.Registry
	norm *normalize.Normalizer
}

// loadServerConfig reads the configuration at path (the built-in one when
// path is empty) and checks what the components would refuse, so that a
// server fails before it starts or connects to anything: the partners
// (names, keys, signing secrets), the normalizer and the webhook mappings.
func loadServerConfig(path string) (*serverConfig, error) {
	cfg, err := loadConfig(path)
	if err != nil {
		return nil, err
	}
	sc := &serverConfig{file: cfg}
	sc.reg, err = cfg.registry()
	if err == nil {
		sc.norm, err = cfg.normalizer()
	}
	if err == nil {
		// The HTTP connector refuses bad mappings and signing secrets.
		_, err = httpin.New(httpConfig(cfg, nil), sc.reg, nil, nil, nil, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", orDefault(path), err)
	}
	return sc, nil
}

// httpConfig is the HTTP ingest connector's part of cfg.
func httpConfig(cfg *fileConfig, logger *slog.Logger) httpin.Config {
	return httpin.Config{
		MaxBodyBytes: cfg.HTTP.MaxBodyBytes, MaxBatch: cfg.HTTP.MaxBatch, WriteTimeout: cfg.HTTP.WriteTimeout,
		Mappings: cfg.Mappings, Logger: logger,
	}
}

// ensureBaseTopics creates the topics every component relies on, the
// tag rules' among them (the API writes it, the tag stage reads it).
func ensureBaseTopics(ctx context.Context, admin *kgo.Client, sc *serverConfig) error {
	cfg := sc.file
	compact := "compact"
	topics := []kafkaclient.TopicSpec{
		{Name: schemas.TopicEvents, Partitions: cfg.Topics.Partitions},
		{Name: schemas.TopicDeadLetter, Partitions: cfg.Topics.Partitions},
		// Compacted: the latest record of each rule; a delete is a record
		// with deleted set, not a tombstone, so its version survives.
		{Name: schemas.TopicTagRules, Partitions: cfg.Topics.Partitions, Configs: map[string]*string{"cleanup.policy": &compact}},
	}
	for _, p := range sc.reg.All() {
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
	pub, err := e.publisher("rolodex-ingest-http")
	if err != nil {
		return err
	}
	metrics := intake.NewMetrics(e.prom)
	validator := intake.NewValidator(e.norm)
	// Topic events (POST /v1/topics/{name}/events, the rolodex-topic
	// header) are checked against the fan-out topic store.
	topics, err := e.fanoutTopics()
	if err != nil {
		return err
	}
	hcfg := httpConfig(e.cfg, e.logger)
	hcfg.Topics = topics
	httpSrv, err := httpin.New(hcfg, e.reg, validator, pub, metrics, e.prom)
	if err != nil {
		return err
	}
	httpSrv.Register(e.mux)
	kcfg := e.kafka
	kcfg.ClientID = "rolodex-ingest-kafka"
	kin, err := kafkain.New(kafkain.Config{Kafka: kcfg, Topics: topics, Logger: e.logger}, e.reg, validator, metrics)
	if err != nil {
		return err
	}
	e.closers = append(e.closers, kin.Close)
	e.g.Go(func() error { return kin.Run(e.ctx) })
	lag := kafkaclient.NewLagMetrics(e.prom)
	e.g.Go(func() error { return lag.Run(e.ctx, e.admin, schemas.GroupKafkaIngest, 5*time.Second) })
	return nil
}

// ensureIdentityTopics creates the identity group's topics (its table,
// loopback and outputs) with the partition count of rolodex.events, if they
// are missing. Both the processors and the query API (whose view reads the
// table) call it, so that neither depends on the other having started
// first.
func ensureIdentityTopics(e *env) (partitions int32, err error) {
	tctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	return identity.EnsureTopics(tctx, e.admin, e.cfg.Topics.Replication)
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
				Engine: identity.Config{Limits: e.cfg.Identity.Limits, DefaultLimit: e.cfg.Identity.DefaultLimit, DedupeWindow: e.cfg.Identity.DedupeWindow,
					Status: e.cfg.Tags, LeadTypes: e.cfg.leadTypes()},
				Brokers: e.kafka.Brokers, StorageDir: filepath.Join(dir, "identity"), Replication: repl, Registerer: e.prom,
			})
			if err != nil {
				return nil, err
			}
			e.logger.Info("identity processor started", "storage", filepath.Join(dir, "identity"), "partitions", parts,
				"kept_storage", p.KeptStorage(), // after a clean shutdown
				"kept_after_crash", p.KeptAfterCrash()) // both false: recovering its partitions from the table topic
			return newRecovery(e.prom).timed("identity", p.Run, p.Processor), nil
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

// tagsComponent runs the tag processor (rolodex.profiles to
// rolodex.profile.tags), keeping its LevelDB storage in dir.
func tagsComponent(dir string) component {
	return func(e *env) error {
		if _, err := ensureIdentityTopics(e); err != nil {
			return err
		}
		tctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
		defer cancel()
		if err := tags.EnsureTopics(tctx, e.admin, e.cfg.Topics.Replication); err != nil {
			return err
		}
		storage := filepath.Join(dir, "tags")
		build := func() (func(context.Context) error, error) {
			p, err := tags.New(tags.Config{Brokers: e.kafka.Brokers, StorageDir: storage, Registerer: e.prom, Status: e.cfg.Tags, Logger: e.logger})
			if err != nil {
				return nil, err
			}
			e.logger.Info("tag processor started", "storage", storage)
			return newRecovery(e.prom).timed("tags", p.Run, p.Processor), nil
		}
		first, err := build()
		if err != nil {
			return err
		}
		sup := newSupervisor("tags", e.prom, e.logger)
		e.g.Go(func() error { return sup.run(e.ctx, first, build) })
		lag := kafkaclient.NewLagMetrics(e.prom)
		e.g.Go(func() error { return lag.Run(e.ctx, e.admin, schemas.GroupTags, 5*time.Second) })
		return nil
	}
}

// lifecycleComponent runs the message lifecycle's three goka groups
// (docs/lifecycle.md: the router, rolodex-recipients, rolodex-lifecycle),
// keeping their LevelDB storage in dir.
func lifecycleComponent(dir string) component {
	return func(e *env) error {
		if err := ensureLifecycleTopics(e); err != nil {
			return err
		}
		storage := filepath.Join(dir, "lifecycle")
		rc := e.cfg.Lifecycle.Recipients()
		build := func() (func(context.Context) error, error) {
			p, err := lifecycle.New(lifecycle.Config{Brokers: e.kafka.Brokers, StorageDir: storage, Registerer: e.prom, Recipients: &rc})
			if err != nil {
				return nil, err
			}
			e.logger.Info("lifecycle processors started", "storage", storage, "soft_bounce_limit", rc.SoftBounceLimit)
			return newRecovery(e.prom).timed("lifecycle", p.Run, p.Router, p.Recipients, p.Lifecycle), nil
		}
		first, err := build()
		if err != nil {
			return err
		}
		sup := newSupervisor("lifecycle", e.prom, e.logger)
		e.g.Go(func() error { return sup.run(e.ctx, first, build) })
		lag := kafkaclient.NewLagMetrics(e.prom)
		for _, group := range []string{schemas.GroupMessagesRouter, schemas.GroupRecipients, schemas.GroupLifecycle} {
			e.g.Go(func() error { return lag.Run(e.ctx, e.admin, group, 5*time.Second) })
		}
		return nil
	}
}

// routingComponent runs lead routing's goka groups (docs/routing.md:
// rolodex-routing keyed by tenant, with its SLA scheduler, and the re-key
// step rolodex-routing-router), keeping their LevelDB storage in dir.
func routingComponent(dir string) component {
	return func(e *env) error {
		if err := ensureRoutingTopics(e); err != nil {
			return err
		}
		storage := filepath.Join(dir, "routing")
		build := func() (func(context.Context) error, error) {
			p, err := routing.New(routing.Config{Brokers: e.kafka.Brokers, StorageDir: storage, Registerer: e.prom,
				Partners: e.cfg.partnerRouting(), Retention: e.cfg.Routing.Retention, FollowTypes: e.cfg.Routing.FollowTypes,
				Tick: e.cfg.Routing.Tick, Logger: e.logger})
			if err != nil {
				return nil, err
			}
			e.logger.Info("routing processors started", "storage", storage, "lead_types", e.cfg.leadTypes())
			return newRecovery(e.prom).timed("routing", p.Run, p.Routing, p.Router), nil
		}
		first, err := build()
		if err != nil {
			return err
		}
		sup := newSupervisor("routing", e.prom, e.logger)
		e.g.Go(func() error { return sup.run(e.ctx, first, build) })
		lag := kafkaclient.NewLagMetrics(e.prom)
		for _, group := range []string{schemas.GroupRouting, schemas.GroupRoutingRouter} {
			e.g.Go(func() error { return lag.Run(e.ctx, e.admin, group, 5*time.Second) })
		}
		return nil
	}
}

// fanoutComponent runs partner fan-out (docs/fanout.md): the goka group
// rolodex-fanout (keyed by profile id; its LevelDB storage in dir) and the
// directory broadcast rolodex-fanout-directory (connectors/fanoutdir),
// which writes the store topics' changes to every partition of its input,
// and the subscription replay step rolodex-fanout-replay
// (connectors/fanoutreplay); rolodex.fanout.input keeps
// fanout.replay_retention.
func fanoutComponent(dir string) component {
	return func(e *env) error {
		if _, err := ensureIdentityTopics(e); err != nil {
			return err
		}
		tctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
		err := fanout.EnsureTopics(tctx, e.admin, e.cfg.Topics.Replication)
		if err == nil {
			err = fanout.SetReplayRetention(tctx, e.admin, e.cfg.replayRetention())
		}
		cancel()
		if err != nil {
			return err
		}
		storage := filepath.Join(dir, "fanout")
		build := func() (func(context.Context) error, error) {
			p, err := fanout.New(fanout.Config{Brokers: e.kafka.Brokers, StorageDir: storage, Registerer: e.prom, Logger: e.logger})
			if err != nil {
				return nil, err
			}
			e.logger.Info("fanout processor started", "storage", storage)
			return newRecovery(e.prom).timed("fanout", p.Run, p.Processor), nil
		}
		first, err := build()
		if err != nil {
			return err
		}
		sup := newSupervisor("fanout", e.prom, e.logger)
		e.g.Go(func() error { return sup.run(e.ctx, first, build) })
		b, err := fanoutdir.New(fanoutdir.Config{Brokers: e.kafka.Brokers, Registerer: e.prom, Logger: e.logger})
		if err != nil {
			return err
		}
		e.g.Go(func() error { return b.Run(e.ctx) })
		rp, err := fanoutreplay.New(fanoutreplay.Config{Brokers: e.kafka.Brokers, Registerer: e.prom, Logger: e.logger})
		if err != nil {
			return err
		}
		e.g.Go(func() error { return rp.Run(e.ctx) })
		lag := kafkaclient.NewLagMetrics(e.prom)
		for _, group := range []string{schemas.GroupFanout, schemas.GroupFanoutDirectory, schemas.GroupFanoutReplay} {
			e.g.Go(func() error { return lag.Run(e.ctx, e.admin, group, 5*time.Second) })
		}
		return nil
	}
}

// fanoutDeliveryComponent runs partner fan-out's delivery (docs/fanout.md,
// "Delivery"): the Kafka writer rolodex-fanout-kafka and the webhook
// sender rolodex-fanout-webhooks over rolodex.fanout.deliveries, after
// creating every partner's out topic, rolodex.fanout.reports and
// rolodex.out.deadletter.
func fanoutDeliveryComponent(e *env) error {
	if _, err := ensureIdentityTopics(e); err != nil {
		return err
	}
	tctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	err := fanout.EnsureTopics(tctx, e.admin, e.cfg.Topics.Replication)
	if err == nil {
		err = webhooks.EnsureFanoutTopics(tctx, e.admin, e.cfg.Topics.Replication, e.reg.All())
	}
	cancel()
	if err != nil {
		return err
	}
	f, err := webhooks.NewFanout(webhooks.FanoutConfig{Brokers: e.kafka.Brokers, RetrySchedule: e.cfg.Fanout.Delivery.RetrySchedule,
		Timeout: e.cfg.Fanout.Delivery.Timeout, Registerer: e.prom, Logger: e.logger})
	if err != nil {
		return err
	}
	e.g.Go(func() error { return f.Run(e.ctx) })
	lag := kafkaclient.NewLagMetrics(e.prom)
	for _, group := range f.Groups() {
		e.g.Go(func() error { return lag.Run(e.ctx, e.admin, group, 5*time.Second) })
	}
	return nil
}

// deliveryComponent runs lead delivery (docs/routing.md, "Delivery"): the
// dispatcher from rolodex.routing.outcomes to the partners' topics
// rolodex.out.<partner>, and a webhook sender per webhook partner.
func deliveryComponent(e *env) error {
	if err := ensureRoutingTopics(e); err != nil {
		return err
	}
	ps := e.reg.All()
	tctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	err := webhooks.EnsureLeadTopics(tctx, e.admin, e.cfg.Topics.Replication, ps)
	cancel()
	if err != nil {
		return err
	}
	d, err := webhooks.NewLeadDelivery(webhooks.LeadDeliveryConfig{Brokers: e.kafka.Brokers, Partners: ps,
		RetrySchedule: e.cfg.Routing.Delivery.RetrySchedule, Registerer: e.prom, Logger: e.logger})
	if err != nil {
		return err
	}
	e.g.Go(func() error { return d.Run(e.ctx) })
	lag := kafkaclient.NewLagMetrics(e.prom)
	for _, group := range append([]string{schemas.GroupLeadDelivery}, d.WebhookGroups()...) {
		e.g.Go(func() error { return lag.Run(e.ctx, e.admin, group, 5*time.Second) })
	}
	return nil
}

// ensureRoutingTopics creates routing's topics (after the identity
// topics, whose partition count they take). The processors and the API
// (the rules store and the lead view) both call it.
func ensureRoutingTopics(e *env) error {
	if _, err := ensureIdentityTopics(e); err != nil {
		return err
	}
	tctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	return routing.EnsureTopics(tctx, e.admin, e.cfg.Topics.Replication)
}

// ensureLifecycleTopics creates the lifecycle's topics (after the identity
// topics, rolodex.events among them, whose partition count they take).
// The processors and the API (whose message view reads the lifecycle's
// table) both call it.
func ensureLifecycleTopics(e *env) error {
	if _, err := ensureIdentityTopics(e); err != nil {
		return err
	}
	tctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	return lifecycle.EnsureTopics(tctx, e.admin, e.cfg.Topics.Replication)
}

// apiComponent serves the profile API from a view kept in dir: the reads
// (profiles, and messages from a view of the lifecycle's table),
// the status changes (tags, blacklist, consent) it publishes to
// rolodex.events through the server's publisher, the tag rules
// (rolodex.tag.rules, created with the base topics) from a rule store,
// and the routing rules and leads (routing.EnsureTopics).
func apiComponent(dir string) component {
	return func(e *env) error {
		if _, err := ensureIdentityTopics(e); err != nil {
			return err
		}
		pub, err := e.publisher("rolodex-api")
		if err != nil {
			return err
		}
		v, err := views.NewView(e.kafka.Brokers, filepath.Join(dir, "view"))
		if err != nil {
			return err
		}
		// Rule tags come from the tag stage's table, whose topics the API
		// creates so that components start in any order.
		tctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
		err = tags.EnsureTopics(tctx, e.admin, e.cfg.Topics.Replication)
		cancel()
		if err != nil {
			return err
		}
		tv, err := views.NewTagView(e.kafka.Brokers, filepath.Join(dir, "tagview"))
		if err != nil {
			return err
		}
		// Messages come from the lifecycle's table, whose topics the API
		// creates too.
		if err := ensureLifecycleTopics(e); err != nil {
			return err
		}
		mv, err := views.NewMessageView(e.kafka.Brokers, filepath.Join(dir, "messageview"))
		if err != nil {
			return err
		}
		rcfg := e.kafka
		rcfg.ClientID = "rolodex-rules"
		store, err := views.NewRuleStore(views.RuleStoreConfig{Kafka: rcfg, Registerer: e.prom, Logger: e.logger})
		if err != nil {
			return err
		}
		e.closers = append(e.closers, store.Close)
		// Routing: the rules (rolodex.routing.rules) and leads (a view of
		// the routing stage's table), whose topics the API creates too.
		tctx, cancel = context.WithTimeout(e.ctx, 30*time.Second)
		err = routing.EnsureTopics(tctx, e.admin, e.cfg.Topics.Replication)
		cancel()
		if err != nil {
			return err
		}
		lv, err := views.NewLeadView(e.kafka.Brokers, filepath.Join(dir, "leadview"))
		if err != nil {
			return err
		}
		gcfg := e.kafka
		gcfg.ClientID = "rolodex-routing-rules"
		routingStore, err := views.NewRoutingStore(views.RuleStoreConfig{Kafka: gcfg, Registerer: e.prom, Logger: e.logger})
		if err != nil {
			return err
		}
		e.closers = append(e.closers, routingStore.Close)
		// Partner fan-out: the topics and subscriptions (compacted, read
		// whole by every API instance), created here too.
		topicStore, subStore, err := fanoutStores(e)
		if err != nil {
			return err
		}
		// A change is answered once the directory broadcast copied it into
		// every partition of the fan-out input (Rolodex-In-Force: true),
		// or after this wait (false).
		topicStore.SetInForce(schemas.GroupFanoutDirectory, fanoutInForceWait)
		subStore.SetInForce(schemas.GroupFanoutDirectory, fanoutInForceWait)
		api, err := views.NewAPI(v, e.reg, e.norm, views.Config{
			Status: e.cfg.Tags, Publisher: pub, WriteTimeout: e.cfg.HTTP.WriteTimeout, Rules: store, RuleTags: tv, Messages: mv, Registerer: e.prom, Logger: e.logger,
			Routing: routingStore, Leads: lv, Topics: topicStore, Subscriptions: subStore,
		})
		if err != nil {
			return err
		}
		api.Register(e.mux)
		e.g.Go(func() error { return v.Run(e.ctx) })
		e.g.Go(func() error { return tv.Run(e.ctx) })
		e.g.Go(func() error { return mv.Run(e.ctx) })
		e.g.Go(func() error { return store.Run(e.ctx) })
		e.g.Go(func() error { return lv.Run(e.ctx) })
		e.g.Go(func() error { return routingStore.Run(e.ctx) })
		e.g.Go(func() error { return subStore.Run(e.ctx) })
		return nil
	}
}

// fanoutInForceWait bounds how long the API waits for a topic or
// subscription change to be in force in every partition of the fan-out
// input before it answers (docs/fanout.md, "Directory").
const fanoutInForceWait = 10 * time.Second

// fanoutStoreTopics creates the fan-out store topics
// (rolodex.fanout.topics and rolodex.fanout.subscriptions, compacted: a
// deletion is a record, so its version survives).
func fanoutStoreTopics(e *env) error {
	compact := "compact"
	n := e.cfg.Topics.Partitions
	tctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	err := kafkaclient.EnsureTopics(tctx, e.admin, e.cfg.Topics.Replication,
		kafkaclient.TopicSpec{Name: schemas.TopicFanoutTopics, Partitions: n, Configs: map[string]*string{"cleanup.policy": &compact}},
		kafkaclient.TopicSpec{Name: schemas.TopicFanoutSubscriptions, Partitions: n, Configs: map[string]*string{"cleanup.policy": &compact}})
	cancel()
	if err != nil {
		return fmt.Errorf("create the fan-out store topics: %w", err)
	}
	return nil
}

// fanoutStores returns the API's fan-out stores: the server's topic store
// (fanoutTopics, shared with ingest) and a subscription store.
func fanoutStores(e *env) (*views.TopicStore, *views.SubscriptionStore, error) {
	topics, err := e.fanoutTopics()
	if err != nil {
		return nil, nil, err
	}
	scfg := e.kafka
	scfg.ClientID = "rolodex-fanout-subscriptions"
	subs, err := views.NewSubscriptionStore(views.RuleStoreConfig{Kafka: scfg, Registerer: e.prom, Logger: e.logger})
	if err != nil {
		return nil, nil, err
	}
	e.closers = append(e.closers, subs.Close)
	return topics, subs, nil
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

// healthz answers 200 when every check (Kafka's ping first) passes within
// two seconds, 503 with the first failure otherwise.
func healthz(checks []func(context.Context) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "application/json")
		for _, check := range checks {
			if err := check(ctx); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				_ = json.NewEncoder(w).Encode(map[string]string{"status": "unavailable", "error": err.Error()})
				return
			}
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"status": "ok"})
	}
}
