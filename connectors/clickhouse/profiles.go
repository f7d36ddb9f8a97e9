package clickhouse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/rolodex/rolodex/schemas"
)

// The identity stage's records become three tables (docs/tables.md):
//
//   - profiles: the latest record of every key of rolodex.profiles, live
//     profiles and merged-away ids alike, ReplacingMergeTree(version);
//   - profile_nodes: for every node id, the profile it belongs to now,
//     ReplacingMergeTree(members);
//   - profile_merges: one row per merged-away profile,
//     ReplacingMergeTree(version).
//
// The sink reads the topics' partitions in no particular order relative to
// each other, the identity stage may repeat a record on a replay, and the
// sink itself writes a batch again after a crash. So no table relies on
// arrival order: each version column is computed from the record itself and
// only grows with what the identity stage guarantees.
//
// profiles.version: a root's profile only ever gains. Its member nodes only
// join (a node merges away once and never leaves), the identifiers of those
// nodes only get known, and every member's contribution only grows (its
// version counts the events folded in; docs/identity.md, "join keeps the
// higher version"). Every change the stage publishes for a root is one of
// these, so
//
//	version = members + identifiers + event_count
//
// strictly grows from one distinct snapshot of a root to the next, and two
// snapshots with the same version are the same. Once a root merges away it
// is never a root again, and its last record ({id, tenant, merged_into})
// gets MergedVersion, above every snapshot. A replayed, older snapshot that
// arrives late therefore loses, whatever its Kafka offset.
//
// profile_nodes.members: a node moves from root R to another root S only
// when R merges into S (directly or through roots in between). S then holds
// every member R had (the proposal carries all of R's contributions, and R
// admits no new member while its proposal is pending) plus S itself, so S's
// member count is strictly above R's in any snapshot of R. Along the roots
// a node ever had, the member count strictly grows; the row with the most
// members is the node's current root. Two rows of one node with equal
// counts come from the same root and say the same.
//
// profile_merges.version: a node merges away once, so (tenant, from_id)
// identifies a merge; copies (a replay after the identity stage crashed)
// differ only in time, and the earliest is when it happened. ReplacingMergeTree
// keeps the largest version, so version = MaxUint64 - time_ms.

// MergedVersion is profiles.version of a merged-away id's last record.
const MergedVersion = math.MaxUint64

// ProfileColumns are the columns the sink writes to profiles.
var ProfileColumns = []string{
	"tenant", "profile_id", "merged_into",
	"identifier_types", "identifier_values", "trait_keys", "trait_values",
	"first_seen", "first_seen_ms", "last_seen", "last_seen_ms",
	"event_count", "counter_types", "counter_values", "merged_ids", "members",
	"version", "updated_at", "kafka_partition", "kafka_offset",
	// Version 8: the profile's status (docs/profile-status.md).
	"tags", "tag_sources", "blacklisted", "blacklist_reason",
	"consent_purposes", "consent_statuses", "consent_expires_ms",
	"invalid_identifier_types", "invalid_identifier_values", "channels",
}

// ProfileNodeColumns are the columns the sink writes to profile_nodes.
var ProfileNodeColumns = []string{"tenant", "node_id", "profile_id", "members"}

// MergeColumns are the columns the sink writes to profile_merges.
var MergeColumns = []string{"tenant", "from_id", "into_id", "time", "time_ms", "version", "kafka_partition", "kafka_offset"}

// ProfileRow is one row of profiles.
type ProfileRow struct {
	Tenant, ProfileID, MergedInto     string
	IdentifierTypes, IdentifierValues []string
	TraitKeys, TraitValues            []string
	FirstSeen                         time.Time
	FirstSeenMS                       int64
	LastSeen                          time.Time
	LastSeenMS                        int64
	EventCount                        uint64
	CounterTypes                      []string
	CounterValues                     []uint64
	MergedIDs                         []string
	Members                           uint32
	Version                           uint64
	UpdatedAt                         time.Time
	Partition                         int32
	Offset                            int64
	// Status. Tags are the tags on, sorted, with TagSources (default or
	// manual) parallel. Consent is per purpose, sorted: the status as
	// folded (granted, denied or revoked; never expired: a granted
	// consent past its expiry is stored granted with its expiry, so that
	// a query decides expiry at its own time) and the expiry in Unix ms
	// (0: never). Invalid identifiers sorted by type, then value;
	// channels the names of the channels the profile can be reached on.
	Tags, TagSources                                []string
	Blacklisted                                     uint8
	BlacklistReason                                 string
	ConsentPurposes, ConsentStatuses                []string
	ConsentExpiresMS                                []int64
	InvalidIdentifierTypes, InvalidIdentifierValues []string
	Channels                                        []string
}

