package clickhouse

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go/proto"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/schemas"
)

// The columns both insert paths write are the table's columns, with the
// table's types, in the table's order (inserted_at, the last, left to its
// default); and the Native block has those types.
func TestEventColumnsMatchTable(t *testing.T) {
	conn, db := testDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := conn.Query(ctx, "SELECT name, type FROM system.columns WHERE database = ? AND table = 'events' ORDER BY position", db)
	if err != nil {
		// 18.16 has no position column; its order is the table's.
		rows, err = conn.Query(ctx, "SELECT name, type FROM system.columns WHERE database = ? AND table = 'events'", db)
		if err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			t.Fatal(err)
		}
		got = append(got, name+" "+typ)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, c := range eventColumns {
		want = append(want, c.name+" "+c.typ)
	}
	want = append(want, "inserted_at DateTime('UTC')")
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("events table columns:\n%s\nthe sink writes:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	e := newEventBlock() // panics when a ch-go column has another type
	for i, c := range e.input {
		if c.Name != eventColumns[i].name || string(c.Data.Type()) != eventColumns[i].typ {
			t.Errorf("Native column %d: %s %s, want %s %s", i, c.Name, c.Data.Type(), eventColumns[i].name, eventColumns[i].typ)
		}
	}
}

// roundTripEvents are random workload events and hand-made edge cases:
// unicode, empty strings, no identifiers or traits, times outside
// DateTime's range, a huge string and huge arrays.
func roundTripEvents() []*schemas.Event {
	evs := genWorkload(11, 3000, 0).events
	at := time.Date(2026, 12, 7, 1, 2, 3, 456e6, time.UTC)
	huge := strings.Repeat("ü€𝄞x", 400_000) // 4 MiB
	many := map[string]string{}
	for i := 0; i < 20_000; i++ {
		many[fmt.Sprintf("k%05d", i)] = fmt.Sprintf(`"v%d"`, i)
	}
	evs = append(evs,
		&schemas.Event{Tenant: "tënant", ID: "идентификатор-1", Type: "🎉.signup", Source: "ソース", Partner: "партнёр", Time: at, ReceivedAt: at,
			Identifiers: []schemas.Identifier{{Type: "email", Value: "grüße@example.com"}},
			Traits:      map[string]string{"名前": `"太郎"`, "tab\there": `"new\nline"`, "": `""`}, Properties: map[string]string{"emoji": `"😀"`}},
		&schemas.Event{Tenant: "", ID: "", Type: "", Source: "", Partner: "", Time: time.Unix(-5, 0), ReceivedAt: time.Unix(0, 0)},
		&schemas.Event{Tenant: "t", ID: "far", Type: "x", Source: "s", Time: time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC), ReceivedAt: at,
			Identifiers: []schemas.Identifier{{Type: "user_id", Value: huge}}, Traits: many, Properties: map[string]string{"big": huge}},
		&schemas.Event{Tenant: "t", ID: "empty-maps", Type: "x", Source: "s", Time: at, ReceivedAt: at,
			Identifiers: []schemas.Identifier{{Type: "a", Value: ""}, {Type: "", Value: "b"}}, Traits: map[string]string{}, Properties: nil},
	)
	return evs
}

