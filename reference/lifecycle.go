package reference

// The message lifecycle (docs/lifecycle.md), the plain way: the transition
// table written out cell by cell as the page shows it, and a fold of each
// message's events sorted by (event time, event id). It uses nothing of
// processors/lifecycle (no edges, no implication chains, no ranks), so that
// comparing with it checks them.

import (
	"sort"
	"strings"

	"github.com/rolodex/rolodex/schemas"
)

// MessageColumns are the states a message event asks for, in the order of
// the columns of MessageTable.
var MessageColumns = []string{"draft", "saved", "sent", "deferred", "delivered", "opened", "clicked",
	"unsubscribed", "spam", "bounced", "cancelled", "resent", "edited", "deleted"}

// MessageTable is docs/lifecycle.md's transition table: per state the
// message is in ("∅": none yet), the cell of each state asked for, in
// MessageColumns order. "→" moves, "=" absorbs, "✗" refuses, "⇒ a,b"
// passes through a and b (implied) to the state asked for; "+saved"
// follows with the automatic save.
var MessageTable = map[string][]string{
	"∅":            {"→", "⇒ draft", "⇒ draft", "⇒ draft,sent", "⇒ draft,sent", "⇒ draft,sent,delivered", "⇒ draft,sent,delivered,opened", "⇒ draft,sent,delivered", "⇒ draft,sent,delivered", "⇒ draft,sent", "⇒ draft,sent; +saved", "⇒ draft,sent,bounced", "⇒ draft,sent,bounced", "⇒ draft,saved"},
	"draft":        {"=", "→", "→", "⇒ sent", "⇒ sent", "⇒ sent,delivered", "⇒ sent,delivered,opened", "⇒ sent,delivered", "⇒ sent,delivered", "⇒ sent", "⇒ sent; +saved", "⇒ sent,bounced", "⇒ sent,bounced", "⇒ saved"},
	"saved":        {"=", "=", "✗", "✗", "✗", "✗", "✗", "✗", "✗", "✗", "✗", "✗", "✗", "→"},
	"sent":         {"=", "✗", "=", "→", "→", "⇒ delivered", "⇒ delivered,opened", "⇒ delivered", "⇒ delivered", "→", "→ +saved", "⇒ bounced", "⇒ bounced", "✗"},
	"deferred":     {"=", "✗", "=", "=", "→", "⇒ delivered", "⇒ delivered,opened", "⇒ delivered", "⇒ delivered", "→", "→ +saved", "⇒ bounced", "⇒ bounced", "✗"},
	"delivered":    {"=", "✗", "=", "=", "=", "→", "⇒ opened", "→", "→", "→", "✗", "⇒ bounced", "⇒ bounced", "✗"},
	"opened":       {"=", "✗", "=", "=", "=", "=", "→", "→", "→", "✗", "✗", "✗", "✗", "✗"},
	"clicked":      {"=", "✗", "=", "=", "=", "=", "=", "→", "→", "✗", "✗", "✗", "✗", "✗"},
	"unsubscribed": {"=", "✗", "=", "=", "=", "=", "=", "=", "→", "✗", "✗", "✗", "✗", "✗"},
	"spam":         {"=", "✗", "=", "=", "=", "=", "=", "=", "=", "✗", "✗", "✗", "✗", "✗"},
	"bounced":      {"=", "✗", "=", "✗", "✗", "✗", "✗", "✗", "✗", "=", "✗", "→", "→", "✗"},
	"resent":       {"=", "✗", "=", "→", "→", "⇒ delivered", "⇒ delivered,opened", "⇒ delivered", "⇒ delivered", "→", "→ +saved", "=", "⇒ bounced", "✗"},
	"edited":       {"=", "→", "=", "✗", "✗", "✗", "✗", "✗", "✗", "=", "✗", "→", "=", "⇒ saved"},
	"deleted":      {"=", "=", "✗", "✗", "✗", "✗", "✗", "✗", "✗", "✗", "✗", "✗", "✗", "="},
}

// MessageCell reads the table: for a message in state from ("" for none)
// asked for state asked, whether the event is absorbed or refused, else
// the states entered in order (implied ones, asked, and the automatic
// save). ok is false for a state the table does not know.
func MessageCell(from, asked schemas.MessageState) (absorbed, refused bool, path []schemas.MessageState, ok bool) {
	row := "∅"
	if from != "" {
		row = string(from)
	}
	cells, found := MessageTable[row]
	col := -1
	for i, c := range MessageColumns {
		if c == string(asked) {
			col = i
		}
	}
	if !found || col < 0 {
		return false, false, nil, false
	}
	cell := cells[col]
	switch {
	case cell == "=":
		return true, false, nil, true
	case cell == "✗":
		return false, true, nil, true
	}
	auto := strings.HasSuffix(cell, "+saved")
	cell = strings.TrimSuffix(strings.TrimSpace(strings.TrimSuffix(cell, "+saved")), ";")
	if rest, implied := strings.CutPrefix(cell, "⇒ "); implied {
		for _, s := range strings.Split(rest, ",") {
			path = append(path, schemas.MessageState(s))
		}
	}
	path = append(path, asked)
	if auto {
		path = append(path, schemas.MessageSaved)
	}
	return false, false, path, true
}

