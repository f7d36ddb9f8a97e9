package csvin

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/rolodex/rolodex/intake"
	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/normalize"
	"github.com/rolodex/rolodex/partners"
	"github.com/rolodex/rolodex/schemas"
)

// The partner's name and tenant differ, so that a test can tell them apart.
const (
	testPartner = "demo"
	testTenant  = "acme"
)

func startKafka(t *testing.T) (*kfake.Cluster, []string) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, schemas.TopicEvents, schemas.TopicDeadLetter))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, c.ListenAddrs()
}

func testPartnerOf(t *testing.T) *partners.Partner {
	t.Helper()
	reg, err := partners.New([]partners.Partner{{Name: testPartner, Tenant: testTenant, Keys: []string{"demo-key-0001"}}})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := reg.ByName(testPartner)
	return p
}

// runImport imports cfg.File over TCP into the brokers with a fresh
// producer, as the CLI does.
func runImport(t *testing.T, brokers []string, cfg Config) (*Result, error) {
	t.Helper()
	cl, err := kafkaclient.NewClient(kafkaclient.Config{Brokers: brokers, ClientID: "csvin-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	norm, err := normalize.New(normalize.Config{DefaultRegion: "BR"})
	if err != nil {
		t.Fatal(err)
	}
	im, err := New(cfg, testPartnerOf(t), intake.NewValidator(norm), cl, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return im.Run(ctx)
}

// endOffsets sums the end offsets of each topic: the number of records in
// it (nothing here is transactional).
func endOffsets(t *testing.T, brokers []string) map[string]int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	offs, err := kadm.NewClient(cl).ListEndOffsets(ctx, schemas.TopicEvents, schemas.TopicDeadLetter)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	offs.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			t.Fatalf("end offset %s/%d: %v", o.Topic, o.Partition, o.Err)
		}
		out[o.Topic] += o.Offset
	})
	return out
}

// consumeAll reads every record of both topics from the start.
func consumeAll(t *testing.T, brokers []string) (events []*schemas.Event, dls []*schemas.DeadLetter) {
	t.Helper()
	want := endOffsets(t, brokers)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...),
		kgo.ConsumeTopics(schemas.TopicEvents, schemas.TopicDeadLetter),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for int64(len(events)) < want[schemas.TopicEvents] || int64(len(dls)) < want[schemas.TopicDeadLetter] {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d events and %d dead letters, want %v", len(events), len(dls), want)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			switch r.Topic {
			case schemas.TopicEvents:
				ev, err := schemas.DecodeEvent(r.Value)
				if err != nil {
					t.Fatalf("event at %d/%d: %v", r.Partition, r.Offset, err)
				}
				if string(r.Key) != ev.Key() {
					t.Fatalf("event %s keyed %q, want %q", ev.ID, r.Key, ev.Key())
				}
				events = append(events, ev)
			case schemas.TopicDeadLetter:
				dl, err := schemas.DecodeDeadLetter(r.Value)
				if err != nil {
					t.Fatalf("dead letter at %d/%d: %v", r.Partition, r.Offset, err)
				}
				dls = append(dls, dl)
			}
		})
	}
	return events, dls
}

// wantRow is what a generated row must become.
type wantRow struct {
	ids    []schemas.Identifier // accepted rows: the normalised identifiers
	reason string               // rejected rows: the reason
	fields []string             // the cells, for the rejects file (nil: left empty)
	line   string               // the row as written, for the dead letter
}

const testMapping = "email=Email,phone=Phone,traits.name=Name,properties.city=City"

