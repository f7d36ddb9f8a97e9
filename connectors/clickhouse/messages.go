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

// The message lifecycle in ClickHouse (docs/lifecycle.md, docs/tables.md):
//
//   - message_events: one row per reserved message event of rolodex.events
//     (type message.<state> with a valid message_id, channel and bounce:
//     schemas.MessageEventOf, the parse the lifecycle's router makes),
//     with its message id, state, channel and bounce as columns. The sink
//     writes it beside events, from the same records. A message event the
//     parse refuses (the router dead-letters it, invalid_message_event)
//     stays in events only. ReplacingMergeTree(received_at_ms) by
//     (tenant, message_id, event_id): a resend of an event id or a batch
//     written again collapses to one row, the copy received last, as in
//     events; the lifecycle too knows an event of a message by its id.
//   - message_states: the latest fold of every message, from the
//     lifecycle group's table topic (rolodex-lifecycle-table, JSON
//     schemas.MessageTable). ReplacingMergeTree(version) by (tenant,
//     message_id), version = the table value's By (the origin, input
//     offset + 1, of the latest input folded): a message's inputs are all
//     on one partition of rolodex.messages.events, so By grows with every
//     new value of the key, and a replay writes the same value with the
//     same By. FINAL reads the latest state of each message.

// MessageEventColumns are the columns the sink writes to message_events.
var MessageEventColumns = []string{
	"tenant", "message_id", "event_id", "state", "channel", "bounce", "provider_event_id",
	"source", "partner", "time", "time_ms", "received_at", "received_at_ms", "node_id",
	"address_type", "address", "identifier_types", "identifier_values",
	"kafka_partition", "kafka_offset",
}

// MessageEventRows holds the message events of one batch as columns.
type MessageEventRows struct {
	tenant, messageID, eventID, state, channel, bounce, providerEventID []string
	source, partner                                                     []string
	time                                                                []time.Time
	timeMS                                                              []int64
	receivedAt                                                          []time.Time
	receivedAtMS                                                        []uint64
	nodeID, addressType, address                                        []string
	idTypes, idValues                                                   [][]string
	partition                                                           []int32
	offset                                                              []int64
}

// Len is the number of rows.
func (r *MessageEventRows) Len() int { return len(r.eventID) }

// Reset empties r.
func (r *MessageEventRows) Reset() { *r = MessageEventRows{} }

// Add appends ev if it is a valid reserved message event and reports
// whether it did. key, partition and offset are the record's on
// rolodex.events.
func (r *MessageEventRows) Add(ev *schemas.Event, key string, partition int32, offset int64) bool {
	m, err := schemas.MessageEventOf(ev)
	if err != nil {
		return false
	}
	if key == "" {
		key = ev.Key()
	}
	addrType, _ := schemas.AddressType(m.Channel)
	addr := ""
	for _, id := range ev.Identifiers {
		if id.Type == addrType {
			addr = id.Value
			break
		}
	}
	if addr == "" {
		addrType = ""
	}
	r.tenant = append(r.tenant, ev.Tenant)
	r.messageID = append(r.messageID, m.MessageID)
	r.eventID = append(r.eventID, ev.ID)
	r.state = append(r.state, string(m.State))
	r.channel = append(r.channel, m.Channel)
	r.bounce = append(r.bounce, m.Bounce)
	r.providerEventID = append(r.providerEventID, m.ProviderEventID)
	r.source = append(r.source, ev.Source)
	r.partner = append(r.partner, ev.Partner)
	r.time = append(r.time, DateTime(ev.Time))
	r.timeMS = append(r.timeMS, ev.Time.UnixMilli())
	r.receivedAt = append(r.receivedAt, DateTime(ev.ReceivedAt))
	r.receivedAtMS = append(r.receivedAtMS, uint64(max(ev.ReceivedAt.UnixMilli(), 0)))
	r.nodeID = append(r.nodeID, key)
	r.addressType = append(r.addressType, addrType)
	r.address = append(r.address, addr)
	types := make([]string, len(ev.Identifiers))
	values := make([]string, len(ev.Identifiers))
	for i, id := range ev.Identifiers {
		types[i], values[i] = id.Type, id.Value
	}
	r.idTypes = append(r.idTypes, types)
	r.idValues = append(r.idValues, values)
	r.partition = append(r.partition, partition)
	r.offset = append(r.offset, offset)
	return true
}

