package lifecycle

// The router's logic (docs/lifecycle.md, "Topology"): where an event of
// rolodex.events goes. Pure: no goka, no Kafka.

import (
	"errors"

	"github.com/rolodex/rolodex/schemas"
)

// Routes is where the router sends one event of rolodex.events: to the
// lifecycle (Message, keyed by the message), to the recipients group
// (Recipient, keyed by the address's node id), both, or neither. Invalid
// is set for a reserved message event with a missing or invalid property.
type Routes struct {
	MessageKey   string
	Message      *schemas.MessageInput
	RecipientKey string
	Recipient    *schemas.RecipientInput
	Invalid      error
}

// Address is the recipient address of a message event: its first
// identifier of the channel's address type.
func Address(m *schemas.MessageEvent) (schemas.Identifier, bool) {
	typ, ok := schemas.AddressType(m.Channel)
	if !ok {
		return schemas.Identifier{}, false
	}
	for _, id := range m.Identifiers {
		if id.Type == typ {
			return id, true
		}
	}
	return schemas.Identifier{}, false
}

// isAddressType reports whether typ is the address type of a channel.
func isAddressType(typ string) bool {
	for _, c := range []string{schemas.ChannelEmail, schemas.ChannelSMS, schemas.ChannelWhatsApp, schemas.ChannelMessenger} {
		if t, _ := schemas.AddressType(c); t == typ {
			return true
		}
	}
	return false
}

// Route routes ev; at (Unix ms) is when it was read (the input's Kafka
// timestamp).
//
//   - A send (message.sent, message.resent) with an address goes to the
//     recipients group only: it forwards the send with its verdict.
//   - Every other message event goes to the lifecycle; bounces,
//     deliveries, opens, clicks, complaints and unsubscribes with an
//     address also go to the recipients group (streaks, profile effects).
//   - identifier.invalidated and identifier.revalidated of an address
//     type go to the recipients group.
func Route(ev *schemas.Event, at int64) Routes {
	var r Routes
	switch ev.Type {
	case schemas.EventIdentifierInvalidated, schemas.EventIdentifierRevalidated:
		addr := schemas.Identifier{Type: schemas.StringProperty(ev, "type"), Value: schemas.StringProperty(ev, "value")}
		if addr.Value == "" || !isAddressType(addr.Type) {
			return r
		}
		r.RecipientKey = schemas.NodeID(ev.Tenant, addr)
		w := &schemas.ValidityWrite{ID: ev.ID, Time: ev.Time.UnixMilli(), Source: ev.Source,
			Invalid: ev.Type == schemas.EventIdentifierInvalidated, Reason: schemas.StringProperty(ev, "reason")}
		if w.Invalid && w.Reason == schemas.ReasonHardBounce {
			w.MessageID = schemas.StringProperty(ev, schemas.PropMessageID)
		}
		r.Recipient = &schemas.RecipientInput{Tenant: ev.Tenant, Address: addr, At: at, Validity: w}
		return r
	}
	m, err := schemas.MessageEventOf(ev)
	if errors.Is(err, schemas.ErrNotMessageEvent) {
		return r
	}
	if err != nil {
		r.Invalid = err
		return r
	}
	addr, hasAddr := Address(&m)
	toRecipients := false
	switch m.State {
	case sent, resent, bounced, delivered, opened, clicked, spam, unsubscribed:
		toRecipients = hasAddr
	}
	if toRecipients {
		r.RecipientKey = schemas.NodeID(m.Tenant, addr)
		r.Recipient = &schemas.RecipientInput{Tenant: m.Tenant, Address: addr, Message: &m, At: at}
	}
	if !toRecipients || (m.State != sent && m.State != resent) {
		r.MessageKey = schemas.MessageKey(m.Tenant, m.MessageID)
		r.Message = &schemas.MessageInput{Event: &m}
	}
	return r
}
