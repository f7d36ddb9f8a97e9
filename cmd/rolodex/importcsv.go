package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/schollz/progressbar/v3"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/term"

	"github.com/rolodex/rolodex/connectors/csvin"
	"github.com/rolodex/rolodex/intake"
	"github.com/rolodex/rolodex/internal/kafkaclient"
)

const importCSVUsage = `
Imports FILE (a CSV file whose first row is the header) into rolodex.events,
one event per row, attributed to the partner's tenant. Rejected rows go to
rolodex.deadletter and to a rejects file with the reason.

--map targets: id, type, time, source, an identifier type (email, phone,
user_id, anonymous_id, whatsapp, facebook, external:<name>), traits.<name>,
properties.<name>. Example:
  rolodex import csv --partner demo --map email=Email,phone=Phone,traits.name=Name contacts.csv

Without an id column every row gets the id csv:<hash of partner, file name
and row>, so importing the same file again changes nothing downstream.

Flags:
`

// importRecordTimeout fails a record Kafka has not acknowledged in this
// long, so that an import against a dead broker ends with an error.
const importRecordTimeout = 2 * time.Minute

func cmdImportCSV(ctx context.Context, args []string, stdout, stderr io.Writer, logger *slog.Logger) error {
	fs := newFlagSet("import csv", stdout, stderr)
	fs.Usage = func() {
		fs.printSynopsis()
		fmt.Fprint(fs.Output(), importCSVUsage)
		fs.PrintDefaults()
	}
	brokers := fs.String("brokers", "127.0.0.1:9092", "Kafka seed brokers, host:port,...; the default is where \"rolodex dev\" listens")
	config := fs.String("config", "", "YAML config file, as for dev and run ingest (default: built-in, with the demo partner)")
	partner := fs.String("partner", "", "the partner the rows come from; its tenant owns them (required)")
	mapSpec := fs.String("map", "", "column mapping: comma-separated target=Column pairs (required)")
	typ := fs.String("type", csvin.DefaultEventType, "event type of rows without a type column")
	rejects := fs.String("rejects", "", "file for rejected rows (default: FILE"+csvin.RejectsSuffix+")")
	delim := fs.String("delimiter", ",", `field delimiter: one character, or "tab"`)
	noProgress := fs.Bool("no-progress", false, "do not draw the progress bar (it is drawn only when stderr is a terminal)")
	files, err := fs.parseInterleaved(args)
	if err != nil {
		return err
	}
	switch {
	case len(files) != 1:
		return usageError{fmt.Sprintf("import csv: want exactly one FILE, got %d (run \"rolodex import csv -h\")", len(files))}
	case *partner == "":
		return usageError{"import csv: --partner is required"}
	case *mapSpec == "":
		return usageError{"import csv: --map is required, e.g. --map email=Email,phone=Phone"}
	}
	comma, err := parseDelimiter(*delim)
	if err != nil {
		return usageError{"import csv: --delimiter: " + err.Error()}
	}
	mapping, err := csvin.ParseMapping(*mapSpec)
	if err != nil {
		return usageError{"import csv: --map: " + err.Error()}
	}
	file := files[0]

	cfg, err := loadConfig(*config)
	if err != nil {
		return err
	}
	reg, err := cfg.registry()
	if err != nil {
		return err
	}
	p, ok := reg.ByName(*partner)
	if !ok {
		var names []string
		for _, q := range reg.All() {
			names = append(names, q.Name)
		}
		return usageError{fmt.Sprintf("import csv: partner %q is not in %s (known: %s)", *partner, orDefault(*config), strings.Join(names, ", "))}
	}
	norm, err := cfg.normalizer()
	if err != nil {
		return err
	}
	icfg := csvin.Config{File: file, Mapping: mapping, DefaultType: *typ, Rejects: *rejects, Comma: comma}
	var bar *progressbar.ProgressBar
	if !*noProgress && isTerminal(stderr) {
		if st, err := os.Stat(file); err == nil && st.Mode().IsRegular() {
			bar = newImportBar(stderr, st.Size())
			icfg.Progress = bar
		}
	}
	kbrokers := kafkaclient.ParseBrokers(*brokers)
	cl, err := kafkaclient.NewClient(kafkaclient.Config{Brokers: kbrokers, ClientID: "rolodex-import-csv"},
		kgo.MaxBufferedRecords(csvin.DefaultMaxInFlight),
		kgo.RecordDeliveryTimeout(importRecordTimeout))
	if err != nil {
		return err
	}
	defer cl.Close()
	im, err := csvin.New(icfg, p, intake.NewValidator(norm), cl, intake.NewMetrics(nil))
	if err != nil {
		return usageError{"import csv: " + err.Error()}
	}
	logger.Debug("csv import starting", "file", file, "partner", p.Name, "tenant", p.Tenant, "mapping", mapping.String(), "brokers", kbrokers)
	res, err := im.Run(ctx)
	endBar(bar, err)
	if res == nil {
		if errors.Is(err, csvin.ErrNoKafka) {
			return fmt.Errorf("%w (is Kafka reachable at %s?)", err, strings.Join(kbrokers, ","))
		}
		return err
	}
	printImportSummary(stdout, p.Tenant, res)
	return err
}

