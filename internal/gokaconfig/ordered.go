package gokaconfig

import (
	"hash"
	"sync"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
)

// OrderedProducerBuilder builds goka producers whose promises complete in
// the order the emits were made.
//
// Why: goka commits an input message (MarkOffset(offset+1)) as soon as all
// emits of that message completed. Emits to different partitions complete
// in any order, so a later message could be committed while an earlier
// one's emits are still in flight; a crash then would skip the earlier
// message without replaying it. A partition's messages are processed one
// after another, so completing every emit in issue order makes each commit
// imply that everything before it was written.
func OrderedProducerBuilder(pb goka.ProducerBuilder) goka.ProducerBuilder {
	return func(brokers []string, clientID string, hasher func() hash.Hash32) (goka.Producer, error) {
		p, err := pb(brokers, clientID, hasher)
		if err != nil {
			return nil, err
		}
		return NewOrderedProducer(p), nil
	}
}

// NewOrderedProducer wraps p so that its promises complete in emit order.
func NewOrderedProducer(p goka.Producer) goka.Producer {
	done := make(chan struct{})
	close(done)
	return &orderedProducer{inner: p, tail: done}
}

type orderedProducer struct {
	inner goka.Producer
	mu    sync.Mutex
	tail  chan struct{} // closed once the latest emit's promise completed
}

func (o *orderedProducer) Emit(topic, key string, value []byte) *goka.Promise {
	return o.EmitWithHeaders(topic, key, value, nil)
}

func (o *orderedProducer) EmitWithHeaders(topic, key string, value []byte, headers goka.Headers) *goka.Promise {
	out, finish := goka.NewPromiseWithFinisher()
	o.mu.Lock()
	prev, done := o.tail, make(chan struct{})
	o.tail = done
	// Emitting under the lock keeps the inner producer's order equal to
	// the completion order.
	inner := o.inner.EmitWithHeaders(topic, key, value, headers)
	o.mu.Unlock()
	inner.ThenWithMessage(func(msg *sarama.ProducerMessage, err error) {
		// Never block the producer's callback goroutine: the emit before
		// this one may complete on it later.
		go func() {
			<-prev
			finish(msg, err)
			close(done)
		}()
	})
	return out
}

func (o *orderedProducer) Close() error { return o.inner.Close() }
