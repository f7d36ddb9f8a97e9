package clickhouse

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/rolodex/rolodex/schemas"
)

// tag_changes holds one row per record of rolodex.profile.tags: one
// effective change of one tag of one profile (schemas.TagChange). The tag
// stage may repeat a record after a crash, with identical fields, and the
// sink writes a batch again after its own crash; the sorting key is every
// field of the record, (tenant, tag, profile_id, time_ms, op, cause), so a
// ReplacingMergeTree without a version collapses the copies and FINAL
// reads each change once (docs/tables.md).

// TagChangeColumns are the columns the sink writes to tag_changes.
var TagChangeColumns = []string{"tenant", "profile_id", "tag", "op", "cause", "time", "time_ms", "kafka_partition", "kafka_offset"}

// TagChangeRow is one row of tag_changes.
type TagChangeRow struct {
	Tenant, ProfileID, Tag, Op, Cause string
	Time                              time.Time
	TimeMS                            int64
	Partition                         int32
	Offset                            int64
}

// DecodeTagChange turns a record of rolodex.profile.tags into its row. key
// is the record's key (the profile id), used when the value has none.
func DecodeTagChange(value []byte, key string, partition int32, offset int64) (*TagChangeRow, error) {
	var c schemas.TagChange
	if err := json.Unmarshal(value, &c); err != nil {
		return nil, fmt.Errorf("tag change: %w", err)
	}
	if c.Profile == "" {
		c.Profile = key
	}
	switch {
	case c.Profile == "":
		return nil, fmt.Errorf("tag change: %w (profile_id)", errNoID)
	case c.Tag == "":
		return nil, fmt.Errorf("tag change of %s: no tag", c.Profile)
	case c.Op != schemas.TagAdded && c.Op != schemas.TagRemoved:
		return nil, fmt.Errorf("tag change of %s, tag %s: op %q, want %q or %q", c.Profile, c.Tag, c.Op, schemas.TagAdded, schemas.TagRemoved)
	}
	return &TagChangeRow{
		Tenant: c.Tenant, ProfileID: c.Profile, Tag: c.Tag, Op: c.Op, Cause: c.Cause,
		Time: DateTime(time.UnixMilli(c.Time)), TimeMS: c.Time, Partition: partition, Offset: offset,
	}, nil
}

// TagChangeRows holds the tag changes of one batch, each distinct change
// once: a copy read in the same batch (a replay of the tag stage) is
// dropped here, copies across batches collapse in the table.
type TagChangeRows struct {
	rows []*TagChangeRow
	seen map[tagChangeKey]bool
}

type tagChangeKey struct {
	tenant, tag, profile, op, cause string
	ms                              int64
}

// Len is the number of rows.
func (r *TagChangeRows) Len() int { return len(r.rows) }

// Reset empties r.
func (r *TagChangeRows) Reset() { *r = TagChangeRows{} }

// Rows returns the rows in the order they were first added.
func (r *TagChangeRows) Rows() []*TagChangeRow { return r.rows }

// Add keeps row unless the batch has the same change already.
func (r *TagChangeRows) Add(row *TagChangeRow) {
	if r.seen == nil {
		r.seen = map[tagChangeKey]bool{}
	}
	k := tagChangeKey{row.Tenant, row.Tag, row.ProfileID, row.Op, row.Cause, row.TimeMS}
	if r.seen[k] {
		return
	}
	r.seen[k] = true
	r.rows = append(r.rows, row)
}

// Insert writes the rows into db.tag_changes in one INSERT.
func (r *TagChangeRows) Insert(ctx context.Context, conn driver.Conn, db string) error {
	return insertColumns(ctx, conn, db, tableTagChanges, TagChangeColumns, r.columns())
}

// columns returns the rows as columns, in the order of TagChangeColumns.
func (r *TagChangeRows) columns() []any {
	n := len(r.rows)
	tenant, profile, tag, op, cause := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	tm := make([]time.Time, n)
	ms, offset := make([]int64, n), make([]int64, n)
	partition := make([]int32, n)
	for i, c := range r.rows {
		tenant[i], profile[i], tag[i], op[i], cause[i] = c.Tenant, c.ProfileID, c.Tag, c.Op, c.Cause
		tm[i], ms[i], partition[i], offset[i] = c.Time, c.TimeMS, c.Partition, c.Offset
	}
	return []any{tenant, profile, tag, op, cause, tm, ms, partition, offset}
}