func (r *MessageEventRows) columns() []any {
	return []any{
		r.tenant, r.messageID, r.eventID, r.state, r.channel, r.bounce, r.providerEventID,
		r.source, r.partner, r.time, r.timeMS, r.receivedAt, r.receivedAtMS, r.nodeID,
		r.addressType, r.address, r.idTypes, r.idValues,
		r.partition, r.offset,
	}
}

// Insert writes the rows into db.message_events in one INSERT.
func (r *MessageEventRows) Insert(ctx context.Context, conn driver.Conn, db string) error {
	return insertColumns(ctx, conn, db, tableMessageEvents, MessageEventColumns, r.columns())
}

// MessageStateColumns are the columns the sink writes to message_states.
var MessageStateColumns = []string{
	"tenant", "message_id", "state", "channel", "bounce",
	"recipient_types", "recipient_values",
	"sent", "sent_at", "sent_ms", "events", "refused",
	"history_states", "history_times_ms", "history_events", "history_hows", "history_bounces",
	"history_froms", "history_reasons",
	"version", "kafka_partition", "kafka_offset",
}

// MessageStateRow is one row of message_states: a message's fold.
type MessageStateRow struct {
	Tenant, MessageID, State, Channel, Bounce string
	RecipientTypes, RecipientValues           []string
	// Sent: the history has an entry of state sent that is neither
	// refused nor a duplicate (the message was sent, or a later report
	// implied it); SentAt and SentMS: the time of the first such entry
	// (the epoch and 0 when there is none).
	Sent   bool
	SentAt time.Time
	SentMS int64
	// Events is the number of distinct events of the message, Refused the
	// number of its standing refusals.
	Events, Refused uint32
	// The history, one entry per element (schemas.HistoryEntry).
	HistoryStates, HistoryEvents, HistoryHows, HistoryBounces []string
	HistoryFroms, HistoryReasons                              []string
	HistoryTimesMS                                            []int64
	Version                                                   uint64
	Partition                                                 int32
	Offset                                                    int64
}

// reached reports whether a history entry counts as a state the message
// reached: not a refusal, not a duplicate of a provider report.
func reached(how string) bool {
	return how != schemas.HowRefused && how != schemas.HowDuplicate
}

// DecodeMessageState turns a record of the lifecycle table topic into its
// row. key is the record's key (tenant/message_id), used when the value
// lacks the tenant or message id.
func DecodeMessageState(value []byte, key string, partition int32, offset int64) (*MessageStateRow, error) {
	var m schemas.MessageTable
	if err := json.Unmarshal(value, &m); err != nil {
		return nil, fmt.Errorf("message state: %w", err)
	}
	if m.Tenant == "" && m.MessageID == "" {
		m.Tenant, m.MessageID, _ = strings.Cut(key, "/")
	}
	if m.MessageID == "" {
		return nil, fmt.Errorf("message state of key %q: %w (message_id)", key, errNoID)
	}
	if m.By < 0 {
		return nil, fmt.Errorf("message state of %s: by %d", m.MessageID, m.By)
	}
	row := &MessageStateRow{
		Tenant: m.Tenant, MessageID: m.MessageID, State: string(m.State), Channel: m.Channel, Bounce: m.Bounce,
		RecipientTypes: make([]string, len(m.Recipient)), RecipientValues: make([]string, len(m.Recipient)),
		SentAt: DateTime(time.UnixMilli(0)), Events: uint32(len(m.Events)), Refused: uint32(len(m.Refused)),
		Version: uint64(m.By), Partition: partition, Offset: offset,
	}
	for i, id := range m.Recipient {
		row.RecipientTypes[i], row.RecipientValues[i] = id.Type, id.Value
	}
	n := len(m.History)
	row.HistoryStates, row.HistoryEvents, row.HistoryHows = make([]string, n), make([]string, n), make([]string, n)
	row.HistoryBounces, row.HistoryFroms, row.HistoryReasons = make([]string, n), make([]string, n), make([]string, n)
	row.HistoryTimesMS = make([]int64, n)
	for i, h := range m.History {
		row.HistoryStates[i], row.HistoryEvents[i], row.HistoryHows[i] = string(h.State), h.Event, h.How
		row.HistoryBounces[i], row.HistoryFroms[i], row.HistoryReasons[i] = h.Bounce, string(h.From), h.Reason
		row.HistoryTimesMS[i] = h.Time
		if h.State == schemas.MessageSent && reached(h.How) && (!row.Sent || h.Time < row.SentMS) {
			row.Sent, row.SentMS = true, h.Time
		}
	}
	if row.Sent {
		row.SentAt = DateTime(time.UnixMilli(row.SentMS))
	}
	return row, nil
}