// Merged reports whether the row is a merged-away id's last record.
func (r *ProfileRow) Merged() bool { return r.MergedInto != "" }

// errNoID is the error of a record without the id it must have.
var errNoID = errors.New("no id")

// ProfileVersion is the version of a snapshot: members + identifiers +
// events, or MergedVersion once merged away (see the top of this file).
func ProfileVersion(p *schemas.Profile) uint64 {
	if p.MergedInto != "" {
		return MergedVersion
	}
	v := uint64(1+len(p.MergedIDs)) + uint64(max(p.EventCount, 0))
	for _, vs := range p.Identifiers {
		v += uint64(len(vs))
	}
	return v
}

// DecodeProfile turns a record of rolodex.profiles into its row. key is the
// record's key (the profile id); ts its Kafka timestamp.
func DecodeProfile(value []byte, key string, ts time.Time, partition int32, offset int64) (*ProfileRow, error) {
	var p schemas.Profile
	if err := json.Unmarshal(value, &p); err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	if p.ID == "" {
		p.ID = key
	}
	if p.ID == "" {
		return nil, fmt.Errorf("profile: %w", errNoID)
	}
	r := &ProfileRow{
		Tenant: p.Tenant, ProfileID: p.ID, MergedInto: p.MergedInto,
		FirstSeen: DateTime(time.Unix(0, 0)), LastSeen: DateTime(time.Unix(0, 0)),
		EventCount: uint64(max(p.EventCount, 0)), Version: ProfileVersion(&p),
		UpdatedAt: DateTime(ts), Partition: partition, Offset: offset,
		IdentifierTypes: []string{}, IdentifierValues: []string{}, CounterTypes: []string{}, CounterValues: []uint64{},
		MergedIDs: []string{}, Tags: []string{}, TagSources: []string{}, ConsentPurposes: []string{}, ConsentStatuses: []string{}, ConsentExpiresMS: []int64{},
		InvalidIdentifierTypes: []string{}, InvalidIdentifierValues: []string{}, Channels: []string{},
	}
	if r.Merged() {
		r.TraitKeys, r.TraitValues = []string{}, []string{}
		return r, nil
	}
	if err := r.status(&p); err != nil {
		return nil, fmt.Errorf("profile %s: %w", p.ID, err)
	}
	r.Members = uint32(1 + len(p.MergedIDs))
	for _, typ := range schemas.SortedKeys(p.Identifiers) {
		vs := append([]string(nil), p.Identifiers[typ]...)
		sort.Strings(vs)
		for _, v := range vs {
			r.IdentifierTypes = append(r.IdentifierTypes, typ)
			r.IdentifierValues = append(r.IdentifierValues, v)
		}
	}
	traits := make(map[string]string, len(p.Traits))
	for k, v := range p.Traits {
		traits[k] = string(v)
	}
	r.TraitKeys, r.TraitValues = sortedPairs(traits)
	for _, typ := range schemas.SortedKeys(p.Counters) {
		r.CounterTypes = append(r.CounterTypes, typ)
		r.CounterValues = append(r.CounterValues, uint64(max(p.Counters[typ], 0)))
	}
	r.MergedIDs = append(r.MergedIDs, p.MergedIDs...)
	sort.Strings(r.MergedIDs)
	var err error
	if r.FirstSeen, r.FirstSeenMS, err = seen(p.FirstSeen); err != nil {
		return nil, fmt.Errorf("profile %s: first_seen: %w", p.ID, err)
	}
	if r.LastSeen, r.LastSeenMS, err = seen(p.LastSeen); err != nil {
		return nil, fmt.Errorf("profile %s: last_seen: %w", p.ID, err)
	}
	return r, nil
}

// status fills the status columns from p.
func (r *ProfileRow) status(p *schemas.Profile) error {
	tags := append([]schemas.ProfileTag(nil), p.Tags...)
	sort.Slice(tags, func(i, j int) bool { return tags[i].Tag < tags[j].Tag })
	for _, t := range tags {
		r.Tags = append(r.Tags, t.Tag)
		r.TagSources = append(r.TagSources, t.Source)
	}
	if p.Blacklisted {
		r.Blacklisted = 1
		if p.Blacklist != nil {
			r.BlacklistReason = p.Blacklist.Reason
		}
	}
	for _, purpose := range schemas.SortedKeys(p.Consent) {
		c := p.Consent[purpose]
		status := c.Status
		if status == schemas.ConsentExpired || c.Expired {
			// Folded after its expiry: granted, past expires_at.
			status = schemas.ConsentGranted
		}
		var expires int64
		if c.ExpiresAt != "" {
			t, err := time.Parse(time.RFC3339Nano, c.ExpiresAt)
			if err != nil {
				return fmt.Errorf("consent %s: expires_at: %w", purpose, err)
			}
			expires = t.UnixMilli()
		}
		r.ConsentPurposes = append(r.ConsentPurposes, purpose)
		r.ConsentStatuses = append(r.ConsentStatuses, status)
		r.ConsentExpiresMS = append(r.ConsentExpiresMS, expires)
	}
	invalid := append([]schemas.InvalidIdentifier(nil), p.InvalidIdentifiers...)
	sort.Slice(invalid, func(i, j int) bool {
		if invalid[i].Type != invalid[j].Type {
			return invalid[i].Type < invalid[j].Type
		}
		return invalid[i].Value < invalid[j].Value
	})
	for _, id := range invalid {
		r.InvalidIdentifierTypes = append(r.InvalidIdentifierTypes, id.Type)
		r.InvalidIdentifierValues = append(r.InvalidIdentifierValues, id.Value)
	}
	for _, ch := range schemas.SortedKeys(p.Channels) {
		if len(p.Channels[ch]) > 0 {
			r.Channels = append(r.Channels, ch)
		}
	}
	return nil
}

