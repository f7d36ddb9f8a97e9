package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/rolodex/rolodex/partners"
	"github.com/rolodex/rolodex/schemas"
)

// The webhook sender of partner fan-out (group rolodex-fanout-webhooks):
// per partition, the records read and not yet committed (at most Window
// records and FanoutWindowBytes bytes; fetching pauses beyond), a FIFO per key with one goroutine delivering
// its head, and the offset committed up to the oldest record not ended.

// fanoutPart is a partition the sender owns.
type fanoutPart struct {
	p      int32
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	items  []*fanoutItem            // read and not committed, by offset
	bytes  int64                    // the items' keys and values
	keys   map[string][]*fanoutItem // per key, the records not ended (head in flight)
	next   int64                    // the offset after the last read (-1: none yet)
	done   *kgo.Record              // the last record ended with all before it
	// committed is the offset after done as last committed.
	committed int64
	paused    bool
}

type fanoutItem struct {
	r     *kgo.Record
	size  int64 // key and value bytes
	d     *schemas.FanoutDelivery
	ended bool
	// cancel is set when a KindBlacklisted record of the key came after
	// this one before it was delivered.
	cancel cancelMark
}

// cancelMark is a record's cancellation by a later KindBlacklisted record
// of its key: a record not started is dropped when its turn comes; one
// waiting (for its store check or its next attempt) is woken and dropped;
// an attempt past its check (waiting for a host slot, or on the wire) is
// let finish (it may reach the receiver: a success is a delivery,
// anything else is dropped then).
type cancelMark struct {
	mu        sync.Mutex
	cancelled bool
	sending   bool
	stop      context.CancelFunc // the delivery's wait, once it started
}

// set cancels the record (a cancel record of its key came after it).
func (c *cancelMark) set() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cancelled = true
	if !c.sending && c.stop != nil {
		c.stop()
	}
}

// is reports whether the record was cancelled.
func (c *cancelMark) is() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cancelled
}

// start ties the delivery's wait to the mark; false when already
// cancelled.
func (c *cancelMark) start(stop context.CancelFunc) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stop = stop
	return !c.cancelled
}

// send marks a request going out (false: cancelled, send nothing); sent
// marks it answered, and wakes the delivery if it was cancelled meanwhile.
func (c *cancelMark) send() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancelled {
		return false
	}
	c.sending = true
	return true
}

func (c *cancelMark) sent() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sending = false
	if c.cancelled && c.stop != nil {
		c.stop()
	}
}

// fanoutSender is the state of runWebhooks.
type fanoutSender struct {
	f      *Fanout
	ctx    context.Context // the run's
	cl     *kgo.Client
	mu     sync.Mutex
	parts  map[int32]*fanoutPart
	held   int
	notify chan struct{} // something to commit
	// commitMu orders the commits (the committer's and a revoke's), so an
	// older offset never lands after a newer one.
	commitMu sync.Mutex
}

// runWebhooks posts the webhook subscriptions' records.
func (f *Fanout) runWebhooks(ctx context.Context) error {
	s := &fanoutSender{f: f, ctx: ctx, parts: map[int32]*fanoutPart{}, notify: make(chan struct{}, 1)}
	cl, err := f.client("rolodex-fanout-webhooks",
		kgo.ConsumerGroup(schemas.GroupFanoutWebhooks),
		kgo.ConsumeTopics(schemas.TopicFanoutDeliveries),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(s.assigned),
		kgo.OnPartitionsRevoked(s.revoked),
		kgo.OnPartitionsLost(s.lost),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		return err
	}
	s.cl = cl
	defer cl.Close()
	cctx, stopCommitter := context.WithCancel(context.Background())
	committerDone := make(chan struct{})
	go func() { defer close(committerDone); s.committer(cctx) }()
	defer func() {
		// Cancel what is in flight, wait, commit what ended: a restart
		// sends only the rest (same ids).
		s.release(s.ownedPartitions(), true)
		stopCommitter()
		<-committerDone
	}()
	for {
		recs, ok := poll(ctx, cl, f.cfg.Logger, "fanout delivery")
		if !ok {
			cl.AllowRebalance()
			return nil
		}
		s.enqueue(recs)
		cl.AllowRebalance()
	}
}

