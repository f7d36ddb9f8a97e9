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
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/rolodex/rolodex/connectors/clickhouse"
	"github.com/rolodex/rolodex/internal/kafkaclient"
)

// A command is one subcommand of rolodex. commands is the one list of
// them: run dispatches through it and the help is printed from it.
type command struct {
	// name is what selects it: one word, or a group and a word ("run ingest").
	name string
	// args is what follows the name in the synopsis.
	args string
	// doc says what it does, in one line.
	doc string
	run func(ctx context.Context, args []string, o stdio) error
}

// stdio is where a command writes.
type stdio struct {
	stdout, stderr io.Writer
	logger         *slog.Logger
}

// commands lists every subcommand in the order the help lists them. It is a
// function, not a variable, because the commands' flag sets read it for
// their usage text.
func commands() []command {
	return []command{
		{"dev", "[flags]", "the whole system in one process, on an embedded Kafka broker",
			func(ctx context.Context, args []string, o stdio) error {
				return cmdDev(ctx, args, o.stdout, o.stderr, o.logger)
			}},
		{"run ingest", "--brokers HOST:PORT,... [flags]", "the ingest connectors (HTTP API and Kafka-native) against a real Kafka",
			func(ctx context.Context, args []string, o stdio) error {
				return cmdRunIngest(ctx, args, o.stdout, o.stderr, o.logger)
			}},
		{"run processors", "--brokers HOST:PORT,... [flags]", "the goka processors (identity, tags, message lifecycle); more instances share the work",
			func(ctx context.Context, args []string, o stdio) error {
				return cmdRunProcessors(ctx, args, o.stdout, o.stderr, o.logger)
			}},
		{"run api", "--brokers HOST:PORT,... [flags]", "the profile query API",
			func(ctx context.Context, args []string, o stdio) error {
				return cmdRunAPI(ctx, args, o.stdout, o.stderr, o.logger)
			}},
		{"run sink", "--brokers HOST:PORT,... [flags]", "the ClickHouse sink",
			func(ctx context.Context, args []string, o stdio) error {
				return cmdRunSink(ctx, args, o.stdout, o.stderr, o.logger)
			}},
		{"import csv", "--partner NAME --map target=Column,... [flags] FILE", "bulk import a CSV file into rolodex.events",
			func(ctx context.Context, args []string, o stdio) error {
				return cmdImportCSV(ctx, args, o.stdout, o.stderr, o.logger)
			}},
		{"profile get", "ID [--api URL] [--key KEY]", "print a profile",
			func(ctx context.Context, args []string, o stdio) error {
				return getCommand(ctx, "profile get", "profile", 1, byID("/v1/profiles/"), args, o.stdout, o.stderr)
			}},
		{"profile lookup", "TYPE VALUE [--api URL] [--key KEY]", "print the profile holding an identifier",
			func(ctx context.Context, args []string, o stdio) error {
				return getCommand(ctx, "profile lookup", "profile", 2, func(pos []string) string {
					return "/v1/lookup?" + url.Values{"type": {pos[0]}, "value": {pos[1]}}.Encode()
				}, args, o.stdout, o.stderr)
			}},
		{"message get", "ID [--api URL] [--key KEY]", "print a message's lifecycle: state, channel, recipient, history, refusals",
			func(ctx context.Context, args []string, o stdio) error {
				return getCommand(ctx, "message get", "message", 1, byID("/v1/messages/"), args, o.stdout, o.stderr)
			}},
		{"lead get", "ID [--api URL] [--key KEY]", "print a lead's routing: status, partner, deadline, the lead, every decision with its candidates",
			func(ctx context.Context, args []string, o stdio) error {
				return getCommand(ctx, "lead get", "lead", 1, byID("/v1/leads/"), args, o.stdout, o.stderr)
			}},
		{"tag add", "TAG (--profile ID | --lookup TYPE=VALUE | --file F.csv) [--api URL] [--key KEY]", "put a manual tag on a profile, or on every profile of a CSV file (profile_id, or type and value columns)",
			func(ctx context.Context, args []string, o stdio) error {
				return cmdTag(ctx, "add", args, o.stdout, o.stderr)
			}},
		{"tag remove", "TAG (--profile ID | --lookup TYPE=VALUE | --file F.csv) [--api URL] [--key KEY]", "remove a tag from a profile, or from every profile of a CSV file",
			func(ctx context.Context, args []string, o stdio) error {
				return cmdTag(ctx, "remove", args, o.stdout, o.stderr)
			}},
		{"blacklist add", "(--profile ID | --lookup TYPE=VALUE) [--reason R] [--api URL] [--key KEY]", "blacklist a profile",
			func(ctx context.Context, args []string, o stdio) error {
				return cmdBlacklistAdd(ctx, args, o.stdout, o.stderr)
			}},
		{"blacklist remove", "ID [--api URL] [--key KEY]", "take a profile off the blacklist",
			func(ctx context.Context, args []string, o stdio) error {
				return cmdBlacklistRemove(ctx, args, o.stdout, o.stderr)
			}},
		{"blacklist list", "[--limit N] [--api URL] [--key KEY]", "print the tenant's blacklisted profiles (every page)",
			func(ctx context.Context, args []string, o stdio) error {
				return cmdBlacklistList(ctx, args, o.stdout, o.stderr)
			}},
		{"consent set", "ID PURPOSE STATUS [--expires RFC3339|DURATION] [--api URL] [--key KEY]", "set a profile's consent for a purpose: granted, denied or revoked",
			func(ctx context.Context, args []string, o stdio) error {
				return cmdConsentSet(ctx, args, o.stdout, o.stderr)
			}},
		{"rules apply", "-f RULES.yaml [--api URL] [--key KEY]", "create or update the tag rules of a YAML file (a list of {id, tag, condition, description, enabled}); prints each one's version",
			func(ctx context.Context, args []string, o stdio) error {
				return cmdRulesApply(ctx, args, o.stdout, o.stderr)
			}},
		{"rules list", "[--api URL] [--key KEY]", "print the tenant's tag rules",
			func(ctx context.Context, args []string, o stdio) error {
				return cmdRulesList(ctx, args, o.stdout, o.stderr)
			}},
		{"rules delete", "ID [--api URL] [--key KEY]", "delete a tag rule",
			func(ctx context.Context, args []string, o stdio) error {
				return cmdRulesDelete(ctx, args, o.stdout, o.stderr)
			}},
		{"routing apply", "-f ROUTING.yaml [--api URL] [--key KEY]", "replace the tenant's routing rules with those of a YAML file (rules: an ordered list); prints the new version",
			func(ctx context.Context, args []string, o stdio) error {
				return cmdRoutingApply(ctx, args, o.stdout, o.stderr)
			}},
		{"routing get", "[--api URL] [--key KEY]", "print the tenant's routing rules and their version",
			func(ctx context.Context, args []string, o stdio) error {
				return getCommand(ctx, "routing get", "routing", 0, func([]string) string { return "/v1/routing/rules" }, args, o.stdout, o.stderr)
			}},
		{"topics create", "NAME [--description D] [--allow P,...] [--requires-consent PURPOSE] [--include F,...] [--api URL] [--key KEY]", "create a fan-out topic owned by the key's partner (topics:write or admin)",
			func(ctx context.Context, args []string, o stdio) error {
				return cmdTopicsCreate(ctx, args, o.stdout, o.stderr)
			}},
		{"topics access", "NAME --allow P,... [--api URL] [--key KEY]", "replace a topic's access list (its owner only)",
			func(ctx context.Context, args []string, o stdio) error {
				return cmdTopicsAccess(ctx, args, o.stdout, o.stderr)
			}},
		{"topics list", "[--api URL] [--key KEY]", "print the topics the partner owns and may read",
			func(ctx context.Context, args []string, o stdio) error {
				return cmdTopicsList(ctx, args, o.stdout, o.stderr)
			}},
		{"topics delete", "NAME [--api URL] [--key KEY]", "delete a topic (its owner only); its subscriptions end",
			func(ctx context.Context, args []string, o stdio) error {
				return cmdTopicsDelete(ctx, args, o.stdout, o.stderr)
			}},
		{"subscriptions create", "TOPIC (--kafka | --webhook URL) [--secret-out F] [--idempotency-key K] [--api URL] [--key KEY]", "subscribe the key's partner to a topic; prints the signing secret, once (--secret-out: also into a file)",
			func(ctx context.Context, args []string, o stdio) error {
				return cmdSubscriptionsCreate(ctx, args, o.stdout, o.stderr)
			}},
		{"subscriptions list", "[--api URL] [--key KEY]", "print the partner's subscriptions",
			func(ctx context.Context, args []string, o stdio) error {
				return cmdSubscriptionsList(ctx, args, o.stdout, o.stderr)
			}},
		{"subscriptions delete", "ID [--api URL] [--key KEY]", "end a subscription",
			func(ctx context.Context, args []string, o stdio) error {
				return cmdSubscriptionsDelete(ctx, args, o.stdout, o.stderr)
			}},
		{"subscriptions replay", "ID --since RFC3339 [--api URL] [--key KEY]", "ask for a subscription's topic events again from an instant (performed by the replay step: docs/fanout.md)",
			func(ctx context.Context, args []string, o stdio) error {
				return cmdSubscriptionsReplay(ctx, args, o.stdout, o.stderr)
			}},
		{"webhooks listen", "(--secret whsec_... | --secret-file F) [--addr HOST:PORT] [--status CODE] [--once N]", "receive signed webhooks locally (a subscription's, to try fan-out): verify, dedupe by webhook-id, print each, answer --status",
			func(ctx context.Context, args []string, o stdio) error {
				return cmdWebhooksListen(ctx, args, o.stdout, o.stderr)
			}},
		{"deadletters tail", "[--follow] [--partner NAME] [--format table|json]", "print the rejected records of rolodex.deadletter, decoded",
			func(ctx context.Context, args []string, o stdio) error {
				return cmdDeadLettersTail(ctx, args, o.stdout, o.stderr)
			}},
		{"clickhouse migrate", "[--clickhouse HOST:PORT]", "create or update the ClickHouse schema (idempotent)",
			func(ctx context.Context, args []string, o stdio) error {
				return cmdClickhouseMigrate(ctx, args, o.stdout, o.stderr, o.logger)
			}},
		{"report", "NAME [--since DATE] [--until DATE] [--tenant T] [--format F]", "print a report: " + strings.Join(clickhouse.ReportNames(), ", "),
			func(ctx context.Context, args []string, o stdio) error {
				return cmdReport(ctx, args, o.stdout, o.stderr, o.logger)
			}},
		{"profiles export", "--format csv|json [--clickhouse ADDR] [--tenant T] [--tag T] [--blacklisted true|false] [--consent PURPOSE] [-o FILE]",
			"export live profiles from ClickHouse by filter, streamed",
			func(ctx context.Context, args []string, o stdio) error {
				return cmdProfilesExport(ctx, args, o.stdout, o.stderr, o.logger)
			}},
		{"bench ingest", "[flags]", "HTTP ingest throughput against raw Kafka produce, as a ratio",
			func(ctx context.Context, args []string, o stdio) error {
				return cmdBenchIngest(ctx, args, o.stdout, o.stderr)
			}},
		{"bench identity", "[flags]", "the identity stage against a Kafka consume→produce pass-through, as a ratio",
			func(ctx context.Context, args []string, o stdio) error {
				return cmdBenchIdentity(ctx, args, o.stdout, o.stderr)
			}},
		{"bench tags", "[flags]", "the rule-tag stage (snapshots, a rule change on every profile) against a Kafka consume→produce pass-through, as a ratio",
			func(ctx context.Context, args []string, o stdio) error {
				return cmdBenchTags(ctx, args, o.stdout, o.stderr)
			}},
		{"bench fanout", "[flags]", "partner fan-out's delivery (to Kafka out topics, to a local webhook receiver) against a Kafka consume→produce pass-through, as a ratio",
			func(ctx context.Context, args []string, o stdio) error {
				return cmdBenchFanout(ctx, args, o.stdout, o.stderr)
			}},
		{"version", "", "print the version, the VCS revision and the Go version of this binary",
			func(ctx context.Context, args []string, o stdio) error {
				return cmdVersion(args, o.stdout, o.stderr)
			}},
		{"help", "[COMMAND]", "this text, or the help of COMMAND",
			func(ctx context.Context, args []string, o stdio) error {
				if len(args) == 0 {
					printUsage(o.stdout)
					return nil
				}
				return dispatch(ctx, append(args, "-h"), o)
			}},
	}
}