// seen parses first_seen or last_seen (RFC 3339; absent for a profile
// without events: the epoch and 0).
func seen(s string) (time.Time, int64, error) {
	if s == "" {
		return DateTime(time.Unix(0, 0)), 0, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, 0, err
	}
	return DateTime(t), t.UnixMilli(), nil
}

// ProfileRows holds the profile records of one batch, the latest per
// profile id: an older snapshot of a profile in the same batch would be
// replaced by the newer one anyway.
type ProfileRows struct {
	rows []*ProfileRow
	at   map[string]int // tenant + "\x00" + profile id -> index in rows
}

// Len is the number of rows.
func (r *ProfileRows) Len() int { return len(r.rows) }

// Reset empties r.
func (r *ProfileRows) Reset() { *r = ProfileRows{} }

// Rows returns the rows, in the order their profile ids first appeared.
func (r *ProfileRows) Rows() []*ProfileRow { return r.rows }

// Add keeps row unless the batch has a later version of its profile; of two
// equal versions (the same snapshot) the later read wins.
func (r *ProfileRows) Add(row *ProfileRow) {
	if r.at == nil {
		r.at = map[string]int{}
	}
	k := row.Tenant + "\x00" + row.ProfileID
	if i, ok := r.at[k]; ok {
		if row.Version >= r.rows[i].Version {
			r.rows[i] = row
		}
		return
	}
	r.at[k] = len(r.rows)
	r.rows = append(r.rows, row)
}

// Insert writes the rows into db.profiles in one INSERT.
func (r *ProfileRows) Insert(ctx context.Context, conn driver.Conn, db string) error {
	return insertColumns(ctx, conn, db, tableProfiles, ProfileColumns, r.columns())
}

// columns returns the rows as columns, in the order of ProfileColumns.
func (r *ProfileRows) columns() []any {
	n := len(r.rows)
	var (
		tenant, id, into                  = make([]string, n), make([]string, n), make([]string, n)
		idTypes, idValues, tKeys, tValues = make([][]string, n), make([][]string, n), make([][]string, n), make([][]string, n)
		first, last, updated              = make([]time.Time, n), make([]time.Time, n), make([]time.Time, n)
		firstMS, lastMS, offset           = make([]int64, n), make([]int64, n), make([]int64, n)
		events, version                   = make([]uint64, n), make([]uint64, n)
		cTypes, merged                    = make([][]string, n), make([][]string, n)
		cValues                           = make([][]uint64, n)
		members                           = make([]uint32, n)
		partition                         = make([]int32, n)
		tags, tagSources                  = make([][]string, n), make([][]string, n)
		blacklisted                       = make([]uint8, n)
		blReason                          = make([]string, n)
		cPurposes, cStatuses              = make([][]string, n), make([][]string, n)
		cExpires                          = make([][]int64, n)
		invTypes, invValues, channels     = make([][]string, n), make([][]string, n), make([][]string, n)
	)
	for i, p := range r.rows {
		tenant[i], id[i], into[i] = p.Tenant, p.ProfileID, p.MergedInto
		idTypes[i], idValues[i], tKeys[i], tValues[i] = p.IdentifierTypes, p.IdentifierValues, p.TraitKeys, p.TraitValues
		first[i], firstMS[i], last[i], lastMS[i] = p.FirstSeen, p.FirstSeenMS, p.LastSeen, p.LastSeenMS
		events[i], cTypes[i], cValues[i], merged[i], members[i] = p.EventCount, p.CounterTypes, p.CounterValues, p.MergedIDs, p.Members
		version[i], updated[i], partition[i], offset[i] = p.Version, p.UpdatedAt, p.Partition, p.Offset
		tags[i], tagSources[i], blacklisted[i], blReason[i] = p.Tags, p.TagSources, p.Blacklisted, p.BlacklistReason
		cPurposes[i], cStatuses[i], cExpires[i] = p.ConsentPurposes, p.ConsentStatuses, p.ConsentExpiresMS
		invTypes[i], invValues[i], channels[i] = p.InvalidIdentifierTypes, p.InvalidIdentifierValues, p.Channels
	}
	return []any{
		tenant, id, into, idTypes, idValues, tKeys, tValues,
		first, firstMS, last, lastMS, events, cTypes, cValues, merged, members,
		version, updated, partition, offset,
		tags, tagSources, blacklisted, blReason, cPurposes, cStatuses, cExpires, invTypes, invValues, channels,
	}
}

