package schemas

// The message lifecycle (docs/lifecycle.md): the reserved message event
// types, the compact message event the lifecycle keeps, the table value of
// the lifecycle group and the names of its topics and groups.

import (
	"errors"
	"fmt"
	"strings"
)

// MessageState is a state of a message (docs/lifecycle.md, "States").
type MessageState string

// The states: the seed's, then what providers report.
const (
	MessageDraft        MessageState = "draft"
	MessageSaved        MessageState = "saved"
	MessageSent         MessageState = "sent"
	MessageOpened       MessageState = "opened"
	MessageSpam         MessageState = "spam"
	MessageCancelled    MessageState = "cancelled"
	MessageBounced      MessageState = "bounced"
	MessageResent       MessageState = "resent"
	MessageEdited       MessageState = "edited"
	MessageDeleted      MessageState = "deleted"
	MessageDelivered    MessageState = "delivered"
	MessageClicked      MessageState = "clicked"
	MessageUnsubscribed MessageState = "unsubscribed"
	MessageDeferred     MessageState = "deferred"
)

// MessageStates lists every state in the order of docs/lifecycle.md's
// transition table.
func MessageStates() []MessageState {
	return []MessageState{
		MessageDraft, MessageSaved, MessageSent, MessageDeferred, MessageDelivered,
		MessageOpened, MessageClicked, MessageUnsubscribed, MessageSpam, MessageBounced,
		MessageCancelled, MessageResent, MessageEdited, MessageDeleted,
	}
}

// EventMessagePrefix starts every reserved message event type:
// "message.<state>". Other "message.*" types are ordinary events.
const EventMessagePrefix = "message."

// MessageEventType is the reserved event type that asks for state s.
func MessageEventType(s MessageState) string { return EventMessagePrefix + string(s) }

// MessageStateOf returns the state a reserved message event type asks for;
// false for any other type (including other "message.*" types).
func MessageStateOf(typ string) (MessageState, bool) {
	s, ok := strings.CutPrefix(typ, EventMessagePrefix)
	if !ok {
		return "", false
	}
	st := MessageState(s)
	for _, k := range MessageStates() {
		if k == st {
			return st, true
		}
	}
	return "", false
}

// IsMessageEvent reports whether typ is a reserved message event type.
func IsMessageEvent(typ string) bool {
	_, ok := MessageStateOf(typ)
	return ok
}

// Properties of message events.
const (
	PropMessageID       = "message_id"
	PropChannel         = "channel"
	PropProviderEventID = "provider_event_id"
	PropBounce          = "bounce"
)

// Channels of messages.
const (
	ChannelEmail     = "email"
	ChannelSMS       = "sms"
	ChannelWhatsApp  = "whatsapp"
	ChannelMessenger = "messenger"
)

// Bounce kinds.
const (
	BounceHard = "hard"
	BounceSoft = "soft"
)

// MessageIDMaxLen is the longest message id.
const MessageIDMaxLen = 200

// AddressType is the identifier type of a channel's recipient address.
func AddressType(channel string) (string, bool) {
	switch channel {
	case ChannelEmail:
		return IDEmail, true
	case ChannelSMS:
		return IDPhone, true
	case ChannelWhatsApp:
		return IDWhatsApp, true
	case ChannelMessenger:
		return IDFacebook, true
	}
	return "", false
}

// DefaultMarketingPurposes maps each channel to the consent purpose a spam
// complaint or an unsubscribe revokes (lifecycle.purposes).
func DefaultMarketingPurposes() map[string]string {
	return map[string]string{
		ChannelEmail:     "email_marketing",
		ChannelSMS:       "sms_marketing",
		ChannelWhatsApp:  "whatsapp_marketing",
		ChannelMessenger: "messenger_marketing",
	}
}

// Dead-letter reasons of the lifecycle.
const (
	// ReasonInvalidTransition: the state asked for is not reachable from
	// the message's state.
	ReasonInvalidTransition = "invalid_transition"
	// ReasonInvalidRecipient: a send to an address invalid at its time.
	ReasonInvalidRecipient = "invalid_recipient"
	// ReasonRefusalWithdrawn: a refusal written earlier no longer holds
	// (a late event changed the fold).
	ReasonRefusalWithdrawn = "refusal_withdrawn"
	// ReasonHistoryFull: the message already keeps MessageHistoryLimit
	// events.
	ReasonHistoryFull = "history_full"
	// ReasonInvalidMessageEvent: ingest's refusal of a reserved message
	// event without a valid message_id, channel or bounce.
	ReasonInvalidMessageEvent = "invalid_message_event"
)

