package clickhouse

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics of the sink, all named rolodex_sink_*.
type Metrics struct {
	// RowsWritten counts rows ClickHouse accepted, by table (Tables). A
	// batch written again after a crash counts again.
	RowsWritten *prometheus.CounterVec
	// Batches counts batches written and committed.
	Batches prometheus.Counter
	// BatchDuration is the time to write one batch into ClickHouse, all
	// tables and retries included.
	BatchDuration prometheus.Histogram
	// Retries counts failed attempts to write a batch (each one is retried).
	Retries prometheus.Counter
	// Undecodable counts records skipped because they could not be
	// decoded, by topic.
	Undecodable *prometheus.CounterVec
	// CommitFailures counts Kafka commits that failed (the batch is then
	// read and written again later; the tables collapse the copies).
	CommitFailures prometheus.Counter
	// LastCommitLag is, at the last commit, the age of the oldest record of
	// the committed batch (now minus its Kafka timestamp), in seconds.
	LastCommitLag prometheus.Gauge
	// LastCommit is the Unix time of the last commit.
	LastCommit prometheus.Gauge
}

// NewMetrics creates the sink metrics and registers them on reg; a nil reg
// leaves them unregistered.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		RowsWritten: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rolodex_sink_rows_written_total",
			Help: "Rows ClickHouse accepted, by table.",
		}, []string{"table"}),
		Batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rolodex_sink_batches_total",
			Help: "Batches written to ClickHouse and committed to Kafka.",
		}),
		BatchDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "rolodex_sink_batch_duration_seconds",
			Help:    "Time to write one batch into ClickHouse, retries included.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14), // 5ms .. 41s
		}),
		Retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rolodex_sink_retries_total",
			Help: "Failed attempts to write a batch into ClickHouse; each is retried.",
		}),
		Undecodable: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rolodex_sink_undecodable_records_total",
			Help: "Records skipped because they could not be decoded, by topic.",
		}, []string{"topic"}),
		CommitFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rolodex_sink_commit_failures_total",
			Help: "Kafka offset commits that failed after the batch was written.",
		}),
		LastCommitLag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rolodex_sink_last_commit_lag_seconds",
			Help: "At the last commit: age of the oldest record of the committed batch.",
		}),
		LastCommit: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rolodex_sink_last_commit_timestamp_seconds",
			Help: "Unix time of the last Kafka commit.",
		}),
	}
	for _, t := range Tables {
		m.RowsWritten.WithLabelValues(t)
	}
	if reg != nil {
		reg.MustRegister(m.RowsWritten, m.Batches, m.BatchDuration, m.Retries, m.Undecodable,
			m.CommitFailures, m.LastCommitLag, m.LastCommit)
	}
	return m
}
