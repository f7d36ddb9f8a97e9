package webhooks

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rolodex/rolodex/internal/metrics"
)

// Metrics of lead delivery (docs/routing.md, "Delivery").
type Metrics struct {
	// Deliveries: partner, kind (lead, follow_up), result (success,
	// gone, permanent, exhausted, superseded; a kafka partner's are
	// success).
	Deliveries *prometheus.CounterVec
	// Attempts: partner, class (success, gone, permanent, retry).
	Attempts *prometheus.CounterVec
	// Retries: partner; attempts after a delivery's first.
	Retries *prometheus.CounterVec
	// RequestSeconds: partner; one request's latency.
	RequestSeconds *prometheus.HistogramVec
	// DeliverySeconds: partner; from the out record's write to the end of
	// its delivery (queue, pacing and retries included).
	DeliverySeconds *prometheus.HistogramVec
	// QueueDepth: partner; records of its out topic its sender has not
	// handled yet.
	QueueDepth *prometheus.GaugeVec
	// Dispatched: partner, kind; records written to out topics.
	Dispatched *prometheus.CounterVec
	// Skipped: reason; outcome records the dispatcher does not deliver,
	// out records the sender cannot read, ended already (duplicate) or
	// that are partner fan-out's (fanout).
	Skipped *prometheus.CounterVec
}

// NewMetrics registers the metrics on reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		Deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rolodex_delivery_deliveries_total",
			Help: "Deliveries ended, by partner, kind (lead, follow_up) and result (success, gone, permanent, exhausted, superseded)."},
			[]string{"partner", "kind", "result"}),
		Attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rolodex_delivery_attempts_total",
			Help: "Webhook requests, by partner and class of the answer (success, gone, permanent, retry)."},
			[]string{"partner", "class"}),
		Retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rolodex_delivery_retries_total",
			Help: "Webhook requests after a delivery's first, by partner."}, []string{"partner"}),
		RequestSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "rolodex_delivery_request_seconds",
			Help: "Latency of one webhook request, by partner.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 13)},
			[]string{"partner"}),
		DeliverySeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "rolodex_delivery_seconds",
			Help:    "From a record's write to its partner's out topic to the end of its delivery (queue, pacing, retries), by partner.",
			Buckets: []float64{0.05, 0.25, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600}}, []string{"partner"}),
		QueueDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "rolodex_delivery_queue_depth",
			Help: "Records in a webhook partner's out topic not yet handled by its sender (end offset minus committed)."},
			[]string{"partner"}),
		Dispatched: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rolodex_delivery_dispatched_total",
			Help: "Records the dispatcher wrote to partners' out topics, by partner and kind (lead, follow_up)."},
			[]string{"partner", "kind"}),
		Skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rolodex_delivery_skipped_total",
			Help: "Records not delivered, by reason (outcome_type, no_delivery, unknown_partner, other_tenant, undecodable, duplicate, fanout)."},
			[]string{"reason"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.Deliveries, err = metrics.Register(reg, m.Deliveries); err != nil {
		return nil, err
	}
	if m.Attempts, err = metrics.Register(reg, m.Attempts); err != nil {
		return nil, err
	}
	if m.Retries, err = metrics.Register(reg, m.Retries); err != nil {
		return nil, err
	}
	if m.RequestSeconds, err = metrics.Register(reg, m.RequestSeconds); err != nil {
		return nil, err
	}
	if m.DeliverySeconds, err = metrics.Register(reg, m.DeliverySeconds); err != nil {
		return nil, err
	}
	if m.QueueDepth, err = metrics.Register(reg, m.QueueDepth); err != nil {
		return nil, err
	}
	if m.Dispatched, err = metrics.Register(reg, m.Dispatched); err != nil {
		return nil, err
	}
	if m.Skipped, err = metrics.Register(reg, m.Skipped); err != nil {
		return nil, err
	}
	return m, nil
}