// ProfileNodeRows holds rows of profile_nodes: every node id of a profile
// snapshot, the root's own id included, with the snapshot's member count.
type ProfileNodeRows struct {
	tenant, node, profile []string
	members               []uint32
}

// Len is the number of rows.
func (r *ProfileNodeRows) Len() int { return len(r.node) }

// Add appends one row per node of the live profile row p.
func (r *ProfileNodeRows) Add(p *ProfileRow) {
	for _, n := range append([]string{p.ProfileID}, p.MergedIDs...) {
		r.tenant = append(r.tenant, p.Tenant)
		r.node = append(r.node, n)
		r.profile = append(r.profile, p.ProfileID)
		r.members = append(r.members, p.Members)
	}
}

// Insert writes the rows into db.profile_nodes in one INSERT.
func (r *ProfileNodeRows) Insert(ctx context.Context, conn driver.Conn, db string) error {
	return insertColumns(ctx, conn, db, tableProfileNodes, ProfileNodeColumns, r.columns())
}

// columns returns the rows as columns, in the order of ProfileNodeColumns.
func (r *ProfileNodeRows) columns() []any {
	return []any{r.tenant, r.node, r.profile, r.members}
}

// MergeRow is one row of profile_merges.
type MergeRow struct {
	Tenant, From, Into string
	Time               time.Time
	TimeMS             int64
	Version            uint64
	Partition          int32
	Offset             int64
}

// MergeVersion is profile_merges.version: the earlier copy of a merge wins.
func MergeVersion(timeMS int64) uint64 { return math.MaxUint64 - uint64(max(timeMS, 0)) }

// DecodeMerge turns a record of rolodex.profile.merges into its row.
func DecodeMerge(value []byte, partition int32, offset int64) (*MergeRow, error) {
	var m schemas.Merge
	if err := json.Unmarshal(value, &m); err != nil {
		return nil, fmt.Errorf("merge: %w", err)
	}
	if m.From == "" || m.Into == "" {
		return nil, fmt.Errorf("merge: %w (from %q, into %q)", errNoID, m.From, m.Into)
	}
	return &MergeRow{
		Tenant: m.Tenant, From: m.From, Into: m.Into,
		Time: DateTime(time.UnixMilli(m.Time)), TimeMS: m.Time, Version: MergeVersion(m.Time),
		Partition: partition, Offset: offset,
	}, nil
}

// MergeRows holds the merge records of one batch, the earliest per
// merged-away id.
type MergeRows struct {
	rows []*MergeRow
	at   map[string]int
}

// Len is the number of rows.
func (r *MergeRows) Len() int { return len(r.rows) }

// Reset empties r.
func (r *MergeRows) Reset() { *r = MergeRows{} }

// Add keeps row unless the batch has an earlier copy of its merge.
func (r *MergeRows) Add(row *MergeRow) {
	if r.at == nil {
		r.at = map[string]int{}
	}
	k := row.Tenant + "\x00" + row.From
	if i, ok := r.at[k]; ok {
		if row.Version > r.rows[i].Version {
			r.rows[i] = row
		}
		return
	}
	r.at[k] = len(r.rows)
	r.rows = append(r.rows, row)
}

// Insert writes the rows into db.profile_merges in one INSERT.
func (r *MergeRows) Insert(ctx context.Context, conn driver.Conn, db string) error {
	return insertColumns(ctx, conn, db, tableProfileMerges, MergeColumns, r.columns())
}

// columns returns the rows as columns, in the order of MergeColumns.
func (r *MergeRows) columns() []any {
	n := len(r.rows)
	tenant, from, into := make([]string, n), make([]string, n), make([]string, n)
	tm := make([]time.Time, n)
	ms, offset := make([]int64, n), make([]int64, n)
	version := make([]uint64, n)
	partition := make([]int32, n)
	for i, m := range r.rows {
		tenant[i], from[i], into[i], tm[i], ms[i], version[i], partition[i], offset[i] = m.Tenant, m.From, m.Into, m.Time, m.TimeMS, m.Version, m.Partition, m.Offset
	}
	return []any{tenant, from, into, tm, ms, version, partition, offset}
}
