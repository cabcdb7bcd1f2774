//go:build !unix

package testutil

import "time"

// ProcessCPU is not measured here: it is always 0, and benchmarks that
// report cpu-ns/op report 0.
func ProcessCPU() time.Duration { return 0 }
