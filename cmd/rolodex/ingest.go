package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/rolodex/rolodex/connectors/clickhouse"
	"github.com/rolodex/rolodex/internal/devbroker"
	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/partners"
	"github.com/rolodex/rolodex/schemas"
)

func cmdDev(ctx context.Context, args []string, stdout, stderr io.Writer, logger *slog.Logger) error {
	fs := newFlagSet("dev", stdout, stderr)
	brokerAddr := fs.String("broker-addr", "127.0.0.1:9092", "listen address of the embedded Kafka broker")
	dataDir := fs.String("data-dir", "", "keep the embedded broker's data and the processors' state in this directory across restarts (default: temporary)")
	brokers := fs.String("brokers", "", "attach to this external Kafka (host:port,...) instead of starting the embedded broker")
	httpAddr := fs.String("http-addr", "127.0.0.1:8080", "listen address of the HTTP API (ingest and query), /metrics and /healthz")
	config := fs.String("config", "", "YAML config file (default: built-in, with the demo partner)")
	chAddr := fs.String("clickhouse", "", "also run the ClickHouse sink into this server (native host:port, e.g. \"$ROLODEX_CLICKHOUSE_ADDR\"); default: off, even when $ROLODEX_CLICKHOUSE_ADDR is set")
	chHTTP := fs.String("clickhouse-http", "", clickhouseHTTPUsage)
	if err := fs.parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("dev: unexpected argument %q", fs.Arg(0))}
	}
	if *chHTTP != "" && *chHTTP != "off" && *chAddr == "" {
		return usageError{"dev: --clickhouse-http needs --clickhouse (the sink runs only with it)"}
	}
	// A bad config fails here, before the broker starts.
	cfg, err := loadServerConfig(*config)
	if err != nil {
		return err
	}
	state, cleanup, err := stateDir(*dataDir)
	if err != nil {
		return err
	}
	defer cleanup()
	opts := serverOptions{httpAddr: *httpAddr, configPath: *config, cfg: cfg, dev: true}
	if *brokers != "" {
		opts.brokers = kafkaclient.ParseBrokers(*brokers)
	} else {
		bcfg := devbroker.Config{Addr: *brokerAddr}
		if *dataDir != "" {
			bcfg.DataDir = *dataDir + "/kafka"
		}
		cluster, err := devbroker.Start(bcfg)
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
		fmt.Fprintf(stdout, "\nRolodex dev mode is up.\n  Kafka:   %s\n  HTTP:    http://%s  (POST /v1/events, POST /v1/webhooks/{mapping}, GET /v1/profiles/{id}, GET /v1/lookup,\n           POST /v1/profiles/{id}/tags, POST /v1/tags/{tag}, /v1/blacklist, PUT /v1/profiles/{id}/consent/{purpose},\n           GET /v1/messages/{id}, PUT /v1/routing/rules, GET /v1/leads/{id}, /metrics, /healthz)\n  API:     http://%s/openapi.yaml  (the OpenAPI document of every endpoint)\n", opts.brokers[0], addr, addr)
		for _, p := range cfg.Partners {
			fmt.Fprintf(stdout, "  Partner: %s  tenant: %s  bearer key: %s  ingest topic: %s\n", p.Name, p.Tenant, firstKey(&p), schemas.IngestTopic(p.Name))
		}
		if public := cfg.publicKeys(); len(public) > 0 {
			fmt.Fprintf(stdout, "  Dev mode only: the demo credentials are public (%s); \"rolodex run\" refuses to start without a --config of your own partners.\n", strings.Join(public, ", "))
		}
		key := firstKey(&cfg.Partners[0])
		fmt.Fprintf(stdout, "\nTry:\n  curl -sS -X POST http://%s/v1/events -H 'Authorization: Bearer %s' -H 'Content-Type: application/json' \\\n    -d '{\"id\":\"e-1\",\"type\":\"page.viewed\",\"identifiers\":{\"email\":\"Ana@Example.com\"}}'\n", addr, key)
		fmt.Fprintf(stdout, "  curl -sS 'http://%s/v1/lookup?type=email&value=ana@example.com' -H 'Authorization: Bearer %s'\n\n", addr, key)
	}
	components := devComponents(state)
	if *chAddr != "" {
		components = append(components, sinkComponent(clickhouse.Config{ClickHouse: (&clickhouseFlags{addr: *chAddr, http: *chHTTP, sink: true, database: clickhouse.DefaultDatabase, user: "default"}).config()}))
	} else {
		logger.Info("ClickHouse sink off (rolodex dev --clickhouse host:port turns it on)")
	}
	return runServer(ctx, opts, logger, components...)
}

