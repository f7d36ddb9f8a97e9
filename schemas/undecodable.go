package schemas

import (
	"github.com/lovoo/goka"
)

// ReasonUndecodable is the dead-letter reason of a record on a goka
// group's input that the input's codec could not decode (written by
// something that bypassed ingest, or corrupted): the group writes it to
// TopicDeadLetter and goes on with the next record.
const ReasonUndecodable = "undecodable"

// SourceProcessor is the dead-letter source kind of what a goka group
// (processors/) dead-letters; Topic, Partition and Offset name the input
// record.
const SourceProcessor = "processor"

// UndecodableLetter is the dead letter of an undecodable input record: on
// TopicDeadLetter, keyed by the record's own key (its partner is unknown),
// with the record's topic, partition, offset, time and value, and the
// decode error as the message. Its signature is gokaconfig.LetterFunc's.
func UndecodableLetter(ctx goka.Context, raw []byte, err error) (goka.Stream, string, any) {
	msg := "undecodable"
	if err != nil {
		msg = err.Error()
	}
	return goka.Stream(TopicDeadLetter), ctx.Key(), &DeadLetter{
		Time: ctx.Timestamp(), Reason: ReasonUndecodable, Message: msg, SourceKind: SourceProcessor,
		Topic: string(ctx.Topic()), Partition: ctx.Partition(), Offset: ctx.Offset(), Payload: raw,
	}
}
