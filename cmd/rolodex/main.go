// Command rolodex is the one Rolodex binary. Run "rolodex help" for its
// subcommands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

const usage = `rolodex: a Kafka-native customer profile store.

Usage:
  rolodex dev [flags]                  the whole system in one process on an embedded Kafka broker
  rolodex run ingest --brokers ...     the ingest connectors (HTTP API and Kafka-native) against a real Kafka
  rolodex run processors --brokers ... the identity stage (goka); more instances share the work
  rolodex run api --brokers ...        the profile query API
  rolodex run sink --brokers ... --clickhouse HOST:PORT  the ClickHouse sink
  rolodex clickhouse migrate [--clickhouse HOST:PORT]    create or update the ClickHouse schema (idempotent)
  rolodex report NAME [--since DATE] [--format F]        print a report: activity, profiles, merges, dead-letters
  rolodex profile get ID               print a profile (--api, --key)
  rolodex profile lookup TYPE VALUE    print the profile holding an identifier
  rolodex import csv [flags] FILE      bulk import a CSV file into rolodex.events
  rolodex bench ingest [flags]         HTTP ingest throughput against raw Kafka produce, as a ratio
  rolodex help                         this text

Run "rolodex <command> -h" for the flags of a command.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "rolodex:", err)
		}
		os.Exit(exitCode(err))
	}
}

// usageError marks an error in how the command was called (exit code 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func exitCode(err error) int {
	var ue usageError
	if errors.As(err, &ue) || errors.Is(err, flag.ErrHelp) {
		return 2
	}
	return 1
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{"no command given"}
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cmd, rest := args[0], args[1:]
	sub := func() (string, []string, error) {
		if len(rest) == 0 {
			return "", nil, usageError{fmt.Sprintf("%s: which one? run \"rolodex help\"", cmd)}
		}
		return rest[0], rest[1:], nil
	}
	switch cmd {
	case "dev":
		return cmdDev(ctx, rest, stdout, stderr, logger)
	case "run":
		what, rest, err := sub()
		if err != nil {
			return err
		}
		switch what {
		case "ingest":
			return cmdRunIngest(ctx, rest, stderr, logger)
		case "processors":
			return cmdRunProcessors(ctx, rest, stderr, logger)
		case "api":
			return cmdRunAPI(ctx, rest, stderr, logger)
		case "sink":
			return cmdRunSink(ctx, rest, stdout, stderr, logger)
		}
		return usageError{fmt.Sprintf("run: unknown component %q (known: ingest, processors, api, sink)", what)}
	case "import":
		what, rest, err := sub()
		if err != nil {
			return err
		}
		if what == "csv" {
			return cmdImportCSV(ctx, rest, stdout, stderr, logger)
		}
		return usageError{fmt.Sprintf("import: unknown format %q (known: csv)", what)}
	case "bench":
		what, rest, err := sub()
		if err != nil {
			return err
		}
		switch what {
		case "ingest":
			return cmdBenchIngest(ctx, rest, stdout, stderr)
		case "identity":
			return cmdBenchIdentity(ctx, rest, stdout, stderr)
		}
		return usageError{fmt.Sprintf("bench: unknown benchmark %q (known: ingest, identity)", what)}
	case "report":
		return cmdReport(ctx, rest, stdout, stderr, logger)
	case "clickhouse":
		what, rest, err := sub()
		if err != nil {
			return err
		}
		if what == "migrate" {
			return cmdClickhouseMigrate(ctx, rest, stdout, stderr, logger)
		}
		return usageError{fmt.Sprintf("clickhouse: unknown command %q (known: migrate)", what)}
	case "profile":
		return cmdProfile(ctx, rest, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return usageError{fmt.Sprintf("unknown command %q", cmd)}
}

// parseInterleaved parses flags that may come before, between or after the
// positional arguments, and returns the positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}