// MessageHistoryLimit is how many distinct events a message keeps.
const MessageHistoryLimit = 500

// Topics and groups of the lifecycle (docs/lifecycle.md, "Topology").
const (
	// TopicMessageEvents carries message events and recipient verdicts
	// keyed by MessageKey. Value: JSON MessageInput.
	TopicMessageEvents = "rolodex.messages.events"
	// TopicMessageRecipients carries what the recipients group needs,
	// keyed by the address's node id.
	TopicMessageRecipients = "rolodex.messages.recipients"
	// GroupLifecycle is the goka group of the lifecycle, keyed by
	// MessageKey; its table topic is "rolodex-lifecycle-table" (values:
	// JSON MessageTable).
	GroupLifecycle = "rolodex-lifecycle"
	// GroupMessagesRouter re-keys rolodex.events for the lifecycle.
	GroupMessagesRouter = "rolodex-messages-router"
	// GroupRecipients is the goka group keyed by recipient address.
	GroupRecipients = "rolodex-recipients"
)

// TopicLifecycleTable is the table topic of GroupLifecycle (goka's
// "<group>-table"): the latest schemas.MessageTable per MessageKey, as
// JSON. The ClickHouse sink reads it into message_states.
const TopicLifecycleTable = GroupLifecycle + "-table"

// MessageKey is the key of a message: its tenant and id.
func MessageKey(tenant, messageID string) string { return tenant + "/" + messageID }

// MessageEvent is what the lifecycle keeps of a message event.
type MessageEvent struct {
	ID        string       `json:"id"`
	Tenant    string       `json:"tn"`
	Partner   string       `json:"pa,omitempty"`
	MessageID string       `json:"m"`
	State     MessageState `json:"s"`
	// Time is the event time, Unix ms.
	Time            int64        `json:"t"`
	Channel         string       `json:"c"`
	ProviderEventID string       `json:"pe,omitempty"`
	Bounce          string       `json:"b,omitempty"`
	Identifiers     []Identifier `json:"ids,omitempty"`
}

// Before orders a message's events: event time, then event id.
func (a *MessageEvent) Before(b *MessageEvent) bool {
	if a.Time != b.Time {
		return a.Time < b.Time
	}
	return a.ID < b.ID
}

// ErrNotMessageEvent is returned for an event of another type.
var ErrNotMessageEvent = errors.New("not a reserved message event")

// MessageEventOf reads a reserved message event. It returns
// ErrNotMessageEvent for other types and a descriptive error for a message
// event with a missing or invalid property.
func MessageEventOf(ev *Event) (MessageEvent, error) {
	st, ok := MessageStateOf(ev.Type)
	if !ok {
		return MessageEvent{}, ErrNotMessageEvent
	}
	m := MessageEvent{
		ID: ev.ID, Tenant: ev.Tenant, Partner: ev.Partner, State: st,
		Time: ev.Time.UnixMilli(), Identifiers: ev.Identifiers,
	}
	m.MessageID = stringProp(ev, PropMessageID)
	if m.MessageID == "" || len(m.MessageID) > MessageIDMaxLen {
		return MessageEvent{}, fmt.Errorf("%s: properties.%s must be a string of 1 to %d characters", ev.Type, PropMessageID, MessageIDMaxLen)
	}
	m.Channel = ChannelEmail
	if _, ok := ev.Properties[PropChannel]; ok {
		m.Channel = stringProp(ev, PropChannel)
		if _, ok := AddressType(m.Channel); !ok {
			return MessageEvent{}, fmt.Errorf("%s: properties.%s must be email, sms, whatsapp or messenger", ev.Type, PropChannel)
		}
	}
	m.ProviderEventID = stringProp(ev, PropProviderEventID)
	if _, ok := ev.Properties[PropBounce]; ok {
		if st != MessageBounced {
			return MessageEvent{}, fmt.Errorf("%s: properties.%s is only for message.bounced", ev.Type, PropBounce)
		}
		m.Bounce = stringProp(ev, PropBounce)
		if m.Bounce != BounceHard && m.Bounce != BounceSoft {
			return MessageEvent{}, fmt.Errorf("%s: properties.%s must be hard or soft", ev.Type, PropBounce)
		}
	}
	if st == MessageBounced && m.Bounce == "" {
		m.Bounce = BounceSoft
	}
	return m, nil
}