// assigned starts the state of new partitions (rebalances wait for the
// poll loop's AllowRebalance, so no record polled before belongs to them).
func (s *fanoutSender) assigned(_ context.Context, _ *kgo.Client, ps map[string][]int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range ps[schemas.TopicFanoutDeliveries] {
		if s.parts[p] != nil {
			continue
		}
		ctx, cancel := context.WithCancel(s.ctx)
		s.parts[p] = &fanoutPart{p: p, ctx: ctx, cancel: cancel, keys: map[string][]*fanoutItem{}, next: -1, committed: -1}
	}
}

func (s *fanoutSender) revoked(_ context.Context, _ *kgo.Client, ps map[string][]int32) {
	s.release(ps[schemas.TopicFanoutDeliveries], true)
}

func (s *fanoutSender) lost(_ context.Context, _ *kgo.Client, ps map[string][]int32) {
	s.release(ps[schemas.TopicFanoutDeliveries], false)
}

func (s *fanoutSender) ownedPartitions() []int32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int32
	for p := range s.parts {
		out = append(out, p)
	}
	return out
}

// release gives partitions up: cancels their deliveries, waits for them,
// commits (when commit: a revoke, not a loss) what ended contiguously and
// drops the rest, which the next owner reads again from the commit.
func (s *fanoutSender) release(ps []int32, commit bool) {
	var gone []*fanoutPart
	s.mu.Lock()
	for _, p := range ps {
		if fp := s.parts[p]; fp != nil {
			delete(s.parts, p)
			fp.cancel()
			gone = append(gone, fp)
		}
	}
	s.mu.Unlock()
	resume := map[string][]int32{}
	for _, fp := range gone {
		fp.wg.Wait()
		s.mu.Lock()
		s.held -= len(fp.items)
		s.f.m.WebhookHeld.Set(float64(s.held))
		if fp.paused {
			// Pauses outlive assignments: a partition assigned back must
			// be fetched.
			resume[schemas.TopicFanoutDeliveries] = append(resume[schemas.TopicFanoutDeliveries], fp.p)
		}
		s.mu.Unlock()
	}
	if len(resume) > 0 {
		s.cl.ResumeFetchPartitions(resume)
	}
	if commit {
		s.commit(gone)
	}
}

// enqueue takes polled records into their partitions' queues.
func (s *fanoutSender) enqueue(recs []*kgo.Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	touched := map[*fanoutPart]bool{}
	for _, r := range recs {
		fp := s.parts[r.Partition]
		if fp == nil || r.Offset < fp.next {
			continue // not ours (cannot happen: rebalances wait), or read already
		}
		fp.next = r.Offset + 1
		it := &fanoutItem{r: r, size: int64(len(r.Key) + len(r.Value))}
		fp.items = append(fp.items, it)
		fp.bytes += it.size
		s.held++
		touched[fp] = true
		d, err := decodeDelivery(r)
		switch {
		case err != nil:
			s.f.cfg.Logger.Warn("fanout delivery: undecodable delivery", "partition", r.Partition, "offset", r.Offset, "err", err)
			s.f.m.WebhookSkipped.WithLabelValues("undecodable").Inc()
			it.ended = true
			continue
		case d.Kafka:
			s.f.m.WebhookSkipped.WithLabelValues("kafka").Inc()
			it.ended = true
			continue
		}
		key := string(r.Key)
		if d.Kind == schemas.KindBlacklisted {
			// Cancels the data records of its key read before it and
			// not delivered; sends nothing, ends at once (committed once
			// they end). Revocations go on (they carry no data and
			// withdraw what was sent).
			for _, q := range fp.keys[key] {
				if q.d.Kind == schemas.KindTopicEvent {
					q.cancel.set()
				}
			}
			s.f.m.WebhookSkipped.WithLabelValues(schemas.KindBlacklisted).Inc()
			it.ended = true
			continue
		}
		it.d = d
		q := fp.keys[key]
		fp.keys[key] = append(q, it)
		if len(q) == 0 {
			fp.wg.Add(1)
			go s.worker(fp, key)
		}
	}
	var pause []int32
	for fp := range touched {
		s.advance(fp)
		if !fp.paused && s.full(fp) {
			fp.paused = true
			pause = append(pause, fp.p)
		}
	}
	s.f.m.WebhookHeld.Set(float64(s.held))
	if len(pause) > 0 {
		s.cl.PauseFetchPartitions(map[string][]int32{schemas.TopicFanoutDeliveries: pause})
	}
}

