package intake

import "github.com/prometheus/client_golang/prometheus"

// Metrics count what ingest accepts and rejects. Every connector shares one
// set, labelled by connector ("http", "kafka", "csv").
type Metrics struct {
	Accepted   *prometheus.CounterVec
	Rejected   *prometheus.CounterVec
	Dropped    *prometheus.CounterVec
	DeadLetter *prometheus.CounterVec
}

// NewMetrics registers the ingest metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rolodex_ingest_events_accepted_total",
			Help: "Events accepted and acknowledged by Kafka, by partner and connector.",
		}, []string{"partner", "connector"}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rolodex_ingest_events_rejected_total",
			Help: "Events rejected, by partner, connector and reason.",
		}, []string{"partner", "connector", "reason"}),
		Dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rolodex_ingest_identifiers_dropped_total",
			Help: "Identifier values dropped from accepted events (invalid or blocked), by partner and reason.",
		}, []string{"partner", "reason"}),
		DeadLetter: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rolodex_ingest_deadletters_total",
			Help: "Records written to the dead-letter topic, by connector and reason.",
		}, []string{"connector", "reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.Accepted, m.Rejected, m.Dropped, m.DeadLetter)
	}
	return m
}
