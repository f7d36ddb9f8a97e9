package clickhouse

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/rolodex/rolodex/schemas"
)

// eventColumns are the columns the sink writes to events, with their
// types, in the order of every INSERT (both paths: clickhouse-go's batch
// and the Native block over HTTP, httpinsert.go). inserted_at is left to
// its DEFAULT now(). TestEventColumnsMatchTable compares them with the
// migrated table.
var eventColumns = []struct{ name, typ string }{
	{"tenant", "String"}, {"event_id", "String"}, {"type", "String"}, {"source", "String"}, {"partner", "String"},
	{"time", "DateTime('UTC')"}, {"time_ms", "Int64"}, {"received_at", "DateTime('UTC')"}, {"received_at_ms", "UInt64"},
	{"node_id", "String"},
	{"identifier_types", "Array(String)"}, {"identifier_values", "Array(String)"},
	{"trait_keys", "Array(String)"}, {"trait_values", "Array(String)"},
	{"property_keys", "Array(String)"}, {"property_values", "Array(String)"},
	{"kafka_partition", "Int32"}, {"kafka_offset", "Int64"},
}

// EventColumns are the names of eventColumns.
var EventColumns = func() []string {
	names := make([]string, len(eventColumns))
	for i, c := range eventColumns {
		names[i] = c.name
	}
	return names
}()

// DeadLetterColumns are the columns the sink writes to dead_letters.
var DeadLetterColumns = []string{
	"kafka_topic", "kafka_partition", "kafka_offset",
	"time", "time_ms", "tenant", "partner", "reason", "message", "source_kind",
	"request_id", "source_topic", "source_partition", "source_offset", "source_file", "source_row",
	"payload",
}

// insertQuery names every column: without the list, clickhouse-go's Append
// fails and AppendStruct silently inserts nothing.
func insertQuery(db, table string, cols []string) string {
	return "INSERT INTO " + db + "." + table + " (" + strings.Join(cols, ", ") + ")"
}

// EventRows holds events as columns, ready for one INSERT.
type EventRows struct {
	tenant, eventID, typ, source, partner []string
	time                                  []time.Time
	timeMS                                []int64
	receivedAt                            []time.Time
	receivedAtMS                          []uint64
	nodeID                                []string
	idTypes, idValues                     [][]string
	traitKeys, traitValues                [][]string
	propKeys, propValues                  [][]string
	partition                             []int32
	offset                                []int64
	// strs backs the rows' identifier, trait and property arrays, so
	// that a row's six arrays are not six allocations (stringArrays).
	strs []string
	// block, when set (the sink writing events over HTTP), holds the rows
	// instead of the slices above: Add appends straight to its ch-go
	// columns, one copy of each string and nothing of the event kept.
	block *eventBlock
}

// Len is the number of rows.
func (r *EventRows) Len() int {
	if r.block != nil {
		return r.block.rows()
	}
	return len(r.eventID)
}

// Reset empties r, keeping the columns' capacity for the next batch: the
// insert has copied the rows into the driver's own columns by then.
func (r *EventRows) Reset() {
	if r.block != nil {
		r.block.reset()
	}
	r.tenant, r.eventID, r.typ, r.source, r.partner = r.tenant[:0], r.eventID[:0], r.typ[:0], r.source[:0], r.partner[:0]
	r.time, r.timeMS, r.receivedAt, r.receivedAtMS = r.time[:0], r.timeMS[:0], r.receivedAt[:0], r.receivedAtMS[:0]
	r.nodeID = r.nodeID[:0]
	r.idTypes, r.idValues = r.idTypes[:0], r.idValues[:0]
	r.traitKeys, r.traitValues, r.propKeys, r.propValues = r.traitKeys[:0], r.traitValues[:0], r.propKeys[:0], r.propValues[:0]
	r.partition, r.offset = r.partition[:0], r.offset[:0]
	r.strs = nil // the arrays of the rows just written still point into it
}