// advance drops the ended records at the head of fp (s.mu held), notes
// what to commit, and resumes fetching below the window.
func (s *fanoutSender) advance(fp *fanoutPart) {
	n := 0
	for n < len(fp.items) && fp.items[n].ended {
		fp.done = fp.items[n].r
		fp.bytes -= fp.items[n].size
		n++
	}
	if n == 0 {
		return
	}
	clear(fp.items[:n])
	fp.items = fp.items[n:]
	s.held -= n
	s.f.m.WebhookHeld.Set(float64(s.held))
	select {
	case s.notify <- struct{}{}:
	default:
	}
	if fp.paused && !s.full(fp) && fp.ctx.Err() == nil {
		fp.paused = false
		s.cl.ResumeFetchPartitions(map[string][]int32{schemas.TopicFanoutDeliveries: {fp.p}})
	}
}

// full reports whether fp holds as many records (Window) or bytes
// (FanoutWindowBytes) as it may: its fetching pauses until it does not.
func (s *fanoutSender) full(fp *fanoutPart) bool {
	return len(fp.items) >= s.f.cfg.Window || fp.bytes >= s.f.windowBytes
}

// worker delivers key's records of fp in order, until its queue is empty
// or the partition is given up.
func (s *fanoutSender) worker(fp *fanoutPart, key string) {
	defer fp.wg.Done()
	for {
		s.mu.Lock()
		q := fp.keys[key]
		if len(q) == 0 || fp.ctx.Err() != nil {
			delete(fp.keys, key)
			s.mu.Unlock()
			return
		}
		it := q[0]
		s.mu.Unlock()
		s.f.m.WebhookInFlight.Inc()
		ended := s.f.deliverWebhook(fp.ctx, s.ctx, s.cl, it.d, &it.cancel)
		s.f.m.WebhookInFlight.Dec()
		s.mu.Lock()
		if !ended {
			delete(fp.keys, key) // given up: the next owner sends it again
			s.mu.Unlock()
			return
		}
		it.ended = true
		fp.keys[key] = fp.keys[key][1:]
		s.advance(fp)
		s.mu.Unlock()
	}
}

// committer commits the partitions' progress when notified, and every
// second (a commit that failed in a rebalance is tried again).
func (s *fanoutSender) committer(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.notify:
		case <-t.C:
		}
		s.mu.Lock()
		var fps []*fanoutPart
		for _, fp := range s.parts {
			fps = append(fps, fp)
		}
		s.mu.Unlock()
		s.commit(fps)
	}
}

// commit commits each partition up to its last record ended with all
// before it.
func (s *fanoutSender) commit(fps []*fanoutPart) {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	offsets := map[int32]kgo.EpochOffset{}
	s.mu.Lock()
	for _, fp := range fps {
		if fp.done != nil && fp.done.Offset+1 > fp.committed {
			offsets[fp.p] = kgo.EpochOffset{Epoch: fp.done.LeaderEpoch, Offset: fp.done.Offset + 1}
		}
	}
	s.mu.Unlock()
	if len(offsets) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var cerr error
	s.cl.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{schemas.TopicFanoutDeliveries: offsets},
		func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
			cerr = err
			if err == nil {
				cerr = commitErr(resp)
			}
		})
	if cerr != nil {
		// A lost commit only means those records are sent again, with
		// the same ids.
		s.f.cfg.Logger.Warn("fanout delivery: commit", "err", cerr)
		return
	}
	s.mu.Lock()
	for _, fp := range fps {
		if o, ok := offsets[fp.p]; ok {
			fp.committed = max(fp.committed, o.Offset)
		}
	}
	s.mu.Unlock()
}

// commitErr is the first partition error of a commit's answer.
func commitErr(resp *kmsg.OffsetCommitResponse) error {
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return fmt.Errorf("partition %d: %w", p.Partition, err)
			}
		}
	}
	return nil
}

// errDropped stops a delivery that the send-time check refuses: the
// result says why (schemas.FanoutInactive, FanoutNotAllowed,
// FanoutExpired).
type errDropped struct{ result string }

func (e errDropped) Error() string { return "dropped: " + e.result }

