package schemas

import (
	"cmp"
	"crypto/sha256"
	"encoding/base32"
	"slices"
	"strings"
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

// AppendKey appends Key() to dst.
func (e *Event) AppendKey(dst []byte) []byte {
	if len(e.Identifiers) == 0 {
		return dst
	}
	return AppendNodeID(dst, e.Tenant, e.Identifiers[0])
}

// NodeID is the id of an identifier's node in the identity graph: "p_"
// followed by 26 base32 characters of SHA-256(tenant, type, value). It is
// opaque (no identifier can be read from it), stable across runs, and
// namespaced by tenant. A profile's id is the smallest node id of its
// identifiers (docs/identity.md).
func NodeID(tenant string, id Identifier) string {
	var b [NodeIDLen]byte
	return string(AppendNodeID(b[:0], tenant, id))
}

// NodeIDLen is the length of every NodeID.
const NodeIDLen = 2 + 26

// AppendNodeID appends NodeID(tenant, id) to dst.
func AppendNodeID(dst []byte, tenant string, id Identifier) []byte {
	var stack [256]byte
	in := append(stack[:0], tenant...)
	in = append(in, 0)
	in = append(in, id.Type...)
	in = append(in, 0)
	in = append(in, id.Value...)
	sum := sha256.Sum256(in)
	return nodeEncoding.AppendEncode(append(dst, "p_"...), sum[:16])
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
	slices.SortFunc(ids, compareIdentifiers)
}

// compareIdentifiers orders identifiers as SortIdentifiers sorts them; it
// is 0 only for equal identifiers.
func compareIdentifiers(a, b Identifier) int {
	if c := cmp.Compare(IdentifierPriority(a.Type), IdentifierPriority(b.Type)); c != 0 {
		return c
	}
	if c := strings.Compare(a.Type, b.Type); c != 0 {
		return c
	}
	return strings.Compare(a.Value, b.Value)
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
	// SourceKind is SourceHTTP, SourceKafka, SourceCSV or SourceProcessor.
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
