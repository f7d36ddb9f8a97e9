package schemas

import (
	"bytes"
	"fmt"

	"github.com/lovoo/goka"
)

// DeadLetterCodec is the goka.Codec of TopicDeadLetter values: the
// DeadLetter in Avro (SchemaIDDeadLetterV1), Confluent framing.
//
// Time round-trips truncated to the millisecond, in UTC, with the zero
// time.Time written as 0 (see EventCodec). An empty or nil Payload reads
// back as nil; a decoded Payload is a copy that does not alias the input.
//
// The zero value is ready to use and safe for concurrent use.
type DeadLetterCodec struct{}

var (
	_ goka.Codec = DeadLetterCodec{}
	_ goka.Codec = (*DeadLetterCodec)(nil)
)

const deadLetterSubject = "rolodex.DeadLetter"

// Encode encodes a *DeadLetter or a DeadLetter.
func (DeadLetterCodec) Encode(value any) ([]byte, error) {
	switch d := value.(type) {
	case *DeadLetter:
		return EncodeDeadLetter(d)
	case DeadLetter:
		return EncodeDeadLetter(&d)
	}
	return nil, fmt.Errorf("schemas: encode %s: got %T, want *schemas.DeadLetter", deadLetterSubject, value)
}

// Decode decodes a framed DeadLetter; the value is a *DeadLetter.
func (DeadLetterCodec) Decode(data []byte) (any, error) {
	d, err := DecodeDeadLetter(data)
	if err != nil {
		return nil, err
	}
	return d, nil
}

// EncodeDeadLetter encodes d with SchemaIDDeadLetterV1, in Confluent
// framing.
func EncodeDeadLetter(d *DeadLetter) ([]byte, error) {
	if d == nil {
		return nil, fmt.Errorf("schemas: encode %s: nil dead letter", deadLetterSubject)
	}
	reg, err := registry()
	if err != nil {
		return nil, err
	}
	payload := d.Payload
	if payload == nil {
		payload = []byte{} // goavro wants a []byte, not a nil interface
	}
	size := 64 + len(d.Partner) + len(d.Tenant) + len(d.Reason) + len(d.Message) +
		len(d.SourceKind) + len(d.RequestID) + len(d.Topic) + len(d.File) + len(d.Payload)
	return reg.deadLetterV1.encode(map[string]any{
		"time":        millisFromTime(d.Time),
		"partner":     d.Partner,
		"tenant":      d.Tenant,
		"reason":      d.Reason,
		"message":     d.Message,
		"source_kind": d.SourceKind,
		"request_id":  d.RequestID,
		"topic":       d.Topic,
		"partition":   d.Partition,
		"offset":      d.Offset,
		"file":        d.File,
		"row":         d.Row,
		"payload":     payload,
	}, size)
}

// DecodeDeadLetter decodes a framed DeadLetter. Errors are as for
// DecodeEvent.
func DecodeDeadLetter(data []byte) (*DeadLetter, error) {
	reg, err := registry()
	if err != nil {
		return nil, err
	}
	s, payload, err := unframeFor(data, deadLetterSubject, reg.deadLetterV1)
	if err != nil {
		return nil, err
	}
	m, err := s.decode(payload)
	if err != nil {
		return nil, err
	}
	d, err := deadLetterFromNative(m)
	if err != nil {
		return nil, fmt.Errorf("schemas: decode %s: %w", s.name, err)
	}
	return d, nil
}

func deadLetterFromNative(m map[string]any) (*DeadLetter, error) {
	var d DeadLetter
	var err error
	if d.Time, err = fieldTime(m, "time"); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name string
		dst  *string
	}{
		{"partner", &d.Partner},
		{"tenant", &d.Tenant},
		{"reason", &d.Reason},
		{"message", &d.Message},
		{"source_kind", &d.SourceKind},
		{"request_id", &d.RequestID},
		{"topic", &d.Topic},
		{"file", &d.File},
	} {
		if *f.dst, err = fieldString(m, f.name); err != nil {
			return nil, err
		}
	}
	if d.Partition, err = fieldInt(m, "partition"); err != nil {
		return nil, err
	}
	if d.Offset, err = fieldLong(m, "offset"); err != nil {
		return nil, err
	}
	if d.Row, err = fieldLong(m, "row"); err != nil {
		return nil, err
	}
	payload, err := fieldBytes(m, "payload")
	if err != nil {
		return nil, err
	}
	if len(payload) > 0 {
		d.Payload = bytes.Clone(payload) // goavro's bytes alias the input
	}
	return &d, nil
}