// recheck is the send-time check of d against the store copy and the
// clock: "" when it may be sent, else why not.
func (f *Fanout) recheck(d *schemas.FanoutDelivery, expires int64) string {
	sub := f.book.subscription(d.Subscription)
	if sub == nil || !sub.Subscription.Live() || sub.Subscription.Tenant != d.Tenant || sub.Subscription.Partner != d.Partner {
		return schemas.FanoutInactive
	}
	if d.Kind == schemas.KindConsentRevoked {
		// A revocation goes to whoever received the profile, on the list
		// or not (docs/fanout.md, "Consent revocation").
		return ""
	}
	t := f.book.topic(schemas.TopicKey(d.Tenant, d.Topic))
	if t == nil || t.Deleted || !t.Topic.Allows(d.Partner) {
		return schemas.FanoutNotAllowed
	}
	if expires != 0 && f.cfg.Now().UnixMilli() >= expires {
		return schemas.FanoutExpired
	}
	return ""
}

// consentExpires reads the body's consent.expires_at (Unix ms; 0: none).
func consentExpires(body string) (int64, error) {
	var b struct {
		Consent *struct {
			ExpiresAt string `json:"expires_at"`
		} `json:"consent"`
	}
	if err := json.Unmarshal([]byte(body), &b); err != nil {
		return 0, err
	}
	if b.Consent == nil || b.Consent.ExpiresAt == "" {
		return 0, nil
	}
	t, err := time.Parse(time.RFC3339Nano, b.Consent.ExpiresAt)
	if err != nil {
		return 0, fmt.Errorf("consent.expires_at: %w", err)
	}
	return t.UnixMilli(), nil
}

