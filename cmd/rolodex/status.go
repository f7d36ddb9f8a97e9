package main

// The profile status commands: rolodex tag, blacklist and consent, clients
// of the status API (docs/api.md, "Profile status").

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
)

// bulkChunk is the most profiles one bulk request carries: the API's limit.
const bulkChunk = 10000

// apiClient calls the profile API with a partner's bearer key.
type apiClient struct {
	base, key, cmd string
}

// addAPIFlags adds --api and --key, as the profile commands have them.
func addAPIFlags(fs *flagSet) (api, key *string) {
	api = fs.String("api", "http://127.0.0.1:8080", "base URL of the profile API")
	key = fs.String("key", os.Getenv("ROLODEX_KEY"), "partner bearer key (default $ROLODEX_KEY); changes need the scope profiles:write")
	return api, key
}

func newAPIClient(cmd, api, key string) (*apiClient, error) {
	if key == "" {
		return nil, usageError{cmd + ": --key (or $ROLODEX_KEY) is required"}
	}
	return &apiClient{base: strings.TrimRight(api, "/"), key: key, cmd: cmd}, nil
}

// call sends body (JSON, unless nil) and decodes a 2xx answer into out.
// Another answer is an error with the API's message.
func (c *apiClient) call(ctx context.Context, method, path string, body, out any) error {
	return c.callWith(ctx, method, path, nil, body, out)
}

// callWith is call with more request headers.
func (c *apiClient) callWith(ctx context.Context, method, path string, header map[string]string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("%s: %w", c.cmd, err)
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return usageError{c.cmd + ": " + err.Error()}
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	var wrote atomic.Bool
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		WroteRequest: func(httptrace.WroteRequestInfo) { wrote.Store(true) }}))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return &transportError{cmd: c.cmd, sent: wrote.Load(), err: err}
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return &transportError{cmd: c.cmd, sent: true, err: err}
	}
	if res.StatusCode/100 != 2 {
		e := &apiError{cmd: c.cmd, status: res.StatusCode, statusText: res.Status}
		_ = json.Unmarshal(raw, &e.body)
		return e
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("%s: the answer is not what the API sends: %w", c.cmd, err)
		}
	}
	return nil
}

// transportError is a request that got no answer: sent (written whole to
// the connection, so the server may have acted on it) or not.
type transportError struct {
	cmd  string
	sent bool
	err  error
}

