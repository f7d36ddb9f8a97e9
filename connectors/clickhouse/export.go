package clickhouse

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/rolodex/rolodex/schemas"
)

// ExportFilter selects the live profiles ExportProfiles returns. Every set
// field must hold; the zero filter takes every live profile.
type ExportFilter struct {
	// Tenant: only this tenant's profiles.
	Tenant string
	// Tag: only profiles holding this tag.
	Tag string
	// Blacklisted: only blacklisted profiles (true) or only the others
	// (false); nil takes both.
	Blacklisted *bool
	// Consent: only profiles whose consent for this purpose is granted and
	// not expired at Now.
	Consent string
	// Now decides consent expiry, in the filter and in the exported
	// statuses alike. Zero: time.Now() when the export starts.
	Now time.Time
}

// ExportedProfile is one live profile as the export writes it (one JSON
// object per line with --format json; docs/reports.md).
type ExportedProfile struct {
	ID          string                     `json:"id"`
	Tenant      string                     `json:"tenant"`
	Identifiers map[string][]string        `json:"identifiers"`
	Traits      map[string]json.RawMessage `json:"traits"`
	// Tags are the tags on, sorted by name, with their source.
	Tags            []ExportedTag `json:"tags"`
	Blacklisted     bool          `json:"blacklisted"`
	BlacklistReason string        `json:"blacklist_reason,omitempty"`
	// Consent per purpose: granted, denied, revoked, or expired (granted,
	// with an expiry at or before the export's Now).
	Consent            map[string]ExportedConsent `json:"consent"`
	InvalidIdentifiers []schemas.Identifier       `json:"invalid_identifiers"`
	// Channels are the channels the profile can be reached on (email,
	// sms, whatsapp, facebook), sorted.
	Channels   []string `json:"channels"`
	FirstSeen  string   `json:"first_seen,omitempty"`
	LastSeen   string   `json:"last_seen,omitempty"`
	EventCount uint64   `json:"event_count"`
}

// ExportedTag is one tag of an exported profile.
type ExportedTag struct {
	Tag    string `json:"tag"`
	Source string `json:"source"`
}

// ExportedConsent is one consent purpose of an exported profile.
type ExportedConsent struct {
	Status    string `json:"status"`
	ExpiresAt string `json:"expires_at,omitempty"`
}

// exportColumns are the columns of profiles the export reads, in the order
// exportRow scans them.
var exportColumns = []string{
	"tenant", "profile_id", "identifier_types", "identifier_values", "trait_keys", "trait_values",
	"tags", "tag_sources", "blacklisted", "blacklist_reason",
	"consent_purposes", "consent_statuses", "consent_expires_ms",
	"invalid_identifier_types", "invalid_identifier_values", "channels",
	"first_seen_ms", "last_seen_ms", "event_count",
}

// exportFrom is the FROM ... WHERE of the export: the live profiles of
// profiles FINAL (FINAL merges the versions of a profile before WHERE
// looks at them, on 18.16 and current ClickHouse alike: tested in
// export_test.go) that pass f. nowMS decides consent expiry. The values
// are written into the text as quoted literals, so that the same text
// runs anywhere (the chDB tier runs it on current ClickHouse).
func exportFrom(db string, f ExportFilter, nowMS int64) string {
	where := []string{"merged_into = ''"}
	if f.Tenant != "" {
		where = append(where, "tenant = "+quoteString(f.Tenant))
	}
	if f.Tag != "" {
		where = append(where, "has(tags, "+quoteString(f.Tag)+")")
	}
	if f.Blacklisted != nil {
		b := 0
		if *f.Blacklisted {
			b = 1
		}
		where = append(where, fmt.Sprintf("blacklisted = %d", b))
	}
	if f.Consent != "" {
		where = append(where, fmt.Sprintf("arrayExists((purpose, status, expires) -> purpose = %s AND status = 'granted' AND (expires = 0 OR expires > %d), "+
			"consent_purposes, consent_statuses, consent_expires_ms)", quoteString(f.Consent), nowMS))
	}
	return " FROM " + db + ".profiles FINAL WHERE " + strings.Join(where, " AND ")
}

// exportQuery is the SELECT of ExportProfiles.
func exportQuery(db string, f ExportFilter, nowMS int64) string {
	return "SELECT " + strings.Join(exportColumns, ", ") + exportFrom(db, f, nowMS)
}

func (f *ExportFilter) now() time.Time {
	if f.Now.IsZero() {
		f.Now = time.Now()
	}
	return f.Now
}

// CountProfiles counts the live profiles of db that pass f (what
// ExportProfiles would return now).
func CountProfiles(ctx context.Context, conn driver.Conn, db string, f ExportFilter) (uint64, error) {
	if err := validDatabase(db); err != nil {
		return 0, err
	}
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count()"+exportFrom(db, f, f.now().UnixMilli())).Scan(&n); err != nil {
		return 0, fmt.Errorf("clickhouse: count profiles: %w", err)
	}
	return n, nil
}

