package clickhouse

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/reference"
	"github.com/rolodex/rolodex/schemas"
)

// A message template: the states a provider and a brand's tool report for
// one message, in event-time order ("bounced:hard" is a bounce of a kind).
var msgTemplates = [][]string{
	{"sent", "delivered", "opened", "clicked"},
	{"sent", "delivered", "opened"},
	{"sent", "delivered"},
	{"sent", "bounced:hard"},
	{"sent", "bounced:soft", "resent", "delivered", "opened"},
	{"sent", "deferred", "delivered", "spam"},
	{"sent", "delivered", "opened", "unsubscribed"},
	{"sent", "delivered", "opened", "clicked", "unsubscribed", "spam"},
	{"draft", "saved", "deleted"},
	{"draft", "sent", "delivered"},
	{"delivered", "opened"},                       // the send was never reported
	{"sent", "bounced"},                           // a bounce of unknown kind: soft
	{"sent", "delivered", "deleted"},              // deleted is refused
	{"sent", "delivered", "bounced:hard"},         // an asynchronous bounce
	{"sent", "bounced:soft", "bounced:hard"},      // the second is absorbed
	{"sent", "delivered", "spam", "unsubscribed"}, // the unsubscribe is absorbed
}

// messageOut is what w's messages make: the records of the lifecycle's
// table topic (per message the fold of every prefix of its arrivals, in
// arrival order, some written again as a replay does), and the send
// events the recipients group judged invalid.
type messageOut struct {
	states  []schemas.MessageTable
	invalid map[string]bool
}

