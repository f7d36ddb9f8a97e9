package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/rolodex/rolodex/connectors/httpin"
	"github.com/rolodex/rolodex/connectors/ingest"
	"github.com/rolodex/rolodex/connectors/kafkain"
	"github.com/rolodex/rolodex/internal/devbroker"
	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/schemas"
)

// ingestOptions are what dev mode and "run ingest" share.
type ingestOptions struct {
	brokers    []string
	httpAddr   string
	configPath string
	// ready, when set, is called once the HTTP server listens.
	ready func(cfg *fileConfig, httpAddr string)
}

func cmdDev(ctx context.Context, args []string, stdout, stderr io.Writer, logger *slog.Logger) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	brokerAddr := fs.String("broker-addr", "127.0.0.1:9092", "listen address of the embedded Kafka broker")
	dataDir := fs.String("data-dir", "", "keep the embedded broker's data in this directory across restarts (default: in memory)")
	brokers := fs.String("brokers", "", "attach to this external Kafka (host:port,...) instead of starting the embedded broker")
	httpAddr := fs.String("http-addr", "127.0.0.1:8080", "listen address of the HTTP API, /metrics and /healthz")
	config := fs.String("config", "", "YAML config file (default: built-in, with the demo partner)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("dev: unexpected argument %q", fs.Arg(0))}
	}
	opts := ingestOptions{httpAddr: *httpAddr, configPath: *config}
	if *brokers != "" {
		opts.brokers = kafkaclient.ParseBrokers(*brokers)
	} else {
		cluster, err := devbroker.Start(devbroker.Config{Addr: *brokerAddr, DataDir: *dataDir})
		if err != nil {
			return err
		}
		defer cluster.Close()
		opts.brokers = cluster.ListenAddrs()
		persist := "in memory (lost on exit; --data-dir keeps it)"
		if *dataDir != "" {
			persist = "in " + *dataDir
		}
		logger.Info("embedded Kafka broker started", "addr", opts.brokers[0], "data", persist)
	}
	opts.ready = func(cfg *fileConfig, addr string) {
		fmt.Fprintf(stdout, "\nRolodex dev mode is up.\n  Kafka:   %s\n  HTTP:    http://%s  (POST /v1/events, POST /v1/webhooks/{mapping}, /metrics, /healthz)\n", opts.brokers[0], addr)
		for _, p := range cfg.Partners {
			fmt.Fprintf(stdout, "  Partner: %s  tenant: %s  bearer key: %s  ingest topic: %s\n", p.Name, p.Tenant, p.Keys[0], schemas.IngestTopic(p.Name))
		}
		fmt.Fprintf(stdout, "\nTry:\n  curl -sS -X POST http://%s/v1/events -H 'Authorization: Bearer %s' -H 'Content-Type: application/json' \\\n    -d '{\"id\":\"e-1\",\"type\":\"page.viewed\",\"identifiers\":{\"email\":\"Ana@Example.com\"}}'\n\n", addr, cfg.Partners[0].Keys[0])
	}
	return runIngest(ctx, opts, logger)
}

func cmdRunIngest(ctx context.Context, args []string, stderr io.Writer, logger *slog.Logger) error {
	fs := flag.NewFlagSet("run ingest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	brokers := fs.String("brokers", "", "Kafka seed brokers, host:port,... (required)")
	httpAddr := fs.String("http-addr", "0.0.0.0:8080", "listen address of the HTTP API, /metrics and /healthz")
	config := fs.String("config", "", "YAML config file (default: built-in, with the demo partner)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *brokers == "" {
		return usageError{"run ingest: --brokers is required"}
	}
	return runIngest(ctx, ingestOptions{brokers: kafkaclient.ParseBrokers(*brokers), httpAddr: *httpAddr, configPath: *config}, logger)
}

// runIngest runs the HTTP and Kafka ingest connectors until ctx is done.
func runIngest(ctx context.Context, o ingestOptions, logger *slog.Logger) error {
	cfg, err := loadConfig(o.configPath)
	if err != nil {
		return err
	}
	reg, err := cfg.registry()
	if err != nil {
		return err
	}
	norm, err := cfg.normalizer()
	if err != nil {
		return err
	}
	prom := prometheus.NewRegistry()
	prom.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	kcfg := kafkaclient.Config{Brokers: o.brokers, ClientID: "rolodex-ingest-http", Metrics: kafkaclient.NewMetrics(prom)}

	producer, err := kafkaclient.NewClient(kcfg)
	if err != nil {
		return err
	}
	defer producer.Close()

	topics := []kafkaclient.TopicSpec{
		{Name: schemas.TopicEvents, Partitions: cfg.Topics.Partitions},
		{Name: schemas.TopicDeadLetter, Partitions: cfg.Topics.Partitions},
	}
	for _, p := range reg.All() {
		topics = append(topics, kafkaclient.TopicSpec{Name: schemas.IngestTopic(p.Name), Partitions: cfg.Topics.Partitions})
	}
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = kafkaclient.EnsureTopics(tctx, producer, cfg.Topics.Replication, topics...)
	cancel()
	if err != nil {
		return fmt.Errorf("create topics (is Kafka reachable at %v?): %w", o.brokers, err)
	}

	metrics := ingest.NewMetrics(prom)
	validator := ingest.NewValidator(norm)
	httpSrv, err := httpin.New(httpin.Config{
		MaxBodyBytes: cfg.HTTP.MaxBodyBytes, MaxBatch: cfg.HTTP.MaxBatch, WriteTimeout: cfg.HTTP.WriteTimeout,
		Mappings: cfg.Mappings, Logger: logger,
	}, reg, validator, ingest.NewPublisher(producer), metrics, prom)
	if err != nil {
		return err
	}
	kcfgIn := kcfg
	kcfgIn.ClientID = "rolodex-ingest-kafka"
	kin, err := kafkain.New(kafkain.Config{Kafka: kcfgIn, Logger: logger}, reg, validator, metrics)
	if err != nil {
		return err
	}
	defer kin.Close()

	mux := http.NewServeMux()
	httpSrv.Register(mux)
	mux.Handle("/metrics", promhttp.HandlerFor(prom, promhttp.HandlerOpts{Registry: prom}))
	mux.HandleFunc("/healthz", healthz(producer))

	ln, err := net.Listen("tcp", o.httpAddr)
	if err != nil {
		return fmt.Errorf("http: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	g, gctx := errgroup.WithContext(ctx)
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
	g.Go(func() error { return kin.Run(gctx) })
	logger.Info("ingest running", "http", ln.Addr().String(), "brokers", o.brokers)
	if o.ready != nil {
		o.ready(cfg, ln.Addr().String())
	}
	err = g.Wait()
	logger.Info("ingest stopped")
	return err
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