// findCommand returns the command called name.
func findCommand(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// groupOf returns the commands whose name starts with the word group.
func groupOf(group string) []command {
	var out []command
	for _, c := range commands() {
		if g, _, ok := strings.Cut(c.name, " "); ok && g == group {
			out = append(out, c)
		}
	}
	return out
}

const usageHead = `rolodex: a Kafka-native customer profile store.

Usage:
`

const usageTail = `
Run "rolodex COMMAND -h" (or "rolodex help COMMAND") for the flags of a command.

Environment:
  ROLODEX_KEY                  partner bearer key of the profile, message, tag,
                               blacklist, consent, rules, routing and lead commands (--key)
  ROLODEX_CLICKHOUSE_ADDR      ClickHouse native host:port of report, clickhouse migrate
                               and run sink (--clickhouse); scripts/clickhouse start sets it
  ROLODEX_CLICKHOUSE_HTTP_ADDR HTTP host:port of the same server: run sink and dev write
                               the events table over it (--clickhouse-http); scripts/clickhouse start sets it
  ROLODEX_CLICKHOUSE_PASSWORD  password of the ClickHouse user
`

func printUsage(w io.Writer) {
	fmt.Fprint(w, usageHead)
	printCommands(w, commands())
	fmt.Fprint(w, usageTail)
}

// printCommands prints each command's synopsis with its doc below.
func printCommands(w io.Writer, cs []command) {
	for _, c := range cs {
		fmt.Fprintf(w, "  %s\n        %s\n", strings.TrimSpace("rolodex "+c.name+" "+c.args), c.doc)
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	if stoppedBySignal(ctx, err) {
		// Asked to stop while starting (connecting, migrating): that is a
		// stop, not a failure.
		fmt.Fprintln(os.Stderr, "rolodex: stopped by signal before it finished starting:", err)
		err = nil
	}
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "rolodex:", err)
	}
	os.Exit(exitCode(err))
}

