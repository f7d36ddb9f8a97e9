package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/partners"
	"github.com/rolodex/rolodex/schemas"
)

// DefaultLeadSchedule is lead delivery's retry schedule (config
// routing.delivery.retry_schedule): shorter than SvixSchedule, because a
// lead is time-critical and a failed delivery re-routes it to another
// partner anyway. Five attempts over about 12.5 minutes.
var DefaultLeadSchedule = []time.Duration{0, 5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute}

// Headers of an out-topic record. The ce_ ones are CloudEvents' Kafka
// binding in binary mode (the value is the data; content-type its
// datacontenttype); the rolodex_ ones let the sender report back without
// reading the body.
const (
	HeaderCESpecVersion = "ce_specversion"
	HeaderCEID          = "ce_id"
	HeaderCEType        = "ce_type"
	HeaderCESource      = "ce_source"
	HeaderCETime        = "ce_time"
	HeaderCESubject     = "ce_subject"
	HeaderContentType   = "content-type"
	HeaderTenant        = "rolodex_tenant"
	HeaderLeadID        = "rolodex_lead_id"
	HeaderAttempt       = "rolodex_attempt"
	// HeaderKind is KindLead or KindFollowUp.
	HeaderKind = "rolodex_kind"
	// HeaderEventID and HeaderEventType name a follow-up's event.
	HeaderEventID   = "rolodex_event_id"
	HeaderEventType = "rolodex_event_type"
)

// Kinds of an out-topic record.
const (
	KindLead     = "lead"
	KindFollowUp = "follow_up"
)

// WebhookID is the webhook-id (and ce_id) of a lead's attempt:
// "<lead id>.<attempt>.<routed at>", one per routing decision, the same on
// every resend of it. routedAt (Unix ms, the lead.routed outcome's
// instant; a replayed outcome carries the same) tells a lead id reused
// after routing.retention from its earlier life, whose attempts start
// again at 1.
func WebhookID(leadID string, attempt int, routedAt int64) string {
	return leadID + "." + strconv.Itoa(attempt) + "." + strconv.FormatInt(routedAt, 10)
}

// FollowUpWebhookID is the webhook-id of a follow-up.
func FollowUpWebhookID(leadID, eventID string) string { return leadID + ".f." + eventID }