// withMessages adds about n messages' events to w.events (call it before
// anything of w is produced or inserted): walks of msgTemplates over the
// five days, some reports dropped, some reordered in time, provider
// retries under another event id, partner resends of an event id
// (received later), in three channels (whatsapp without an address), and
// events the lifecycle ignores (invalid message events, another
// message.* type). About a tenth of the sends are judged invalid.
func (w *workload) withMessages(n int) *workload {
	r := rand.New(rand.NewPCG(w.seed, 0x6d7367))
	out := &messageOut{invalid: map[string]bool{}}
	prop := func(v string) string { b, _ := json.Marshal(v); return string(b) }
	channels := []string{schemas.ChannelEmail, schemas.ChannelEmail, schemas.ChannelSMS, schemas.ChannelWhatsApp}
	var added []*schemas.Event
	for i := 0; i < n; i++ {
		p := r.IntN(200)
		tenant := "t1"
		if p%3 == 0 {
			tenant = "t2"
		}
		ch := channels[r.IntN(len(channels))]
		ids := []schemas.Identifier{{Type: schemas.IDEmail, Value: fmt.Sprintf("person%d@example.com", p)}}
		if ch != schemas.ChannelEmail {
			ids = []schemas.Identifier{{Type: schemas.IDPhone, Value: fmt.Sprintf("+55119%08d", p)}}
		}
		msgID := fmt.Sprintf("m-%d-%d", w.seed, i)
		at := wlStart.Add(time.Duration(r.Int64N(int64(5 * 24 * time.Hour)))).Truncate(time.Millisecond)
		tpl := msgTemplates[r.IntN(len(msgTemplates))]
		var prev *schemas.Event
		for j, step := range tpl {
			if j > 0 && r.IntN(7) == 0 {
				continue // a dropped report
			}
			state, bounce, _ := strings.Cut(step, ":")
			props := map[string]string{"message_id": prop(msgID)}
			if ch != schemas.ChannelEmail || r.IntN(2) == 0 {
				props["channel"] = prop(ch)
			}
			if bounce != "" {
				props["bounce"] = prop(bounce)
			}
			if j > 0 {
				props["provider_event_id"] = prop(fmt.Sprintf("pe-%s-%d", msgID, j))
			}
			ev := &schemas.Event{
				Tenant: tenant, ID: fmt.Sprintf("me-%d-%d-%d", w.seed, i, j), Type: "message." + state,
				Time: at, Source: "crm", Partner: "demo", Identifiers: ids, Properties: props,
				ReceivedAt: at.Add(time.Duration(r.IntN(600_000)) * time.Millisecond),
			}
			if prev != nil && r.IntN(6) == 0 {
				// Reported with a time before the one before it.
				ev.Time = prev.Time.Add(-time.Duration(1+r.IntN(60_000)) * time.Millisecond)
			}
			added = append(added, ev)
			if (state == "sent" || state == "resent") && r.IntN(10) == 0 {
				out.invalid[ev.ID] = true
			}
			if j > 0 && r.IntN(15) == 0 {
				// The provider's retry of the report under another id.
				dup := *ev
				dup.ID += "-retry"
				dup.ReceivedAt = dup.ReceivedAt.Add(time.Second)
				added = append(added, &dup)
			}
			if r.IntN(20) == 0 {
				// A partner's resend of the event id, received later.
				again := *ev
				again.ReceivedAt = again.ReceivedAt.Add(time.Duration(1+r.IntN(60)) * time.Second)
				added = append(added, &again)
			}
			prev = ev
			at = at.Add(time.Duration(1+r.IntN(180)) * time.Minute)
		}
	}
	// Events the lifecycle ignores: no message id, an unknown channel, a
	// bounce kind on a delivery, another message.* type.
	for i, bad := range []struct{ typ, props string }{
		{"message.opened", `{"channel":"\"email\""}`},
		{"message.sent", `{"message_id":"\"m-bad-1\"","channel":"\"fax\""}`},
		{"message.delivered", `{"message_id":"\"m-bad-2\"","bounce":"\"hard\""}`},
		{"message.received", `{"message_id":"\"m-bad-3\""}`},
	} {
		var props map[string]string
		if err := json.Unmarshal([]byte(bad.props), &props); err != nil {
			panic(err)
		}
		at := wlStart.Add(time.Duration(i) * time.Hour)
		added = append(added, &schemas.Event{
			Tenant: "t1", ID: fmt.Sprintf("me-bad-%d", i), Type: bad.typ, Time: at, Source: "crm", Partner: "demo",
			Identifiers: []schemas.Identifier{{Type: schemas.IDEmail, Value: "person1@example.com"}}, Properties: props, ReceivedAt: at,
		})
	}
	r.Shuffle(len(added), func(i, j int) { added[i], added[j] = added[j], added[i] })
	// Spread among w's other events, both in their order.
	merged := make([]*schemas.Event, 0, len(w.events)+len(added))
	a, b := 0, 0
	for a < len(w.events) || b < len(added) {
		if b == len(added) || (a < len(w.events) && r.IntN(len(w.events)+len(added)) < len(w.events)) {
			merged = append(merged, w.events[a])
			a++
		} else {
			merged = append(merged, added[b])
			b++
		}
	}
	w.events = merged

	// The lifecycle's table records: per message, in arrival order
	// (received_at), the fold of the arrivals so far, By counting them;
	// about one message in five has its last two records written again
	// (a replay after a crash).
	byKey := map[string][]*schemas.Event{}
	var keys []string
	for _, ev := range added {
		m, err := schemas.MessageEventOf(ev)
		if err != nil {
			continue
		}
		k := schemas.MessageKey(ev.Tenant, m.MessageID)
		if byKey[k] == nil {
			keys = append(keys, k)
		}
		byKey[k] = append(byKey[k], ev)
	}
	sort.Strings(keys)
	for _, k := range keys {
		evs := byKey[k]
		sort.SliceStable(evs, func(i, j int) bool { return evs[i].ReceivedAt.Before(evs[j].ReceivedAt) })
		var seq []schemas.MessageTable
		for a := 1; a <= len(evs); a++ {
			seq = append(seq, messageTable(k, evs[:a], out.invalid, int64(a)))
		}
		if len(seq) >= 2 && r.IntN(5) == 0 {
			seq = append(seq, seq[len(seq)-2:]...)
		}
		out.states = append(out.states, seq...)
	}
	w.msgs = out
	return w
}

