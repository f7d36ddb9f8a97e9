package gokaconfig

import (
	"fmt"
	"log/slog"

	"github.com/lovoo/goka"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rolodex/rolodex/internal/metrics"
)

// Undecodable is the value a Tolerant codec hands to a callback in place of
// a record it could not decode: the decode error and the record's value as
// it was on the topic.
type Undecodable struct {
	Err error
	Raw []byte
}

// TolerantCodec wraps the codec of a group's input edge (goka.Input,
// goka.Loop): Decode never fails, a value the wrapped codec refuses comes
// out as an *Undecodable, so that one bad record no longer makes goka stop
// the group (it would then read the same record at every restart). Encode
// is the wrapped codec's (ctx.Loopback encodes with the loop's codec).
type TolerantCodec struct {
	goka.Codec
}

var _ goka.Codec = TolerantCodec{}

// Tolerant wraps c in a TolerantCodec.
func Tolerant(c goka.Codec) goka.Codec { return TolerantCodec{Codec: c} }

// Decode implements goka.Codec; its error is always nil.
func (c TolerantCodec) Decode(data []byte) (any, error) {
	v, err := c.Codec.Decode(data)
	if err != nil {
		// goka does not keep the bytes past the callback, but the dead
		// letter is encoded later, by the producer: keep a copy.
		return &Undecodable{Err: err, Raw: append([]byte(nil), data...)}, nil
	}
	return v, nil
}

// LetterFunc builds the dead letter of an undecodable record (raw its
// value, err the decode error): the topic it goes to, its key and its value
// (encoded with the codec of that topic's goka.Output edge, which the group
// must define).
type LetterFunc func(ctx goka.Context, raw []byte, err error) (topic goka.Stream, key string, value any)

// DeadLetters is the middleware of a group's input callbacks that handles
// what a TolerantCodec let through: it writes the dead letter with
// ctx.Emit (the group's ordered producer, so the offset is committed only
// once the dead letter is written), counts it in
// rolodex_processor_undecodable_records_total{group,topic}, logs it and
// does not call the callback. Every other value goes to the callback.
type DeadLetters struct {
	group   string
	letter  LetterFunc
	records *prometheus.CounterVec
	logger  *slog.Logger
}

// NewDeadLetters returns the middleware of group. reg may be nil (the
// counter is then not exported); groups of one process share the counter
// (metrics.Register). logger nil: slog.Default().
func NewDeadLetters(group string, reg prometheus.Registerer, logger *slog.Logger, letter LetterFunc) (*DeadLetters, error) {
	records := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rolodex_processor_undecodable_records_total",
		Help: "Records on a goka group's input that its codec could not decode, written to rolodex.deadletter (reason undecodable) and skipped, by group and topic."},
		[]string{"group", "topic"})
	if reg != nil {
		var err error
		if records, err = metrics.Register(reg, records); err != nil {
			return nil, err
		}
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &DeadLetters{group: group, letter: letter, records: records, logger: logger}, nil
}

// Wrap returns cb behind the middleware.
func (d *DeadLetters) Wrap(cb goka.ProcessCallback) goka.ProcessCallback {
	return func(ctx goka.Context, msg any) {
		u, ok := msg.(*Undecodable)
		if !ok {
			cb(ctx, msg)
			return
		}
		// Every group that reads the topic writes its own dead letter: the
		// message names the group.
		topic, key, value := d.letter(ctx, u.Raw, fmt.Errorf("group %s: %w", d.group, u.Err))
		ctx.Emit(topic, key, value)
		d.records.WithLabelValues(d.group, string(ctx.Topic())).Inc()
		d.logger.Warn("undecodable record dead-lettered", "group", d.group, "topic", string(ctx.Topic()),
			"partition", ctx.Partition(), "offset", ctx.Offset(), "bytes", len(u.Raw), "err", u.Err)
	}
}

// Input is goka.Input with a TolerantCodec and the middleware.
func (d *DeadLetters) Input(topic goka.Stream, c goka.Codec, cb goka.ProcessCallback) goka.Edge {
	return goka.Input(topic, Tolerant(c), d.Wrap(cb))
}

// Loop is goka.Loop with a TolerantCodec and the middleware.
func (d *DeadLetters) Loop(c goka.Codec, cb goka.ProcessCallback) goka.Edge {
	return goka.Loop(Tolerant(c), d.Wrap(cb))
}
