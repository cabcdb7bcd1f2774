//go:build !unix

package stdio

import (
	"os"
	"os/exec"
)

func setProcAttrs(*exec.Cmd) {}

// terminate cannot ask politely without Unix signals; closing stdin (done
// first by the caller) is the polite request.
func terminate(*os.Process) {}

func kill(p *os.Process) { _ = p.Kill() }
