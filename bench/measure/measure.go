// Package measure holds what every benchmark under bench/ measures the same
// way: a phase's rate and CPU time (Phase, ProcessCPU), the machine's load
// (LoadAvg), and the broker a run measures against (CheckBrokers, StartBroker, Ping).
//
// Only the benchmarks (bench/...) and cmd/rolodex import it.
package measure

import (
	"os"
	"strings"
	"time"
)

// Phase is one measured pass over a benchmark's events.
type Phase struct {
	Events       int
	Elapsed      time.Duration
	EventsPerSec float64
	// CPU is the CPU time the whole process spent in the phase (the
	// broker's included when embedded); CPUPerEvent is CPU / Events.
	// Unlike the rate, it hardly moves when other processes compete for
	// the cores.
	CPU, CPUPerEvent time.Duration
}

// NewPhase is the phase of events handled in elapsed, using cpu (the
// difference of two ProcessCPU readings).
func NewPhase(events int, elapsed, cpu time.Duration) Phase {
	return Phase{
		Events: events, Elapsed: elapsed, EventsPerSec: float64(events) / elapsed.Seconds(),
		CPU: cpu, CPUPerEvent: cpu / time.Duration(max(1, events)),
	}
}

// LoadAvg returns the 1, 5 and 15 minute load averages on Linux, ""
// elsewhere.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