// writeContacts writes a CSV of n rows to dir and returns its path and what
// each row (1-based) must become. Some rows are bad on purpose.
func writeContacts(t *testing.T, dir string, n int) (string, map[int]wantRow) {
	t.Helper()
	path := filepath.Join(dir, "contacts.csv")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	w.WriteString("\ufeffEmail,Phone,Name,City,Note\r\n") // Excel's BOM and line ends
	want := make(map[int]wantRow, n)
	for i := 1; i <= n; i++ {
		sub := 20000000 + i*37 // a valid mobile, never a placeholder
		email := fmt.Sprintf(" User%d@Example.COM ", i)
		phone := fmt.Sprintf("(11) 9%04d-%04d", sub/10000, sub%10000)
		name := fmt.Sprintf("Name %d", i)
		wEmail := schemas.Identifier{Type: schemas.IDEmail, Value: fmt.Sprintf("user%d@example.com", i)}
		wPhone := schemas.Identifier{Type: schemas.IDPhone, Value: fmt.Sprintf("+55119%08d", sub)}
		var line string
		wr := wantRow{ids: []schemas.Identifier{wEmail, wPhone}}
		if i%5 != 0 { // phone parsing is slow under -race: one row in five has one
			phone = ""
			wr.ids = wr.ids[:1]
		}
		switch {
		case i%1000 == 7: // blocked email, no phone
			email, phone = "test@test.com", ""
			wr = wantRow{reason: intake.ReasonNoValidIdentifier}
		case i%1000 == 13: // no identifier at all
			email, phone = "", " "
			wr = wantRow{reason: intake.ReasonNoIdentifiers}
		case i%1000 == 21: // one field too many
			line = fmt.Sprintf("%s,%s,%s,Rio,note,extra", email, phone, name)
			wr = wantRow{reason: ReasonInvalidCSV}
		case i%2500 == 99: // a bare quote
			line = fmt.Sprintf(`%s,%s,%s,Rio,say "hi"`, email, phone, name)
			wr = wantRow{reason: ReasonInvalidCSV}
		case i%1000 == 500: // a bad email is dropped, the phone carries the row
			email = "not-an-email"
			wr.ids = []schemas.Identifier{wPhone}
		case i%1000 == 600: // quoted cells: a comma, quotes, a line break
			name = fmt.Sprintf(`Ana "the" best, %d`, i)
			line = fmt.Sprintf(`%s,%s,"Ana ""the"" best, %d",Rio,"two`+"\r\n"+`lines"`, email, phone, i)
		}
		if line == "" {
			line = fmt.Sprintf("%s,%s,%s,Rio,note %d", email, phone, name, i)
		}
		if wr.reason == "" || wr.reason == intake.ReasonNoValidIdentifier || wr.reason == intake.ReasonNoIdentifiers {
			wr.fields = []string{email, phone, name, "Rio", fmt.Sprintf("note %d", i)}
		}
		if wr.reason == "" {
			wr.fields = []string{name} // accepted rows are found by name
		}
		wr.line = line
		want[i] = wr
		w.WriteString(line + "\r\n")
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path, want
}

func TestImportKafka(t *testing.T) {
	_, brokers := startKafka(t)
	const n = 20000
	path, want := writeContacts(t, t.TempDir(), n)
	byName := map[string]int{}
	var wantAccepted, wantRejected int64
	var badRows []int
	for i := 1; i <= n; i++ {
		if want[i].reason == "" {
			wantAccepted++
			byName[want[i].fields[0]] = i
		} else {
			wantRejected++
			badRows = append(badRows, i)
		}
	}
	if wantRejected < 60 {
		t.Fatalf("generator made only %d bad rows", wantRejected)
	}
	m, err := ParseMapping(testMapping)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{File: path, Mapping: m, MaxInFlight: 1000}

	start := time.Now()
	res, err := runImport(t, brokers, cfg)
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	t.Logf("imported %d rows in %s (%.0f rows/s)", res.Rows, res.Elapsed, res.RowsPerSecond())

	t.Run("result", func(t *testing.T) {
		got := [...]int64{res.Rows, res.Accepted, res.Rejected, res.DeadLetters, res.NotAcknowledged, res.Dropped}
		wantR := [...]int64{n, wantAccepted, wantRejected, wantRejected, 0, int64(n / 1000)}
		if got != wantR {
			t.Fatalf("rows, accepted, rejected, dead letters, not acked, dropped = %v, want %v", got, wantR)
		}
		if st, _ := os.Stat(path); res.Bytes != st.Size() {
			t.Fatalf("read %d bytes, the file has %d", res.Bytes, st.Size())
		}
		if res.Rejects != path+RejectsSuffix {
			t.Fatalf("rejects file %q", res.Rejects)
		}
	})

	events, dls := consumeAll(t, brokers)
	ids := map[string]bool{}
	t.Run("events", func(t *testing.T) {
		if int64(len(events)) != wantAccepted {
			t.Fatalf("%d events on %s, want %d", len(events), schemas.TopicEvents, wantAccepted)
		}
		seen := map[int]bool{}
		for _, ev := range events {
			var name string
			if err := jsonUnquote(ev.Traits["name"], &name); err != nil {
				t.Fatalf("event %s: trait name %q: %v", ev.ID, ev.Traits["name"], err)
			}
			i, ok := byName[name]
			if !ok || seen[i] {
				t.Fatalf("event %s: name %q is unknown or seen twice", ev.ID, name)
			}
			seen[i] = true
			ids[ev.ID] = true
			w := want[i]
			switch {
			case ev.Tenant != testTenant || ev.Partner != testPartner:
				t.Fatalf("row %d: tenant, partner = %q, %q; want %q, %q", i, ev.Tenant, ev.Partner, testTenant, testPartner)
			case ev.Type != DefaultEventType:
				t.Fatalf("row %d: type %q", i, ev.Type)
			case !strings.HasPrefix(ev.ID, "csv:") || len(ev.ID) != 36:
				t.Fatalf("row %d: id %q is not csv:<32 hex digits>", i, ev.ID)
			case !slices.Equal(ev.Identifiers, w.ids):
				t.Fatalf("row %d: identifiers %v, want %v", i, ev.Identifiers, w.ids)
			case ev.Properties["city"] != `"Rio"` || len(ev.Properties) != 1:
				t.Fatalf("row %d: properties %v", i, ev.Properties)
			case !ev.Time.Equal(ev.ReceivedAt) || ev.ReceivedAt.Before(start.Add(-time.Second)) || ev.ReceivedAt.After(start.Add(time.Minute)):
				t.Fatalf("row %d: time %s, received %s; want both the import start %s", i, ev.Time, ev.ReceivedAt, start)
			}
		}
		if len(ids) != len(events) {
			t.Fatalf("%d distinct ids for %d events", len(ids), len(events))
		}
	})

	t.Run("dead letters", func(t *testing.T) {
		if int64(len(dls)) != wantRejected {
			t.Fatalf("%d dead letters, want %d", len(dls), wantRejected)
		}
		slices.SortFunc(dls, func(a, b *schemas.DeadLetter) int { return int(a.Row - b.Row) })
		for k, dl := range dls {
			i := badRows[k]
			w := want[i]
			switch {
			case dl.Row != int64(i):
				t.Fatalf("dead letter %d is row %d, want %d", k, dl.Row, i)
			case dl.Reason != w.reason:
				t.Fatalf("row %d: reason %q (%s), want %q", i, dl.Reason, dl.Message, w.reason)
			case dl.SourceKind != schemas.SourceCSV || dl.File != path:
				t.Fatalf("row %d: source %q, file %q", i, dl.SourceKind, dl.File)
			case dl.Partner != testPartner || dl.Tenant != testTenant:
				t.Fatalf("row %d: partner, tenant = %q, %q", i, dl.Partner, dl.Tenant)
			case string(dl.Payload) != w.line:
				t.Fatalf("row %d: payload %q, want %q", i, dl.Payload, w.line)
			case dl.Message == "":
				t.Fatalf("row %d: no message", i)
			}
		}
	})

	t.Run("rejects file", func(t *testing.T) {
		f, err := os.Open(res.Rejects)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		recs, err := csv.NewReader(f).ReadAll()
		if err != nil {
			t.Fatalf("the rejects file is not valid CSV: %v", err)
		}
		wantHeader := []string{"Email", "Phone", "Name", "City", "Note", "row", "reason", "message"}
		if !slices.Equal(recs[0], wantHeader) {
			t.Fatalf("header %q, want %q", recs[0], wantHeader)
		}
		if len(recs)-1 != len(badRows) {
			t.Fatalf("%d rejected rows in the file, want %d", len(recs)-1, len(badRows))
		}
		for k, rec := range recs[1:] {
			i := badRows[k]
			w := want[i]
			if rec[5] != strconv.Itoa(i) || rec[6] != w.reason {
				t.Fatalf("line %d: row %s, reason %s; want %d, %s", k+2, rec[5], rec[6], i, w.reason)
			}
			wantFields := w.fields
			if wantFields == nil {
				wantFields = make([]string, 5)
			}
			if !slices.Equal(rec[:5], wantFields) {
				t.Fatalf("row %d: columns %q, want %q", i, rec[:5], wantFields)
			}
			if w.reason == ReasonInvalidCSV && !strings.Contains(rec[7], fmt.Sprintf("%q", w.line)) {
				t.Fatalf("row %d: message %q does not quote the row %q", i, rec[7], w.line)
			}
		}
	})

	t.Run("re-import keeps ids", func(t *testing.T) {
		res2, err := runImport(t, brokers, cfg)
		if err != nil {
			t.Fatalf("second import: %v", err)
		}
		if res2.Accepted != wantAccepted || res2.Rejected != wantRejected {
			t.Fatalf("second import accepted %d, rejected %d", res2.Accepted, res2.Rejected)
		}
		events2, _ := consumeAll(t, brokers)
		count := map[string]int{}
		for _, ev := range events2 {
			count[ev.ID]++
		}
		if len(count) != len(ids) {
			t.Fatalf("%d distinct ids after two imports, want %d", len(count), len(ids))
		}
		for id, c := range count {
			if c != 2 || !ids[id] {
				t.Fatalf("id %s: %d times (known from the first import: %v)", id, c, ids[id])
			}
		}
	})
}

func jsonUnquote(s string, v *string) error { return json.Unmarshal([]byte(s), v) }

// TestImportLarge streams a file far larger than what is ever in flight.
func TestImportLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("large import")
	}
	_, brokers := startKafka(t)
	const n = 200_000
	path := filepath.Join(t.TempDir(), "big.csv")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	w.WriteString("uid,note\n")
	for i := range n {
		fmt.Fprintf(w, "u%d,%d\n", i, i%7)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	m, err := ParseMapping("user_id=uid,properties.note=note")
	if err != nil {
		t.Fatal(err)
	}
	res, err := runImport(t, brokers, Config{File: path, Mapping: m, MaxInFlight: 2000})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("imported %d rows in %s (%.0f rows/s)", res.Rows, res.Elapsed, res.RowsPerSecond())
	if res.Rows != n || res.Accepted != n || res.Rejected != 0 {
		t.Fatalf("rows %d, accepted %d, rejected %d; want %d, %d, 0", res.Rows, res.Accepted, res.Rejected, n, n)
	}
	if got := endOffsets(t, brokers); got[schemas.TopicEvents] != n || got[schemas.TopicDeadLetter] != 0 {
		t.Fatalf("records on Kafka: %v, want %d events and no dead letters", got, n)
	}
}