// LeadDeliveryConfig configures lead delivery.
type LeadDeliveryConfig struct {
	// Brokers are the Kafka seed brokers. Required.
	Brokers []string
	// Partners: every partner (each with a Delivery is delivered to;
	// checked by ValidateDelivery). A lead is delivered only to a partner
	// of the lead's tenant.
	Partners []*partners.Partner
	// RetrySchedule is the delay before each attempt of a webhook. Default
	// DefaultLeadSchedule.
	RetrySchedule []time.Duration
	// RateUnit is the unit of per_minute. Default time.Minute (tests
	// shrink it).
	RateUnit time.Duration
	// HTTPClient sends the webhooks (SenderConfig.HTTPClient's default).
	HTTPClient *http.Client
	// MaxRetryAfter caps a Retry-After. Default DefaultMaxRetryAfter.
	MaxRetryAfter time.Duration
	// QueueInterval is how often the queue depths are measured. Default 5s.
	QueueInterval time.Duration
	// RetryBackoff is the wait between attempts to write to Kafka while
	// it does not acknowledge. Default 1s.
	RetryBackoff time.Duration
	// SessionTimeout is the consumer groups' session timeout: how long a
	// member that vanished (killed) holds its partitions. Default
	// kafkaclient.SessionTimeout (6 s); the heartbeat is a third of it,
	// at most 3 s.
	SessionTimeout time.Duration
	// OutcomeLookback is how far back each process reads
	// rolodex.routing.outcomes at start to know every lead's latest
	// decision (a record queued longer is checked without its lead's
	// history), and how long it remembers a lead after its latest
	// decision. Default 7 days.
	OutcomeLookback time.Duration
	// OutcomeWait bounds the wait, before each attempt, for this process
	// to have read every outcome written so far. Default 10s.
	OutcomeWait time.Duration
	// DoneIDs is how many webhook ids each sender remembers having
	// finished (a duplicate out record is not sent again). Default 10000.
	DoneIDs int
	// Now is the clock of outcome instants and signatures. Default
	// time.Now.
	Now        func() time.Time
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

func (c *LeadDeliveryConfig) setDefaults() {
	if len(c.RetrySchedule) == 0 {
		c.RetrySchedule = DefaultLeadSchedule
	}
	if c.RateUnit == 0 {
		c.RateUnit = time.Minute
	}
	if c.QueueInterval == 0 {
		c.QueueInterval = 5 * time.Second
	}
	if c.RetryBackoff == 0 {
		c.RetryBackoff = time.Second
	}
	if c.OutcomeLookback == 0 {
		c.OutcomeLookback = 7 * 24 * time.Hour
	}
	if c.OutcomeWait == 0 {
		c.OutcomeWait = 10 * time.Second
	}
	if c.DoneIDs == 0 {
		c.DoneIDs = 10000
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports a config that cannot work.
func (c *LeadDeliveryConfig) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("lead delivery: no brokers")
	}
	if c.RateUnit < 0 || c.QueueInterval < 0 || c.RetryBackoff < 0 || c.OutcomeLookback < 0 || c.OutcomeWait < 0 || c.DoneIDs < 0 {
		return errors.New("lead delivery: RateUnit, QueueInterval, RetryBackoff, OutcomeLookback, OutcomeWait and DoneIDs must not be negative")
	}
	for i, d := range c.RetrySchedule {
		if d < 0 {
			return fmt.Errorf("lead delivery: retry_schedule: delay %d (%s) is negative", i+1, d)
		}
	}
	return ValidatePartners(c.Partners)
}

// partnerDelivery is a partner with its compiled delivery.
type partnerDelivery struct {
	p *partners.Partner
	*compiled
	done *doneIDs // webhook ids its sender finished (the sender's goroutine only)
}

// LeadDelivery delivers routed leads and follow-ups to partners: the
// dispatcher (group rolodex-lead-delivery) writes each to the partner's
// out topic; a sender per webhook partner (group rolodex-webhook-<partner>)
// posts them, in order, paced and retried, and reports the end of each
// delivery back to routing. docs/routing.md, "Delivery".
type LeadDelivery struct {
	cfg      LeadDeliveryConfig
	byName   map[string]*partnerDelivery
	webhooks []*partnerDelivery
	sender   *Sender
	m        *Metrics
	book     *leadBook
}

// NewLeadDelivery checks the config and compiles every partner's delivery.
func NewLeadDelivery(cfg LeadDeliveryConfig) (*LeadDelivery, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	s, err := NewSender(SenderConfig{Schedule: cfg.RetrySchedule, HTTPClient: cfg.HTTPClient,
		MaxRetryAfter: cfg.MaxRetryAfter, Now: cfg.Now})
	if err != nil {
		return nil, err
	}
	m, err := NewMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("lead delivery: metrics: %w", err)
	}
	d := &LeadDelivery{cfg: cfg, byName: map[string]*partnerDelivery{}, sender: s, m: m,
		book: newLeadBook(cfg.OutcomeLookback, cfg.Now, cfg.Logger)}
	for _, p := range cfg.Partners {
		c, err := compileDelivery(p.Name, p.Delivery)
		if err != nil {
			return nil, err
		}
		if c == nil {
			continue
		}
		pd := &partnerDelivery{p: p, compiled: c, done: newDoneIDs(cfg.DoneIDs)}
		if !c.kafka {
			if c.perMin > 0 {
				// Burst 1: requests evenly spaced, never a burst after a
				// quiet spell.
				pd.target.Limiter = rate.NewLimiter(rate.Every(cfg.RateUnit/time.Duration(c.perMin)), 1)
			}
			d.webhooks = append(d.webhooks, pd)
		}
		d.byName[p.Name] = pd
	}
	return d, nil
}

// Metrics returns the metrics.
func (d *LeadDelivery) Metrics() *Metrics { return d.m }

// MaxOutRecordBytes is the max.message.bytes of the out topics, and the
// largest batch the dispatcher writes: gokaconfig.MaxMessageBytes, the
// bound of the routing topics a lead comes through (a lead's traits can
// pass Kafka's 1 MB default). A record larger still is refused, and the
// delivery reported failed.
const MaxOutRecordBytes = 16 << 20

