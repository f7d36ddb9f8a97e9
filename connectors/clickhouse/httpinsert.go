package clickhouse

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/ch-go/compress"
	"github.com/ClickHouse/ch-go/proto"

	"github.com/rolodex/rolodex/schemas"
)

// The events INSERT over ClickHouse's HTTP interface (ConnConfig.HTTPAddr).
//
// clickhouse-go's batch costs about 2 µs per event row (it boxes every
// string of an Array(String) into an interface and grows its columns anew
// for every INSERT); ch-go's typed columns cost a fraction of that, but
// ch-go's own TCP client does not talk to ClickHouse 18.16. ClickHouse's
// HTTP interface takes the same Native format in the body of
//
//	POST /?query=INSERT INTO db.events (cols) FORMAT Native
//
// so the sink encodes one Native block with ch-go's proto package
// (Block.EncodeRawBlock at protocol version 0: no block info, no custom
// serialization, what every server version reads) and posts it. The
// columns are kept between batches and Reset, not reallocated.
//
// ClickHouse answers an INSERT only after it wrote the rows: 200 with an
// empty body on success, otherwise an error status (400, 404, 500, ...)
// with the exception text as the body. The request is one block, so the
// rows land as one part, as with the native INSERT.

// eventBlock holds the events columns in ch-go's Native encoding, reused
// from batch to batch.
type eventBlock struct {
	tenant, eventID, typ, source, partner proto.ColStr
	time                                  proto.ColDateTime
	timeMS                                proto.ColInt64
	receivedAt                            proto.ColDateTime
	receivedAtMS                          proto.ColUInt64
	nodeID                                proto.ColStr
	idTypes, idValues                     *proto.ColArr[string]
	traitKeys, traitValues                *proto.ColArr[string]
	propKeys, propValues                  *proto.ColArr[string]
	partition                             proto.ColInt32
	offset                                proto.ColInt64
	input                                 proto.Input
	cols                                  []proto.Column
	buf                                   proto.Buffer
	// The string columns inside the arrays, and the keys of one map
	// being sorted (add).
	idTypeStrs, idValueStrs, traitKeyStrs, traitValueStrs, propKeyStrs, propValueStrs *proto.ColStr
	keys                                                                              []string
}

func newEventBlock() *eventBlock {
	e := &eventBlock{}
	e.time.Location, e.receivedAt.Location = time.UTC, time.UTC
	arr := func(strs **proto.ColStr) *proto.ColArr[string] {
		*strs = new(proto.ColStr)
		return proto.NewArray[string](*strs)
	}
	e.idTypes, e.idValues = arr(&e.idTypeStrs), arr(&e.idValueStrs)
	e.traitKeys, e.traitValues = arr(&e.traitKeyStrs), arr(&e.traitValueStrs)
	e.propKeys, e.propValues = arr(&e.propKeyStrs), arr(&e.propValueStrs)
	e.cols = []proto.Column{
		&e.tenant, &e.eventID, &e.typ, &e.source, &e.partner,
		&e.time, &e.timeMS, &e.receivedAt, &e.receivedAtMS, &e.nodeID,
		e.idTypes, e.idValues, e.traitKeys, e.traitValues, e.propKeys, e.propValues,
		&e.partition, &e.offset,
	}
	if len(e.cols) != len(eventColumns) {
		panic("clickhouse: eventBlock and eventColumns disagree")
	}
	for i, c := range e.cols {
		if string(c.Type()) != eventColumns[i].typ {
			panic(fmt.Sprintf("clickhouse: eventBlock column %s is %s, eventColumns says %s", eventColumns[i].name, c.Type(), eventColumns[i].typ))
		}
		e.input = append(e.input, proto.InputColumn{Name: eventColumns[i].name, Data: c})
	}
	return e
}

// reset empties the block, keeping the columns' capacity, except for a
// string buffer or the encoding much larger than the rows just held
// needed (a batch with a huge event before them): that one is let go, so
// that one huge batch does not stay in memory for the life of the sink.
func (e *eventBlock) reset() {
	for _, c := range []*proto.ColStr{&e.tenant, &e.eventID, &e.typ, &e.source, &e.partner, &e.nodeID,
		e.idTypeStrs, e.idValueStrs, e.traitKeyStrs, e.traitValueStrs, e.propKeyStrs, e.propValueStrs} {
		c.Buf = shrunk(c.Buf, 1)
		c.Pos = shrunk(c.Pos, 16) // proto.Position: two ints
	}
	e.buf.Buf = shrunk(e.buf.Buf, 1)
	for _, c := range e.cols {
		c.Reset()
	}
}

