//go:build unix

package stdio

import (
	"os"
	"os/exec"
	"syscall"
)

// setProcAttrs puts the child in its own process group, so that stopping it
// also stops what it spawned (servers are often launched via npx, uvx or a
// shell script, whose real server is a grandchild).
func setProcAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	setDeathSignal(cmd.SysProcAttr)
}

// terminate asks the child's process group to exit.
func terminate(p *os.Process) { _ = syscall.Kill(-p.Pid, syscall.SIGTERM) }

// kill stops the child's process group for good.
func kill(p *os.Process) { _ = syscall.Kill(-p.Pid, syscall.SIGKILL) }
