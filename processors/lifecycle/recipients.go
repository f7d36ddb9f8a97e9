package lifecycle

// The recipients group's logic (docs/lifecycle.md, "What reaches the
// profile" and "Refusing a send to an invalid address"), keyed by the
// address's node id. Pure: no goka, no Kafka.

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/rolodex/rolodex/schemas"
)

// Recipient is the recipients group's table value.
type Recipient = schemas.RecipientTable

// Bounds of what an address keeps (docs/lifecycle.md, "Bounds").
const (
	// RecipientSendLimit: the latest sends whose verdicts a late
	// invalidation or revalidation can still change.
	RecipientSendLimit = 1000
	// RecipientStreakLimit: the latest soft bounces and resets.
	RecipientStreakLimit = 200
	// RecipientValidityLimit: the latest validity writes.
	RecipientValidityLimit = 200
)

// DefaultSoftBounceLimit is lifecycle.soft_bounce_limit's default.
const DefaultSoftBounceLimit = 3

// RecipientsConfig is what the recipients group needs to know.
type RecipientsConfig struct {
	// SoftBounceLimit: this many soft bounces in a row invalidate the
	// address; 0 never.
	SoftBounceLimit int
	// Purposes maps a channel to the consent purpose a complaint or an
	// unsubscribe revokes; a channel without one revokes nothing.
	Purposes map[string]string
}

// DefaultRecipientsConfig is the configuration of docs/lifecycle.md.
func DefaultRecipientsConfig() RecipientsConfig {
	return RecipientsConfig{SoftBounceLimit: DefaultSoftBounceLimit, Purposes: schemas.DefaultMarketingPurposes()}
}

// Validate reports a configuration that cannot work: a negative limit, a
// purpose for a channel that does not exist, a purpose that is not a name.
func (c RecipientsConfig) Validate() error {
	if c.SoftBounceLimit < 0 {
		return fmt.Errorf("soft_bounce_limit %d: must be 0 (never) or more", c.SoftBounceLimit)
	}
	for _, ch := range schemas.SortedKeys(c.Purposes) {
		if _, ok := schemas.AddressType(ch); !ok {
			return fmt.Errorf("purposes: unknown channel %q (email, sms, whatsapp or messenger)", ch)
		}
		if p := c.Purposes[ch]; p != "" && !schemas.NameRe.MatchString(p) {
			return fmt.Errorf("purposes: %s: %q is not a consent purpose: a letter or digit, then up to 99 letters, digits, '_', '.', ':' or '-'", ch, p)
		}
	}
	return nil
}

// RecipientResult is what handling an input of an address makes.
type RecipientResult struct {
	State *Recipient
	// Outputs: verdicts (with the send they judge, for a new send) to
	// rolodex.messages.events and events to rolodex.events, in order.
	Outputs []schemas.RecipientOutput
	Write   bool
	// Replayed: the input was handled before; Outputs are its outputs,
	// written again.
	Replayed bool
}

// DerivedID is the id of an event the lifecycle writes for effect of
// source event src: "lc-" and 32 hex digits of SHA-256(src, effect), so
// that a replay writes the same event and the identity stage drops it.
func DerivedID(src, effect string) string {
	h := sha256.Sum256([]byte(src + "\x00" + effect))
	return "lc-" + hex.EncodeToString(h[:16])
}

// softID is the id of the gen-th soft_bounces invalidation (withdraw:
// its withdrawal) named by bounce: the numbers sort the writes in the
// order they are made, within one event time.
func softID(bounce string, gen int, withdraw bool) string {
	n := 2 * gen
	if withdraw {
		n++
	}
	return fmt.Sprintf("%s-%04d", DerivedID(bounce, schemas.ReasonSoftBounces), n)
}

// invalidAt reports whether the address is invalid for send x: its
// latest validity write before x's time is an invalidation. When no kept
// write is before it: floor (the latest write the trim dropped), if
// before it, else realFloor (the latest real one dropped), if before it
// (a best guess for a send older than the floor). A hard
// bounce's invalidation of x's own message does not count for a
// message.sent (provider timestamps in whole seconds put the bounce
// before the send it bounced); it does for a message.resent.
func invalidAt(ws []schemas.ValidityWrite, floor, realFloor *schemas.ValidityWrite, x *schemas.RecipientSend) bool {
	skip := func(w *schemas.ValidityWrite) bool {
		return w.Time >= x.Time || (!x.Resent && w.Invalid && w.Reason == schemas.ReasonHardBounce && w.MessageID != "" && w.MessageID == x.MessageID)
	}
	for i := len(ws) - 1; i >= 0; i-- {
		if !skip(&ws[i]) {
			return ws[i].Invalid
		}
	}
	for _, f := range []*schemas.ValidityWrite{floor, realFloor} {
		if f != nil && f.Time < x.Time {
			return !skip(f) && f.Invalid
		}
	}
	return false
}