// keepBytes is the capacity a reused buffer keeps whatever it held.
const keepBytes = 1 << 20

// shrunk returns s (of elements of size bytes), or nil when its capacity
// is above keepBytes and more than four times its length (what the last
// batch used).
func shrunk[T any](s []T, size int) []T {
	if cap(s)*size > keepBytes && cap(s) > 4*len(s) {
		return nil
	}
	return s
}

// rows is the number of rows.
func (e *eventBlock) rows() int { return e.eventID.Rows() }

// add appends one event, as EventRows.Add does (key not empty): every
// string is copied once, into its column, and nothing of ev is kept.
func (e *eventBlock) add(ev *schemas.Event, key string, partition int32, offset int64) {
	e.tenant.Append(ev.Tenant)
	e.eventID.Append(ev.ID)
	e.typ.Append(ev.Type)
	e.source.Append(ev.Source)
	e.partner.Append(ev.Partner)
	e.time.Data = append(e.time.Data, proto.ToDateTime(DateTime(ev.Time)))
	e.timeMS = append(e.timeMS, ev.Time.UnixMilli())
	e.receivedAt.Data = append(e.receivedAt.Data, proto.ToDateTime(DateTime(ev.ReceivedAt)))
	e.receivedAtMS = append(e.receivedAtMS, uint64(max(ev.ReceivedAt.UnixMilli(), 0)))
	e.nodeID.Append(key)
	for _, id := range ev.Identifiers {
		e.idTypeStrs.Append(id.Type)
		e.idValueStrs.Append(id.Value)
	}
	e.idTypes.Offsets = append(e.idTypes.Offsets, uint64(e.idTypeStrs.Rows()))
	e.idValues.Offsets = append(e.idValues.Offsets, uint64(e.idValueStrs.Rows()))
	e.addMap(ev.Traits, e.traitKeys, e.traitValues, e.traitKeyStrs, e.traitValueStrs)
	e.addMap(ev.Properties, e.propKeys, e.propValues, e.propKeyStrs, e.propValueStrs)
	e.partition = append(e.partition, partition)
	e.offset = append(e.offset, offset)
}

// addView appends one event decoded by schemas.DecodeEventView, as add
// appends the same event decoded by schemas.DecodeEvent (key not empty):
// no Event, no string or map per field on the way, each field copied once,
// from the record's bytes into its column. TestAddViewMatchesAdd holds the
// two to the same Native bytes.
func (e *eventBlock) addView(v *schemas.EventView, key []byte, partition int32, offset int64) {
	e.tenant.AppendBytes(v.Tenant)
	e.eventID.AppendBytes(v.ID)
	e.typ.AppendBytes(v.Type)
	e.source.AppendBytes(v.Source)
	e.partner.AppendBytes(v.Partner)
	e.time.Data = append(e.time.Data, proto.ToDateTime(DateTime(v.Time)))
	e.timeMS = append(e.timeMS, v.Time.UnixMilli())
	e.receivedAt.Data = append(e.receivedAt.Data, proto.ToDateTime(DateTime(v.ReceivedAt)))
	e.receivedAtMS = append(e.receivedAtMS, uint64(max(v.ReceivedAt.UnixMilli(), 0)))
	e.nodeID.AppendBytes(key)
	for _, id := range v.Identifiers {
		e.idTypeStrs.AppendBytes(id.Type)
		e.idValueStrs.AppendBytes(id.Value)
	}
	e.idTypes.Offsets = append(e.idTypes.Offsets, uint64(e.idTypeStrs.Rows()))
	e.idValues.Offsets = append(e.idValues.Offsets, uint64(e.idValueStrs.Rows()))
	addEntries(v.Traits, e.traitKeys, e.traitValues, e.traitKeyStrs, e.traitValueStrs)
	addEntries(v.Properties, e.propKeys, e.propValues, e.propKeyStrs, e.propValueStrs)
	e.partition = append(e.partition, partition)
	e.offset = append(e.offset, offset)
}

