package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/rolodex/rolodex/connectors/clickhouse"
	"github.com/rolodex/rolodex/internal/kafkaclient"
)

// envClickHouseAddr names the environment variable that gives the
// ClickHouse address when --clickhouse is not given; scripts/clickhouse
// start exports it.
const envClickHouseAddr = "ROLODEX_CLICKHOUSE_ADDR"

// envClickHouseHTTPAddr names the environment variable that gives the HTTP
// interface of the server of $ROLODEX_CLICKHOUSE_ADDR; scripts/clickhouse
// start exports it too.
const envClickHouseHTTPAddr = "ROLODEX_CLICKHOUSE_HTTP_ADDR"

// clickhouseFlags are the flags of every command that talks to ClickHouse.
type clickhouseFlags struct {
	addr, database, user string
	// http is --clickhouse-http, of the commands that run the sink.
	http string
	// sink is set for the commands that run the sink: only they write
	// events over HTTP (the others ignore $ROLODEX_CLICKHOUSE_HTTP_ADDR).
	sink bool
}

// clickhouseHTTPUsage is the help of --clickhouse-http.
const clickhouseHTTPUsage = "ClickHouse HTTP interface, host:port, of the same server: the sink writes the events table over it " +
	"(Native format, less than half the CPU per row); default $" + envClickHouseHTTPAddr + " when the native address is $" + envClickHouseAddr +
	"; \"off\" writes everything over the native protocol"

// registerHTTP adds --clickhouse-http to fs.
func (c *clickhouseFlags) registerHTTP(fs *flagSet) {
	fs.StringVar(&c.http, "clickhouse-http", "", clickhouseHTTPUsage)
	c.sink = true
}

// httpAddr is the HTTP address the sink writes events to: --clickhouse-http,
// else $ROLODEX_CLICKHOUSE_HTTP_ADDR when the native address is
// $ROLODEX_CLICKHOUSE_ADDR (both name one server, as scripts/clickhouse
// start exports them), else none.
func (c *clickhouseFlags) httpAddr() string {
	switch {
	case !c.sink || c.http == "off":
		return ""
	case c.http != "":
		return c.http
	case c.addr != "" && c.addr == os.Getenv(envClickHouseAddr):
		return os.Getenv(envClickHouseHTTPAddr)
	}
	return ""
}

// register adds the flags to fs. The address defaults to
// $ROLODEX_CLICKHOUSE_ADDR, else to fallback (empty: --clickhouse is
// required).
func (c *clickhouseFlags) register(fs *flagSet, fallback string) {
	def := os.Getenv(envClickHouseAddr)
	if def == "" {
		def = fallback
	}
	fs.StringVar(&c.addr, "clickhouse", def, "ClickHouse native protocol address, host:port; $"+envClickHouseAddr+" when not given")
	fs.StringVar(&c.database, "database", clickhouse.DefaultDatabase, "ClickHouse database of Rolodex's tables")
	fs.StringVar(&c.user, "clickhouse-user", "default", "ClickHouse user; the password comes from $ROLODEX_CLICKHOUSE_PASSWORD")
}

func (c *clickhouseFlags) config() clickhouse.ConnConfig {
	return clickhouse.ConnConfig{Addr: c.addr, HTTPAddr: c.httpAddr(), Database: c.database, Username: c.user, Password: os.Getenv("ROLODEX_CLICKHOUSE_PASSWORD")}
}

