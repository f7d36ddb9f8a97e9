//go:build unix

package identity

import (
	"syscall"
	"time"
)

// processCPU is the CPU time (user + system) this process has used so far.
// The embedded broker, the clients and the processor all run in this
// process, so a phase's CPU time covers all of them (with an external
// broker, the broker's share is missing).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