func (e *transportError) Error() string { return e.cmd + ": " + e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

// apiError is an answer of the API other than 2xx, with its error body
// (the reason, line and column of a refused rule condition among it).
type apiError struct {
	cmd        string
	status     int
	statusText string
	body       struct {
		Error, Message, Reason string
		Line, Column           int
	}
}

func (e *apiError) Error() string {
	if e.body.Message != "" {
		return fmt.Sprintf("%s: %s (%d %s)", e.cmd, e.body.Message, e.status, e.body.Error)
	}
	return fmt.Sprintf("%s: %s", e.cmd, e.statusText)
}

// identifierRef is an identifier of a bulk request.
type identifierRef struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// bulkTargets are the profiles of a bulk request.
type bulkTargets struct {
	Profiles    []string        `json:"profiles,omitempty"`
	Identifiers []identifierRef `json:"identifiers,omitempty"`
}

func (t bulkTargets) len() int { return len(t.Profiles) + len(t.Identifiers) }

func (t bulkTargets) slice(i, j int) bulkTargets {
	if len(t.Profiles) > 0 {
		return bulkTargets{Profiles: t.Profiles[i:j]}
	}
	return bulkTargets{Identifiers: t.Identifiers[i:j]}
}

// bulkItem is a not found or invalid entry of a bulk answer.
type bulkItem struct {
	Index   int    `json:"index"`
	Profile string `json:"profile"`
	Type    string `json:"type"`
	Value   string `json:"value"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

func (b bulkItem) String() string {
	if b.Profile != "" {
		return "profile " + b.Profile
	}
	return b.Type + " " + b.Value
}

type bulkAnswer struct {
	Applied  int        `json:"applied"`
	NotFound []bulkItem `json:"not_found"`
	Invalid  []bulkItem `json:"invalid"`
}

// parseTarget reads --profile or --lookup TYPE=VALUE (exactly one).
func parseTarget(cmd, profile, lookup string) (bulkTargets, error) {
	switch {
	case profile != "" && lookup != "":
		return bulkTargets{}, usageError{cmd + ": give --profile or --lookup, not both"}
	case profile != "":
		return bulkTargets{Profiles: []string{profile}}, nil
	case lookup != "":
		typ, val, ok := strings.Cut(lookup, "=")
		if !ok || typ == "" || val == "" {
			return bulkTargets{}, usageError{fmt.Sprintf("%s: --lookup %q: want TYPE=VALUE, e.g. email=ana@example.com", cmd, lookup)}
		}
		return bulkTargets{Identifiers: []identifierRef{{typ, val}}}, nil
	}
	return bulkTargets{}, nil
}

// readTargetsCSV reads a CSV file with a header: a profile_id column, or
// type and value columns.
func readTargetsCSV(path string) (bulkTargets, error) {
	f, err := os.Open(path)
	if err != nil {
		return bulkTargets{}, err
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = -1
	header, err := r.Read()
	if err != nil {
		return bulkTargets{}, fmt.Errorf("%s: no header: %w", path, err)
	}
	col := map[string]int{}
	for i, h := range header {
		col[strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))] = i
	}
	pi, byProfile := col["profile_id"]
	ti, hasType := col["type"]
	vi, hasValue := col["value"]
	if !byProfile && !(hasType && hasValue) {
		return bulkTargets{}, fmt.Errorf("%s: the header %q has neither a profile_id column nor type and value columns", path, strings.Join(header, ","))
	}
	var t bulkTargets
	field := func(rec []string, i int) string {
		if i < len(rec) {
			return strings.TrimSpace(rec[i])
		}
		return ""
	}
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return bulkTargets{}, fmt.Errorf("%s: %w", path, err)
		}
		if byProfile {
			t.Profiles = append(t.Profiles, field(rec, pi))
		} else {
			t.Identifiers = append(t.Identifiers, identifierRef{field(rec, ti), field(rec, vi)})
		}
	}
	if t.len() == 0 {
		return bulkTargets{}, fmt.Errorf("%s: no rows under the header", path)
	}
	return t, nil
}

func newRowsBar(w io.Writer, rows int, desc string) *progressbar.ProgressBar {
	return newBar(w, int64(rows), desc)
}

// sendBulk posts t in chunks of bulkChunk to path (the body is extra plus
// the chunk's targets), adding up the answers; indexes of not found and
// invalid rows are made absolute (0 is the first row). bar, if not nil,
// advances by each chunk.
func (c *apiClient) sendBulk(ctx context.Context, path string, extra map[string]any, t bulkTargets, bar *progressbar.ProgressBar) (bulkAnswer, error) {
	var total bulkAnswer
	for i := 0; i < t.len(); i += bulkChunk {
		j := min(i+bulkChunk, t.len())
		chunk := t.slice(i, j)
		body := map[string]any{}
		for k, v := range extra {
			body[k] = v
		}
		if len(chunk.Profiles) > 0 {
			body["profiles"] = chunk.Profiles
		} else {
			body["identifiers"] = chunk.Identifiers
		}
		var a bulkAnswer
		if err := c.call(ctx, http.MethodPost, path, body, &a); err != nil {
			if i > 0 {
				return total, fmt.Errorf("%w; rows 1 to %d were sent (%d applied), rows from %d on were not", err, i, total.Applied, i+1)
			}
			return total, err
		}
		total.Applied += a.Applied
		for _, n := range a.NotFound {
			n.Index += i
			total.NotFound = append(total.NotFound, n)
		}
		for _, n := range a.Invalid {
			n.Index += i
			total.Invalid = append(total.Invalid, n)
		}
		if bar != nil {
			_ = bar.Add(j - i)
		}
	}
	return total, nil
}

// printBulk prints what a bulk change did; rows are numbered from 1 (the
// first row under a CSV header).
func printBulk(w io.Writer, what string, a bulkAnswer, rows bool) {
	fmt.Fprintf(w, "%s: applied %d, not found %d", what, a.Applied, len(a.NotFound))
	if len(a.Invalid) > 0 {
		fmt.Fprintf(w, ", invalid %d", len(a.Invalid))
	}
	fmt.Fprintln(w)
	where := func(b bulkItem) string {
		if rows {
			return fmt.Sprintf("row %d: ", b.Index+1)
		}
		return ""
	}
	for _, n := range a.NotFound {
		fmt.Fprintf(w, "  not found: %s%s\n", where(n), n)
	}
	for _, n := range a.Invalid {
		fmt.Fprintf(w, "  invalid:   %s%s (%s: %s)\n", where(n), n, n.Reason, n.Message)
	}
}

// cmdTag is "rolodex tag add|remove TAG (--profile ID | --lookup TYPE=VALUE | --file F.csv)".
func cmdTag(ctx context.Context, action string, args []string, stdout, stderr io.Writer) error {
	name := "tag " + action
	fs := newFlagSet(name, stdout, stderr)
	api, key := addAPIFlags(fs)
	profile := fs.String("profile", "", "the profile id")
	lookup := fs.String("lookup", "", "the profile holding an identifier, TYPE=VALUE (e.g. email=ana@example.com)")
	file := fs.String("file", "", "a CSV file with a header: a profile_id column, or type and value columns; sent in requests of 10,000 rows")
	noProgress := fs.Bool("no-progress", false, "do not draw the progress bar of --file (it is drawn only when stderr is a terminal)")
	pos, err := fs.parseInterleaved(args)
	if err != nil {
		return err
	}
	c, _ := findCommand(name)
	if len(pos) != 1 {
		return usageError{fmt.Sprintf("usage: rolodex %s %s", c.name, c.args)}
	}
	tag := pos[0]
	t, err := parseTarget(name, *profile, *lookup)
	if err != nil {
		return err
	}
	switch n := t.len(); {
	case n > 0 && *file != "":
		return usageError{name + ": give one of --profile, --lookup and --file"}
	case n == 0 && *file == "":
		return usageError{fmt.Sprintf("%s: which profiles? give --profile, --lookup or --file (usage: rolodex %s %s)", name, c.name, c.args)}
	}
	cl, err := newAPIClient(name, *api, *key)
	if err != nil {
		return err
	}
	var bar *progressbar.ProgressBar
	if *file != "" {
		if t, err = readTargetsCSV(*file); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if !*noProgress && isTerminal(stderr) {
			bar = newRowsBar(stderr, t.len(), "tagging")
		}
	}
	a, err := cl.sendBulk(ctx, "/v1/tags/"+url.PathEscape(tag), map[string]any{"action": action}, t, bar)
	endBar(bar, err)
	if err != nil {
		return err
	}
	verb := map[string]string{"add": "added", "remove": "removed"}[action]
	printBulk(stdout, "tag "+tag+" "+verb, a, *file != "")
	if *file == "" {
		return singleMissing(name, a)
	}
	return nil
}

// cmdBlacklistAdd is "rolodex blacklist add (--profile ID | --lookup TYPE=VALUE) [--reason R]".
func cmdBlacklistAdd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const name = "blacklist add"
	fs := newFlagSet(name, stdout, stderr)
	api, key := addAPIFlags(fs)
	profile := fs.String("profile", "", "the profile id")
	lookup := fs.String("lookup", "", "the profile holding an identifier, TYPE=VALUE (e.g. email=ana@example.com)")
	reason := fs.String("reason", "", "why (kept with the blacklist entry)")
	pos, err := fs.parseInterleaved(args)
	if err != nil {
		return err
	}
	c, _ := findCommand(name)
	if len(pos) != 0 {
		return usageError{fmt.Sprintf("%s: unexpected argument %q (usage: rolodex %s %s)", name, pos[0], c.name, c.args)}
	}
	t, err := parseTarget(name, *profile, *lookup)
	if err != nil {
		return err
	}
	if t.len() == 0 {
		return usageError{fmt.Sprintf("%s: which profile? give --profile or --lookup (usage: rolodex %s %s)", name, c.name, c.args)}
	}
	cl, err := newAPIClient(name, *api, *key)
	if err != nil {
		return err
	}
	extra := map[string]any{}
	if *reason != "" {
		extra["reason"] = *reason
	}
	a, err := cl.sendBulk(ctx, "/v1/blacklist", extra, t, nil)
	if err != nil {
		return err
	}
	printBulk(stdout, "blacklisted", a, false)
	return singleMissing(name, a)
}

// cmdBlacklistRemove is "rolodex blacklist remove ID".
func cmdBlacklistRemove(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const name = "blacklist remove"
	fs := newFlagSet(name, stdout, stderr)
	api, key := addAPIFlags(fs)
	pos, err := fs.parseInterleaved(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		c, _ := findCommand(name)
		return usageError{fmt.Sprintf("usage: rolodex %s %s", c.name, c.args)}
	}
	cl, err := newAPIClient(name, *api, *key)
	if err != nil {
		return err
	}
	if err := cl.call(ctx, http.MethodDelete, "/v1/blacklist/"+url.PathEscape(pos[0]), nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s removed from the blacklist\n", pos[0])
	return nil
}

// cmdBlacklistList is "rolodex blacklist list [--limit N]": every page.
func cmdBlacklistList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const name = "blacklist list"
	fs := newFlagSet(name, stdout, stderr)
	api, key := addAPIFlags(fs)
	limit := fs.Int("limit", 100, "profiles per request (1 to 1000); every page is printed")
	pos, err := fs.parseInterleaved(args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageError{fmt.Sprintf("%s: unexpected argument %q", name, pos[0])}
	}
	if *limit < 1 || *limit > 1000 {
		return usageError{fmt.Sprintf("%s: --limit %d: from 1 to 1000", name, *limit)}
	}
	cl, err := newAPIClient(name, *api, *key)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROFILE\tSINCE\tREASON")
	n, cursor := 0, ""
	for {
		q := url.Values{"limit": {strconv.Itoa(*limit)}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var page struct {
			Profiles []struct {
				ID, Reason, Since string
			} `json:"profiles"`
			NextCursor string `json:"next_cursor"`
		}
		if err := cl.call(ctx, http.MethodGet, "/v1/blacklist?"+q.Encode(), nil, &page); err != nil {
			tw.Flush()
			return err
		}
		for _, p := range page.Profiles {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", p.ID, p.Since, p.Reason)
			n++
		}
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d blacklisted profiles\n", n)
	return nil
}

// cmdConsentSet is "rolodex consent set ID PURPOSE STATUS [--expires RFC3339|DURATION]".
func cmdConsentSet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const name = "consent set"
	fs := newFlagSet(name, stdout, stderr)
	api, key := addAPIFlags(fs)
	expires := fs.String("expires", "", "when a granted consent expires: an RFC 3339 time (2027-01-31T00:00:00Z) or a duration from now (720h)")
	pos, err := fs.parseInterleaved(args)
	if err != nil {
		return err
	}
	if len(pos) != 3 {
		c, _ := findCommand(name)
		return usageError{fmt.Sprintf("usage: rolodex %s %s", c.name, c.args)}
	}
	id, purpose, status := pos[0], pos[1], pos[2]
	switch status {
	case "granted", "denied", "revoked":
	default:
		return usageError{fmt.Sprintf("%s: status %q: granted, denied or revoked", name, status)}
	}
	body := map[string]string{"status": status}
	if *expires != "" {
		if status != "granted" {
			return usageError{name + ": --expires goes only with granted"}
		}
		at, err := parseExpires(*expires, time.Now())
		if err != nil {
			return usageError{fmt.Sprintf("%s: --expires: %v", name, err)}
		}
		body["expires_at"] = at.UTC().Format(time.RFC3339)
	}
	cl, err := newAPIClient(name, *api, *key)
	if err != nil {
		return err
	}
	if err := cl.call(ctx, http.MethodPut, "/v1/profiles/"+url.PathEscape(id)+"/consent/"+url.PathEscape(purpose), body, nil); err != nil {
		return err
	}
	msg := fmt.Sprintf("consent %s of %s: %s", purpose, id, status)
	if at := body["expires_at"]; at != "" {
		msg += " until " + at
	}
	fmt.Fprintln(stdout, msg)
	return nil
}

// singleMissing is the error of a change to one profile (--profile,
// --lookup) that was not found or invalid: nothing was changed.
func singleMissing(cmd string, a bulkAnswer) error {
	switch {
	case len(a.NotFound) > 0:
		return fmt.Errorf("%s: no %s in this tenant; nothing changed", cmd, a.NotFound[0])
	case len(a.Invalid) > 0:
		return fmt.Errorf("%s: %s: %s; nothing changed", cmd, a.Invalid[0], a.Invalid[0].Message)
	}
	return nil
}

// parseExpires reads an RFC 3339 time or a positive duration from now.
func parseExpires(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time (2027-01-31T00:00:00Z) nor a duration (720h)", s)
	}
	if d <= 0 {
		return time.Time{}, fmt.Errorf("%q: the duration must be positive", s)
	}
	return now.Add(d), nil
}
