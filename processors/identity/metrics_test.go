package identity

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A processor built again on the same registry (cmd/rolodex builds a new
// one after a failure) counts on in the metrics of the first; a metric of
// the same name but another kind is an error, not a panic.
func TestMetricsOnARebuild(t *testing.T) {
	reg := prometheus.NewRegistry()
	first, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	first.merges.Inc()
	again, err := newMetrics(reg)
	if err != nil {
		t.Fatalf("second build on the same registry: %v", err)
	}
	again.merges.Inc()
	if got := testutil.ToFloat64(first.merges); got != 2 {
		t.Fatalf("rolodex_identity_merges_total = %v after one merge in each build, want 2", got)
	}

	other := prometheus.NewRegistry()
	other.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "rolodex_identity_merges_total", Help: "not a counter"}))
	if _, err := newMetrics(other); err == nil {
		t.Fatal("a gauge of the same name registered already: no error")
	}
}