// OutTopics returns the out topics of every partner with a delivery, one
// partition each, max.message.bytes MaxOutRecordBytes.
func OutTopics(ps []*partners.Partner) []kafkaclient.TopicSpec {
	var out []kafkaclient.TopicSpec
	big := strconv.Itoa(MaxOutRecordBytes)
	for _, p := range ps {
		if p.Delivery != nil {
			out = append(out, kafkaclient.TopicSpec{Name: schemas.OutTopic(p.Name), Partitions: 1,
				Configs: map[string]*string{"max.message.bytes": &big}})
		}
	}
	return out
}

// EnsureLeadTopics creates the out topic of every partner with a delivery:
// one partition, so that a partner's leads are sent in order and its rate
// is exact (one sender at a time); leads are few; max.message.bytes
// MaxOutRecordBytes. Existing topics are left as they are.
func EnsureLeadTopics(ctx context.Context, admin *kgo.Client, replication int16, ps []*partners.Partner) error {
	if err := kafkaclient.EnsureTopics(ctx, admin, replication, OutTopics(ps)...); err != nil {
		return fmt.Errorf("lead delivery: %w", err)
	}
	return nil
}

// Run runs the dispatcher, a sender per webhook partner and the queue
// depth measure until ctx is done (nil) or one of them fails. Call it once.
func (d *LeadDelivery) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return d.runDispatcher(gctx) })
	for _, pd := range d.webhooks {
		g.Go(func() error { return d.runSender(gctx, pd) })
	}
	if len(d.webhooks) > 0 {
		g.Go(func() error { return d.runQueueDepth(gctx) })
		g.Go(func() error {
			cl, err := d.client("rolodex-lead-delivery-outcomes")
			if err != nil {
				return err
			}
			defer cl.Close()
			return d.book.run(gctx, kadm.NewClient(cl), func(opts ...kgo.Opt) (*kgo.Client, error) {
				return d.client("rolodex-lead-delivery-outcomes", opts...)
			})
		})
	}
	return g.Wait()
}

func (d *LeadDelivery) client(id string, opts ...kgo.Opt) (*kgo.Client, error) {
	return newClient(d.cfg.Brokers, d.cfg.SessionTimeout, "lead delivery", id, opts...)
}

// produce writes recs until Kafka acknowledged them all, or ctx is done.
func (d *LeadDelivery) produce(ctx context.Context, cl *kgo.Client, recs []*kgo.Record) error {
	return produceAcked(ctx, cl, d.cfg.Logger, d.cfg.RetryBackoff, "lead delivery", recs)
}

// runDispatcher reads rolodex.routing.outcomes and writes each lead.routed
// and lead.forwarded of a partner with a delivery to its out topic
// (and, for a kafka partner, lead.distributed), committing a batch only
// after Kafka acknowledged everything it produced.
func (d *LeadDelivery) runDispatcher(ctx context.Context) error {
	return runBatches(ctx, d.client, d.cfg.Logger, "lead delivery", "rolodex-lead-delivery",
		schemas.GroupLeadDelivery, schemas.TopicRoutingOutcomes, d.dispatchBatch)
}

// dispatchBatch dispatches a batch of rolodex.routing.outcomes (a
// batchFunc).
func (d *LeadDelivery) dispatchBatch(ctx context.Context, cl *kgo.Client, recs []*kgo.Record) (bool, error) {
	// First the records to the out topics (the deliveries), then the
	// reports: a kafka partner's lead.distributed only once its record
	// is written, a failure report for a record Kafka refused for good.
	var out, after []*kgo.Record
	type key struct{ partner, kind string }
	dispatched := map[key]int{}
	for _, r := range recs {
		rs, _, _, reason := d.dispatch(r)
		if reason != "" {
			d.m.Skipped.WithLabelValues(reason).Inc()
			after = append(after, rs...) // an undeliverable lead's failure report
			continue
		}
		out = append(out, rs[0])
		after = append(after, rs[1:]...)
	}
	refused, err := d.produceOut(ctx, cl, out)
	if err != nil {
		return false, nil // ctx done: the batch is read again
	}
	var distributed []string
	for _, r := range out {
		h := headers(r)
		partner, kind := r.Topic[len(schemas.OutTopicPrefix):], h[HeaderKind]
		if err := refused[r]; err != nil {
			rs, rerr := d.refusedReport(partner, h, err)
			if rerr != nil {
				return false, fmt.Errorf("lead delivery: report: %w", rerr)
			}
			after = append(after, rs...)
			d.m.Deliveries.WithLabelValues(partner, kind, string(ResultPermanent)).Inc()
			continue
		}
		dispatched[key{partner, kind}]++
		if d.byName[partner].kafka && kind == KindLead {
			distributed = append(distributed, partner)
		}
	}
	if len(after) > 0 {
		if err := d.produce(ctx, cl, after); err != nil {
			return false, nil // ctx done: the batch is read again
		}
	}
	for k, n := range dispatched {
		d.m.Dispatched.WithLabelValues(k.partner, k.kind).Add(float64(n))
	}
	for _, p := range distributed {
		d.m.Deliveries.WithLabelValues(p, KindLead, string(ResultSuccess)).Inc()
	}
	return true, nil
}