// cmdClickhouseMigrate is "rolodex clickhouse migrate": bring the schema up
// to date (idempotent).
func cmdClickhouseMigrate(ctx context.Context, args []string, stdout, stderr io.Writer, logger *slog.Logger) error {
	fs := newFlagSet("clickhouse migrate", stdout, stderr)
	var ch clickhouseFlags
	ch.register(fs, "127.0.0.1:9000")
	if err := fs.parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("clickhouse migrate: unexpected argument %q", fs.Arg(0))}
	}
	conn, err := clickhouse.Open(ctx, ch.config())
	if err != nil {
		return err
	}
	defer conn.Close()
	pending, err := clickhouse.Pending(ctx, conn, ch.database)
	if err != nil {
		return err
	}
	if err := clickhouse.Migrate(ctx, conn, ch.database); err != nil {
		return err
	}
	for _, m := range pending {
		fmt.Fprintf(stdout, "applied %d %s\n", m.Version, m.Name)
	}
	after, err := clickhouse.AppliedMigrations(ctx, conn, ch.database)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s on %s is at version %d (%d applied now)\n", ch.database, ch.addr, after[len(after)-1], len(pending))
	logger.Debug("clickhouse migrated", "database", ch.database, "versions", after)
	return nil
}

// cmdReport is "rolodex report NAME": print a report view.
func cmdReport(ctx context.Context, args []string, stdout, stderr io.Writer, logger *slog.Logger) error {
	fs := newFlagSet("report", stdout, stderr)
	var ch clickhouseFlags
	ch.register(fs, "127.0.0.1:9000")
	since := fs.String("since", "", "only days from this date on, YYYY-MM-DD (default: all)")
	until := fs.String("until", "", "only days up to this date, included, YYYY-MM-DD (default: all)")
	tenant := fs.String("tenant", "", "only this tenant's rows (default: every tenant)")
	partner := fs.String("partner", "", "only this partner's rows, for a report with a partner column (dead-letters, leads, deliveries)")
	topic := fs.String("topic", "", "only this topic's rows, for a report with a topic column (deliveries)")
	format := fs.String("format", "table", "output format: "+strings.Join(clickhouse.Formats, ", "))
	fs.Usage = func() {
		w := fs.Output()
		fs.printSynopsis()
		fmt.Fprintf(w, "\nReports:\n")
		for _, r := range clickhouse.Reports {
			fmt.Fprintf(w, "  %-13s %s (view %s)\n", r.Name, r.Doc, r.View)
		}
		fs.printFlags()
	}
	// The name may come before or after the flags.
	var name string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if err := fs.parse(args); err != nil {
		return err
	}
	if name == "" && fs.NArg() > 0 {
		name = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("report: unexpected argument %q", fs.Arg(0))}
	}
	if name == "" {
		fs.Usage()
		return usageError{"report: which one? (" + strings.Join(clickhouse.ReportNames(), ", ") + ")"}
	}
	r, ok := clickhouse.ReportByName(name)
	if !ok {
		return usageError{fmt.Sprintf("report: unknown report %q (known: %s)", name, strings.Join(clickhouse.ReportNames(), ", "))}
	}
	if !validFormat(*format) {
		return usageError{fmt.Sprintf("report: unknown format %q (known: %s)", *format, strings.Join(clickhouse.Formats, ", "))}
	}
	var f clickhouse.ReportFilter
	for _, d := range []struct {
		flag, value string
		to          *time.Time
	}{{"since", *since, &f.Since}, {"until", *until, &f.Until}} {
		if d.value == "" {
			continue
		}
		t, err := time.Parse("2006-01-02", d.value)
		if err != nil {
			return usageError{fmt.Sprintf("report: --%s %q: want a date, YYYY-MM-DD", d.flag, d.value)}
		}
		*d.to = t
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && f.Until.Before(f.Since) {
		return usageError{fmt.Sprintf("report: --until %s is before --since %s", *until, *since)}
	}
	f.Tenant, f.Partner, f.Topic = *tenant, *partner, *topic
	if err := f.Check(r); err != nil {
		return usageError{"report: " + err.Error()}
	}
	conn, err := clickhouse.Open(ctx, ch.config())
	if err != nil {
		return err
	}
	defer conn.Close()
	res, err := clickhouse.RunReportFilter(ctx, conn, ch.database, r, f)
	if err != nil {
		return fmt.Errorf("report %s: %w (has \"rolodex clickhouse migrate\" run on %s?)", name, err, ch.database)
	}
	return res.Write(stdout, *format)
}

