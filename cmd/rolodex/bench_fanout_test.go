package main

import (
	"strings"
	"testing"
)

// rolodex bench fanout on a few hundred records prints every phase and
// the check; bad flags are usage errors.
func TestBenchFanoutCommand(t *testing.T) {
	out, errOut, code := runInProcess("bench", "fanout", "--records", "300", "--partitions", "2")
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
	for _, want := range []string{"Rolodex partner fan-out benchmark", "kafka consume→produce of the deliveries (baseline)",
		"kafka delivery:", "webhook delivery:", "fan-out group: topic events → 1000 deliveries", "checked: each Kafka record once", "300 deliveries per phase"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	for _, args := range [][]string{{"--records", "0"}, {"--partitions", "-1"}, {"extra"}} {
		if _, _, code := runInProcess(append([]string{"bench", "fanout"}, args...)...); code != 2 {
			t.Errorf("bench fanout %v: exit %d, want 2 (usage)", args, code)
		}
	}
}