// TestImportNotAcknowledged: when Kafka refuses the writes, the import
// fails and says how many rows were not acknowledged; nothing is counted
// as accepted.
func TestImportNotAcknowledged(t *testing.T) {
	c, brokers := startKafka(t)
	c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kreq.(*kmsg.ProduceRequest)
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	path, _ := writeContacts(t, t.TempDir(), 3000)
	m, err := ParseMapping(testMapping)
	if err != nil {
		t.Fatal(err)
	}
	res, err := runImport(t, brokers, Config{File: path, Mapping: m, MaxInFlight: 100})
	var ie *IncompleteError
	if !errors.As(err, &ie) || !errors.Is(err, intake.ErrUnavailable) {
		t.Fatalf("err = %v, want an *IncompleteError wrapping intake.ErrUnavailable", err)
	}
	if res == nil || res.Accepted != 0 || res.NotAcknowledged == 0 || res.NotAcknowledged != res.Rows || res.DeadLetters != 0 {
		t.Fatalf("result %+v", res)
	}
	if ie.NotAcknowledged != res.NotAcknowledged || !strings.Contains(err.Error(), fmt.Sprintf("%d of %d rows read were not acknowledged", res.NotAcknowledged, res.Rows)) {
		t.Fatalf("error %q does not count the rows (%+v)", err, res)
	}
}