// produceOut writes the records to the out topics until Kafka acknowledged
// each or refused it for good (refused: the error, e.g. MESSAGE_TOO_LARGE),
// or ctx is done (its error). A refused record is tried again alone
// first: Kafka refuses a whole batch for one record that is too large.
// A record refused alone is not tried again: that would stop every
// partner's deliveries behind it, with rebalances blocked.
func (d *LeadDelivery) produceOut(ctx context.Context, cl *kgo.Client, recs []*kgo.Record) (map[*kgo.Record]error, error) {
	return produceOut(ctx, cl, d.cfg.Logger, d.cfg.RetryBackoff, "lead delivery", recs)
}

// produceOut is LeadDelivery.produceOut for any writer of out records
// (what names it in the logs).
func produceOut(ctx context.Context, cl *kgo.Client, log *slog.Logger, backoff time.Duration, what string, recs []*kgo.Record) (map[*kgo.Record]error, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	pos := make(map[*kgo.Record]int, len(recs))
	for i, r := range recs {
		pos[r] = i
	}
	var left []*kgo.Record
	for _, res := range cl.ProduceSync(ctx, recs...) {
		if res.Err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			left = append(left, res.Record)
		}
	}
	slices.SortFunc(left, func(a, b *kgo.Record) int { return pos[a] - pos[b] }) // in the order read
	refused := map[*kgo.Record]error{}
	for _, r := range left {
		for {
			err := cl.ProduceSync(ctx, r).FirstErr()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if permanentProduceError(err) {
				log.Error(what+": Kafka refused an out record for good; reported as a failed delivery",
					"topic", r.Topic, "key", string(r.Key), "bytes", len(r.Value), "err", err)
				refused[r] = err
				break
			}
			log.Error(what+": write, retrying", "topic", r.Topic, "err", err)
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(backoff):
			}
		}
	}
	return refused, nil
}

// permanentProduceError reports an error Kafka will answer again to the
// same record (MESSAGE_TOO_LARGE, INVALID_RECORD, ...), as opposed to one
// that may pass later (a leader moving, a timeout).
func permanentProduceError(err error) bool {
	var ke *kerr.Error
	return errors.As(err, &ke) && !ke.Retriable
}

// headers returns a record's headers by key.
func headers(r *kgo.Record) map[string]string {
	h := make(map[string]string, len(r.Headers))
	for _, x := range r.Headers {
		h[x.Key] = string(x.Value)
	}
	return h
}

// refusedReport is the failure report of an out record Kafka refused for
// good (h: its headers), as for a webhook that failed for good.
func (d *LeadDelivery) refusedReport(partner string, h map[string]string, err error) ([]*kgo.Record, error) {
	attempt, _ := strconv.Atoi(h[HeaderAttempt])
	rep := &schemas.LeadDelivery{LeadID: h[HeaderLeadID], Partner: partner, Attempt: attempt,
		Error: string(ResultPermanent) + ": Kafka refused the record: " + err.Error()}
	var fu *schemas.LeadFollowUp
	if h[HeaderKind] == KindFollowUp {
		fu = &schemas.LeadFollowUp{LeadID: rep.LeadID, EventID: h[HeaderEventID], Type: h[HeaderEventType]}
	}
	return d.reportRecords(h[HeaderTenant], schemas.OutcomeDeliveryFailed, rep, fu, fu == nil)
}

