package schemas

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Schema ids. Rolodex runs without a schema registry, so the ids of its Avro
// schemas are fixed and published (docs/topics.md): they are part of the
// public contract and never change or get reused.
const (
	// SchemaIDEventV1 is the previous version of the Event schema
	// (avro/event.v1.avsc). Still readable; no longer written.
	SchemaIDEventV1 = 1
	// SchemaIDEventV2 is the second version of the Event schema
	// (avro/event.v2.avsc). Still readable; no longer written.
	SchemaIDEventV2 = 2
	// SchemaIDDeadLetterV1 is the DeadLetter schema
	// (avro/deadletter.v1.avsc): the value of TopicDeadLetter.
	SchemaIDDeadLetterV1 = 3
	// SchemaIDIngestEventV1 is the schema partners produce to their ingest
	// topic in Avro (avro/ingest_event.v1.avsc).
	SchemaIDIngestEventV1 = 4
	// SchemaIDEventV3 is the current version of the Event schema
	// (avro/event.v3.avsc): the value of TopicEvents. Version 2 plus the
	// fan-out topic (docs/fanout.md).
	SchemaIDEventV3 = 5
)

// Confluent wire format: MagicByte, then the schema id as a 4-byte
// big-endian integer, then the Avro binary encoding of the value.
const (
	MagicByte       byte = 0
	FrameHeaderSize      = 5
)

// ErrNotFramed reports data that is not in the Confluent wire format: it is
// shorter than FrameHeaderSize or does not start with MagicByte. Errors
// returned for such data wrap it; test with errors.Is.
var ErrNotFramed = errors.New("not in Confluent Avro framing (magic byte 0, 4-byte schema id)")

// UnknownSchemaIDError reports a frame whose schema id is not one this
// package knows (Want is nil) or not one the decoder at hand accepts (Want
// lists the ids it accepts, Subject names the record).
type UnknownSchemaIDError struct {
	ID      uint32
	Subject string
	Want    []uint32
}

func (e *UnknownSchemaIDError) Error() string {
	var b strings.Builder
	id := strconv.FormatUint(uint64(e.ID), 10)
	if name, ok := schemaNames[e.ID]; ok {
		// Published, but not one the decoder accepts.
		b.WriteString("schemas: schema id " + id + " (" + name + ") is not accepted")
	} else {
		b.WriteString("schemas: unknown schema id " + id)
	}
	if e.Subject != "" {
		b.WriteString(" for " + e.Subject)
	}
	if len(e.Want) > 0 {
		b.WriteString(": want ")
		for i, id := range e.Want {
			if i > 0 {
				b.WriteString(" or ")
			}
			b.WriteString(strconv.FormatUint(uint64(id), 10))
		}
	}
	return b.String()
}

// schemaNames names every published schema id, for messages.
var schemaNames = map[uint32]string{
	SchemaIDEventV1:       "rolodex.Event v1",
	SchemaIDEventV2:       "rolodex.Event v2",
	SchemaIDDeadLetterV1:  "rolodex.DeadLetter v1",
	SchemaIDIngestEventV1: "rolodex.IngestEvent v1",
	SchemaIDEventV3:       "rolodex.Event v3",
}

// AppendFrameHeader appends the Confluent frame header for schemaID to dst.
func AppendFrameHeader(dst []byte, schemaID uint32) []byte {
	dst = append(dst, MagicByte)
	return binary.BigEndian.AppendUint32(dst, schemaID)
}

// Frame returns payload (Avro binary) framed with schemaID, in a new slice.
func Frame(schemaID uint32, payload []byte) []byte {
	out := make([]byte, 0, FrameHeaderSize+len(payload))
	return append(AppendFrameHeader(out, schemaID), payload...)
}

// Unframe splits Confluent-framed data into its schema id and Avro payload.
// The payload aliases data. It returns an error wrapping ErrNotFramed if
// data is too short or the magic byte is wrong, and an
// *UnknownSchemaIDError if the schema id is not a published one.
func Unframe(data []byte) (schemaID uint32, payload []byte, err error) {
	id, payload, err := unframe(data)
	if err != nil && errors.Is(err, ErrNotFramed) {
		err = fmt.Errorf("schemas: %w", err)
	}
	return id, payload, err
}

// unframe is Unframe with errors wrapping ErrNotFramed left without the
// package prefix, for callers that add their own context.
func unframe(data []byte) (uint32, []byte, error) {
	if len(data) < FrameHeaderSize {
		return 0, nil, fmt.Errorf("%w: %d bytes, want at least %d", ErrNotFramed, len(data), FrameHeaderSize)
	}
	if data[0] != MagicByte {
		return 0, nil, fmt.Errorf("%w: first byte is 0x%02x", ErrNotFramed, data[0])
	}
	id := binary.BigEndian.Uint32(data[1:FrameHeaderSize])
	if _, ok := schemaNames[id]; !ok {
		return 0, nil, &UnknownSchemaIDError{ID: id}
	}
	return id, data[FrameHeaderSize:], nil
}