// parseDelimiter reads --delimiter: one character, or "tab" / `\t`.
func parseDelimiter(s string) (rune, error) {
	switch s {
	case "tab", `\t`:
		return '\t', nil
	}
	r, size := utf8.DecodeRuneInString(s)
	if size == 0 || size != len(s) || r == utf8.RuneError {
		return 0, fmt.Errorf("%q must be exactly one character", s)
	}
	return r, nil
}

// isTerminal reports whether w is a terminal (a test takes any writer for one).
var isTerminal = isTerminalFile

func isTerminalFile(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func newImportBar(w io.Writer, size int64) *progressbar.ProgressBar {
	return newBar(w, size, "importing", progressbar.OptionShowBytes(true), progressbar.OptionShowTotalBytes(true))
}

// newBar is the progress bar every command draws on stderr (import csv,
// tag --file, profiles export): count, rate, time left, a newline when
// done.
func newBar(w io.Writer, total int64, desc string, extra ...progressbar.Option) *progressbar.ProgressBar {
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowCount(),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100 * time.Millisecond),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionShowElapsedTimeOnFinish(),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
		progressbar.OptionSetRenderBlankState(true),
	}
	return progressbar.NewOptions64(total, append(opts, extra...)...)
}

// endBar finishes bar (nil: none drawn) after a command's work: complete
// when err is nil, left where it stopped otherwise.
func endBar(bar *progressbar.ProgressBar, err error) {
	switch {
	case bar == nil:
	case err == nil:
		_ = bar.Finish()
	default:
		_ = bar.Exit()
	}
}

func printImportSummary(w io.Writer, tenant string, r *csvin.Result) {
	fmt.Fprintf(w, "imported %s into tenant %s\n", r.File, tenant)
	fmt.Fprintf(w, "  rows read:     %d\n", r.Rows)
	fmt.Fprintf(w, "  accepted:      %d\n", r.Accepted)
	fmt.Fprintf(w, "  rejected:      %d\n", r.Rejected)
	fmt.Fprintf(w, "  rejects file:  %s\n", r.Rejects)
	if r.Dropped > 0 {
		fmt.Fprintf(w, "  dropped ids:   %d (invalid or blocked values on accepted rows)\n", r.Dropped)
	}
	if r.NotAcknowledged > 0 {
		fmt.Fprintf(w, "  NOT acknowledged by Kafka: %d\n", r.NotAcknowledged)
	}
	fmt.Fprintf(w, "  elapsed:       %s (%.0f rows/s)\n", r.Elapsed.Round(time.Millisecond), r.RowsPerSecond())
}