// messageTable is the lifecycle's table value for message key after the
// arrivals evs: the reference model's fold.
func messageTable(key string, evs []*schemas.Event, invalid map[string]bool, by int64) schemas.MessageTable {
	o, ok := reference.Messages(evs, invalid)[key]
	if !ok {
		panic("no fold for " + key)
	}
	tenant, id, _ := strings.Cut(key, "/")
	m := schemas.MessageTable{
		Tenant: tenant, MessageID: id, State: o.State, Bounce: o.Bounce, Channel: o.Channel,
		Recipient: o.Recipient, History: o.History, Refused: o.Refused, By: by,
	}
	seen := map[string]bool{}
	for _, ev := range evs {
		if !seen[ev.ID] {
			seen[ev.ID] = true
			m.Events = append(m.Events, schemas.MessageEvent{ID: ev.ID, Tenant: tenant, MessageID: id, Time: ev.Time.UnixMilli()})
		}
	}
	return m
}

// finalMessages is the reference's fold of every message of w: of the
// events the router passes on (schemas.MessageEventOf; it dead-letters
// the others).
func (w *workload) finalMessages() map[string]reference.MessageOutcome {
	if w.msgs == nil {
		return nil
	}
	var evs []*schemas.Event
	for _, ev := range w.events {
		if _, err := schemas.MessageEventOf(ev); err == nil {
			evs = append(evs, ev)
		}
	}
	return reference.Messages(evs, w.msgs.invalid)
}

// refFunnel is report_message_funnel computed in Go from the reference's
// fold of w's messages, from since on: per message whose history reached
// sent (an entry neither refused nor a duplicate), on the day of the first
// such entry, per tenant and channel, the messages whose history reached
// each state, and the rates of docs/reports.md.
func refFunnel(w *workload, since string) [][]string {
	if !w.messaged {
		return nil
	}
	type key struct{ day, tenant, channel string }
	type counts struct{ sent, delivered, opened, clicked, bounced, hard, soft, spam, unsub int }
	n := map[key]*counts{}
	for k, o := range w.finalMessages() {
		tenant, _, _ := strings.Cut(k, "/")
		reachedState := map[schemas.MessageState]bool{}
		kinds := map[string]bool{}
		sentAt := int64(0)
		sent := false
		for _, h := range o.History {
			if h.How == "refused" || h.How == "duplicate" {
				continue
			}
			reachedState[h.State] = true
			if h.State == schemas.MessageBounced {
				kinds[h.Bounce] = true
			}
			if h.State == schemas.MessageSent && (!sent || h.Time < sentAt) {
				sent, sentAt = true, h.Time
			}
		}
		if !sent {
			continue
		}
		kk := key{day(time.UnixMilli(sentAt)), tenant, o.Channel}
		if n[kk] == nil {
			n[kk] = &counts{}
		}
		c := n[kk]
		b := func(v bool) int {
			if v {
				return 1
			}
			return 0
		}
		c.sent++
		c.delivered += b(reachedState[schemas.MessageDelivered])
		c.opened += b(reachedState[schemas.MessageOpened])
		c.clicked += b(reachedState[schemas.MessageClicked])
		c.bounced += b(reachedState[schemas.MessageBounced])
		c.hard += b(kinds["hard"])
		c.soft += b(kinds["soft"])
		c.spam += b(reachedState[schemas.MessageSpam])
		c.unsub += b(reachedState[schemas.MessageUnsubscribed])
	}
	rate := func(a, b int) string {
		if b == 0 {
			return "0"
		}
		return fmt.Sprint(float64(a) / float64(b))
	}
	var rows [][]string
	for k, c := range n {
		if k.day < since {
			continue
		}
		rows = append(rows, []string{k.day, k.tenant, k.channel,
			strconv.Itoa(c.sent), strconv.Itoa(c.delivered), strconv.Itoa(c.opened), strconv.Itoa(c.clicked),
			strconv.Itoa(c.bounced), strconv.Itoa(c.hard), strconv.Itoa(c.soft), strconv.Itoa(c.spam), strconv.Itoa(c.unsub),
			rate(c.delivered, c.sent), rate(c.opened, c.delivered), rate(c.clicked, c.delivered), rate(c.clicked, c.opened),
			rate(c.bounced, c.sent), rate(c.hard, c.sent), rate(c.soft, c.sent), rate(c.spam, c.delivered), rate(c.unsub, c.delivered)})
	}
	sortRows(rows, 3)
	return rows
}