// addEntries appends a map's entries, already in key order, as one row of
// the two array columns.
func addEntries(es []schemas.EntryView, keys, values *proto.ColArr[string], keyStrs, valueStrs *proto.ColStr) {
	for _, en := range es {
		keyStrs.AppendBytes(en.Key)
		valueStrs.AppendBytes(en.Value)
	}
	keys.Offsets = append(keys.Offsets, uint64(keyStrs.Rows()))
	values.Offsets = append(values.Offsets, uint64(valueStrs.Rows()))
}

// addMap appends m's keys in order and their values as one row of the two
// array columns.
func (e *eventBlock) addMap(m map[string]string, keys, values *proto.ColArr[string], keyStrs, valueStrs *proto.ColStr) {
	e.keys = e.keys[:0]
	for k := range m {
		e.keys = append(e.keys, k)
	}
	slices.Sort(e.keys)
	for _, k := range e.keys {
		keyStrs.Append(k)
		valueStrs.Append(m[k])
	}
	keys.Offsets = append(keys.Offsets, uint64(keyStrs.Rows()))
	values.Offsets = append(values.Offsets, uint64(valueStrs.Rows()))
}

// encodeRows returns the Native encoding of the block's rows (valid until
// the next encode).
func (e *eventBlock) encodeRows() ([]byte, error) {
	e.buf.Reset()
	if err := (proto.Block{Columns: len(e.input), Rows: e.rows()}).EncodeRawBlock(&e.buf, 0, e.input); err != nil {
		return nil, err
	}
	return e.buf.Buf, nil
}

// encode replaces the block's rows by r's (EventRows holding its rows as
// slices) and returns the Native encoding (valid until the next encode).
func (e *eventBlock) encode(r *EventRows) ([]byte, error) {
	e.reset()
	e.tenant.AppendArr(r.tenant)
	e.eventID.AppendArr(r.eventID)
	e.typ.AppendArr(r.typ)
	e.source.AppendArr(r.source)
	e.partner.AppendArr(r.partner)
	for _, t := range r.time {
		e.time.Data = append(e.time.Data, proto.ToDateTime(t))
	}
	e.timeMS = append(e.timeMS, r.timeMS...)
	for _, t := range r.receivedAt {
		e.receivedAt.Data = append(e.receivedAt.Data, proto.ToDateTime(t))
	}
	e.receivedAtMS = append(e.receivedAtMS, r.receivedAtMS...)
	e.nodeID.AppendArr(r.nodeID)
	e.idTypes.AppendArr(r.idTypes)
	e.idValues.AppendArr(r.idValues)
	e.traitKeys.AppendArr(r.traitKeys)
	e.traitValues.AppendArr(r.traitValues)
	e.propKeys.AppendArr(r.propKeys)
	e.propValues.AppendArr(r.propValues)
	e.partition = append(e.partition, r.partition...)
	e.offset = append(e.offset, r.offset...)
	return e.encodeRows()
}

// httpInserter posts the events INSERT to ClickHouse's HTTP interface.
type httpInserter struct {
	addr, user, password string
	client               *http.Client
	block                *eventBlock
	// compress, when set, sends the body in ClickHouse's compressed
	// block format (LZ4, decompress=1). Off by default: on loopback it
	// costs more CPU than it saves (docs/benchmarks.md).
	compress bool
	zw       *compress.Writer
	zbuf     []byte
}

// compressChunk is the most uncompressed bytes per compressed block.
const compressChunk = 1 << 20

func newHTTPInserter(cfg ConnConfig) *httpInserter {
	return &httpInserter{
		addr: cfg.HTTPAddr, user: cfg.Username, password: cfg.Password,
		client: &http.Client{Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 2,
			// Below the server's keep_alive_timeout (3 s by default in
			// 18.16): a POST is not retried on a connection the server
			// closed while idle, so close it here first.
			IdleConnTimeout: 2 * time.Second,
			// ClickHouse answers an INSERT only when the rows are
			// written, so the answer takes as long as the insert: bounded
			// like any read by ReadTimeout (and by the caller's context).
			ResponseHeaderTimeout: cfg.ReadTimeout,
		}},
		block: newEventBlock(),
	}
}

