//go:build unix

package server

import (
	"syscall"
	"time"
)

// processCPU is the CPU time (user + system) this process has used. The
// proxy benchmarks report it per request: backend and client are the same
// for the bare proxy and the gateway, so the difference is the hop's, and
// on a shared machine CPU time is steadier than wall time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