// messageStateRows are w's lifecycle table records as the sink decodes
// them, each at offset i of partition 0, one MessageStateRows per call.
func (w *workload) messageStateRows(t testing.TB) *MessageStateRows {
	t.Helper()
	rows := &MessageStateRows{}
	if w.msgs == nil {
		return rows
	}
	for i, m := range w.msgs.states {
		v, _ := json.Marshal(m)
		row, err := DecodeMessageState(v, schemas.MessageKey(m.Tenant, m.MessageID), 0, int64(i))
		if err != nil {
			t.Fatal(err)
		}
		rows.Add(row)
	}
	return rows
}

// messageEventRows are w's message events as the sink writes them.
func (w *workload) messageEventRows() *MessageEventRows {
	rows := &MessageEventRows{}
	for i, ev := range w.events {
		if schemas.IsMessageEvent(ev.Type) {
			rows.Add(ev, ev.Key(), 0, int64(i))
		}
	}
	return rows
}

// messageStates produces w's lifecycle table records, keyed by message,
// in order, and marks w as messaged.
func (p *producer) messageStates(t testing.TB, w *workload) {
	t.Helper()
	p.messageStateChunk(t, w, 0, 1)
}

// messageStateChunk produces the i-th of n equal parts of w's lifecycle
// table records (each message's records stay in order) and marks w as
// messaged once the last part is out.
func (p *producer) messageStateChunk(t testing.TB, w *workload, i, n int) {
	t.Helper()
	all := w.msgs.states
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for _, m := range all[i*len(all)/n : (i+1)*len(all)/n] {
		v, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		p.cl.Produce(context.Background(), &kgo.Record{Topic: schemas.TopicLifecycleTable, Key: []byte(schemas.MessageKey(m.Tenant, m.MessageID)), Value: v},
			func(_ *kgo.Record, err error) {
				defer wg.Done()
				mu.Lock()
				defer mu.Unlock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
			})
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	if i == n-1 {
		w.messaged = true
	}
}

// checkMessageTables compares message_events FINAL with w's valid message
// events (per tenant, message and event id the copy received last) and
// message_states FINAL with the reference's fold of every message.
func checkMessageTables(t testing.TB, conn driver.Conn, db string, w *workload) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// message_events.
	want := map[string]string{}
	latest := map[string]time.Time{}
	for _, ev := range w.events {
		m, err := schemas.MessageEventOf(ev)
		if err != nil {
			continue
		}
		k := ev.Tenant + "/" + m.MessageID + "/" + ev.ID
		if cur, ok := latest[k]; ok && !ev.ReceivedAt.After(cur) {
			continue
		}
		latest[k] = ev.ReceivedAt
		addr := ""
		typ, _ := schemas.AddressType(m.Channel)
		for _, id := range ev.Identifiers {
			if id.Type == typ {
				addr = typ + ":" + id.Value
				break
			}
		}
		want[k] = fmt.Sprintf("%s %s %s %s %d %d %s %s", m.State, m.Channel, m.Bounce, m.ProviderEventID, ev.Time.UnixMilli(), ev.ReceivedAt.UnixMilli(), addr, ev.Key())
	}
	rows, err := conn.Query(ctx, "SELECT tenant, message_id, event_id, state, channel, bounce, provider_event_id, time, time_ms, received_at_ms, address_type, address, node_id FROM "+db+".message_events FINAL")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for rows.Next() {
		var tenant, msg, id, state, ch, bounce, pe, addrType, addr, node string
		var tm time.Time
		var ms int64
		var recv uint64
		if err := rows.Scan(&tenant, &msg, &id, &state, &ch, &bounce, &pe, &tm, &ms, &recv, &addrType, &addr, &node); err != nil {
			t.Fatal(err)
		}
		if !tm.Equal(DateTime(time.UnixMilli(ms))) {
			t.Errorf("message event %s: time %s, time_ms %d", id, tm, ms)
		}
		a := ""
		if addr != "" {
			a = addrType + ":" + addr
		}
		got[tenant+"/"+msg+"/"+id] = fmt.Sprintf("%s %s %s %s %d %d %s %s", state, ch, bounce, pe, ms, recv, a, node)
	}
	rows.Close()
	if len(want) == 0 {
		t.Fatal("the workload has no message events")
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("message_events FINAL: %d rows, want %d; %s", len(got), len(want), firstMapDiff(got, want))
	}

	// message_states.
	wantS := map[string]string{}
	for k, o := range w.finalMessages() {
		wantS[k] = stateText(o.State, o.Channel, o.Bounce, o.History)
	}
	rows, err = conn.Query(ctx, "SELECT tenant, message_id, state, channel, bounce, history_states, history_times_ms, history_events, history_hows, history_bounces, history_froms, history_reasons, sent, sent_ms FROM "+db+".message_states FINAL")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	gotS := map[string]string{}
	for rows.Next() {
		var tenant, msg, state, ch, bounce string
		var hs, he, hh, hb, hf, hr []string
		var ht []int64
		var sent uint8
		var sentMS int64
		if err := rows.Scan(&tenant, &msg, &state, &ch, &bounce, &hs, &ht, &he, &hh, &hb, &hf, &hr, &sent, &sentMS); err != nil {
			t.Fatal(err)
		}
		hist := make([]schemas.HistoryEntry, len(hs))
		firstSent := int64(-1)
		for i := range hs {
			hist[i] = schemas.HistoryEntry{State: schemas.MessageState(hs[i]), Time: ht[i], Event: he[i], How: hh[i], Bounce: hb[i], From: schemas.MessageState(hf[i]), Reason: hr[i]}
			if hs[i] == "sent" && hh[i] != "refused" && hh[i] != "duplicate" && (firstSent < 0 || ht[i] < firstSent) {
				firstSent = ht[i]
			}
		}
		if (sent == 1) != (firstSent >= 0) || (sent == 1 && sentMS != firstSent) {
			t.Errorf("message %s/%s: sent %d at %d, its history's first send %d", tenant, msg, sent, sentMS, firstSent)
		}
		gotS[tenant+"/"+msg] = stateText(schemas.MessageState(state), ch, bounce, hist)
	}
	if !reflect.DeepEqual(gotS, wantS) {
		t.Fatalf("message_states FINAL: %d rows, want %d; %s", len(gotS), len(wantS), firstMapDiff(gotS, wantS))
	}
}