// TestImportBeforeRows: mistakes in the file's header are reported before
// any row is read or written.
func TestImportBeforeRows(t *testing.T) {
	_, brokers := startKafka(t)
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name    string
		file    string
		mapping string
		wantErr string
	}{
		{"missing column", write("a.csv", "Mail,Phone\nx@y.com,1\n"), "email=Email", `column "Email" (for email) is not in the header`},
		{"empty file", write("b.csv", ""), "email=Email", "is empty"},
		{"no such file", filepath.Join(dir, "nope.csv"), "email=Email", "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParseMapping(tt.mapping)
			if err != nil {
				t.Fatal(err)
			}
			res, err := runImport(t, brokers, Config{File: tt.file, Mapping: m})
			if res != nil || err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Run = %+v, %v; want no result and an error containing %q", res, err, tt.wantErr)
			}
			if _, err := os.Stat(tt.file + RejectsSuffix); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("a rejects file was created: %v", err)
			}
		})
	}
	if got := endOffsets(t, brokers); got[schemas.TopicEvents] != 0 || got[schemas.TopicDeadLetter] != 0 {
		t.Fatalf("records were written: %v", got)
	}
}

// TestImportMalformed: rows encoding/csv cannot read are rejected one by
// one, and a row that never ends stops the import instead of filling
// memory.
func TestImportMalformed(t *testing.T) {
	_, brokers := startKafka(t)
	dir := t.TempDir()
	huge := strings.Repeat("x,", 40_000) // 80 kB in one never-closed field
	tests := []struct {
		name       string
		content    string
		mapping    string
		comma      rune
		wantRows   int64
		wantAcc    int64
		wantRej    []string // reasons in the rejects file, in order
		wantTooBig bool
	}{
		{
			name:     "quote left open on the last row",
			content:  "e,n\na@x.com,1\nb@x.com,\"2\nc@x.com,3\n",
			mapping:  "email=e",
			wantRows: 2, wantAcc: 1, wantRej: []string{ReasonInvalidCSV},
		},
		{
			name:     "quote left open before a huge tail",
			content:  "e,n\na@x.com,1\nb@x.com,\"2\n" + huge + "\n",
			mapping:  "email=e",
			wantRows: 1, wantAcc: 1, wantRej: []string{}, wantTooBig: true,
		},
		{
			name:     "short and long rows, blank lines",
			content:  "e,n\n\na@x.com\nb@x.com,2,3\n\nc@x.com,3\n",
			mapping:  "email=e",
			wantRows: 3, wantAcc: 1, wantRej: []string{ReasonInvalidCSV, ReasonInvalidCSV},
		},
		{
			name:     "tab delimiter, id, type and time columns",
			content:  "id\tkind\twhen\tuid\ne1\tsigned.up\t2026-01-02T03:04:05Z\tu1\ne2\t\tyesterday\tu2\n\tx\t\tu3\ne4\tbad type\t\tu4\n",
			mapping:  "id=id,type=kind,time=when,user_id=uid",
			comma:    '\t',
			wantRows: 4, wantAcc: 1, wantRej: []string{intake.ReasonInvalidTime, intake.ReasonMissingID, intake.ReasonInvalidType},
		},
		{
			name: "invalid UTF-8 in each mapped column, and in one not mapped",
			content: "id,kind,when,src,e,n,c,note\n" +
				"e1,t,,web,a@x.com,Ana,Rio,\xff ignored\n" +
				"e\xff2,t,,web,b@x.com,Ana,Rio,\n" +
				"e3,t\xc3,,web,c@x.com,Ana,Rio,\n" +
				"e4,t,2026-01-02T03:04:05Z\xff,web,d@x.com,Ana,Rio,\n" +
				"e5,t,,w\xe9b,e@x.com,Ana,Rio,\n" +
				"e6,t,,web,nu\xff\xfe@example.com,Ana,Rio,\n" +
				"e7,t,,web,g@x.com,An\xe3,Rio,\n" +
				"e8,t,,web,h@x.com,Ana,S\xe3o Paulo,\n",
			mapping:  "id=id,type=kind,time=when,source=src,email=e,traits.name=n,properties.city=c",
			wantRows: 8, wantAcc: 1, wantRej: slices.Repeat([]string{intake.ReasonInvalidUTF8}, 7),
		},
	}
	for k, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprintf("f%d.csv", k))
			if err := os.WriteFile(path, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			m, err := ParseMapping(tt.mapping)
			if err != nil {
				t.Fatal(err)
			}
			res, err := runImport(t, brokers, Config{File: path, Mapping: m, Comma: tt.comma, MaxRowBytes: 1000})
			var tooBig *RowTooLargeError
			if gotTooBig := errors.As(err, &tooBig); gotTooBig != tt.wantTooBig || (!tt.wantTooBig && err != nil) {
				t.Fatalf("err = %v; want a RowTooLargeError: %v", err, tt.wantTooBig)
			}
			if tt.wantTooBig && !strings.Contains(err.Error(), "the import stopped after row 1") {
				t.Fatalf("err %q does not say where the import stopped", err)
			}
			if res.Rows != tt.wantRows || res.Accepted != tt.wantAcc || res.Rejected != int64(len(tt.wantRej)) || res.DeadLetters != res.Rejected {
				t.Fatalf("result %+v; want %d rows, %d accepted, %d rejected", res, tt.wantRows, tt.wantAcc, len(tt.wantRej))
			}
			f, err := os.Open(res.Rejects)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			cr := csv.NewReader(f)
			cr.Comma = res0(tt.comma)
			recs, err := cr.ReadAll()
			if err != nil {
				t.Fatalf("rejects file: %v", err)
			}
			var reasons []string
			for _, rec := range recs[1:] {
				reasons = append(reasons, rec[len(rec)-2])
			}
			if !slices.Equal(reasons, tt.wantRej) && len(reasons)+len(tt.wantRej) > 0 {
				t.Fatalf("rejected %q, want %q (%q)", reasons, tt.wantRej, recs)
			}
		})
	}
}

func res0(comma rune) rune {
	if comma == 0 {
		return ','
	}
	return comma
}

// TestImportNoTopics: against a Kafka without Rolodex's topics the import
// says so once, before reading rows.
func TestImportNoTopics(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	path, _ := writeContacts(t, t.TempDir(), 10)
	m, err := ParseMapping(testMapping)
	if err != nil {
		t.Fatal(err)
	}
	res, err := runImport(t, c.ListenAddrs(), Config{File: path, Mapping: m})
	if res != nil || err == nil || !strings.Contains(err.Error(), "topic "+schemas.TopicEvents+" is not in Kafka") {
		t.Fatalf("Run = %+v, %v; want an error naming the missing topic", res, err)
	}
}
