package authn

import (
	"testing"
	"time"
)

func TestRetryBackoff(t *testing.T) {
	for failures, want := range map[int]time.Duration{0: 250 * time.Millisecond, 1: 250 * time.Millisecond, 2: 500 * time.Millisecond, 3: time.Second, 4: 2 * time.Second, 50: 2 * time.Second} {
		if got := RetryBackoff(failures); got != want {
			t.Errorf("RetryBackoff(%d) = %v, want %v", failures, got, want)
		}
	}
}