// The rows the HTTP path writes read back equal to what clickhouse-go
// writes for the same events, compressed or not, from rows kept as slices
// or added straight into the Native columns (the sink's way), column by
// column.
func TestHTTPInsertSameRows(t *testing.T) {
	conn, db := testDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var rows EventRows
	direct := EventRows{block: newEventBlock()}
	for i, ev := range roundTripEvents() {
		rows.Add(ev, "", int32(i%4), int64(i))
		direct.Add(ev, "", int32(i%4), int64(i))
	}
	if direct.Len() != rows.Len() {
		t.Fatalf("%d rows added to the block, %d to the slices", direct.Len(), rows.Len())
	}
	if err := rows.Insert(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	if err := direct.Insert(ctx, conn, db); err == nil {
		t.Fatal("clickhouse-go inserted rows that are a Native block")
	}
	h := newHTTPInserter(ConnConfig{HTTPAddr: serverHTTPAddr(t), Username: "default", DialTimeout: 5 * time.Second, ReadTimeout: time.Minute})
	defer h.close()
	for _, v := range []struct {
		name       string
		rows       *EventRows
		compressed bool
	}{
		{"slices", &rows, false},
		{"slices_lz4", &rows, true},
		{"block", &direct, false},
		{"block_lz4", &direct, true},
	} {
		table := "events_" + v.name
		if err := conn.Exec(ctx, "CREATE TABLE "+db+"."+table+" AS "+db+".events"); err != nil {
			t.Fatal(err)
		}
		h.compress = v.compressed
		// Twice with the same inserter: the kept columns were reset.
		for i := 0; i < 2; i++ {
			if err := h.insertEvents(ctx, v.rows, db, table); err != nil {
				t.Fatal(err)
			}
		}
		sel := func(table string) []byte {
			return httpQuery(t, "SELECT "+strings.Join(EventColumns, ", ")+" FROM "+db+"."+table+" FORMAT TabSeparated")
		}
		want, got := sel("events"), sel(table)
		want = append(want, want...)
		if n := count(t, conn, "SELECT count() FROM "+db+"."+table); n != uint64(2*rows.Len()) {
			t.Fatalf("%s: %d rows, want %d", v.name, n, 2*rows.Len())
		}
		if !bytes.Equal(sortedLines(got), sortedLines(want)) {
			t.Fatalf("%s: the rows differ (%d bytes over HTTP, %d over clickhouse-go)", v.name, len(got), len(want))
		}
		if !bytes.Contains(got, []byte("идентификатор-1")) || len(got) < 8<<20 {
			t.Fatalf("%s: the edge cases are not in the table (%d bytes)", v.name, len(got))
		}
	}
	direct.Reset()
	if direct.Len() != 0 {
		t.Fatalf("%d rows after Reset", direct.Len())
	}
}

func sortedLines(b []byte) []byte {
	lines := bytes.Split(b, []byte("\n"))
	// Both copies of a row are equal, so sorting by the whole line is
	// enough to line them up.
	slices.SortFunc(lines, bytes.Compare)
	return bytes.Join(lines, []byte("\n"))
}

// httpQuery runs a SELECT over the HTTP interface and returns its output.
func httpQuery(t testing.TB, q string) []byte {
	t.Helper()
	resp, err := http.Get("http://" + serverHTTPAddr(t) + "/?" + url.Values{"query": {q}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %v %s %s", q, err, resp.Status, b)
	}
	return b
}

// An INSERT after the connection sat idle longer than the server keeps it
// (keep_alive_timeout, 3 s in 18.16) goes through on a new connection.
func TestHTTPInsertAfterIdle(t *testing.T) {
	conn, db := testDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var rows EventRows
	for i, ev := range genWorkload(14, 10, 0).events {
		rows.Add(ev, "", 0, int64(i))
	}
	h := newHTTPInserter(ConnConfig{HTTPAddr: serverHTTPAddr(t), Username: "default", DialTimeout: 5 * time.Second, ReadTimeout: time.Minute})
	defer h.close()
	for i := 0; i < 2; i++ {
		if i > 0 {
			time.Sleep(3500 * time.Millisecond)
		}
		if err := h.insertEvents(ctx, &rows, db, tableEvents); err != nil {
			t.Fatalf("insert %d: %v", i+1, err)
		}
	}
	if n := count(t, conn, "SELECT count() FROM "+db+".events"); n != uint64(2*rows.Len()) {
		t.Errorf("events holds %d rows, want %d", n, 2*rows.Len())
	}
}

// An INSERT the server refuses is an error with the server's exception.
func TestHTTPInsertErrors(t *testing.T) {
	conn, db := testDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var rows EventRows
	for i, ev := range genWorkload(12, 10, 0).events {
		rows.Add(ev, "", 0, int64(i))
	}
	if err := conn.Exec(ctx, "CREATE TABLE "+db+".narrow (tenant String, event_id String) ENGINE = Memory"); err != nil {
		t.Fatal(err)
	}
	h := newHTTPInserter(ConnConfig{HTTPAddr: serverHTTPAddr(t), Username: "default", DialTimeout: 5 * time.Second, ReadTimeout: time.Minute})
	defer h.close()
	for _, c := range []struct {
		table string
		want  []string
	}{
		{"no_such_table", []string{"insert " + db + ".no_such_table over HTTP: HTTP 404", "Code: 60", "no_such_table"}},
		{"narrow", []string{"insert " + db + ".narrow over HTTP: HTTP ", "Code: 16", "type"}},
	} {
		err := h.insertEvents(ctx, &rows, db, c.table)
		if err == nil {
			t.Fatalf("insert into %s: no error", c.table)
		}
		t.Logf("insert into %s: %v", c.table, err)
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("insert into %s: %v; want it to say %q", c.table, err, w)
			}
		}
	}
	if n := count(t, conn, "SELECT count() FROM "+db+".narrow"); n != 0 {
		t.Errorf("narrow holds %d rows after a refused insert", n)
	}
	bad := newHTTPInserter(ConnConfig{HTTPAddr: serverHTTPAddr(t), Username: "nobody", DialTimeout: 5 * time.Second, ReadTimeout: time.Minute})
	defer bad.close()
	if err := bad.ping(ctx); err == nil || !strings.Contains(err.Error(), "nobody") {
		t.Errorf("ping as an unknown user: %v, want an error naming the user", err)
	}
}

