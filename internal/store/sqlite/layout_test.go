package sqlite

import (
	"fmt"
	"testing"
)

// BenchmarkWALFramesPerGrant counts the WAL frames (pages) that 2000 code
// exchanges and then 2000 rotations of their refresh tokens write, per
// grant, alone and in group-commit batches of 4, 8 and 16: an exact count,
// independent of the machine's load (run with -benchtime 1x).
func BenchmarkWALFramesPerGrant(b *testing.B) {
	for _, batch := range []int{1, 4, 8, 16} {
		b.Run(fmt.Sprint("batch=", batch), func(b *testing.B) {
			var ex, rot float64
			for range b.N {
				ex, rot = walFramesPerOp(b, 2000, batch)
			}
			b.ReportMetric(ex, "frames/exchange")
			b.ReportMetric(rot, "frames/rotation")
		})
	}
}
