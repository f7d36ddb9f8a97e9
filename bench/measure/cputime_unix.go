//go:build unix

package measure

import (
	"syscall"
	"time"
)

// ProcessCPU is the CPU time (user + system) this process has used so far.
// The embedded broker, the clients and the system under test all run in
// the benchmark's process, so a phase's CPU time covers all of them (with
// an external broker, the broker's share is missing).
func ProcessCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