// While the events table refuses the HTTP INSERT (a column missing), the
// sink retries the batch and commits nothing; once the table is right, it
// writes every event once and commits.
func TestSinkHTTPInsertRetries(t *testing.T) {
	conn, db := testDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := conn.Exec(ctx, "ALTER TABLE "+db+".events DROP COLUMN node_id"); err != nil {
		t.Fatal(err)
	}
	cluster := newCluster(t, 4)
	brokers := cluster.ListenAddrs()
	w := genWorkload(13, 1500, 0)
	p := newProducer(t, brokers)
	p.events(t, w.events)
	cfg := testSinkConfig(t, brokers, db)
	cfg.RetryBackoff, cfg.MaxRetryBackoff = 20*time.Millisecond, 50*time.Millisecond
	cfg.SkipMigrate = true
	s, stop := runSink(t, cfg)
	waitFor(t, 30*time.Second, "the sink to retry", func() bool { return testutil.ToFloat64(s.Metrics().Retries) >= 3 })

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	committed, err := kadm.NewClient(cl).FetchOffsets(ctx, Group)
	if err != nil {
		t.Fatal(err)
	}
	committed.Each(func(o kadm.OffsetResponse) {
		if o.Topic == schemas.TopicEvents && o.At > 0 {
			t.Errorf("committed %s/%d at %d while the insert fails", o.Topic, o.Partition, o.At)
		}
	})
	if n := count(t, conn, "SELECT count() FROM "+db+".events"); n != 0 {
		t.Errorf("events holds %d rows while the insert fails", n)
	}

	if err := conn.Exec(ctx, "ALTER TABLE "+db+".events ADD COLUMN node_id String AFTER received_at_ms"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "every event written and committed", func() bool { return caughtUp(t, brokers, cfg.Group) })
	stop()
	if n := count(t, conn, "SELECT count() FROM "+db+".events"); n != uint64(len(w.events)) {
		t.Errorf("events holds %d raw rows, want %d (one per record)", n, len(w.events))
	}
	checkEvents(t, conn, db, w.events, p.eventsAt)
}