func (h *httpInserter) url(query string, compressed bool) string {
	v := url.Values{"query": {query}}
	if compressed {
		v.Set("decompress", "1")
	}
	return "http://" + h.addr + "/?" + v.Encode()
}

// insertEvents writes r into db.table (the events table, or one of its
// shape) in one INSERT.
func (h *httpInserter) insertEvents(ctx context.Context, r *EventRows, db, table string) error {
	var body []byte
	var err error
	if r.block != nil {
		body, err = r.block.encodeRows() // Add wrote the columns
	} else {
		body, err = h.block.encode(r)
	}
	if err != nil {
		return fmt.Errorf("clickhouse: insert %s.%s: encode: %w", db, table, err)
	}
	if h.compress {
		if h.zw == nil {
			h.zw = compress.NewWriter(compress.LevelZero, compress.LZ4)
		}
		h.zbuf = h.zbuf[:0]
		for lo := 0; lo < len(body); lo += compressChunk {
			if err := h.zw.Compress(body[lo:min(lo+compressChunk, len(body))]); err != nil {
				return fmt.Errorf("clickhouse: insert %s.%s: compress: %w", db, table, err)
			}
			h.zbuf = append(h.zbuf, h.zw.Data...)
		}
		body = h.zbuf
	}
	query := insertQuery(db, table, EventColumns) + " FORMAT Native"
	err = h.post(ctx, h.url(query, h.compress), body)
	h.zbuf = shrunk(h.zbuf, 1)
	if err != nil {
		return fmt.Errorf("clickhouse: insert %s.%s over HTTP: %w", db, table, err)
	}
	return nil
}

// post sends body and turns an answer other than 200 into an error with
// the server's exception text.
func (h *httpInserter) post(ctx context.Context, u string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	req.SetBasicAuth(h.user, h.password)
	resp, err := h.client.Do(req)
	if err != nil {
		return err
	}
	return answer(resp)
}

// answer reads and closes resp (so that the connection is reused) and
// returns an error unless it is 200 OK without an exception. A 200 can
// carry one: ClickHouse writes an exception after the status line when it
// had sent headers already (progress headers, send_progress_in_http_headers
// in the user's profile), and 24.x+ answers a receive timeout while
// reading an INSERT's body with 200, X-ClickHouse-Exception-Code and no
// body (ClickHouse issue #65117). An INSERT that succeeded has an empty
// body, and SELECT 1 (ping) has "1".
func answer(resp *http.Response) error {
	defer resp.Body.Close()
	msg, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode == http.StatusOK {
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
		}
		code := resp.Header.Get("X-ClickHouse-Exception-Code")
		if code == "" {
			code = resp.Trailer.Get("X-ClickHouse-Exception-Code") // set once the body is read
		}
		if (code != "" && code != "0") || isException(msg) {
			return fmt.Errorf("HTTP %s with exception code %q: %s", resp.Status, code, orNoMessage(msg))
		}
		return err
	}
	return fmt.Errorf("HTTP %s: %s", resp.Status, orNoMessage(msg))
}

// isException tells whether body holds a ClickHouse exception
// ("Code: 395. DB::Exception: ...", after "__exception__" in 24.x+).
func isException(body []byte) bool {
	return bytes.Contains(body, []byte("__exception__")) || bytes.Contains(body, []byte("DB::Exception")) ||
		bytes.Contains(body, []byte("DB::NetException")) || bytes.HasPrefix(bytes.TrimSpace(body), []byte("Code: "))
}

func orNoMessage(msg []byte) string {
	if text := strings.TrimSpace(string(msg)); text != "" {
		return text
	}
	return "(no message)"
}

// ping checks that the HTTP interface answers and accepts the user
// (SELECT 1: /ping does not authenticate).
func (h *httpInserter) ping(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url("SELECT 1", false), nil)
	if err != nil {
		return err
	}
	req.SetBasicAuth(h.user, h.password)
	resp, err := h.client.Do(req)
	if err != nil {
		return fmt.Errorf("clickhouse: HTTP %s: %w", h.addr, err)
	}
	if err := answer(resp); err != nil {
		return fmt.Errorf("clickhouse: HTTP %s: %w", h.addr, err)
	}
	return nil
}

func (h *httpInserter) close() { h.client.CloseIdleConnections() }
