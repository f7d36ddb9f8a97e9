package intake

import (
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/schemas"
)

// Origin is where a rejected record came from: its connector and its place
// there. Build it with FromHTTP, FromKafka or FromCSV.
type Origin struct {
	kind      string
	requestID string
	topic     string
	partition int32
	offset    int64
	file      string
	row       int64
}

// FromHTTP is the event at index of the request requestID.
func FromHTTP(requestID string, index int) Origin {
	return Origin{kind: schemas.SourceHTTP, requestID: requestID, row: int64(index)}
}

// FromKafka is the consumed record r.
func FromKafka(r *kgo.Record) Origin {
	return Origin{kind: schemas.SourceKafka, topic: r.Topic, partition: r.Partition, offset: r.Offset}
}

// FromCSV is row (1-based, header excluded) of file.
func FromCSV(file string, row int64) Origin {
	return Origin{kind: schemas.SourceCSV, file: file, row: row}
}

// NewDeadLetter is the dead letter of a record rejected for rej at time at:
// partner sent it, for tenant ("" when the partner is unknown), from o;
// payload is the record's bytes as received (not copied: the encoder copies
// them).
func NewDeadLetter(at time.Time, partner, tenant string, o Origin, rej *Rejection, payload []byte) *schemas.DeadLetter {
	return &schemas.DeadLetter{
		Time: at.UTC(), Partner: partner, Tenant: tenant, Reason: rej.Reason, Message: rej.Message,
		SourceKind: o.kind, RequestID: o.requestID, Topic: o.topic, Partition: o.partition, Offset: o.offset,
		File: o.file, Row: o.row, Payload: payload,
	}
}