// stringArrays returns two arrays of n strings each, carved out of r.strs
// (a new chunk when it is full). Each has its length as its capacity, so
// that nothing appended to one runs into the next.
func (r *EventRows) stringArrays(n int) (a, b []string) {
	if n == 0 {
		return nil, nil
	}
	if cap(r.strs)-len(r.strs) < 2*n {
		r.strs = make([]string, 0, max(2*n, stringChunk))
	}
	i := len(r.strs)
	r.strs = r.strs[:i+2*n]
	return r.strs[i : i+n : i+n], r.strs[i+n : i+2*n : i+2*n]
}

// stringChunk is how many strings one allocation of EventRows.strs holds
// (64 KiB).
const stringChunk = 4096

// Add appends one event. key is the record's Kafka key (the node id of the
// primary identifier); partition and offset are the record's position on
// rolodex.events.
func (r *EventRows) Add(ev *schemas.Event, key string, partition int32, offset int64) {
	if r.block != nil {
		if key == "" {
			key = ev.Key()
		}
		r.block.add(ev, key, partition, offset)
		return
	}
	r.tenant = append(r.tenant, ev.Tenant)
	r.eventID = append(r.eventID, ev.ID)
	r.typ = append(r.typ, ev.Type)
	r.source = append(r.source, ev.Source)
	r.partner = append(r.partner, ev.Partner)
	r.time = append(r.time, DateTime(ev.Time))
	r.timeMS = append(r.timeMS, ev.Time.UnixMilli())
	r.receivedAt = append(r.receivedAt, DateTime(ev.ReceivedAt))
	r.receivedAtMS = append(r.receivedAtMS, uint64(max(ev.ReceivedAt.UnixMilli(), 0)))
	if key == "" {
		key = ev.Key()
	}
	r.nodeID = append(r.nodeID, key)
	types, values := r.stringArrays(len(ev.Identifiers))
	for i, id := range ev.Identifiers {
		types[i], values[i] = id.Type, id.Value
	}
	r.idTypes = append(r.idTypes, types)
	r.idValues = append(r.idValues, values)
	k, v := r.stringArrays(len(ev.Traits))
	sortedPairsInto(ev.Traits, k, v)
	r.traitKeys = append(r.traitKeys, k)
	r.traitValues = append(r.traitValues, v)
	k, v = r.stringArrays(len(ev.Properties))
	sortedPairsInto(ev.Properties, k, v)
	r.propKeys = append(r.propKeys, k)
	r.propValues = append(r.propValues, v)
	r.partition = append(r.partition, partition)
	r.offset = append(r.offset, offset)
}

func (r *EventRows) columns() []any {
	return []any{
		r.tenant, r.eventID, r.typ, r.source, r.partner,
		r.time, r.timeMS, r.receivedAt, r.receivedAtMS, r.nodeID,
		r.idTypes, r.idValues, r.traitKeys, r.traitValues, r.propKeys, r.propValues,
		r.partition, r.offset,
	}
}

// Insert writes the rows into db.events in one INSERT.
func (r *EventRows) Insert(ctx context.Context, conn driver.Conn, db string) error {
	if r.block != nil {
		return fmt.Errorf("clickhouse: insert %s.events: the rows are a Native block for the HTTP interface", db)
	}
	return insertColumns(ctx, conn, db, "events", EventColumns, r.columns())
}

// DeadLetterRows holds dead letters as columns, ready for one INSERT.
type DeadLetterRows struct {
	topic                                  []string
	partition                              []int32
	offset                                 []int64
	time                                   []time.Time
	timeMS                                 []int64
	tenant, partner, reason, message, kind []string
	requestID, srcTopic                    []string
	srcPartition                           []int32
	srcOffset                              []int64
	srcFile                                []string
	srcRow                                 []int64
	payload                                []string
}

// Len is the number of rows.
func (r *DeadLetterRows) Len() int { return len(r.topic) }

// Reset empties r.
func (r *DeadLetterRows) Reset() { *r = DeadLetterRows{} }