// dispatch returns the records an outcome record makes (the out record
// first), or why it makes none.
func (d *LeadDelivery) dispatch(r *kgo.Record) (out []*kgo.Record, partner, kind, skip string) {
	var o schemas.LeadOutcome
	if err := json.Unmarshal(r.Value, &o); err != nil {
		d.cfg.Logger.Warn("lead delivery: undecodable outcome", "partition", r.Partition, "offset", r.Offset, "err", err)
		return nil, "", "", "undecodable"
	}
	switch o.Type {
	case schemas.OutcomeRouted:
		kind = KindLead
	case schemas.OutcomeForwarded:
		kind = KindFollowUp
		if o.FollowUp == nil {
			return nil, "", "", "undecodable"
		}
	default:
		return nil, "", "", "outcome_type"
	}
	pd, ok := d.byName[o.Partner]
	switch {
	case !ok:
		skip = "unknown_partner"
		for _, p := range d.cfg.Partners {
			if p.Name == o.Partner {
				skip = "no_delivery"
			}
		}
	case pd.p.Tenant != o.Tenant:
		// A partner belongs to one tenant: another tenant's lead never
		// reaches it, whatever its name.
		d.cfg.Logger.Warn("lead delivery: outcome of another tenant than its partner's", "lead", o.LeadID,
			"tenant", o.Tenant, "partner", o.Partner)
		skip = "other_tenant"
	}
	if skip != "" {
		if kind == KindFollowUp {
			return nil, "", "", skip
		}
		// A lead routed to a partner that cannot receive it: reported as
		// a failed delivery, so that routing routes it again (else it
		// would stay with that partner until its SLA, or for ever).
		rep := &schemas.LeadDelivery{LeadID: o.LeadID, Partner: o.Partner, Attempt: o.Attempt,
			Error: "undeliverable: " + undeliverable[skip]}
		rs, err := d.reportRecords(o.Tenant, schemas.OutcomeDeliveryFailed, rep, nil, true)
		if err != nil {
			return nil, "", "", "undecodable"
		}
		return rs, "", "", skip
	}
	at := o.At
	if at == 0 {
		at = r.Timestamp.UnixMilli()
	}
	var (
		body []byte
		id   string
		err  error
	)
	if kind == KindLead {
		id = WebhookID(o.LeadID, o.Attempt, at)
		body, err = pd.mapping.Body(&Routed{Tenant: o.Tenant, Partner: o.Partner, Attempt: o.Attempt, Rule: o.Rule, Lead: o.Lead})
	} else {
		id = FollowUpWebhookID(o.LeadID, o.FollowUp.EventID)
		body, err = FollowUpBody(o.Tenant, o.Partner, o.At, o.FollowUp)
	}
	if err != nil {
		d.cfg.Logger.Warn("lead delivery: body", "lead", o.LeadID, "err", err)
		return nil, "", "", "undecodable"
	}
	hs := []kgo.RecordHeader{
		{Key: HeaderCESpecVersion, Value: []byte("1.0")},
		{Key: HeaderCEID, Value: []byte(id)},
		{Key: HeaderCEType, Value: []byte(o.Type)},
		{Key: HeaderCESource, Value: []byte(CESource(o.Tenant))},
		{Key: HeaderCETime, Value: []byte(time.UnixMilli(at).UTC().Format(time.RFC3339Nano))},
		{Key: HeaderCESubject, Value: []byte(o.LeadID)},
		{Key: HeaderContentType, Value: []byte("application/json")},
		{Key: HeaderTenant, Value: []byte(o.Tenant)},
		{Key: HeaderLeadID, Value: []byte(o.LeadID)},
		{Key: HeaderAttempt, Value: []byte(strconv.Itoa(o.Attempt))},
		{Key: HeaderKind, Value: []byte(kind)},
	}
	if kind == KindFollowUp {
		hs = append(hs, kgo.RecordHeader{Key: HeaderEventID, Value: []byte(o.FollowUp.EventID)},
			kgo.RecordHeader{Key: HeaderEventType, Value: []byte(o.FollowUp.Type)})
	}
	out = append(out, &kgo.Record{Topic: schemas.OutTopic(o.Partner), Key: []byte(o.LeadID), Value: body, Headers: hs})
	if pd.kafka && kind == KindLead {
		// On Kafka, the write to the partner's topic is the delivery.
		rep := &schemas.LeadDelivery{LeadID: o.LeadID, Partner: o.Partner, Attempt: o.Attempt, OK: true, Tries: 1}
		rs, err := d.reportRecords(o.Tenant, schemas.OutcomeDistributed, rep, nil, true)
		if err != nil {
			return nil, "", "", "undecodable"
		}
		out = append(out, rs...)
	}
	return out, o.Partner, kind, ""
}

