//go:build !unix

package stdio

import (
	"errors"
	"os"
	"os/exec"
)

func setProcAttrs(*exec.Cmd, *RunAs) {}

func checkRunAs(runAs *RunAs) error {
	if runAs != nil {
		return errors.New("stdio: run_as is supported on Unix only")
	}
	return nil
}

// terminate cannot ask politely without Unix signals; closing stdin (done
// first by the caller) is the polite request.
func terminate(*os.Process) {}

func kill(p *os.Process) { _ = p.Kill() }