// Add appends one dead letter read from topic/partition/offset.
func (r *DeadLetterRows) Add(d *schemas.DeadLetter, topic string, partition int32, offset int64) {
	r.topic = append(r.topic, topic)
	r.partition = append(r.partition, partition)
	r.offset = append(r.offset, offset)
	r.time = append(r.time, DateTime(d.Time))
	r.timeMS = append(r.timeMS, d.Time.UnixMilli())
	r.tenant = append(r.tenant, d.Tenant)
	r.partner = append(r.partner, d.Partner)
	r.reason = append(r.reason, d.Reason)
	r.message = append(r.message, d.Message)
	r.kind = append(r.kind, d.SourceKind)
	r.requestID = append(r.requestID, d.RequestID)
	r.srcTopic = append(r.srcTopic, d.Topic)
	r.srcPartition = append(r.srcPartition, d.Partition)
	r.srcOffset = append(r.srcOffset, d.Offset)
	r.srcFile = append(r.srcFile, d.File)
	r.srcRow = append(r.srcRow, d.Row)
	r.payload = append(r.payload, string(d.Payload))
}

func (r *DeadLetterRows) columns() []any {
	return []any{
		r.topic, r.partition, r.offset, r.time, r.timeMS,
		r.tenant, r.partner, r.reason, r.message, r.kind,
		r.requestID, r.srcTopic, r.srcPartition, r.srcOffset, r.srcFile, r.srcRow,
		r.payload,
	}
}

// Insert writes the rows into db.dead_letters in one INSERT.
func (r *DeadLetterRows) Insert(ctx context.Context, conn driver.Conn, db string) error {
	return insertColumns(ctx, conn, db, "dead_letters", DeadLetterColumns, r.columns())
}

// insertColumns sends one INSERT of whole columns (PrepareBatch, one
// Column(i).Append per column, Send).
func insertColumns(ctx context.Context, conn driver.Conn, db, table string, names []string, cols []any) error {
	if len(names) != len(cols) {
		return fmt.Errorf("clickhouse: insert %s: %d column names for %d columns", table, len(names), len(cols))
	}
	b, err := conn.PrepareBatch(ctx, insertQuery(db, table, names))
	if err != nil {
		return fmt.Errorf("clickhouse: insert %s.%s: prepare: %w", db, table, err)
	}
	defer b.Close()
	for i, c := range cols {
		var err error
		if arrays, ok := c.([][]string); ok {
			// Row by row: clickhouse-go appends a []string without
			// reflection, a whole [][]string with reflection per element
			// (about 12% slower for the events columns).
			col := b.Column(i)
			for _, a := range arrays {
				if err = col.AppendRow(a); err != nil {
					break
				}
			}
		} else {
			err = b.Column(i).Append(c)
		}
		if err != nil {
			return fmt.Errorf("clickhouse: insert %s.%s: column %s: %w", db, table, names[i], err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("clickhouse: insert %s.%s: send: %w", db, table, err)
	}
	return nil
}

// maxDateTime is the last second a ClickHouse DateTime (UInt32) holds.
var maxDateTime = time.Unix(math.MaxUint32, 0).UTC()

// DateTime clamps t into the range of a ClickHouse DateTime column
// (1970-01-01 to 2106-02-07, whole seconds, UTC): earlier times become the
// epoch, later ones the maximum. The *_ms columns keep the exact value.
func DateTime(t time.Time) time.Time {
	switch {
	case t.Before(time.Unix(0, 0)):
		return time.Unix(0, 0).UTC()
	case t.After(maxDateTime):
		return maxDateTime
	}
	return t.UTC().Truncate(time.Second)
}

func sortedPairs(m map[string]string) (keys, values []string) {
	keys, values = make([]string, len(m)), make([]string, len(m))
	sortedPairsInto(m, keys, values)
	return keys, values
}

// sortedPairsInto writes the keys of m in order into keys and their values
// into values; both have len(m) elements.
func sortedPairsInto(m map[string]string, keys, values []string) {
	i := 0
	for k := range m {
		keys[i] = k
		i++
	}
	slices.Sort(keys)
	for i, k := range keys {
		values[i] = m[k]
	}
}