// RecipientVerdict says whether a send's address was invalid at the send's
// event time; the recipients group pushes a new one, with a higher
// version, when it changes.
type RecipientVerdict struct {
	MessageID string `json:"m"`
	Event     string `json:"e"`
	Invalid   bool   `json:"inv,omitempty"`
	Version   int64  `json:"v"`
	// Resent: a message.resent (a hard bounce of its own message
	// refuses it; a message.sent it does not).
	Resent bool `json:"re,omitempty"`
}

// MessageInput is the value of a record on TopicMessageEvents: an event,
// a verdict, or a send with its first verdict.
type MessageInput struct {
	Event   *MessageEvent     `json:"ev,omitempty"`
	Verdict *RecipientVerdict `json:"vd,omitempty"`
}

// How an entry of a message's history came about.
const (
	HowEvent     = "event"     // an event moved the message
	HowImplied   = "implied"   // passed through on the way to an event's state
	HowAutomatic = "automatic" // the save that follows a cancel
	HowAbsorbed  = "absorbed"  // the event's state had already happened
	HowRefused   = "refused"   // an invalid transition or recipient
	HowDuplicate = "duplicate" // the same provider event under another id
)

// HistoryEntry is one step of a message's history.
type HistoryEntry struct {
	State MessageState `json:"state"`
	// Time is the event time (Unix ms) of Event, the event that made the
	// entry (implied and automatic entries: the event that implied them).
	Time  int64  `json:"time"`
	Event string `json:"event"`
	How   string `json:"how"`
	// From and Reason: the state a refused event was refused from, and why.
	From   MessageState `json:"from,omitempty"`
	Reason string       `json:"reason,omitempty"`
	Bounce string       `json:"bounce,omitempty"`
}

// MessageRefusal is a refused event of a message: the state it was refused
// from, the one it asked for, and why.
type MessageRefusal struct {
	From   MessageState `json:"from"`
	Asked  MessageState `json:"asked"`
	Reason string       `json:"reason"`
}

// MessageLetter is a record the lifecycle writes to the dead letters: a
// refusal, or the withdrawal of one.
type MessageLetter struct {
	MessageID string         `json:"m"`
	Event     string         `json:"e"`
	Refusal   MessageRefusal `json:"r"`
	Withdrawn bool           `json:"w,omitempty"`
}

// SentLetter is a letter in a message's outbox, with the origin (input
// offset + 1) of the input that made it.
type SentLetter struct {
	By     int64         `json:"by"`
	Letter MessageLetter `json:"l"`
}

// MessageTable is the lifecycle group's table value, keyed by MessageKey
// (docs/lifecycle.md, "The table value").
type MessageTable struct {
	Tenant    string `json:"tn"`
	MessageID string `json:"m"`
	// Events are the message's distinct events, sorted (MessageEvent.Before).
	Events []MessageEvent `json:"ev,omitempty"`
	// Verdicts holds the highest-version verdict per send event id.
	Verdicts map[string]RecipientVerdict `json:"vd,omitempty"`
	// The fold of Events: state (empty: no event yet), bounce, channel and
	// recipient of the latest event, history and standing refusals.
	State     MessageState              `json:"st,omitempty"`
	Bounce    string                    `json:"b,omitempty"`
	Channel   string                    `json:"c,omitempty"`
	Recipient []Identifier              `json:"rc,omitempty"`
	History   []HistoryEntry            `json:"h,omitempty"`
	Refused   map[string]MessageRefusal `json:"rf,omitempty"`
	// By is the origin of the latest input folded; Outbox its latest
	// letters, oldest first.
	By     int64        `json:"by,omitempty"`
	Outbox []SentLetter `json:"ob,omitempty"`
}

// The recipients group (docs/lifecycle.md, "Refusing a send to an invalid
// address"): its input, keyed by the address's node id (NodeID of the
// address), and its table value.

// Reasons of the validity writes the recipients group makes.
const (
	// ReasonHardBounce: identifier.invalidated after a hard bounce.
	ReasonHardBounce = "hard_bounce"
	// ReasonSoftBounces: identifier.invalidated after soft bounces in a
	// row (lifecycle.soft_bounce_limit).
	ReasonSoftBounces = "soft_bounces"
	// ReasonSoftBouncesWithdrawn: identifier.revalidated when a late
	// report broke the streak that made a soft_bounces invalidation.
	ReasonSoftBouncesWithdrawn = "soft_bounces_withdrawn"
	// SourceLifecycle is the source of the events the lifecycle writes
	// to rolodex.events.
	SourceLifecycle = "lifecycle"
)

