//go:build unix

package policies

import (
	"syscall"
	"time"
)

// processCPU is the CPU time this process has used. Benchmarks report it per operation
// because wall time on a shared machine mostly measures the neighbours.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