func stateText(state schemas.MessageState, channel, bounce string, h []schemas.HistoryEntry) string {
	b, _ := json.Marshal(h)
	if len(h) == 0 {
		b = []byte("[]")
	}
	return fmt.Sprintf("%s %s %s %s", state, channel, bounce, b)
}

func TestDecodeMessageState(t *testing.T) {
	v := `{"tn":"t1","m":"m1","st":"opened","c":"email","rc":[{"type":"email","value":"ana@example.com"}],
		"ev":[{"id":"e1","tn":"t1","m":"m1","s":"sent","t":1000,"c":"email"},{"id":"e2","tn":"t1","m":"m1","s":"opened","t":3000,"c":"email"},{"id":"e0","tn":"t1","m":"m1","s":"sent","t":900,"c":"email"}],
		"h":[{"state":"sent","time":900,"event":"e0","how":"refused","from":"","reason":"invalid_recipient"},
		     {"state":"draft","time":1000,"event":"e1","how":"implied"},{"state":"sent","time":1000,"event":"e1","how":"event"},
		     {"state":"delivered","time":3000,"event":"e2","how":"implied"},{"state":"opened","time":3000,"event":"e2","how":"event"}],
		"rf":{"e0":{"from":"","asked":"sent","reason":"invalid_recipient"}},"by":7}`
	row, err := DecodeMessageState([]byte(v), "t1/m1", 2, 11)
	if err != nil {
		t.Fatal(err)
	}
	want := &MessageStateRow{
		Tenant: "t1", MessageID: "m1", State: "opened", Channel: "email",
		RecipientTypes: []string{"email"}, RecipientValues: []string{"ana@example.com"},
		Sent: true, SentAt: time.Unix(1, 0).UTC(), SentMS: 1000, Events: 3, Refused: 1,
		HistoryStates:  []string{"sent", "draft", "sent", "delivered", "opened"},
		HistoryTimesMS: []int64{900, 1000, 1000, 3000, 3000},
		HistoryEvents:  []string{"e0", "e1", "e1", "e2", "e2"},
		HistoryHows:    []string{"refused", "implied", "event", "implied", "event"},
		HistoryBounces: []string{"", "", "", "", ""},
		HistoryFroms:   []string{"", "", "", "", ""},
		HistoryReasons: []string{"invalid_recipient", "", "", "", ""},
		Version:        7, Partition: 2, Offset: 11,
	}
	if !reflect.DeepEqual(row, want) {
		t.Fatalf("got  %+v\nwant %+v", row, want)
	}
	// Tenant and id from the key; a message never sent.
	row, err = DecodeMessageState([]byte(`{"st":"draft","h":[{"state":"draft","time":5,"event":"e","how":"event"}],"by":1}`), "t2/m/2", 0, 0)
	if err != nil || row.Tenant != "t2" || row.MessageID != "m/2" || row.Sent || row.SentMS != 0 || !row.SentAt.Equal(time.Unix(0, 0)) {
		t.Fatalf("from the key: %+v, %v", row, err)
	}
	for _, bad := range []string{`nope`, `{"st":"sent"}`, `{"tn":"t1","m":"m1","by":-1}`} {
		if _, err := DecodeMessageState([]byte(bad), "", 0, 0); err == nil {
			t.Errorf("%s: decoded", bad)
		}
	}
	// A batch keeps the highest version of each message, the later
	// record on a tie.
	var rows MessageStateRows
	for _, r := range []MessageStateRow{{Tenant: "t1", MessageID: "m1", State: "sent", Version: 2}, {Tenant: "t1", MessageID: "m1", State: "opened", Version: 5},
		{Tenant: "t1", MessageID: "m1", State: "delivered", Version: 4}, {Tenant: "t2", MessageID: "m1", State: "draft", Version: 1},
		{Tenant: "t1", MessageID: "m1", State: "clicked", Version: 5}} {
		rows.Add(&r)
	}
	if rows.Len() != 2 || rows.Rows()[0].State != "clicked" || rows.Rows()[1].State != "draft" {
		t.Fatalf("batch: %+v", rows.Rows())
	}
}

