package kafkaclient

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/internal/metrics"
)

// LagMetrics exports a consumer group's lag per topic and partition as
// rolodex_consumer_lag_records{group,topic,partition}, refreshed every
// interval until ctx is done.
type LagMetrics struct {
	lag *prometheus.GaugeVec
}

// NewLagMetrics registers the lag gauge on reg.
func NewLagMetrics(reg prometheus.Registerer) *LagMetrics {
	m := &LagMetrics{lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "rolodex_consumer_lag_records",
		Help: "Records not yet processed by a consumer group: end offset minus committed offset, per topic and partition.",
	}, []string{"group", "topic", "partition"})}
	if reg != nil {
		// Every group's lag is one gauge: a second component reuses it.
		var err error
		if m.lag, err = metrics.Register(reg, m.lag); err != nil {
			panic(err)
		}
	}
	return m
}

// Run refreshes the lag of group every interval until ctx is done.
func (m *LagMetrics) Run(ctx context.Context, cl *kgo.Client, group string, interval time.Duration) error {
	adm := kadm.NewClient(cl)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if lags, err := adm.Lag(ctx, group); err == nil {
			if l, ok := lags[group]; ok && l.Error() == nil {
				for topic, parts := range l.Lag {
					for p, ml := range parts {
						m.lag.WithLabelValues(group, topic, strconv.Itoa(int(p))).Set(float64(ml.Lag))
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