// stoppedBySignal reports whether err only says that ctx, the signal
// context, ended: the command was interrupted, it did not fail. Errors of a
// final flush or commit after the signal are not cancellations and stay
// failures.
func stoppedBySignal(ctx context.Context, err error) bool {
	return err != nil && ctx.Err() != nil &&
		(errors.Is(err, context.Canceled) || errors.Is(err, context.Cause(ctx)))
}

// usageError marks an error in how the command was called (exit code 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// exitCode is the process exit code of run's result: 0 for success and for
// help asked for with -h, 2 for a usage error, 1 for any other error.
func exitCode(err error) int {
	var ue usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		return 2
	}
	return 1
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	// Every consumer group of the process takes its session from
	// $ROLODEX_KAFKA_SESSION_TIMEOUT when set: a bad value stops every
	// command but help and version, before anything starts.
	if _, err := kafkaclient.Session(); err != nil && len(args) > 0 && !isHelpFlag(args[0]) && args[0] != "help" && args[0] != "version" {
		return err
	}
	return dispatch(ctx, args, stdio{stdout: stdout, stderr: stderr, logger: logger})
}

// dispatch runs the command args name, with the rest of args.
func dispatch(ctx context.Context, args []string, o stdio) error {
	if len(args) == 0 {
		printUsage(o.stderr)
		return usageError{"no command given"}
	}
	if isHelpFlag(args[0]) {
		printUsage(o.stdout)
		return nil
	}
	if len(args) > 1 {
		if c, ok := findCommand(args[0] + " " + args[1]); ok {
			return c.run(ctx, args[2:], o)
		}
	}
	if c, ok := findCommand(args[0]); ok {
		return c.run(ctx, args[1:], o)
	}
	if group := groupOf(args[0]); len(group) > 0 {
		var known []string
		for _, c := range group {
			known = append(known, strings.TrimPrefix(c.name, args[0]+" "))
		}
		switch {
		case len(args) == 1:
			printCommands(o.stderr, group)
			return usageError{fmt.Sprintf("%s: which one? (%s)", args[0], strings.Join(known, ", "))}
		case isHelpFlag(args[1]):
			printCommands(o.stdout, group)
			return nil
		}
		return usageError{fmt.Sprintf("%s: unknown subcommand %q (known: %s)", args[0], args[1], strings.Join(known, ", "))}
	}
	printUsage(o.stderr)
	return usageError{fmt.Sprintf("unknown command %q", args[0])}
}

func isHelpFlag(s string) bool { return s == "-h" || s == "-help" || s == "--help" }