// undeliverable explains the skip reasons of a lead routed to a partner
// that cannot receive it (the error of its failure report).
var undeliverable = map[string]string{
	"unknown_partner": "no partner of that name in the config",
	"no_delivery":     "the partner has no delivery",
	"other_tenant":    "the partner belongs to another tenant",
}

// CESource is the ce_source of a tenant's lead records: webhook ids are
// unique within it (lead ids are per tenant).
func CESource(tenant string) string { return "/rolodex/tenants/" + tenant + "/routing" }

// reportRecords are the records of a delivery's end: the outcome keyed by
// lead id and, with input, the report to routing keyed by tenant.
func (d *LeadDelivery) reportRecords(tenant, typ string, rep *schemas.LeadDelivery, fu *schemas.LeadFollowUp, input bool) ([]*kgo.Record, error) {
	o := schemas.LeadOutcome{Type: typ, Tenant: tenant, LeadID: rep.LeadID, Attempt: rep.Attempt,
		At: d.cfg.Now().UnixMilli(), Partner: rep.Partner, Reason: rep.Error, FollowUp: fu, Delivery: rep}
	ov, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	out := []*kgo.Record{{Topic: schemas.TopicRoutingOutcomes, Key: []byte(rep.LeadID), Value: ov}}
	if input {
		iv, err := json.Marshal(schemas.RoutingInput{Tenant: tenant, Delivery: rep})
		if err != nil {
			return nil, err
		}
		out = append(out, &kgo.Record{Topic: schemas.TopicRoutingInput, Key: []byte(tenant), Value: iv})
	}
	return out, nil
}

// WebhookGroups are the consumer groups of the webhook partners' senders
// (rolodex-webhook-<partner>), for lag metrics.
func (d *LeadDelivery) WebhookGroups() []string {
	groups := make([]string, len(d.webhooks))
	for i, pd := range d.webhooks {
		groups[i] = schemas.GroupWebhookPrefix + pd.p.Name
	}
	return groups
}

// runSender posts a webhook partner's out topic to its URL, one record at
// a time in order, and commits each only after its report was written.
// Rebalances are not blocked (a delivery may wait minutes between
// retries): a revoked partition cancels the delivery in progress, whose
// record the new owner sends again with the same webhook-id.
//
// The delivery context is made after a poll returns, never before: a
// partition revoked while the poll waited (and assigned back) comes back
// from its committed offset, and those records are this member's to send.
// A batch left part-way rewinds to its first record not handled when the
// partition is still (or again) assigned, so that no record is passed
// over and committed past.
func (d *LeadDelivery) runSender(ctx context.Context, pd *partnerDelivery) error {
	var (
		mu       sync.Mutex
		current  context.CancelFunc
		assigned = map[int32]bool{}
	)
	assign := func(_ context.Context, _ *kgo.Client, ps map[string][]int32) {
		mu.Lock()
		for _, p := range ps[schemas.OutTopic(pd.p.Name)] {
			assigned[p] = true
		}
		mu.Unlock()
	}
	revoke := func(_ context.Context, _ *kgo.Client, ps map[string][]int32) {
		mu.Lock()
		for _, p := range ps[schemas.OutTopic(pd.p.Name)] {
			delete(assigned, p)
		}
		if current != nil {
			current()
		}
		mu.Unlock()
	}
	name := pd.p.Name
	cl, err := d.client("rolodex-webhook-"+name,
		kgo.ConsumerGroup(schemas.GroupWebhookPrefix+name),
		kgo.ConsumeTopics(schemas.OutTopic(name)),
		kgo.DisableAutoCommit(),
		kgo.OnPartitionsAssigned(assign),
		kgo.OnPartitionsRevoked(revoke),
		kgo.OnPartitionsLost(revoke),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	// rewind sets each partition of rest (the records of a batch not
	// handled) back to its first record there, when this member still
	// owns it; a partition revoked meanwhile is read again from its
	// committed offset by whoever owns it next.
	rewind := func(rest []*kgo.Record) {
		mu.Lock()
		defer mu.Unlock()
		to := map[string]map[int32]kgo.EpochOffset{}
		for _, r := range rest {
			if _, seen := to[r.Topic][r.Partition]; seen || !assigned[r.Partition] {
				continue
			}
			if to[r.Topic] == nil {
				to[r.Topic] = map[int32]kgo.EpochOffset{}
			}
			to[r.Topic][r.Partition] = kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset}
		}
		cl.SetOffsets(to)
	}
	for {
		fetches := cl.PollRecords(ctx, 100)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			return nil
		}
		fetches.EachError(func(topic string, part int32, err error) {
			d.cfg.Logger.Warn("lead delivery: fetch", "topic", topic, "partition", part, "err", err)
		})
		mu.Lock()
		dctx, cancel := context.WithCancel(ctx)
		current = cancel
		var recs []*kgo.Record
		for _, r := range fetches.Records() {
			// A partition revoked between the poll and now: its records
			// are read again by its next owner, from the committed offset.
			if assigned[r.Partition] {
				recs = append(recs, r)
			}
		}
		mu.Unlock()
		for i, r := range recs {
			if dctx.Err() != nil {
				rewind(recs[i:]) // revoked: the rest is the new owner's, or ours again
				break
			}
			if err := d.send(dctx, ctx, cl, pd, r); err != nil {
				if ctx.Err() != nil {
					cancel()
					return nil
				}
				if dctx.Err() != nil {
					rewind(recs[i:])
					break
				}
				cancel()
				return err
			}
		}
		cancel()
	}
}

