//go:build unix

package stdio

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
)

// setProcAttrs puts the child in its own process group, so that stopping it
// also stops what it spawned (servers are often launched via npx, uvx or a
// shell script, whose real server is a grandchild).
//
// With runAs the child runs as that uid and gid with no supplementary groups
// (Go calls setgroups with the empty list), so it keeps none of root's.
func setProcAttrs(cmd *exec.Cmd, runAs *RunAs) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if runAs != nil {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(runAs.UID), Gid: uint32(runAs.GID)}
	}
	setDeathSignal(cmd.SysProcAttr)
}

// checkRunAs reports why children cannot be started as runAs: switching
// users needs root.
func checkRunAs(runAs *RunAs) error {
	if runAs != nil && os.Geteuid() != 0 {
		return errors.New("stdio: run_as requires the gateway to run as root")
	}
	return nil
}

// terminate asks the child's process group to exit.
func terminate(p *os.Process) { _ = syscall.Kill(-p.Pid, syscall.SIGTERM) }

// kill stops the child's process group for good.
func kill(p *os.Process) { _ = syscall.Kill(-p.Pid, syscall.SIGKILL) }
