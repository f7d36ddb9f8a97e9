package lifecycle

import (
	"fmt"
	"math/rand"
	"reflect"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/rolodex/rolodex/reference"
	"github.com/rolodex/rolodex/schemas"
)

// The property (docs/lifecycle.md, "Proof"): random message histories
// walked on the machine, reports dropped, invalid events added, duplicated
// (same event id; same provider event id under another id), verdicts
// changing, arrivals shuffled, processed with crashes — every message's
// state and history, and the refusals standing in the dead letters, equal
// the reference model's fold of the set of events.

// record is one input on the lifecycle's partition.
type record struct {
	key     string
	ev      *schemas.Event // nil for a verdict alone
	verdict *schemas.RecipientVerdict
}

type history struct {
	records []record
	events  []*schemas.Event
	invalid map[string]bool // final verdicts: send event id → invalid
}

// walk generates one message's events: a walk on the machine's moves (the
// table's "→" cells), some reports dropped, some invalid events, times
// increasing with ties and a little skew.
func walk(r *rand.Rand, tenant, msg string, base int64, h *history) []*schemas.Event {
	var evs []*schemas.Event
	state := schemas.MessageState("")
	t := base
	n := 1 + r.Intn(8)
	channel := []string{"", "email", "sms", "whatsapp"}[r.Intn(4)]
	seq := 0
	add := func(st schemas.MessageState, at int64) *schemas.Event {
		seq++
		props := map[string]string{"message_id": strconv.Quote(msg)}
		if channel != "" {
			props["channel"] = strconv.Quote(channel)
		}
		if st == schemas.MessageBounced && r.Intn(3) > 0 {
			props["bounce"] = strconv.Quote([]string{"hard", "soft"}[r.Intn(2)])
		}
		if r.Intn(3) == 0 {
			props["provider_event_id"] = strconv.Quote(fmt.Sprintf("pv-%s-%d", msg, seq))
		}
		ids := []schemas.Identifier{{Type: schemas.IDEmail, Value: msg + "@example.com"}}
		if r.Intn(4) == 0 {
			ids = append(ids, schemas.Identifier{Type: schemas.IDUserID, Value: fmt.Sprint("u", seq)})
		}
		ev := &schemas.Event{Tenant: tenant, ID: fmt.Sprintf("%s-e%02d", msg, seq), Type: schemas.MessageEventType(st),
			Time: time.UnixMilli(at), Source: "test", Partner: "p", Identifiers: ids, Properties: props}
		evs = append(evs, ev)
		return ev
	}
	for i := 0; i < n; i++ {
		var moves []schemas.MessageState
		for j, asked := range reference.MessageColumns {
			row := "∅"
			if state != "" {
				row = string(state)
			}
			if c := reference.MessageTable[row][j]; c == "→" || c == "→ +saved" {
				moves = append(moves, schemas.MessageState(asked))
			}
		}
		if len(moves) == 0 {
			break
		}
		next := moves[r.Intn(len(moves))]
		t += int64(r.Intn(4)) // 0: a tie
		if r.Intn(5) > 0 {    // providers drop reports; implication fills them in
			at := t
			if r.Intn(8) == 0 {
				at -= int64(r.Intn(3)) // clock skew
			}
			add(next, at)
		}
		state = next
		if state == schemas.MessageCancelled {
			state = schemas.MessageSaved
		}
	}
	for k := r.Intn(3); k > 0; k-- { // noise: any state at any time
		add(schemas.MessageStates()[r.Intn(14)], base+int64(r.Intn(int(t-base)+3))-1)
	}
	return evs
}

func generate(r *rand.Rand) *history {
	h := &history{invalid: map[string]bool{}}
	var recs []record
	for m := 0; m < 1+r.Intn(5); m++ {
		tenant := []string{"t1", "t2"}[r.Intn(2)]
		msg := fmt.Sprintf("m%d", m)
		key := schemas.MessageKey(tenant, msg)
		for _, ev := range walk(r, tenant, msg, 1000+int64(r.Intn(5)), h) {
			h.events = append(h.events, ev)
			rec := record{key: key, ev: ev}
			if ev.Type == "message.sent" || ev.Type == "message.resent" {
				if r.Intn(3) == 0 { // the recipients group forwards it with a verdict
					versions := 1 + r.Intn(3)
					var vs []record
					for v := 1; v <= versions; v++ {
						inv := r.Intn(2) == 0
						vs = append(vs, record{key: key, verdict: &schemas.RecipientVerdict{MessageID: msg, Event: ev.ID, Invalid: inv, Version: int64(v)}})
						h.invalid[ev.ID] = inv
					}
					rec.verdict = vs[0].verdict
					recs = append(recs, vs[1:]...)
				}
			}
			recs = append(recs, rec)
			switch r.Intn(6) {
			case 0: // the same event again
				recs = append(recs, record{key: key, ev: ev})
			case 1: // the provider retries under another event id
				if ev.Properties["provider_event_id"] != "" {
					dup := *ev
					dup.ID = ev.ID + "-retry"
					dup.Time = ev.Time.Add(time.Duration(r.Intn(5)-2) * time.Millisecond)
					h.events = append(h.events, &dup)
					recs = append(recs, record{key: key, ev: &dup})
				}
			}
		}
	}
	// Arrivals: providers reorder within a few records; sometimes all.
	if r.Intn(4) == 0 {
		r.Shuffle(len(recs), func(i, j int) { recs[i], recs[j] = recs[j], recs[i] })
	} else {
		pos := make([]float64, len(recs))
		for i := range pos {
			pos[i] = float64(i) + r.Float64()*6
		}
		idx := make([]int, len(recs))
		for i := range idx {
			idx[i] = i
		}
		sort.SliceStable(idx, func(a, b int) bool { return pos[idx[a]] < pos[idx[b]] })
		shuffled := make([]record, len(recs))
		for i, j := range idx {
			shuffled[i] = recs[j]
		}
		recs = shuffled
	}
	// Verdicts arrive in any order too: the stage keeps the highest
	// version.
	h.records = recs
	return h
}