// send delivers one out record and reports its end.
func (d *LeadDelivery) send(dctx, ctx context.Context, cl *kgo.Client, pd *partnerDelivery, r *kgo.Record) error {
	name := pd.p.Name
	h := map[string]string{}
	for _, x := range r.Headers {
		h[x.Key] = string(x.Value)
	}
	attempt, aerr := strconv.Atoi(h[HeaderAttempt])
	kind := h[HeaderKind]
	if kind == schemas.KindTopicEvent || kind == schemas.KindConsentRevoked {
		// A partner fan-out record on the partner's shared out topic
		// (docs/fanout.md): the partner reads it on Kafka; not a lead.
		d.m.Skipped.WithLabelValues("fanout").Inc()
		return d.commit(ctx, cl, r)
	}
	if h[HeaderCEID] == "" || h[HeaderLeadID] == "" || h[HeaderTenant] == "" || aerr != nil || (kind != KindLead && kind != KindFollowUp) {
		d.cfg.Logger.Error("lead delivery: out record without its headers, skipped", "topic", r.Topic, "offset", r.Offset)
		d.m.Skipped.WithLabelValues("undecodable").Inc()
		return d.commit(ctx, cl, r)
	}
	tenant, lead, id := h[HeaderTenant], h[HeaderLeadID], h[HeaderCEID]
	if pd.done.has(id) {
		// A duplicate (the dispatcher wrote it again after a crash):
		// ended already, reported already.
		d.m.Skipped.WithLabelValues("duplicate").Inc()
		return d.commit(ctx, cl, r)
	}
	// The instant of the decision (a lead's) or of the forward (a
	// follow-up's): ce_time.
	var at int64
	if t, err := time.Parse(time.RFC3339Nano, h[HeaderCETime]); err == nil {
		at = t.UnixMilli()
	}
	adm := kadm.NewClient(cl)
	before := func(int) error {
		if at == 0 {
			return nil
		}
		d.book.sync(dctx, adm, d.cfg.OutcomeWait)
		if d.book.superseded(kind, lead, attempt, at) {
			return errSuperseded
		}
		return nil
	}
	rep, err := d.sender.DeliverChecked(dctx, pd.target, Message{ID: id, Body: r.Value}, before, func(a Attempt) {
		d.m.Attempts.WithLabelValues(name, string(a.Class)).Inc()
		if a.N > 1 {
			d.m.Retries.WithLabelValues(name).Inc()
		}
		if a.Status != 0 || a.Class == Retry {
			d.m.RequestSeconds.WithLabelValues(name).Observe(a.Latency.Seconds())
		}
		if a.Class != Success {
			d.cfg.Logger.Warn("lead delivery: attempt failed", "partner", name, "webhook_id", id,
				"attempt", a.N, "class", a.Class, "status", a.Status, "err", a.Err)
		}
	})
	superseded := errors.Is(err, errSuperseded)
	if err != nil && !superseded {
		return err
	}
	result := string(rep.Result)
	if superseded {
		result = errSuperseded.Error()
		d.cfg.Logger.Info("lead delivery: attempt superseded, not sent (again)", "partner", name, "webhook_id", id, "tries", rep.Tries)
	}
	d.m.Deliveries.WithLabelValues(name, kind, result).Inc()
	d.m.DeliverySeconds.WithLabelValues(name).Observe(time.Since(r.Timestamp).Seconds())
	lr := &schemas.LeadDelivery{LeadID: lead, Partner: name, Attempt: attempt, OK: rep.Result.OK(), Status: rep.Status, Tries: rep.Tries}
	if !lr.OK {
		lr.Error = result
		if rep.Err != nil && !superseded {
			lr.Error += ": " + rep.Err.Error()
		}
	}
	var recs []*kgo.Record
	var fu *schemas.LeadFollowUp
	if kind == KindFollowUp {
		fu = &schemas.LeadFollowUp{LeadID: lead, EventID: h[HeaderEventID], Type: h[HeaderEventType]}
	}
	switch {
	case superseded:
		// No report to routing: it moved on already.
		recs, err = d.reportRecords(tenant, schemas.OutcomeDeliveryFailed, lr, fu, false)
	case kind == KindLead:
		typ := schemas.OutcomeDistributed
		if !lr.OK {
			typ = schemas.OutcomeDeliveryFailed
		}
		recs, err = d.reportRecords(tenant, typ, lr, nil, true)
	case !lr.OK:
		recs, err = d.reportRecords(tenant, schemas.OutcomeDeliveryFailed, lr, fu, false)
	}
	if err != nil {
		return fmt.Errorf("lead delivery: report: %w", err)
	}
	if len(recs) > 0 {
		// Written even if the partition was revoked meanwhile: the
		// delivery did end.
		if err := d.produce(ctx, cl, recs); err != nil {
			return err
		}
	}
	pd.done.add(id)
	return d.commit(ctx, cl, r)
}