// An answer of 200 is not always a written INSERT: ClickHouse sends an
// exception after the status line once it sent headers (progress headers,
// send_progress_in_http_headers in the user's profile), and 24.x+ answers
// a receive timeout while reading the body with 200, an
// X-ClickHouse-Exception-Code header and no body (ClickHouse issue
// #65117). 18.16, the test server, sends neither for an INSERT, so a
// local server plays those answers; each must be an error, or the sink
// commits a batch that is not in the table.
func TestHTTPInsert200WithException(t *testing.T) {
	var rows EventRows
	for i, ev := range genWorkload(15, 10, 0).events {
		rows.Add(ev, "", 0, int64(i))
	}
	for _, c := range []struct {
		name   string
		header string // X-ClickHouse-Exception-Code
		body   string
		ok     bool
	}{
		{"success", "", "", true},
		{"success_code_0", "0", "", true},
		{"timeout_header", "209", "", false},
		{"exception_in_body", "", "Code: 395. DB::Exception: Value passed to 'throwIf' function is non-zero. (FUNCTION_THROW_IF_VALUE_IS_NON_ZERO) (version 25.8.1.1)\n", false},
		{"exception_marker", "", "__exception__\nCode: 209. DB::NetException: Timeout exceeded while reading from socket\n", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				if c.header != "" {
					w.Header().Set("X-ClickHouse-Exception-Code", c.header)
				}
				w.WriteHeader(http.StatusOK)
				_, _ = io.WriteString(w, c.body)
			}))
			defer srv.Close()
			h := newHTTPInserter(ConnConfig{HTTPAddr: strings.TrimPrefix(srv.URL, "http://"), Username: "default", DialTimeout: 5 * time.Second, ReadTimeout: time.Minute})
			defer h.close()
			err := h.insertEvents(context.Background(), &rows, "db", tableEvents)
			if c.ok && err != nil {
				t.Fatalf("200 %q %q: %v", c.header, c.body, err)
			}
			if !c.ok {
				if err == nil {
					t.Fatalf("200 with X-ClickHouse-Exception-Code %q and body %q: no error", c.header, c.body)
				}
				t.Log(err)
			}
		})
	}
}

// The Native columns are kept from batch to batch, but a batch with one
// huge event (16 MiB) must not pin its buffers for the life of the sink:
// after a batch of ordinary events the block holds about what they need.
func TestEventBlockShrinksAfterHugeBatch(t *testing.T) {
	at := time.Date(2026, 12, 7, 1, 2, 3, 0, time.UTC)
	huge := strings.Repeat("x", 16<<20)
	small := genWorkload(16, 200, 0).events
	rows := EventRows{block: newEventBlock()}
	h := &httpInserter{block: rows.block}
	batch := func(evs []*schemas.Event) {
		for i, ev := range evs {
			rows.Add(ev, "", 0, int64(i))
		}
		if _, err := rows.block.encodeRows(); err != nil {
			t.Fatal(err)
		}
		rows.Reset() // as the sink does after the flush
	}
	batch(append(small[:100:100], &schemas.Event{Tenant: "t", ID: "huge", Type: "x", Source: "s", Time: at, ReceivedAt: at,
		Identifiers: []schemas.Identifier{{Type: "user_id", Value: "u"}}, Properties: map[string]string{"blob": huge}}))
	if got := h.block.retained(); got < 16<<20 {
		t.Fatalf("the block holds %d bytes right after the huge batch: the test does not measure what it should", got)
	}
	batch(small[100:])
	batch(small[:100])
	if got := h.block.retained(); got > 2<<20 {
		t.Errorf("after two batches of 100 ordinary events the block still holds %d bytes (the huge event's buffers)", got)
	}
}

// retained is the capacity, in bytes, of the block's string buffers and
// its encoding.
func (e *eventBlock) retained() int {
	n := cap(e.buf.Buf)
	for _, c := range []*proto.ColStr{&e.tenant, &e.eventID, &e.typ, &e.source, &e.partner, &e.nodeID,
		e.idTypeStrs, e.idValueStrs, e.traitKeyStrs, e.traitValueStrs, e.propKeyStrs, e.propValueStrs} {
		n += cap(c.Buf) + 16*cap(c.Pos)
	}
	return n
}