// run processes the records on one partition with crashes: a crash keeps
// the writes the table had landed (a prefix, at least up to the commit),
// the letters the output had landed (a prefix, at least the committed
// inputs'), and replays from the committed offset. It returns the final
// table and the letters, in output order.
func run(t *testing.T, r *rand.Rand, recs []record, crashes int) (map[string]*State, []keyed) {
	type write struct {
		in  int
		key string
		st  *State
	}
	type letter struct {
		in int
		keyed
	}
	var tableLog []write
	var out []letter
	local := map[string]*State{}
	committed, pos := 0, 0
	for pos < len(recs) || crashes > 0 {
		if pos == len(recs) || (crashes > 0 && r.Intn(len(recs)+1) == 0) {
			if crashes == 0 {
				break
			}
			crashes--
			// the table keeps writes of inputs < w, the output letters of a
			// prefix covering at least the committed inputs
			// the local store, which goka writes besides the table, may keep
			// a longer prefix than the table topic
			w := committed + r.Intn(pos-committed+1)
			w2 := w + r.Intn(pos-w+1)
			var kept []write
			local = map[string]*State{}
			for _, x := range tableLog {
				if x.in < w {
					kept = append(kept, x)
				}
				if x.in < w2 {
					local[x.key] = x.st
				}
			}
			tableLog = kept
			must := 0
			for i, x := range out {
				if x.in < committed {
					must = i + 1
				}
			}
			out = out[:must+r.Intn(len(out)-must+1)]
			pos = committed
			continue
		}
		rec := recs[pos]
		in := Input{Verdict: rec.verdict, Origin: int64(pos + 1)}
		if rec.ev != nil {
			m, err := schemas.MessageEventOf(rec.ev)
			if err != nil {
				t.Fatalf("generated a bad event: %v", err)
			}
			in.Event = &m
		}
		res := Apply(local[rec.key], in)
		if res.Write {
			local[rec.key] = res.State
			tableLog = append(tableLog, write{pos, rec.key, res.State})
		}
		for _, l := range res.Letters {
			out = append(out, letter{pos, keyed{rec.key, l}})
		}
		pos++
		if r.Intn(4) == 0 {
			committed = pos
		}
	}
	var ls []keyed
	for _, x := range out {
		ls = append(ls, x.keyed)
	}
	return local, ls
}

// keyed is a letter with the key of its message.
type keyed struct {
	key string
	l   schemas.MessageLetter
}

func (h *history) String() string {
	s := ""
	for _, rec := range h.records {
		s += "\n  " + rec.key
		if rec.ev != nil {
			s += fmt.Sprintf(" %s %s @%d %v", rec.ev.ID, rec.ev.Type, rec.ev.Time.UnixMilli(), rec.ev.Properties)
		}
		if v := rec.verdict; v != nil {
			s += fmt.Sprintf(" verdict %s invalid=%v v%d", v.Event, v.Invalid, v.Version)
		}
	}
	return s
}

func TestLifecycleMatchesReference(t *testing.T) {
	runs := 20000
	if testing.Short() {
		runs = 500
	}
	for i := 0; i < runs; i++ {
		seed := int64(i)
		r := rand.New(rand.NewSource(seed))
		h := generate(r)
		table, letters := run(t, r, h.records, r.Intn(4))
		want := reference.Messages(h.events, h.invalid)
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("seed %d: "+format+"\nrecords:%s", append([]any{seed}, append(args, h)...)...)
		}
		if len(table) != len(want) {
			fail("%d messages, the reference %d", len(table), len(want))
		}
		// the refusals standing in the letters: per event, the latest
		standing := map[string]map[string]schemas.MessageRefusal{}
		for _, x := range letters {
			k, l := x.key, x.l
			if standing[k] == nil {
				standing[k] = map[string]schemas.MessageRefusal{}
			}
			if l.Withdrawn {
				delete(standing[k], l.Event)
			} else {
				standing[k][l.Event] = l.Refusal
			}
		}
		for key, w := range want {
			s := table[key]
			if s == nil {
				fail("no state for %s", key)
			}
			got := reference.MessageOutcome{State: s.State, Bounce: s.Bounce, Channel: s.Channel, Recipient: s.Recipient, History: s.History, Refused: s.Refused}
			if !reflect.DeepEqual(got, w) {
				fail("%s:\n got  %+v\n want %+v", key, got, w)
			}
			st := standing[key]
			if len(st) == 0 {
				st = nil
			}
			if !reflect.DeepEqual(st, w.Refused) {
				fail("%s: the letters leave refusals %v, the reference %v", key, st, w.Refused)
			}
		}
	}
}