func (d *LeadDelivery) commit(ctx context.Context, cl *kgo.Client, r *kgo.Record) error {
	if err := cl.CommitRecords(ctx, r); err != nil && ctx.Err() == nil {
		// Reported: a lost commit only means the record is sent again,
		// with the same webhook-id, and reported again.
		d.cfg.Logger.Warn("lead delivery: commit", "partner", r.Topic, "err", err)
	}
	return nil
}

// runQueueDepth measures each webhook partner's queue: its out topic's end
// offsets minus its sender group's committed offsets (the start offset
// where none is committed).
func (d *LeadDelivery) runQueueDepth(ctx context.Context) error {
	cl, err := d.client("rolodex-lead-delivery-queue")
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	topics := make([]string, len(d.webhooks))
	for i, pd := range d.webhooks {
		topics[i] = schemas.OutTopic(pd.p.Name)
	}
	t := time.NewTicker(d.cfg.QueueInterval)
	defer t.Stop()
	for {
		d.measureQueues(ctx, adm, topics)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (d *LeadDelivery) measureQueues(ctx context.Context, adm *kadm.Client, topics []string) {
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err == nil {
		var starts kadm.ListedOffsets
		if starts, err = adm.ListStartOffsets(ctx, topics...); err == nil {
			d.setQueueDepths(ctx, adm, ends, starts)
			return
		}
	}
	d.cfg.Logger.Debug("lead delivery: queue depth", "err", err)
}

func (d *LeadDelivery) setQueueDepths(ctx context.Context, adm *kadm.Client, ends, starts kadm.ListedOffsets) {
	for _, pd := range d.webhooks {
		topic := schemas.OutTopic(pd.p.Name)
		committed, err := adm.FetchOffsets(ctx, schemas.GroupWebhookPrefix+pd.p.Name)
		if errors.Is(err, kerr.GroupIDNotFound) {
			// Not joined yet (kfake says so; Kafka answers no offsets).
			committed, err = nil, nil
		}
		if err != nil {
			d.cfg.Logger.Debug("lead delivery: queue depth", "partner", pd.p.Name, "err", err)
			continue
		}
		var depth int64
		ok := true
		for p, end := range ends[topic] {
			if end.Err != nil {
				ok = false
				break
			}
			from := int64(0)
			if s, found := starts.Lookup(topic, p); found && s.Err == nil {
				from = s.Offset
			}
			if c, found := committed.Lookup(topic, p); found && c.Err == nil && c.At >= 0 {
				from = max(from, c.At)
			}
			depth += max(0, end.Offset-from)
		}
		if ok {
			d.m.QueueDepth.WithLabelValues(pd.p.Name).Set(float64(depth))
		}
	}
}