// MessageStateRows holds the message states of one batch: per message
// only the row of the highest version (the table keeps no other under
// FINAL), the later record on a tie.
type MessageStateRows struct {
	rows  []*MessageStateRow
	index map[[2]string]int
}

// Len is the number of rows.
func (r *MessageStateRows) Len() int { return len(r.rows) }

// Reset empties r.
func (r *MessageStateRows) Reset() { *r = MessageStateRows{} }

// Rows returns the rows, each message once.
func (r *MessageStateRows) Rows() []*MessageStateRow { return r.rows }

// Add keeps row unless the batch holds a higher version of its message.
func (r *MessageStateRows) Add(row *MessageStateRow) {
	if r.index == nil {
		r.index = map[[2]string]int{}
	}
	k := [2]string{row.Tenant, row.MessageID}
	if i, ok := r.index[k]; ok {
		if row.Version >= r.rows[i].Version {
			r.rows[i] = row
		}
		return
	}
	r.index[k] = len(r.rows)
	r.rows = append(r.rows, row)
}

// Insert writes the rows into db.message_states in one INSERT.
func (r *MessageStateRows) Insert(ctx context.Context, conn driver.Conn, db string) error {
	return insertColumns(ctx, conn, db, tableMessageStates, MessageStateColumns, r.columns())
}

func (r *MessageStateRows) columns() []any {
	n := len(r.rows)
	tenant, id, state, channel, bounce := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	rTypes, rValues := make([][]string, n), make([][]string, n)
	sent := make([]uint8, n)
	sentAt := make([]time.Time, n)
	sentMS := make([]int64, n)
	events, refused := make([]uint32, n), make([]uint32, n)
	hStates, hEvents, hHows, hBounces, hFroms, hReasons := make([][]string, n), make([][]string, n), make([][]string, n), make([][]string, n), make([][]string, n), make([][]string, n)
	hTimes := make([][]int64, n)
	version := make([]uint64, n)
	partition := make([]int32, n)
	offset := make([]int64, n)
	for i, s := range r.rows {
		tenant[i], id[i], state[i], channel[i], bounce[i] = s.Tenant, s.MessageID, s.State, s.Channel, s.Bounce
		rTypes[i], rValues[i] = s.RecipientTypes, s.RecipientValues
		if s.Sent {
			sent[i] = 1
		}
		sentAt[i], sentMS[i], events[i], refused[i] = s.SentAt, s.SentMS, s.Events, s.Refused
		hStates[i], hEvents[i], hHows[i], hBounces[i], hFroms[i], hReasons[i] = s.HistoryStates, s.HistoryEvents, s.HistoryHows, s.HistoryBounces, s.HistoryFroms, s.HistoryReasons
		hTimes[i] = s.HistoryTimesMS
		version[i], partition[i], offset[i] = s.Version, s.Partition, s.Offset
	}
	return []any{
		tenant, id, state, channel, bounce, rTypes, rValues,
		sent, sentAt, sentMS, events, refused,
		hStates, hTimes, hEvents, hHows, hBounces, hFroms, hReasons,
		version, partition, offset,
	}
}