func TestMessageEventRows(t *testing.T) {
	ev := func(typ, props string) *schemas.Event {
		var p map[string]string
		if err := json.Unmarshal([]byte(props), &p); err != nil {
			t.Fatal(err)
		}
		return &schemas.Event{Tenant: "t1", ID: "e1", Type: typ, Source: "sendgrid", Time: time.UnixMilli(1793527200123), ReceivedAt: time.UnixMilli(1793527201000),
			Identifiers: []schemas.Identifier{{Type: "user_id", Value: "u1"}, {Type: "email", Value: "ana@example.com"}}, Properties: p}
	}
	var rows MessageEventRows
	for _, c := range []struct {
		ev   *schemas.Event
		kept bool
	}{
		{ev("message.bounced", `{"message_id":"\"m1\"","provider_event_id":"\"sg1\""}`), true}, // soft, email by default
		{ev("message.delivered", `{"message_id":"\"m2\"","channel":"\"sms\""}`), true},         // no phone: no address
		{ev("message.opened", `{}`), false},
		{ev("message.sent", `{"message_id":"\"m3\"","channel":"\"fax\""}`), false},
		{ev("message.received", `{"message_id":"\"m4\""}`), false},
		{ev("page.viewed", `{"message_id":"\"m5\""}`), false},
	} {
		if got := rows.Add(c.ev, "", 1, 2); got != c.kept {
			t.Errorf("%s %v: kept %v, want %v", c.ev.Type, c.ev.Properties, got, c.kept)
		}
	}
	if rows.Len() != 2 {
		t.Fatalf("%d rows", rows.Len())
	}
	cols := rows.columns()
	for i, c := range MessageEventColumns {
		switch c {
		case "message_id", "state", "channel", "bounce", "provider_event_id", "address_type", "address":
			got := cols[i].([]string)
			want := map[string][]string{
				"message_id": {"m1", "m2"}, "state": {"bounced", "delivered"}, "channel": {"email", "sms"},
				"bounce": {"soft", ""}, "provider_event_id": {"sg1", ""}, "address_type": {"email", ""}, "address": {"ana@example.com", ""},
			}[c]
			if !slices.Equal(got, want) {
				t.Errorf("column %s: %q, want %q", c, got, want)
			}
		}
	}
}

