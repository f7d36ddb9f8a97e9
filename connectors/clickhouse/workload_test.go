package clickhouse

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/reference"
	"github.com/rolodex/rolodex/schemas"
)

// workload is generated input: events as they appear on rolodex.events
// (with partner resends of the same id), dead letters, and what the
// identity stage writes for those events.
type workload struct {
	seed        uint64
	events      []*schemas.Event
	deadLetters []*schemas.DeadLetter
	// identity is made on first use (ident).
	identity *identityOut
	// resolved is set once the identity records were produced: then the
	// references count an event under its node's final profile id, else
	// under its node id (what events_with_profile shows without them).
	resolved bool
	// tags are the tag stage's records (made on first use: tagChanges);
	// tagged is set once they were all written or produced.
	tags   []schemas.TagChange
	tagged bool
	// msgs are the lifecycle's records of w's messages (withMessages adds
	// message events to events); messaged is set once they were written
	// or produced.
	msgs     *messageOut
	messaged bool
}

// ident returns what the identity stage writes for w's events.
func (w *workload) ident() *identityOut {
	if w.identity == nil {
		w.identity = simulateIdentity(w.seed, w.events)
	}
	return w.identity
}

// profileOf is the profile id events_with_profile must show for ev.
func (w *workload) profileOf(ev *schemas.Event) string {
	if !w.resolved {
		return ev.Key()
	}
	return w.ident().profileOf(ev.Key())
}

var (
	wlSources = []string{"web", "app", "crm", "whatsapp"}
	wlTypes   = []string{"page.viewed", "page.viewed", "form.submitted", "lead.created", "email.opened"}
	wlReasons = []string{"invalid_json", "no_valid_identifier", "unknown_identifier_type", "invalid_time"}
	wlCities  = []string{"São Paulo", "Rio de Janeiro", "Curitiba", "Recife"}
	wlStart   = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
)

// genWorkload makes nEvents events (about 2% of them resends of an earlier
// id, received later and with one property changed) of about nEvents/4
// people in two tenants over five days, and nDead dead letters.
func genWorkload(seed uint64, nEvents, nDead int) *workload {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	people := max(nEvents/4, 1)
	w := &workload{seed: seed}
	// latest is the last receive time of each id: a resend comes strictly
	// later, so "the copy received last" is always one copy.
	latest := map[eventKey]time.Time{}
	for i := 0; i < nEvents; i++ {
		if i > 10 && r.IntN(50) == 0 {
			prev := *w.events[r.IntN(len(w.events))]
			k := eventKey{prev.Tenant, prev.Source, prev.ID}
			prev.ReceivedAt = latest[k].Add(time.Duration(1+r.IntN(60)) * time.Second)
			latest[k] = prev.ReceivedAt
			props := map[string]string{}
			for k, v := range prev.Properties {
				props[k] = v
			}
			props["attempt"] = strconv.Itoa(2 + r.IntN(3))
			prev.Properties = props
			w.events = append(w.events, &prev)
			continue
		}
		p := r.IntN(people)
		tenant := "t1"
		if p%3 == 0 {
			tenant = "t2"
		}
		var ids []schemas.Identifier
		// Most events carry the user id; some only the email or the phone,
		// so one person shows up under several node ids (until identity
		// resolution maps them to one profile).
		switch r.IntN(4) {
		case 0:
			ids = []schemas.Identifier{{Type: schemas.IDEmail, Value: fmt.Sprintf("person%d@example.com", p)}}
		case 1:
			ids = []schemas.Identifier{{Type: schemas.IDPhone, Value: fmt.Sprintf("+55119%08d", p)}}
		default:
			ids = []schemas.Identifier{
				{Type: schemas.IDUserID, Value: fmt.Sprintf("u-%d", p)},
				{Type: schemas.IDEmail, Value: fmt.Sprintf("person%d@example.com", p)},
				{Type: schemas.IDPhone, Value: fmt.Sprintf("+55119%08d", p)},
			}
		}
		if r.IntN(10) == 0 {
			ids = append(ids, schemas.Identifier{Type: "external:crm", Value: fmt.Sprintf("L-%d", r.IntN(100000))})
		}
		schemas.SortIdentifiers(ids)
		t := wlStart.Add(time.Duration(r.Int64N(int64(5 * 24 * time.Hour)))).Truncate(time.Millisecond)
		ev := &schemas.Event{
			Tenant: tenant, ID: fmt.Sprintf("e-%d-%d", seed, i), Type: wlTypes[r.IntN(len(wlTypes))],
			Time: t, Source: wlSources[r.IntN(len(wlSources))], Partner: "demo", Identifiers: ids,
			ReceivedAt: t.Add(time.Duration(r.IntN(600_000)) * time.Millisecond),
		}
		if r.IntN(2) == 0 {
			ev.Traits = map[string]string{"name": fmt.Sprintf("%q", fmt.Sprintf("Person %d", p)), "city": fmt.Sprintf("%q", wlCities[p%len(wlCities)])}
		}
		if r.IntN(3) > 0 {
			ev.Properties = map[string]string{"url": fmt.Sprintf(`"/cars/%d"`, r.IntN(100)), "score": strconv.Itoa(r.IntN(1000)), "tags": `["a","b"]`}
		}
		latest[eventKey{ev.Tenant, ev.Source, ev.ID}] = ev.ReceivedAt
		w.events = append(w.events, ev)
	}
	partners := []string{"demo", "acme"}
	kinds := []string{schemas.SourceHTTP, schemas.SourceKafka, schemas.SourceCSV}
	for i := 0; i < nDead; i++ {
		partner := partners[r.IntN(len(partners))]
		d := &schemas.DeadLetter{
			Time:    wlStart.Add(time.Duration(r.Int64N(int64(5 * 24 * time.Hour)))).Truncate(time.Millisecond),
			Partner: partner, Tenant: "t-" + partner, Reason: wlReasons[r.IntN(len(wlReasons))],
			Message: fmt.Sprintf("bad record %d", i), SourceKind: kinds[r.IntN(len(kinds))],
			Payload: []byte(fmt.Sprintf(`{"id":"bad-%d","x":%d}`, i, r.IntN(10))),
		}
		switch d.SourceKind {
		case schemas.SourceHTTP:
			d.RequestID, d.Row = fmt.Sprintf("req-%d", i), int64(r.IntN(5))
		case schemas.SourceKafka:
			d.Topic, d.Partition, d.Offset = schemas.IngestTopic(partner), int32(r.IntN(8)), r.Int64N(1e6)
		case schemas.SourceCSV:
			d.File, d.Row = "contacts.csv", int64(1+r.IntN(1000))
		}
		w.deadLetters = append(w.deadLetters, d)
	}
	return w
}

