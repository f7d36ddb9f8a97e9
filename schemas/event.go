package schemas

import (
	"sort"
	"time"
)

// Identifier types. A partner's own ids use the type "external:<name>".
const (
	IDEmail       = "email"
	IDPhone       = "phone"
	IDUserID      = "user_id"
	IDAnonymousID = "anonymous_id"
	IDWhatsApp    = "whatsapp"
	IDFacebook    = "facebook"
	IDExternal    = "external:" // prefix
)

// Identifier is one normalised identifier of a person.
type Identifier struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// String renders the identifier as "type:value".
func (i Identifier) String() string { return i.Type + ":" + i.Value }

// Event is an accepted, validated and normalised event: the value of every
// record on TopicEvents.
type Event struct {
	Tenant  string    `json:"tenant"`
	ID      string    `json:"id"`
	Type    string    `json:"type"`
	Time    time.Time `json:"time"`
	Source  string    `json:"source"`
	Partner string    `json:"partner"`
	// Identifiers are normalised and sorted by (priority, type, value);
	// Identifiers[0] is the primary identifier the record is keyed by.
	Identifiers []Identifier `json:"identifiers"`
	// Traits and Properties hold each value as its JSON encoding.
	Traits     map[string]string `json:"traits,omitempty"`
	Properties map[string]string `json:"properties,omitempty"`
	ReceivedAt time.Time         `json:"received_at"`
}

// Key is the Kafka key of the event on TopicEvents: the tenant and the
// primary identifier, so that every event of one identifier lands on one
// partition of the identity stage.
func (e *Event) Key() string {
	if len(e.Identifiers) == 0 {
		return e.Tenant
	}
	return e.Tenant + "/" + e.Identifiers[0].String()
}

// IdentifierPriority orders identifier types: lower is stronger. user_id,
// email and phone come first, then every other type.
func IdentifierPriority(typ string) int {
	switch typ {
	case IDUserID:
		return 0
	case IDEmail:
		return 1
	case IDPhone:
		return 2
	default:
		return 3
	}
}

// SortIdentifiers sorts ids by priority, then type, then value.
func SortIdentifiers(ids []Identifier) {
	sort.Slice(ids, func(a, b int) bool {
		pa, pb := IdentifierPriority(ids[a].Type), IdentifierPriority(ids[b].Type)
		if pa != pb {
			return pa < pb
		}
		if ids[a].Type != ids[b].Type {
			return ids[a].Type < ids[b].Type
		}
		return ids[a].Value < ids[b].Value
	})
}

// Dead-letter source kinds.
const (
	SourceHTTP  = "http"
	SourceKafka = "kafka"
	SourceCSV   = "csv"
)

// DeadLetter is a rejected record: the value of every record on
// TopicDeadLetter.
type DeadLetter struct {
	Time    time.Time `json:"time"`
	Partner string    `json:"partner"`
	Tenant  string    `json:"tenant"`
	// Reason is a short machine-readable code (e.g. "invalid_json",
	// "no_valid_identifier"); Message says what was wrong for a human.
	Reason  string `json:"reason"`
	Message string `json:"message"`
	// SourceKind is SourceHTTP, SourceKafka or SourceCSV.
	SourceKind string `json:"source_kind"`
	// RequestID is set for HTTP; Topic, Partition and Offset for Kafka;
	// Row (1-based, header excluded) and File for CSV.
	RequestID string `json:"request_id,omitempty"`
	Topic     string `json:"topic,omitempty"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	File      string `json:"file,omitempty"`
	Row       int64  `json:"row"`
	// Payload is the original bytes as received.
	Payload []byte `json:"payload"`
}