// componentFlags are the flags of "rolodex run <component>".
type componentFlags struct {
	fs       *flagSet
	brokers  *string
	httpAddr *string
	config   *string
	state    *string
}

func newComponentFlags(name, defaultAddr string, stdout, stderr io.Writer, withState bool) *componentFlags {
	fs := newFlagSet("run "+name, stdout, stderr)
	c := &componentFlags{fs: fs,
		brokers:  fs.String("brokers", "", "Kafka seed brokers, host:port,... (required)"),
		httpAddr: fs.String("http-addr", defaultAddr, "listen address of the HTTP server (/metrics, /healthz and the component's API)"),
		config:   fs.String("config", "", "YAML config file with your partners and their keys (required: the built-in demo partner is for \"rolodex dev\" only)"),
	}
	fs.StringVar(c.httpAddr, "metrics-addr", defaultAddr, "alias of --http-addr")
	if withState {
		c.state = fs.String("state-dir", "/var/lib/rolodex", "directory for local state (LevelDB copies of goka tables)")
	}
	return c
}

func (c *componentFlags) parse(args []string) (serverOptions, error) {
	if err := c.fs.parse(args); err != nil {
		return serverOptions{}, err
	}
	if *c.brokers == "" {
		return serverOptions{}, usageError{c.fs.Name() + ": --brokers is required"}
	}
	if c.fs.NArg() > 0 {
		return serverOptions{}, usageError{fmt.Sprintf("%s: unexpected argument %q", c.fs.Name(), c.fs.Arg(0))}
	}
	if *c.config == "" {
		// Without it the built-in configuration would serve the demo
		// partner, whose key is public.
		return serverOptions{}, usageError{c.fs.Name() + ": --config is required: pass --config FILE with your own partners and secret keys " +
			"(start from cmd/rolodex/defaults.yaml); the built-in demo partner and its public key demo-key are for \"rolodex dev\" only"}
	}
	return serverOptions{brokers: kafkaclient.ParseBrokers(*c.brokers), httpAddr: *c.httpAddr, configPath: *c.config}, nil
}

func cmdRunIngest(ctx context.Context, args []string, stdout, stderr io.Writer, logger *slog.Logger) error {
	f := newComponentFlags("ingest", "0.0.0.0:8080", stdout, stderr, false)
	o, err := f.parse(args)
	if err != nil {
		return err
	}
	return runServer(ctx, o, logger, ingestComponents()...)
}

func cmdRunProcessors(ctx context.Context, args []string, stdout, stderr io.Writer, logger *slog.Logger) error {
	f := newComponentFlags("processors", "0.0.0.0:9100", stdout, stderr, true)
	o, err := f.parse(args)
	if err != nil {
		return err
	}
	return runServer(ctx, o, logger, identityComponent(*f.state), tagsComponent(*f.state), lifecycleComponent(*f.state), routingComponent(*f.state), fanoutComponent(*f.state), deliveryComponent, fanoutDeliveryComponent)
}

func cmdRunAPI(ctx context.Context, args []string, stdout, stderr io.Writer, logger *slog.Logger) error {
	f := newComponentFlags("api", "0.0.0.0:8081", stdout, stderr, true)
	o, err := f.parse(args)
	if err != nil {
		return err
	}
	return runServer(ctx, o, logger, apiComponents(*f.state)...)
}

// The components of the servers that serve the API (the ClickHouse sink,
// which dev mode may add, mounts no route). Each serves the API document.

// devComponents are dev mode's: every part of Rolodex in one server.
func devComponents(state string) []component {
	return []component{ingestComponent, identityComponent(state), tagsComponent(state), lifecycleComponent(state), routingComponent(state), fanoutComponent(state), deliveryComponent, fanoutDeliveryComponent, apiComponent(state), openapiComponent}
}

// ingestComponents are "rolodex run ingest"'s.
func ingestComponents() []component { return []component{ingestComponent, openapiComponent} }

// apiComponents are "rolodex run api"'s.
func apiComponents(state string) []component {
	return []component{apiComponent(state), openapiComponent}
}

// firstKey is the first key of p, which the dev banner prints ("" if none).
func firstKey(p *partners.Partner) string {
	if ks := p.AllKeys(); len(ks) > 0 {
		return ks[0].Key
	}
	return ""
}
