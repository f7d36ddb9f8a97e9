package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/schemas"
)

// errSuperseded stops a delivery whose attempt is no longer its lead's
// current one.
var errSuperseded = errors.New("superseded")

// leadMark is what a process knows of a lead's latest routing decision.
type leadMark struct {
	attempt  int
	at       int64 // the decision's instant, Unix ms
	unrouted bool  // the decision closed it: lead.unrouted
	accepted bool  // the partner of this attempt accepted it (closed)
}

// leadBook follows rolodex.routing.outcomes (every partition, no group)
// and keeps each lead's latest decision, for the senders to check a
// delivery against before each attempt (docs/routing.md, "Delivery",
// superseded attempts). It reads from Lookback ago, and forgets leads
// whose latest decision is older than that.
type leadBook struct {
	lookback time.Duration
	now      func() time.Time
	log      *slog.Logger

	mu      sync.Mutex
	leads   map[string]*leadMark
	pos     map[int32]int64 // next offset to read, per partition
	changed chan struct{}   // closed (and replaced) when pos moves
	pruned  time.Time
}

func newLeadBook(lookback time.Duration, now func() time.Time, log *slog.Logger) *leadBook {
	return &leadBook{lookback: lookback, now: now, log: log, leads: map[string]*leadMark{},
		pos: map[int32]int64{}, changed: make(chan struct{})}
}

// run reads the outcomes until ctx is done: adm finds where to start,
// consume makes the reader.
func (b *leadBook) run(ctx context.Context, adm *kadm.Client, consume func(...kgo.Opt) (*kgo.Client, error)) error {
	var starts kadm.ListedOffsets
	for {
		ends, err := adm.ListEndOffsets(ctx, schemas.TopicRoutingOutcomes)
		if err == nil {
			err = ends.Error()
		}
		if err == nil {
			from := b.now().Add(-b.lookback).UnixMilli()
			if starts, err = adm.ListOffsetsAfterMilli(ctx, from, schemas.TopicRoutingOutcomes); err == nil {
				err = starts.Error()
			}
			if err == nil {
				b.mu.Lock()
				ends.Each(func(o kadm.ListedOffset) {
					b.pos[o.Partition] = o.Offset
					if s, ok := starts.Lookup(o.Topic, o.Partition); ok && s.Offset >= 0 && s.Offset < o.Offset {
						b.pos[o.Partition] = s.Offset
					}
				})
				b.mu.Unlock()
				break
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		b.log.Warn("lead delivery: outcome offsets, retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	b.mu.Lock()
	parts := map[int32]kgo.Offset{}
	for p, o := range b.pos {
		parts[p] = kgo.NewOffset().At(o)
	}
	b.mu.Unlock()
	cl, err := consume(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{schemas.TopicRoutingOutcomes: parts}),
		kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		return err
	}
	defer cl.Close()
	for {
		recs, ok := poll(ctx, cl, b.log, "lead delivery")
		if !ok {
			return nil
		}
		b.mu.Lock()
		for _, r := range recs {
			var o schemas.LeadOutcome
			if json.Unmarshal(r.Value, &o) == nil {
				b.apply(&o)
			}
			b.pos[r.Partition] = r.Offset + 1
		}
		b.prune()
		close(b.changed)
		b.changed = make(chan struct{})
		b.mu.Unlock()
	}
}

// apply notes an outcome (outcomes of a lead come in order: the topic is
// keyed by lead id).
func (b *leadBook) apply(o *schemas.LeadOutcome) {
	m := b.leads[o.LeadID]
	switch o.Type {
	case schemas.OutcomeRouted, schemas.OutcomeUnrouted:
		// A later attempt; or, after a closed one, a later instant: the
		// lead id reused after its retention (a replayed outcome has its
		// first instant).
		if m == nil || o.Attempt > m.attempt || ((m.unrouted || m.accepted) && o.At > m.at) {
			b.leads[o.LeadID] = &leadMark{attempt: o.Attempt, at: o.At, unrouted: o.Type == schemas.OutcomeUnrouted}
		}
	case schemas.OutcomeAccepted:
		if m != nil && m.attempt == o.Attempt {
			m.accepted = true
		}
	}
}

func (b *leadBook) prune() {
	now := b.now()
	if now.Sub(b.pruned) < time.Minute {
		return
	}
	b.pruned = now
	old := now.Add(-b.lookback).UnixMilli()
	for id, m := range b.leads {
		if m.at < old {
			delete(b.leads, id)
		}
	}
}

// superseded reports a record of kind about lead's attempt, decided (a
// lead's) or forwarded (a follow-up's) at at, that is no longer to be
// sent: a later decision moved the lead on, or it closed (a lead's record
// once accepted, any once unrouted).
func (b *leadBook) superseded(kind, lead string, attempt int, at int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	m := b.leads[lead]
	if m == nil || m.at < at {
		return false // nothing known since: the book may lag
	}
	if kind == KindFollowUp {
		return m.attempt > attempt || m.unrouted
	}
	switch {
	case m.attempt > attempt:
		return true
	case m.attempt < attempt, m.at > at:
		return m.at > at // a newer life of the lead id; else the book lags
	}
	return m.unrouted || m.accepted
}

// sync waits until the book has read every outcome written before it was
// called, or for at most wait (then it logs and returns: the check goes
// on with what the book knows).
func (b *leadBook) sync(parent context.Context, adm *kadm.Client, wait time.Duration) {
	ctx, cancel := context.WithTimeout(parent, wait)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, schemas.TopicRoutingOutcomes)
	if err == nil {
		err = ends.Error()
	}
	for err == nil {
		b.mu.Lock()
		behind := false
		ends.Each(func(o kadm.ListedOffset) {
			if p, ok := b.pos[o.Partition]; !ok || p < o.Offset {
				behind = true
			}
		})
		changed := b.changed
		b.mu.Unlock()
		if !behind {
			return
		}
		select {
		case <-ctx.Done():
			err = fmt.Errorf("not caught up within %s", wait)
		case <-changed:
		}
	}
	if parent.Err() == nil {
		b.log.Warn("lead delivery: outcomes not read up to date before an attempt; checked with what is known", "err", err)
	}
}

// doneIDs is a bounded set of the webhook ids a sender finished, oldest
// forgotten first.
type doneIDs struct {
	ids  map[string]bool
	ring []string
	next int
}

func newDoneIDs(n int) *doneIDs {
	return &doneIDs{ids: make(map[string]bool, n), ring: make([]string, n)}
}

func (d *doneIDs) has(id string) bool { return d.ids[id] }

func (d *doneIDs) add(id string) {
	if d.ids[id] {
		return
	}
	delete(d.ids, d.ring[d.next])
	d.ring[d.next] = id
	d.ids[id] = true
	d.next = (d.next + 1) % len(d.ring)
}