// produced is where a record landed.
type produced struct {
	partition int32
	offset    int64
}

// producer writes workload records to the embedded broker.
type producer struct {
	cl *kgo.Client
	mu sync.Mutex
	// at maps an event (by pointer) or dead letter to its position.
	eventsAt map[*schemas.Event]produced
	deadAt   map[*schemas.DeadLetter]produced
}

func newProducer(t testing.TB, brokers []string) *producer {
	t.Helper()
	cl, err := kafkaclient.NewClient(kafkaclient.Config{Brokers: brokers, ClientID: "test-producer"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &producer{cl: cl, eventsAt: map[*schemas.Event]produced{}, deadAt: map[*schemas.DeadLetter]produced{}}
}

// events produces evs (asynchronously) and waits for every ack.
func (p *producer) events(t testing.TB, evs []*schemas.Event) {
	t.Helper()
	var wg sync.WaitGroup
	var firstErr error
	for _, ev := range evs {
		v, err := schemas.EncodeEvent(ev)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		p.cl.Produce(context.Background(), &kgo.Record{Topic: schemas.TopicEvents, Key: []byte(ev.Key()), Value: v, Timestamp: ev.ReceivedAt},
			func(r *kgo.Record, err error) {
				defer wg.Done()
				p.mu.Lock()
				defer p.mu.Unlock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				p.eventsAt[ev] = produced{r.Partition, r.Offset}
			})
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
}

func (p *producer) deadLetters(t testing.TB, ds []*schemas.DeadLetter) {
	t.Helper()
	for _, d := range ds {
		v, err := schemas.EncodeDeadLetter(d)
		if err != nil {
			t.Fatal(err)
		}
		r, err := p.cl.ProduceSync(context.Background(), &kgo.Record{Topic: schemas.TopicDeadLetter, Key: []byte(d.Partner), Value: v}).First()
		if err != nil {
			t.Fatal(err)
		}
		p.mu.Lock()
		p.deadAt[d] = produced{r.Partition, r.Offset}
		p.mu.Unlock()
	}
}

// raw produces values that are not Avro to topic (undecodable records).
func (p *producer) raw(t testing.TB, topic string, values ...string) {
	t.Helper()
	for _, v := range values {
		if err := p.cl.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

// eventKey is the identity of a row of events.
type eventKey struct{ tenant, source, id string }

// finalEvents is the reference for "events FINAL": per (tenant, source,
// id), the copy received last.
func finalEvents(evs []*schemas.Event) map[eventKey]*schemas.Event {
	out := map[eventKey]*schemas.Event{}
	for _, ev := range evs {
		k := eventKey{ev.Tenant, ev.Source, ev.ID}
		if cur, ok := out[k]; !ok || ev.ReceivedAt.After(cur.ReceivedAt) {
			out[k] = ev
		}
	}
	return out
}

func day(t time.Time) string { return DateTime(t).Format("2006-01-02") }

// refActivity is report_activity_daily computed in Go, from since on.
func refActivity(w *workload, since string) [][]string {
	activity, _ := reference.ReportRows(reportEvents(w))
	return fromDay(activity, since)
}

// refProfiles is report_profiles_daily computed in Go, from since on: per
// profile, its first day over all time; a profile active on its first day
// is new, on a later day returning.
func refProfiles(w *workload, since string) [][]string {
	_, profiles := reference.ReportRows(reportEvents(w))
	return fromDay(profiles, since)
}

// reportEvents are w's events as the reports count them: the copy of each
// received last, under the profile events_with_profile shows.
func reportEvents(w *workload) []reference.ReportEvent {
	var out []reference.ReportEvent
	for _, ev := range finalEvents(w.events) {
		out = append(out, reference.ReportEvent{Day: day(ev.Time), Tenant: ev.Tenant, Source: ev.Source, Type: ev.Type, Profile: w.profileOf(ev)})
	}
	return out
}

// fromDay returns the rows whose day (the first column) is since or later.
func fromDay(rows [][]string, since string) [][]string {
	var out [][]string
	for _, r := range rows {
		if r[0] >= since {
			out = append(out, r)
		}
	}
	return out
}

// refDeadLetters is report_dead_letters_daily computed in Go.
func refDeadLetters(ds []*schemas.DeadLetter, since string) [][]string {
	type k struct{ day, tenant, partner, reason, kind string }
	n := map[k]int{}
	for _, d := range ds {
		n[k{day(d.Time), d.Tenant, d.Partner, d.Reason, d.SourceKind}]++
	}
	var rows [][]string
	for kk, c := range n {
		if kk.day >= since {
			rows = append(rows, []string{kk.day, kk.tenant, kk.partner, kk.reason, kk.kind, strconv.Itoa(c)})
		}
	}
	sortRows(rows, 5)
	return rows
}

// sortRows sorts by the first keyCols columns.
func sortRows(rows [][]string, keyCols int) {
	sort.Slice(rows, func(a, b int) bool {
		for i := 0; i < keyCols; i++ {
			if rows[a][i] != rows[b][i] {
				return rows[a][i] < rows[b][i]
			}
		}
		return false
	})
}

// rows are w's events and dead letters as the sink writes them, each at
// offset i of partition 0 of its topic.
func (w *workload) rows() (EventRows, DeadLetterRows) {
	var evs EventRows
	for i, ev := range w.events {
		evs.Add(ev, ev.Key(), 0, int64(i))
	}
	var dls DeadLetterRows
	for i, d := range w.deadLetters {
		dls.Add(d, schemas.TopicDeadLetter, 0, int64(i))
	}
	return evs, dls
}

// insert writes w's events, dead letters and tag changes into db, as
// rows() and tagChangeRows().
func (w *workload) insert(t testing.TB, ctx context.Context, conn driver.Conn, db string) {
	t.Helper()
	evs, dls := w.rows()
	if err := evs.Insert(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	if err := dls.Insert(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	if err := w.tagChangeRows(t).Insert(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	w.tagged = true
	if w.msgs != nil {
		if err := w.messageEventRows().Insert(ctx, conn, db); err != nil {
			t.Fatal(err)
		}
		if err := w.messageStateRows(t).Insert(ctx, conn, db); err != nil {
			t.Fatal(err)
		}
		w.messaged = true
	}
}
