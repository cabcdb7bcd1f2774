package procsec

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestHarden runs in a child process (the test binary again), so that this
// test binary itself stays dumpable for debuggers.
func TestHarden(t *testing.T) {
	if os.Getenv("PROCSEC_CHILD") == "1" {
		if d, err := Dumpable(); err != nil || !d {
			t.Fatalf("before Harden: dumpable=%v, %v; want true", d, err)
		}
		if err := Harden(); err != nil {
			t.Fatal(err)
		}
		if d, err := Dumpable(); err != nil || d {
			t.Fatalf("after Harden: dumpable=%v, %v; want false", d, err)
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHarden$", "-test.v")
	cmd.Env = append(os.Environ(), "PROCSEC_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestHarden") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}