// deliverWebhook delivers one record to its subscription's endpoint and
// writes its end (reports, dead letter, a 410's disable). It returns
// false when pctx ended first (the partition given up, or shutdown): the
// record is sent again by whoever reads it next, with the same id. The
// end's writes use ctx (the run's): a delivery that ended is reported
// even if its partition moves meanwhile. A record cancelled by a later
// blacklisting (mark) before it was delivered is dropped, result
// blacklisted.
func (f *Fanout) deliverWebhook(pctx, ctx context.Context, cl *kgo.Client, d *schemas.FanoutDelivery, mark *cancelMark) bool {
	end := func(recs ...*kgo.Record) bool {
		return f.produce(ctx, cl, recs...) == nil
	}
	dropped := func(result string) bool {
		f.m.WebhookDeliveries.WithLabelValues(result).Inc()
		return end(f.report(d, schemas.ReportDeliveryDropped, ChannelWebhook, result, 0, 0, 0, nil))
	}
	dctx, stop := context.WithCancel(pctx)
	defer stop()
	if !mark.start(stop) {
		return dropped(schemas.FanoutBlacklisted)
	}
	// cancelled: dctx ended because of the mark, not of the partition.
	cancelled := func() bool { return pctx.Err() == nil && mark.is() }
	expires, err := consentExpires(d.Body)
	if err != nil {
		f.m.WebhookDeliveries.WithLabelValues(string(ResultPermanent)).Inc()
		reason := "undecodable body: " + err.Error()
		return end(deadLetter(d, reason), f.report(d, schemas.ReportDeliveryFailed, ChannelWebhook, string(ResultPermanent), 0, 0, 0, errors.New(reason)))
	}
	if !f.syncStore(dctx, ChannelWebhook) {
		if cancelled() {
			return dropped(schemas.FanoutBlacklisted)
		}
		return false // pctx done
	}
	if why := f.recheck(d, expires); why != "" {
		return dropped(why)
	}
	sub := f.book.subscription(d.Subscription)
	var key []byte
	if sub.Subscription.Webhook == nil || sub.Subscription.Webhook.URL == "" {
		err = errors.New("the subscription has no webhook URL")
	} else if key, err = partners.ParseSigningSecret(sub.Secret); err != nil {
		err = fmt.Errorf("the subscription's secret: %w", err)
	}
	if err != nil {
		f.m.WebhookDeliveries.WithLabelValues(string(ResultPermanent)).Inc()
		return end(deadLetter(d, string(ResultPermanent)+": "+err.Error()),
			f.report(d, schemas.ReportDeliveryFailed, ChannelWebhook, string(ResultPermanent), 0, 0, 0, err))
	}
	url := sub.Subscription.Webhook.URL
	target := Target{URL: url, Key: key, Timeout: f.cfg.Timeout}
	before := func(n int) error {
		if n > 1 && !f.syncStore(dctx, ChannelWebhook) {
			return dctx.Err()
		}
		if why := f.recheck(d, expires); why != "" {
			return errDropped{why}
		}
		if !mark.send() {
			return errDropped{schemas.FanoutBlacklisted}
		}
		return nil
	}
	rep, err := f.sender.DeliverChecked(dctx, target, Message{ID: d.WebhookID, Body: []byte(d.Body)}, before, func(a Attempt) {
		mark.sent()
		f.m.WebhookAttempts.WithLabelValues(string(a.Class)).Inc()
		if a.Status != 0 || a.Class == Retry {
			f.m.WebhookRequestSeconds.Observe(a.Latency.Seconds())
		}
		if a.Class != Success {
			f.cfg.Logger.Warn("fanout delivery: attempt failed", "subscription", d.Subscription, "webhook_id", d.WebhookID,
				"attempt", a.N, "class", a.Class, "status", a.Status, "err", a.Err)
		}
		// Each attempt's report as it happens (a delivery's retries span
		// hours); lost only if the process stops now, then made again.
		_ = f.produce(ctx, cl, f.report(d, schemas.ReportAttempt, ChannelWebhook, string(a.Class), a.N, a.Status, a.Latency, a.Err))
	})
	var drop errDropped
	if errors.As(err, &drop) {
		return dropped(drop.result)
	}
	if err != nil {
		if cancelled() {
			return dropped(schemas.FanoutBlacklisted)
		}
		return false // pctx done
	}
	if (rep.Result == ResultExhausted || rep.Result == ResultPermanent) && mark.is() {
		// Cancelled while its last request was out, and not delivered:
		// dropped, not dead-lettered (the dead letter would keep the data).
		return dropped(schemas.FanoutBlacklisted)
	}
	f.m.WebhookDeliveries.WithLabelValues(string(rep.Result)).Inc()
	switch rep.Result {
	case ResultSuccess:
		return end(f.report(d, schemas.ReportDeliverySucceeded, ChannelWebhook, string(rep.Result), rep.Tries, rep.Status, 0, nil))
	case ResultGone:
		recs := []*kgo.Record{f.report(d, schemas.ReportSubscriptionDisabled, ChannelWebhook, string(rep.Result), rep.Tries, rep.Status, 0, rep.Err)}
		if dis := f.disable(d.Subscription, url); dis != nil {
			v, _ := json.Marshal(dis)
			recs = append([]*kgo.Record{{Topic: schemas.TopicFanoutSubscriptions, Key: []byte(d.Subscription), Value: v}}, recs...)
			if !end(recs...) {
				return false
			}
			f.book.applyLocal(dis)
			f.cfg.Logger.Warn("fanout delivery: subscription disabled (410)", "subscription", d.Subscription, "url", url)
			return true
		}
		return end(recs...)
	default: // permanent, exhausted
		typ := schemas.ReportDeliveryExhausted
		if rep.Result == ResultPermanent {
			typ = schemas.ReportDeliveryFailed
		}
		reason := string(rep.Result)
		if rep.Err != nil {
			reason += ": " + rep.Err.Error()
		}
		return end(deadLetter(d, reason), f.report(d, typ, ChannelWebhook, string(rep.Result), rep.Tries, rep.Status, 0, rep.Err))
	}
}

// disable returns the record that disables subscription id after its URL
// answered 410 (nil when it is not active any more): the held record,
// status disabled, the reason, version + 1, the secret kept.
func (f *Fanout) disable(id, url string) *schemas.SubscriptionRecord {
	held := f.book.subscription(id)
	if held == nil || !held.Subscription.Live() {
		return nil
	}
	now := f.cfg.Now().UTC()
	rec := *held
	rec.Subscription.Status = schemas.SubscriptionDisabled
	rec.Subscription.Reason = fmt.Sprintf("the URL %s answered 410 Gone at %s", url, now.Format(time.RFC3339))
	rec.Version = held.Version + 1
	rec.UpdatedAt = now.Format("2006-01-02T15:04:05.000Z07:00")
	return &rec
}
