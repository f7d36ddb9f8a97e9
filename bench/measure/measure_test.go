package measure

import (
	"testing"
	"time"
)

func TestNewPhase(t *testing.T) {
	for _, tc := range []struct {
		name         string
		events       int
		elapsed, cpu time.Duration
		rate         float64
		cpuPerEvent  time.Duration
	}{
		{"rate and cpu per event", 1000, 2 * time.Second, time.Second, 500, time.Millisecond},
		{"no events", 0, time.Second, time.Second, 0, time.Second},
		{"cpu not measured", 10, time.Second, 0, 10, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := NewPhase(tc.events, tc.elapsed, tc.cpu)
			if p.Events != tc.events || p.Elapsed != tc.elapsed || p.CPU != tc.cpu || p.EventsPerSec != tc.rate || p.CPUPerEvent != tc.cpuPerEvent {
				t.Errorf("NewPhase(%d, %v, %v) = %+v, want %v events/s and %v per event", tc.events, tc.elapsed, tc.cpu, p, tc.rate, tc.cpuPerEvent)
			}
		})
	}
}

func TestCheckBrokers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		brokers []string
		ok      bool
	}{
		{"none: embedded", nil, true},
		{"host:port", []string{"localhost:9092"}, true},
		{"without port", []string{"localhost"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := CheckBrokers(tc.brokers); (err == nil) != tc.ok {
				t.Errorf("CheckBrokers(%v) = %v, want ok %v", tc.brokers, err, tc.ok)
			}
		})
	}
}
