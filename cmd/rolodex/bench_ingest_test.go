package main

import (
	"strings"
	"testing"
)

// rolodex bench ingest on a few hundred events prints every phase, the HTTP
// floor included, and the ratios; bad flags are usage errors.
func TestBenchIngestCommand(t *testing.T) {
	out, errOut, code := runInProcess("bench", "ingest", "--events", "400", "--rounds", "1", "--concurrency", "2", "--partitions", "2")
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
	for _, want := range []string{"Rolodex ingest benchmark", "raw Kafka produce (baseline)", "raw produce, request-shaped",
		"rolodex HTTP ingest", "HTTP floor (split, produce)", "ratio rolodex HTTP / raw Kafka, events/s:",
		"ratio HTTP floor / raw Kafka, events/s:", "ratio rolodex HTTP / HTTP floor, events/s:", "http floor events/s"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut, "HTTP floor") {
		t.Errorf("stderr does not name the HTTP floor phase:\n%s", errOut)
	}
	for _, args := range [][]string{{"--events", "0"}, {"--concurrency", "-1"}, {"extra"}} {
		if _, _, code := runInProcess(append([]string{"bench", "ingest"}, args...)...); code != 2 {
			t.Errorf("bench ingest %v: exit %d, want 2 (usage)", args, code)
		}
	}
}