// The sink adds an events record to the Native block from its bytes
// (schemas.DecodeEventView, addView); the block must be byte for byte the
// one add makes from the decoded Event, for every edge case of
// roundTripEvents, zero times, and a message event.
func TestAddViewMatchesAdd(t *testing.T) {
	evs := append(roundTripEvents(),
		&schemas.Event{Tenant: "t", ID: "zero-times", Type: "x", Source: "s", Identifiers: []schemas.Identifier{{Type: "email", Value: "a@b.c"}}},
		&schemas.Event{Tenant: "t", ID: "msg", Type: schemas.EventMessagePrefix + "delivered", Source: "s", Topic: "news",
			Time: time.Unix(1_800_000_000, 0), Identifiers: []schemas.Identifier{{Type: "email", Value: "a@b.c"}},
			Properties: map[string]string{schemas.PropMessageID: `"m1"`, "z": `"1"`, "a": `"2"`}})
	byEvent, byView := newEventBlock(), newEventBlock()
	var v schemas.EventView
	for i, ev := range evs {
		data, err := schemas.EncodeEvent(ev)
		if err != nil {
			t.Fatal(err)
		}
		dec, err := schemas.DecodeEvent(data)
		if err != nil {
			t.Fatal(err)
		}
		key := ev.Key()
		byEvent.add(dec, key, int32(i%3), int64(i))
		if err := schemas.DecodeEventView(data, &v); err != nil {
			t.Fatal(err)
		}
		byView.addView(&v, []byte(key), int32(i%3), int64(i))
	}
	want, err := byEvent.encodeRows()
	if err != nil {
		t.Fatal(err)
	}
	got, err := byView.encodeRows()
	if err != nil {
		t.Fatal(err)
	}
	if byView.rows() != len(evs) || !bytes.Equal(got, want) {
		t.Fatalf("addView made %d rows, %d bytes; add made %d rows, %d bytes (first difference at byte %d)",
			byView.rows(), len(got), byEvent.rows(), len(want), firstByteDiff(got, want))
	}
}

// firstByteDiff is the index of the first byte where a and b differ.
func firstByteDiff(a, b []byte) int {
	i := 0
	for i < min(len(a), len(b)) && a[i] == b[i] {
		i++
	}
	return i
}

// The sink's events view (Sink.add over HTTP) keeps nothing of a record
// once its row is added: no slice of its bytes (a franz-go record's bytes
// are a slice of its fetch response), not even past the length of the
// view's slices.
func TestSinkAddKeepsNoView(t *testing.T) {
	s := &Sink{}
	b := &batch{}
	b.events.block = newEventBlock()
	b.reset()
	evs := []*schemas.Event{
		{Tenant: "t", ID: "many", Type: "x", Source: "s", Identifiers: []schemas.Identifier{{Type: "email", Value: "a@b.c"}, {Type: "phone", Value: "+1"}},
			Traits: map[string]string{"a": `"1"`, "b": `"2"`, "c": `"3"`}, Properties: map[string]string{"a": `"1"`, "b": `"2"`}},
		{Tenant: "t", ID: "msg", Type: schemas.EventMessagePrefix + "delivered", Source: "s", Time: time.Unix(1_800_000_000, 0),
			Identifiers: []schemas.Identifier{{Type: "email", Value: "a@b.c"}}, Properties: map[string]string{schemas.PropMessageID: `"m1"`}},
	}
	for i, ev := range evs {
		data, err := schemas.EncodeEvent(ev)
		if err != nil {
			t.Fatal(err)
		}
		s.add(b, &kgo.Record{Topic: schemas.TopicEvents, Key: []byte(ev.Key()), Value: data, Offset: int64(i)})
		v := &s.view
		if v.Tenant != nil || v.ID != nil || v.Type != nil || v.Source != nil || v.Partner != nil || v.Topic != nil ||
			len(v.Identifiers) != 0 || len(v.Traits) != 0 || len(v.Properties) != 0 {
			t.Fatalf("after %s the sink's view holds %+v", ev.ID, *v)
		}
		for _, id := range v.Identifiers[:cap(v.Identifiers)] {
			if id.Type != nil || id.Value != nil {
				t.Fatalf("after %s the sink's view keeps identifier %q", ev.ID, id)
			}
		}
		for _, es := range [][]schemas.EntryView{v.Traits, v.Properties} {
			for _, e := range es[:cap(es)] {
				if e.Key != nil || e.Value != nil {
					t.Fatalf("after %s the sink's view keeps entry %q", ev.ID, e)
				}
			}
		}
	}
	if b.events.Len() != 2 || b.msgEvents.Len() != 1 {
		t.Fatalf("%d event rows, %d message event rows; want 2, 1", b.events.Len(), b.msgEvents.Len())
	}
}