// softWrite reports whether w was written by soft bounces.
func softWrite(w *schemas.ValidityWrite) bool {
	return w.Reason == schemas.ReasonSoftBounces || w.Reason == schemas.ReasonSoftBouncesWithdrawn
}

// realInvalidAt reports whether an invalidation not made by soft bounces
// holds at time t (its latest such write at or before t; floor: the
// latest such write the trim dropped).
func realInvalidAt(ws []schemas.ValidityWrite, floor *schemas.ValidityWrite, t int64) bool {
	for i := len(ws) - 1; i >= 0; i-- {
		w := &ws[i]
		if w.Time > t || softWrite(w) {
			continue
		}
		return w.Invalid
	}
	return floor != nil && floor.Time <= t && floor.Invalid
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// ApplyRecipient handles one input of an address. origin is the input's
// offset plus one (0: never replayed, in tests); at (Unix ms) is the
// received_at of the events it writes.
func ApplyRecipient(s *Recipient, in schemas.RecipientInput, origin int64, cfg RecipientsConfig) RecipientResult {
	if s != nil && origin > 0 && origin <= s.By {
		var again []schemas.RecipientOutput
		for _, o := range s.Outbox {
			if o.By == origin {
				again = append(again, o)
			}
		}
		return RecipientResult{State: s, Outputs: again, Write: true, Replayed: true}
	}
	next := &Recipient{}
	if s != nil {
		*next = *s
	}
	next.Address = in.Address
	if in.Tenant != "" {
		next.Tenant = in.Tenant
	}
	var outs []schemas.RecipientOutput
	changed, validity, streak := false, false, false
	var newSend *schemas.MessageEvent
	emitEvent := func(ev *schemas.Event) {
		outs = append(outs, schemas.RecipientOutput{Key: ev.Key(), Event: ev})
	}
	addValidity := func(w schemas.ValidityWrite) bool {
		for _, x := range next.Validity {
			if x.ID == w.ID {
				return false
			}
		}
		i := sort.Search(len(next.Validity), func(i int) bool { return next.Validity[i].After(&w) })
		vs := make([]schemas.ValidityWrite, 0, len(next.Validity)+1)
		vs = append(vs, next.Validity[:i]...)
		vs = append(vs, w)
		next.Validity = append(vs, next.Validity[i:]...)
		changed = true
		if n := len(next.Validity); n > RecipientValidityLimit {
			// The dropped writes still count, as the floors: the
			// validity before the kept writes.
			for _, d := range next.Validity[:n-RecipientValidityLimit] {
				if next.Floor == nil || d.After(next.Floor) {
					next.Floor = &d
					validity = true
				}
				if !softWrite(&d) && (next.RealFloor == nil || d.After(next.RealFloor)) {
					next.RealFloor = &d
					validity = true
				}
			}
			next.Validity = next.Validity[n-RecipientValidityLimit:]
			if i == 0 {
				// Older than the kept writes: only a floor.
				return true
			}
		}
		validity = true
		return true
	}
	addStreak := func(e schemas.StreakEvent) {
		for _, x := range next.Streak {
			if x.ID == e.ID {
				return
			}
		}
		i := sort.Search(len(next.Streak), func(i int) bool {
			x := next.Streak[i]
			return x.Time > e.Time || (x.Time == e.Time && x.ID >= e.ID)
		})
		if i == 0 && len(next.Streak) >= RecipientStreakLimit {
			// Older than the kept entries: it does not count (the
			// run before them is StreakRun, final).
			return
		}
		ss := make([]schemas.StreakEvent, 0, len(next.Streak)+1)
		ss = append(ss, next.Streak[:i]...)
		ss = append(ss, e)
		next.Streak = append(ss, next.Streak[i:]...)
		if n := len(next.Streak); n > RecipientStreakLimit {
			for _, d := range next.Streak[:n-RecipientStreakLimit] {
				if d.Soft {
					next.StreakRun++
				} else {
					next.StreakRun = 0
				}
			}
			next.Streak = next.Streak[n-RecipientStreakLimit:]
		}
		changed, streak = true, true
	}
	status := func(typ, id string, t int64, partner string, ids []schemas.Identifier, props map[string]string) *schemas.Event {
		if len(ids) == 0 {
			ids = []schemas.Identifier{in.Address}
		}
		return &schemas.Event{Tenant: next.Tenant, ID: id, Type: typ, Time: time.UnixMilli(t).UTC(),
			Source: schemas.SourceLifecycle, Partner: partner, Identifiers: ids, Properties: props,
			ReceivedAt: time.UnixMilli(in.At).UTC()}
	}
	if m := in.Message; m != nil {
		next.Tenant = m.Tenant
		switch m.State {
		case sent, resent:
			known := -1
			for i := range next.Sends {
				if next.Sends[i].Event == m.ID {
					known = i
				}
			}
			if known >= 0 {
				// A repeat (the router replayed): forwarded again, with
				// the verdict it has.
				x := next.Sends[known]
				outs = append(outs, schemas.RecipientOutput{Key: schemas.MessageKey(m.Tenant, m.MessageID), Message: &schemas.MessageInput{Event: m,
					Verdict: &schemas.RecipientVerdict{MessageID: x.MessageID, Event: x.Event, Invalid: x.Invalid, Version: x.Version}}})
				break
			}
			snd := schemas.RecipientSend{MessageID: m.MessageID, Event: m.ID, Time: m.Time, Resent: m.State == resent}
			i := sort.Search(len(next.Sends), func(i int) bool {
				x := next.Sends[i]
				return x.Time > snd.Time || (x.Time == snd.Time && x.Event >= snd.Event)
			})
			ss := make([]schemas.RecipientSend, 0, len(next.Sends)+1)
			ss = append(ss, next.Sends[:i]...)
			ss = append(ss, snd)
			next.Sends = append(ss, next.Sends[i:]...)
			// Trimmed after the verdicts: a send older than the kept
			// ones is still judged and forwarded, once.
			newSend, changed = m, true
		case bounced:
			if m.Bounce == schemas.BounceHard {
				id := DerivedID(m.ID, schemas.ReasonHardBounce)
				if addValidity(schemas.ValidityWrite{ID: id, Time: m.Time, Source: schemas.SourceLifecycle, Invalid: true, Reason: schemas.ReasonHardBounce, MessageID: m.MessageID}) {
					emitEvent(status(schemas.EventIdentifierInvalidated, id, m.Time, m.Partner, m.Identifiers, map[string]string{
						"type": jsonString(in.Address.Type), "value": jsonString(in.Address.Value),
						"reason": jsonString(schemas.ReasonHardBounce), schemas.PropMessageID: jsonString(m.MessageID)}))
				}
			} else {
				addStreak(schemas.StreakEvent{ID: m.ID, Time: m.Time, Soft: true, Partner: m.Partner, Identifiers: m.Identifiers, MessageID: m.MessageID})
			}
		case delivered, opened, clicked:
			addStreak(schemas.StreakEvent{ID: m.ID, Time: m.Time})
		case spam, unsubscribed:
			if purpose := cfg.Purposes[m.Channel]; purpose != "" {
				emitEvent(status(schemas.EventConsentRevoked, DerivedID(m.ID, "consent"), m.Time, m.Partner, m.Identifiers, map[string]string{
					"purpose": jsonString(purpose), schemas.PropMessageID: jsonString(m.MessageID), "reason": jsonString(string(m.State))}))
			}
		}
	}
	if v := in.Validity; v != nil {
		if addValidity(*v) && !v.Invalid && v.Reason != schemas.ReasonSoftBouncesWithdrawn {
			addStreak(schemas.StreakEvent{ID: v.ID, Time: v.Time})
		}
	}
	if streak || validity {
		softInvalidations(next, cfg, addValidity, emitEvent, status)
	}
	if validity || newSend != nil {
		ss := make([]schemas.RecipientSend, len(next.Sends))
		copy(ss, next.Sends)
		next.Sends = ss
		for i := range next.Sends {
			x := &next.Sends[i]
			if x.Version > 0 && next.Floor != nil && x.Time <= next.Floor.Time {
				// Older than the kept validity writes: judged once.
				continue
			}
			inv := invalidAt(next.Validity, next.Floor, next.RealFloor, x)
			if x.Version > 0 && inv == x.Invalid {
				continue
			}
			x.Invalid, x.Version = inv, x.Version+1
			vd := &schemas.RecipientVerdict{MessageID: x.MessageID, Event: x.Event, Invalid: x.Invalid, Version: x.Version}
			in := &schemas.MessageInput{Verdict: vd}
			if newSend != nil && x.Event == newSend.ID {
				in.Event = newSend
			}
			outs = append(outs, schemas.RecipientOutput{Key: schemas.MessageKey(next.Tenant, x.MessageID), Message: in})
		}
		if n := len(next.Sends); n > RecipientSendLimit {
			next.Sends = next.Sends[n-RecipientSendLimit:]
		}
	}
	if !changed && len(outs) == 0 {
		return RecipientResult{State: s}
	}
	if origin > 0 {
		next.By = origin
	}
	for i := range outs {
		outs[i].By = origin
	}
	if len(outs) > 0 {
		ob := make([]schemas.RecipientOutput, 0, len(next.Outbox)+len(outs))
		ob = append(ob, next.Outbox...)
		ob = append(ob, outs...)
		if drop := len(ob) - max(OutboxLimit, len(outs)); drop > 0 {
			ob = ob[drop:]
		}
		next.Outbox = ob
	}
	return RecipientResult{State: next, Outputs: outs, Write: true}
}

// softInvalidations counts the address's soft bounces in a row, in event
// time order, and writes the difference between the invalidations the
// count calls for and those written: new ones, and withdrawals of those a
// late reset broke.
func softInvalidations(next *Recipient, cfg RecipientsConfig, addValidity func(schemas.ValidityWrite) bool,
	emit func(*schemas.Event), status func(string, string, int64, string, []schemas.Identifier, map[string]string) *schemas.Event) {
	want := map[string]schemas.StreakEvent{}
	kept := map[string]bool{}
	n := next.StreakRun
	for _, e := range next.Streak {
		kept[e.ID] = true
		if !e.Soft {
			n = 0
			continue
		}
		if n++; cfg.SoftBounceLimit > 0 && n%cfg.SoftBounceLimit == 0 {
			want[e.ID] = e
		}
	}
	// An invalidation whose bounce left the kept streak is final (no
	// earlier report counts any more): forgotten.
	soft := make([]schemas.SoftInvalidation, 0, len(next.Soft))
	for _, x := range next.Soft {
		if kept[x.Bounce] {
			soft = append(soft, x)
		}
	}
	have := map[string]int{}
	for i, x := range soft {
		have[x.Bounce] = i
	}
	props := func(reason string, e schemas.StreakEvent) map[string]string {
		p := map[string]string{"type": jsonString(next.Address.Type), "value": jsonString(next.Address.Value), "reason": jsonString(reason)}
		if e.MessageID != "" {
			p[schemas.PropMessageID] = jsonString(e.MessageID)
		}
		return p
	}
	for _, id := range schemas.SortedKeys(want) {
		e := want[id]
		i, ok := have[id]
		if ok && soft[i].Active {
			continue
		}
		if !ok {
			soft = append(soft, schemas.SoftInvalidation{Bounce: id, Time: e.Time})
			i = len(soft) - 1
		} else {
			soft[i].Gen++
		}
		soft[i].Active = true
		wid := softID(id, soft[i].Gen, false)
		if addValidity(schemas.ValidityWrite{ID: wid, Time: e.Time, Source: schemas.SourceLifecycle, Invalid: true, Reason: schemas.ReasonSoftBounces}) {
			emit(status(schemas.EventIdentifierInvalidated, wid, e.Time, e.Partner, e.Identifiers, props(schemas.ReasonSoftBounces, e)))
		}
	}
	for i := range soft {
		x := &soft[i]
		if _, ok := want[x.Bounce]; ok || !x.Active {
			continue
		}
		x.Active = false
		if realInvalidAt(next.Validity, next.RealFloor, x.Time) {
			continue
		}
		var src schemas.StreakEvent
		for _, e := range next.Streak {
			if e.ID == x.Bounce {
				src = e
			}
		}
		wid := softID(x.Bounce, x.Gen, true)
		if addValidity(schemas.ValidityWrite{ID: wid, Time: x.Time, Source: schemas.SourceLifecycle, Reason: schemas.ReasonSoftBouncesWithdrawn}) {
			emit(status(schemas.EventIdentifierRevalidated, wid, x.Time, src.Partner, src.Identifiers, props(schemas.ReasonSoftBouncesWithdrawn, src)))
		}
	}
	next.Soft = soft
}