func validFormat(f string) bool {
	for _, k := range clickhouse.Formats {
		if f == k {
			return true
		}
	}
	return false
}

// cmdRunSink is "rolodex run sink": the ClickHouse sink against a real
// Kafka (events, dead letters, profiles, merges, tag changes, message states and lead outcomes), with /metrics and
// /healthz (Kafka and ClickHouse).
func cmdRunSink(ctx context.Context, args []string, stdout, stderr io.Writer, logger *slog.Logger) error {
	fs := newFlagSet("run sink", stdout, stderr)
	brokers := fs.String("brokers", "", "Kafka seed brokers, host:port,... (required)")
	var ch clickhouseFlags
	ch.register(fs, "")
	ch.registerHTTP(fs)
	metricsAddr := fs.String("metrics-addr", "0.0.0.0:9101", "listen address of /metrics and /healthz")
	batchRows := fs.Int("batch-rows", 50_000, "most records per ClickHouse insert")
	batchInterval := fs.Duration("batch-interval", time.Second, "longest a batch waits for more records")
	skipMigrate := fs.Bool("skip-migrate", false, "do not apply schema migrations at start")
	if err := fs.parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("run sink: unexpected argument %q", fs.Arg(0))}
	}
	if *brokers == "" || ch.addr == "" {
		return usageError{"run sink: --brokers and --clickhouse (or $" + envClickHouseAddr + ") are required"}
	}
	cfg := clickhouse.Config{ClickHouse: ch.config(), BatchRows: *batchRows, BatchInterval: *batchInterval, SkipMigrate: *skipMigrate}
	opts := serverOptions{brokers: kafkaclient.ParseBrokers(*brokers), httpAddr: *metricsAddr, noConfig: true,
		ready: func(_ *fileConfig, addr string) {
			fmt.Fprintf(stdout, "rolodex sink: %s -> ClickHouse %s/%s; metrics on http://%s/metrics\n", *brokers, ch.addr, ch.database, addr)
		}}
	return runServer(ctx, opts, logger, sinkComponent(cfg))
}

// sinkComponent connects a ClickHouse sink (migrating the schema unless
// cfg says not to) and runs it until the server stops; its ClickHouse
// connection is part of /healthz. cfg gives the ClickHouse side and the
// batching; the Kafka brokers, metrics and logger are the server's. It
// fails when ClickHouse or Kafka cannot be reached at start.
func sinkComponent(cfg clickhouse.Config) component {
	return func(e *env) error {
		cfg.Kafka = e.kafka
		cfg.Kafka.ClientID = "" // the sink's own
		cfg.Registerer, cfg.Logger = e.prom, e.logger
		sink, err := clickhouse.NewSink(cfg)
		if err != nil {
			return err
		}
		e.closers = append(e.closers, func() { sink.Close() })
		if err := sink.Connect(e.ctx); err != nil {
			where := cfg.ClickHouse.Addr
			if h := cfg.ClickHouse.HTTPAddr; h != "" {
				where += ", HTTP interface at " + h
			}
			return fmt.Errorf("%w (is ClickHouse up at %s?)", err, where)
		}
		e.health = append(e.health, sink.Ping)
		e.g.Go(func() error { return sink.Run(e.ctx) })
		lag := kafkaclient.NewLagMetrics(e.prom)
		e.g.Go(func() error { return lag.Run(e.ctx, e.admin, clickhouse.Group, 5*time.Second) })
		e.logger.Info("ClickHouse sink running", "topics", clickhouse.Topics, "clickhouse", cfg.ClickHouse.Addr, "events_over_http", cfg.ClickHouse.HTTPAddr, "database", cfg.ClickHouse.Database)
		return nil
	}
}