// ExportProfiles calls fn with every live profile of db that passes f, in
// no particular order, as the driver reads them: blocks of rows stream
// from the server, and only the block being read is in memory, whatever
// the number of profiles. An error of fn stops the export and is returned.
func ExportProfiles(ctx context.Context, conn driver.Conn, db string, f ExportFilter, fn func(*ExportedProfile) error) error {
	if err := validDatabase(db); err != nil {
		return err
	}
	nowMS := f.now().UnixMilli()
	rows, err := conn.Query(ctx, exportQuery(db, f, nowMS))
	if err != nil {
		return fmt.Errorf("clickhouse: export profiles: %w", err)
	}
	defer rows.Close()
	var r exportRow
	for rows.Next() {
		if err := rows.Scan(r.dest()...); err != nil {
			return fmt.Errorf("clickhouse: export profiles: scan: %w", err)
		}
		if err := fn(r.profile(nowMS)); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("clickhouse: export profiles: %w", err)
	}
	return nil
}

// exportRow is one row of the export's SELECT.
type exportRow struct {
	tenant, id                 string
	idTypes, idValues          []string
	traitKeys, traitValues     []string
	tags, tagSources           []string
	blacklisted                uint8
	blacklistReason            string
	purposes, statuses         []string
	expires                    []int64
	invalidTypes, invalidValue []string
	channels                   []string
	firstMS, lastMS            int64
	events                     uint64
}

func (r *exportRow) dest() []any {
	return []any{
		&r.tenant, &r.id, &r.idTypes, &r.idValues, &r.traitKeys, &r.traitValues,
		&r.tags, &r.tagSources, &r.blacklisted, &r.blacklistReason,
		&r.purposes, &r.statuses, &r.expires,
		&r.invalidTypes, &r.invalidValue, &r.channels,
		&r.firstMS, &r.lastMS, &r.events,
	}
}

func (r *exportRow) profile(nowMS int64) *ExportedProfile {
	p := &ExportedProfile{
		ID: r.id, Tenant: r.tenant, Identifiers: map[string][]string{}, Traits: map[string]json.RawMessage{},
		Tags: []ExportedTag{}, Blacklisted: r.blacklisted != 0, BlacklistReason: r.blacklistReason,
		Consent: map[string]ExportedConsent{}, InvalidIdentifiers: []schemas.Identifier{}, Channels: append([]string{}, r.channels...),
		EventCount: r.events,
	}
	for i, typ := range r.idTypes {
		p.Identifiers[typ] = append(p.Identifiers[typ], at(r.idValues, i))
	}
	for i, k := range r.traitKeys {
		v := []byte(at(r.traitValues, i))
		if !json.Valid(v) {
			// Not written by the sink (its values are JSON): keep it as text.
			v, _ = json.Marshal(string(v))
		}
		p.Traits[k] = v
	}
	for i, t := range r.tags {
		p.Tags = append(p.Tags, ExportedTag{Tag: t, Source: at(r.tagSources, i)})
	}
	for i, purpose := range r.purposes {
		c := ExportedConsent{Status: at(r.statuses, i)}
		if x := at(r.expires, i); x != 0 {
			c.ExpiresAt = msTime(x)
			if c.Status == schemas.ConsentGranted && x <= nowMS {
				c.Status = schemas.ConsentExpired
			}
		}
		p.Consent[purpose] = c
	}
	for i, typ := range r.invalidTypes {
		p.InvalidIdentifiers = append(p.InvalidIdentifiers, schemas.Identifier{Type: typ, Value: at(r.invalidValue, i)})
	}
	if r.events > 0 {
		p.FirstSeen, p.LastSeen = msTime(r.firstMS), msTime(r.lastMS)
	}
	return p
}

// at returns a[i], or the zero value past its end: the sink writes
// parallel arrays of equal length, but a row written by hand may not.
func at[T any](a []T, i int) T {
	var zero T
	if i < len(a) {
		return a[i]
	}
	return zero
}

func msTime(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano) }

// ExportCSVHeader is the header line of the CSV export; CSVRecord gives
// the fields of one profile in this order.
var ExportCSVHeader = []string{
	"id", "tenant", "identifiers", "traits", "tags", "blacklisted", "blacklist_reason",
	"consent", "channels", "invalid_identifiers", "first_seen", "last_seen", "event_count",
}

// CSVRecord returns p's fields in the order of ExportCSVHeader: nested
// values (identifiers, traits, invalid identifiers) as JSON text; tags,
// channels and consent as lists separated by ";" (tag names and consent
// purposes cannot hold one: schemas.NameRe), consent as
// purpose=status; blacklisted as true or false.
func (p *ExportedProfile) CSVRecord() []string {
	ids, _ := json.Marshal(p.Identifiers)
	traits, _ := json.Marshal(p.Traits)
	invalid, _ := json.Marshal(p.InvalidIdentifiers)
	tags := make([]string, len(p.Tags))
	for i, t := range p.Tags {
		tags[i] = t.Tag
	}
	consent := make([]string, 0, len(p.Consent))
	for _, purpose := range schemas.SortedKeys(p.Consent) {
		consent = append(consent, purpose+"="+p.Consent[purpose].Status)
	}
	return []string{
		p.ID, p.Tenant, string(ids), string(traits), strings.Join(tags, ";"), fmt.Sprint(p.Blacklisted), p.BlacklistReason,
		strings.Join(consent, ";"), strings.Join(p.Channels, ";"), string(invalid), p.FirstSeen, p.LastSeen, fmt.Sprint(p.EventCount),
	}
}