// The funnel on hand-made states: per day of the first send, tenant and
// channel; implied states count, refused and duplicate entries do not; a
// message never sent is left out; an older version written after a newer
// one changes nothing; the rates and their zero denominators; --since and
// the tenant filter.
func TestMessageFunnelView(t *testing.T) {
	conn, db := testDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d := func(day, hour int) int64 { return time.Date(2026, 11, day, hour, 0, 0, 0, time.UTC).UnixMilli() }
	h := func(state, how string, tm int64, bounce string) schemas.HistoryEntry {
		return schemas.HistoryEntry{State: schemas.MessageState(state), How: how, Time: tm, Event: "e", Bounce: bounce}
	}
	msgs := []schemas.MessageTable{
		// 2026-11-01, email: opened (delivered implied), clicked.
		{Tenant: "t1", MessageID: "a", Channel: "email", State: "clicked", By: 4, History: []schemas.HistoryEntry{
			h("draft", "implied", d(1, 9), ""), h("sent", "event", d(1, 9), ""), h("delivered", "implied", d(1, 10), ""),
			h("opened", "event", d(1, 10), ""), h("clicked", "event", d(2, 1), "")}},
		// Sent late on 11-01 (the sent report came with an earlier time
		// than the delivery), then a soft bounce, resent, delivered.
		{Tenant: "t1", MessageID: "b", Channel: "email", State: "delivered", By: 9, History: []schemas.HistoryEntry{
			h("draft", "implied", d(1, 23), ""), h("sent", "event", d(1, 23), ""), h("bounced", "event", d(2, 0), "soft"),
			h("resent", "event", d(2, 5), ""), h("delivered", "event", d(2, 6), ""), h("bounced", "absorbed", d(2, 7), "hard")}},
		// A hard bounce; a duplicate report of a spam complaint and a
		// refused delivery do not count.
		{Tenant: "t1", MessageID: "c", Channel: "email", State: "bounced", Bounce: "hard", By: 3, History: []schemas.HistoryEntry{
			h("draft", "implied", d(1, 8), ""), h("sent", "event", d(1, 8), ""), h("bounced", "event", d(1, 9), "hard"),
			h("delivered", "refused", d(1, 10), ""), h("spam", "duplicate", d(1, 11), "")}},
		// SMS: a refused send only (invalid recipient): not in the funnel.
		{Tenant: "t1", MessageID: "d", Channel: "sms", State: "", By: 1, History: []schemas.HistoryEntry{h("sent", "refused", d(1, 8), "")}},
		// SMS on 11-03: spam and an unsubscribe (absorbed after it).
		{Tenant: "t1", MessageID: "e", Channel: "sms", State: "spam", By: 5, History: []schemas.HistoryEntry{
			h("draft", "implied", d(3, 8), ""), h("sent", "implied", d(3, 8), ""), h("delivered", "event", d(3, 8), ""),
			h("spam", "event", d(3, 9), ""), h("unsubscribed", "absorbed", d(3, 10), "")}},
		// A draft, saved: never sent.
		{Tenant: "t1", MessageID: "f", Channel: "email", State: "saved", By: 2, History: []schemas.HistoryEntry{
			h("draft", "event", d(1, 8), ""), h("saved", "event", d(1, 9), "")}},
		// Another tenant.
		{Tenant: "t2", MessageID: "a", Channel: "email", State: "sent", By: 1, History: []schemas.HistoryEntry{
			h("draft", "implied", d(1, 8), ""), h("sent", "event", d(1, 8), "")}},
	}
	// An older state of t1/a (version 2: just sent, on 11-05) written
	// after the newer one must not count.
	old := schemas.MessageTable{Tenant: "t1", MessageID: "a", Channel: "email", State: "sent", By: 2, History: []schemas.HistoryEntry{
		h("draft", "implied", d(5, 9), ""), h("sent", "event", d(5, 9), "")}}
	insert := func(ms ...schemas.MessageTable) {
		t.Helper()
		var rows MessageStateRows
		for i, m := range ms {
			v, _ := json.Marshal(m)
			row, err := DecodeMessageState(v, "", 0, int64(i))
			if err != nil {
				t.Fatal(err)
			}
			rows.Add(row)
		}
		if err := rows.Insert(ctx, conn, db); err != nil {
			t.Fatal(err)
		}
	}
	insert(msgs...)
	insert(old, msgs[1])
	r, ok := ReportByName("funnel")
	if !ok {
		t.Fatal("no report funnel")
	}
	run := func(since time.Time, tenant string) [][]string {
		t.Helper()
		res, err := RunReportFor(ctx, conn, db, r, since, tenant)
		if err != nil {
			t.Fatal(err)
		}
		want := "day,tenant,channel,sent,delivered,opened,clicked,bounced,bounced_hard,bounced_soft,spam,unsubscribed," +
			"delivery_rate,open_rate,click_rate,click_to_open_rate,bounce_rate,hard_bounce_rate,soft_bounce_rate,spam_rate,unsubscribe_rate"
		if strings.Join(res.Columns, ",") != want {
			t.Fatalf("columns %v", res.Columns)
		}
		return res.Rows
	}
	all := [][]string{
		// a, b, c: delivered a and b; opened and clicked a; bounced b
		// (soft, then hard absorbed) and c (hard).
		{"2026-11-01", "t1", "email", "3", "2", "1", "1", "2", "2", "1", "0", "0",
			"0.6666666666666666", "0.5", "0.5", "1", "0.6666666666666666", "0.6666666666666666", "0.3333333333333333", "0", "0"},
		{"2026-11-01", "t2", "email", "1", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0"},
		{"2026-11-03", "t1", "sms", "1", "1", "0", "0", "0", "0", "0", "1", "1", "1", "0", "0", "0", "0", "0", "0", "1", "1"},
	}
	if got := run(time.Time{}, ""); !reflect.DeepEqual(got, all) {
		t.Fatalf("report funnel:\n got %v\nwant %v", got, all)
	}
	if got := run(time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC), "t1"); !reflect.DeepEqual(got, all[2:]) {
		t.Fatalf("report funnel --since 2026-11-02 --tenant t1:\n got %v\nwant %v", got, all[2:])
	}
	if got := run(time.Time{}, "t2"); !reflect.DeepEqual(got, all[1:2]) {
		t.Fatalf("report funnel --tenant t2:\n got %v", got)
	}
}