// MessageOutcome is a message's state as the model folds it.
type MessageOutcome struct {
	State     schemas.MessageState
	Bounce    string
	Channel   string
	Recipient []schemas.Identifier
	History   []schemas.HistoryEntry
	Refused   map[string]schemas.MessageRefusal
}

// message is one message event as the model reads it.
type message struct {
	ev      *schemas.Event
	key     string
	state   schemas.MessageState
	time    int64
	channel string
	pid     string
	bounce  string
}

// Messages folds every message of events (in any order, duplicates
// included; an event id keeps its first occurrence) by key
// (schemas.MessageKey). invalidSends names the send events whose recipient
// was invalid at their time (the final verdicts). Events that are not
// reserved message events, or lack a message id, are left out.
func Messages(events []*schemas.Event, invalidSends map[string]bool) map[string]MessageOutcome {
	byKey := map[string][]message{}
	seen := map[string]bool{}
	for _, ev := range events {
		st, isMsg := strings.CutPrefix(ev.Type, "message.")
		if !isMsg {
			continue
		}
		known := false
		for _, c := range MessageColumns {
			known = known || c == st
		}
		id := prop(ev, "message_id")
		if !known || id == "" {
			continue
		}
		k := schemas.MessageKey(ev.Tenant, id)
		if seen[k+"\x00"+ev.ID] {
			continue
		}
		seen[k+"\x00"+ev.ID] = true
		m := message{ev: ev, key: k, state: schemas.MessageState(st), time: ev.Time.UnixMilli(),
			channel: prop(ev, "channel"), pid: prop(ev, "provider_event_id"), bounce: prop(ev, "bounce")}
		if m.channel == "" {
			m.channel = "email"
		}
		if m.state == schemas.MessageBounced && m.bounce == "" {
			m.bounce = "soft"
		}
		byKey[k] = append(byKey[k], m)
	}
	out := map[string]MessageOutcome{}
	for k, ms := range byKey {
		sort.Slice(ms, func(i, j int) bool {
			if ms[i].time != ms[j].time {
				return ms[i].time < ms[j].time
			}
			return ms[i].ev.ID < ms[j].ev.ID
		})
		out[k] = foldMessage(ms, invalidSends)
	}
	return out
}

func foldMessage(ms []message, invalidSends map[string]bool) MessageOutcome {
	var o MessageOutcome
	var state schemas.MessageState
	bounce := ""
	reports := map[string]bool{}
	for _, m := range ms {
		e := schemas.HistoryEntry{State: m.state, Time: m.time, Event: m.ev.ID}
		if m.pid != "" {
			if reports[string(m.state)+"/"+m.pid] {
				e.How = "duplicate"
				o.History = append(o.History, e)
				continue
			}
			reports[string(m.state)+"/"+m.pid] = true
		}
		reason := ""
		absorbed, refused, path, _ := MessageCell(state, m.state)
		if (m.state == schemas.MessageSent || m.state == schemas.MessageResent) && invalidSends[m.ev.ID] {
			reason = "invalid_recipient"
		} else if refused {
			reason = "invalid_transition"
		}
		if reason != "" {
			e.How, e.From, e.Reason = "refused", state, reason
			o.History = append(o.History, e)
			if o.Refused == nil {
				o.Refused = map[string]schemas.MessageRefusal{}
			}
			o.Refused[m.ev.ID] = schemas.MessageRefusal{From: state, Asked: m.state, Reason: reason}
			continue
		}
		if absorbed {
			e.How, e.Bounce = "absorbed", m.bounce
			o.History = append(o.History, e)
			continue
		}
		for i, s := range path {
			h := schemas.HistoryEntry{State: s, Time: m.time, Event: m.ev.ID, How: "implied"}
			last := len(path) - 1
			if m.state == schemas.MessageCancelled {
				last-- // the automatic save follows the cancel
				if i == len(path)-1 {
					h.How = "automatic"
				}
			}
			if i == last {
				h.How, h.Bounce = "event", m.bounce
			}
			if s == schemas.MessageBounced {
				bounce = h.Bounce
			}
			o.History = append(o.History, h)
			state = s
		}
	}
	o.State = state
	if state == schemas.MessageBounced {
		o.Bounce = bounce
	}
	if n := len(ms); n > 0 {
		o.Channel = ms[n-1].channel
		o.Recipient = ms[n-1].ev.Identifiers
	}
	return o
}