// ValidityWrite is an identifier.invalidated (Invalid) or
// identifier.revalidated event of an address, as the recipients group
// keeps it.
type ValidityWrite struct {
	ID      string `json:"id"`
	Time    int64  `json:"t"`
	Source  string `json:"s,omitempty"`
	Invalid bool   `json:"inv,omitempty"`
	Reason  string `json:"r,omitempty"`
	// MessageID: the bounced message of a hard_bounce invalidation; its
	// own message.sent is not refused by it (docs/lifecycle.md).
	MessageID string `json:"m,omitempty"`
}

// After orders validity writes as profile status orders the writes of a
// key: event time, then source, then event id.
func (a *ValidityWrite) After(b *ValidityWrite) bool {
	return Stamp{Time: a.Time, Source: a.Source, Event: a.ID}.After(Stamp{Time: b.Time, Source: b.Source, Event: b.ID})
}

// RecipientInput is the value of a record on TopicMessageRecipients: a
// message event of the address (a send, a bounce, a delivery, an open, a
// click, a complaint, an unsubscribe) or a validity write of it. At is
// the Unix ms time the router read it (the Kafka timestamp of its input),
// used as received_at of the events the group writes.
type RecipientInput struct {
	Tenant   string         `json:"tn"`
	Address  Identifier     `json:"a"`
	Message  *MessageEvent  `json:"msg,omitempty"`
	Validity *ValidityWrite `json:"val,omitempty"`
	At       int64          `json:"at,omitempty"`
}

// RecipientSend is a send (message.sent or message.resent) to an address
// and the verdict the recipients group pushed for it.
type RecipientSend struct {
	MessageID string `json:"m"`
	Event     string `json:"e"`
	Time      int64  `json:"t"`
	Invalid   bool   `json:"inv,omitempty"`
	Version   int64  `json:"v"`
	// Resent: a message.resent (a hard bounce of its own message
	// refuses it; a message.sent it does not).
	Resent bool `json:"re,omitempty"`
}

// StreakEvent is an event that counts in an address's soft-bounce streak:
// a soft bounce, or a reset (a delivery, open or click of any message to
// the address, or a revalidation).
type StreakEvent struct {
	ID     string `json:"id"`
	Time   int64  `json:"t"`
	Soft   bool   `json:"soft,omitempty"`
	Tenant string `json:"tn,omitempty"`
	// Identifiers and Partner of a soft bounce: those of the
	// invalidation it may cause.
	Partner     string       `json:"pa,omitempty"`
	Identifiers []Identifier `json:"ids,omitempty"`
	MessageID   string       `json:"m,omitempty"`
}

// SoftInvalidation is a soft_bounces invalidation the recipients group
// wrote, named by the soft bounce that completed the streak. Gen counts
// its writes: an invalidation withdrawn and made again gets new event ids.
type SoftInvalidation struct {
	Bounce string `json:"b"`
	Time   int64  `json:"t"`
	Gen    int    `json:"g"`
	Active bool   `json:"on,omitempty"`
}

// RecipientOutput is a record the recipients group wrote, with the origin
// of the input that made it (written again when that input is replayed).
type RecipientOutput struct {
	By      int64         `json:"by"`
	Key     string        `json:"k"`
	Message *MessageInput `json:"msg,omitempty"`
	Event   *Event        `json:"ev,omitempty"`
}

// RecipientTable is the recipients group's table value, keyed by the
// address's node id (docs/lifecycle.md, "Topology").
type RecipientTable struct {
	Tenant  string     `json:"tn"`
	Address Identifier `json:"a"`
	// Validity: the address's validity writes, oldest first (After).
	Validity []ValidityWrite `json:"val,omitempty"`
	// Sends and their latest verdicts, sorted by (time, event id).
	Sends []RecipientSend `json:"sd,omitempty"`
	// Streak: soft bounces and resets, sorted by (time, id).
	Streak []StreakEvent `json:"sk,omitempty"`
	// StreakRun: the soft bounces in a row just before the first kept
	// Streak entry (those the trim dropped count on).
	StreakRun int `json:"skr,omitempty"`
	// Floor: the latest validity write the trim dropped (the validity
	// before the kept ones); RealFloor: the latest such write not made
	// by soft bounces.
	Floor     *ValidityWrite     `json:"vf,omitempty"`
	RealFloor *ValidityWrite     `json:"vrf,omitempty"`
	Soft      []SoftInvalidation `json:"si,omitempty"`
	By        int64              `json:"by,omitempty"`
	Outbox    []RecipientOutput  `json:"ob,omitempty"`
}

// StringProperty returns the string value of property k of ev (stored as
// JSON text); "" if it is absent or not a string.
func StringProperty(ev *Event, k string) string { return stringProp(ev, k) }