// The sink fills message_events from rolodex.events and message_states
// from the lifecycle's table topic; the funnel equals the reference's.
func TestSinkMessages(t *testing.T) {
	conn, db := testDB(t)
	cluster := newCluster(t, 3)
	brokers := cluster.ListenAddrs()
	w := genWorkload(5, 200, 10).withMessages(400)
	p := newProducer(t, brokers)
	p.events(t, w.events)
	p.deadLetters(t, w.deadLetters)
	p.messageStates(t, w)
	p.raw(t, schemas.TopicLifecycleTable, "not json", `{"tn":"t1","st":"sent"}`)
	cfg := testSinkConfig(t, brokers, db)
	s, stop := runSink(t, cfg)
	waitFor(t, 30*time.Second, "every record in ClickHouse and committed", func() bool { return caughtUp(t, brokers, cfg.Group) })
	stop()
	checkMessageTables(t, conn, db, w)
	checkReports(t, conn, db, w, "")
	checkReports(t, conn, db, w, "2026-11-03")
	if got := testutil.ToFloat64(s.Metrics().Undecodable.WithLabelValues(schemas.TopicLifecycleTable)); got != 2 {
		t.Errorf("undecodable lifecycle table records: %v, want 2", got)
	}
	st := w.msgs.states
	if n := testutil.ToFloat64(s.Metrics().RowsWritten.WithLabelValues(tableMessageStates)); n < float64(len(w.finalMessages())) || n > float64(len(st)) {
		t.Errorf("message_states rows written: %v, want %d to %d", n, len(w.finalMessages()), len(st))
	}
}
