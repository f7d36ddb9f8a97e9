package schemas

import (
	"crypto/sha256"
	"encoding/base32"
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
	// Topic is the partner fan-out topic (docs/fanout.md) the partner
	// published the event to, a topic of Tenant; empty for none. The
	// ingest sets it (the rolodex-topic header, POST
	// /v1/topics/{name}/events), never the event body.
	Topic string `json:"topic,omitempty"`
}

// Key is the Kafka key of the event on TopicEvents: the profile node id of
// its primary identifier (NodeID), so that every event of one identifier
// lands on the partition of the identity stage that owns that identifier.
func (e *Event) Key() string {
	if len(e.Identifiers) == 0 {
		return ""
	}
	return NodeID(e.Tenant, e.Identifiers[0])
}

// NodeID is the id of an identifier's node in the identity graph: "p_"
// followed by 26 base32 characters of SHA-256(tenant, type, value). It is
// opaque (no identifier can be read from it), stable across runs, and
// namespaced by tenant. A profile's id is the smallest node id of its
// identifiers (docs/identity.md).
func NodeID(tenant string, id Identifier) string {
	h := sha256.New()
	h.Write([]byte(tenant))
	h.Write([]byte{0})
	h.Write([]byte(id.Type))
	h.Write([]byte{0})
	h.Write([]byte(id.Value))
	var sum [sha256.Size]byte
	return "p_" + nodeEncoding.EncodeToString(h.Sum(sum[:0])[:16])
}

// nodeEncoding is lowercase base32hex without padding: it sorts like the
// bytes it encodes.
var nodeEncoding = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

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
