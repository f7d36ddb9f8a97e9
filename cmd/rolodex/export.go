package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/rolodex/rolodex/connectors/clickhouse"
)

const profilesExportUsage = `
Writes the live profiles of ClickHouse's profiles table (as the sink copied
them from rolodex.profiles) that pass every filter given, streamed: one
JSON object per line (--format json), or CSV with a header line (--format
csv; columns in docs/reports.md, "Exporting profiles"). It counts them
first, then draws a progress bar on stderr when stderr is a terminal.
With -o the file appears only once the export is complete.

Flags:
`

// cmdProfilesExport is "rolodex profiles export".
func cmdProfilesExport(ctx context.Context, args []string, stdout, stderr io.Writer, logger *slog.Logger) error {
	fs := newFlagSet("profiles export", stdout, stderr)
	fs.Usage = func() {
		fs.printSynopsis()
		fmt.Fprint(fs.Output(), profilesExportUsage)
		fs.PrintDefaults()
	}
	var ch clickhouseFlags
	ch.register(fs, "127.0.0.1:9000")
	tenant := fs.String("tenant", "", "only this tenant's profiles (default: every tenant)")
	tag := fs.String("tag", "", "only profiles holding this tag")
	blacklisted := fs.String("blacklisted", "", "true: only blacklisted profiles; false: only the others (default: both)")
	consent := fs.String("consent", "", "only profiles whose consent for this purpose is granted and not expired")
	format := fs.String("format", "", "csv or json (one object per line); required")
	out := fs.String("o", "", "write to this file (default: stdout)")
	noProgress := fs.Bool("no-progress", false, "do not draw the progress bar (it is drawn only when stderr is a terminal)")
	if err := fs.parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("profiles export: unexpected argument %q", fs.Arg(0))}
	}
	if *format != "csv" && *format != "json" {
		return usageError{fmt.Sprintf("profiles export: --format %q: want csv or json", *format)}
	}
	f := clickhouse.ExportFilter{Tenant: *tenant, Tag: *tag, Consent: *consent}
	if *blacklisted != "" {
		b, err := strconv.ParseBool(*blacklisted)
		if err != nil {
			return usageError{fmt.Sprintf("profiles export: --blacklisted %q: want true or false", *blacklisted)}
		}
		f.Blacklisted = &b
	}

	conn, err := clickhouse.Open(ctx, ch.config())
	if err != nil {
		return err
	}
	defer conn.Close()
	start := time.Now()
	total, err := clickhouse.CountProfiles(ctx, conn, ch.database, f)
	if err != nil {
		return fmt.Errorf("profiles export: %w (has \"rolodex clickhouse migrate\" run on %s?)", err, ch.database)
	}

	w, commit, abort, err := exportOutput(*out, stdout)
	if err != nil {
		return err
	}
	defer abort()
	var bar *progressbar.ProgressBar
	if !*noProgress && isTerminal(stderr) {
		bar = newExportBar(stderr, int64(total))
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	var write func(*clickhouse.ExportedProfile) error
	var cw *csv.Writer
	switch *format {
	case "json":
		enc := json.NewEncoder(bw)
		enc.SetEscapeHTML(false)
		write = func(p *clickhouse.ExportedProfile) error { return enc.Encode(p) }
	case "csv":
		cw = csv.NewWriter(bw)
		if err := cw.Write(clickhouse.ExportCSVHeader); err != nil {
			return fmt.Errorf("profiles export: %w", err)
		}
		write = func(p *clickhouse.ExportedProfile) error { return cw.Write(p.CSVRecord()) }
	}
	var n int64
	err = clickhouse.ExportProfiles(ctx, conn, ch.database, f, func(p *clickhouse.ExportedProfile) error {
		if err := write(p); err != nil {
			return fmt.Errorf("profiles export: write: %w", err)
		}
		n++
		if bar != nil {
			_ = bar.Add(1)
		}
		return nil
	})
	if err == nil && cw != nil {
		cw.Flush()
		err = cw.Error()
	}
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = commit()
	}
	endBar(bar, err)
	if err != nil {
		return err
	}
	dest := "stdout"
	if *out != "" {
		dest = *out
	}
	fmt.Fprintf(stderr, "exported %d profiles to %s (%s) in %s\n", n, dest, *format, time.Since(start).Round(time.Millisecond))
	logger.Debug("profiles exported", "profiles", n, "counted", total, "filter", fmt.Sprintf("%+v", f))
	return nil
}

// exportOutput returns where the export writes. For a file it writes a
// temporary file next to it, which commit renames to path and abort (a
// no-op after commit) removes: a failed export leaves no partial file.
func exportOutput(path string, stdout io.Writer) (w io.Writer, commit func() error, abort func(), err error) {
	if path == "" || path == "-" {
		return stdout, func() error { return nil }, func() {}, nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return nil, nil, nil, fmt.Errorf("profiles export: %w", err)
	}
	done := false
	commit = func() error {
		if err := tmp.Close(); err != nil {
			return fmt.Errorf("profiles export: %w", err)
		}
		if err := os.Rename(tmp.Name(), path); err != nil {
			return fmt.Errorf("profiles export: %w", err)
		}
		done = true
		return nil
	}
	abort = func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}
	return tmp, commit, abort, nil
}

func newExportBar(w io.Writer, total int64) *progressbar.ProgressBar {
	return newBar(w, total, "exporting", progressbar.OptionShowIts(), progressbar.OptionSetItsString("profiles"))
}
