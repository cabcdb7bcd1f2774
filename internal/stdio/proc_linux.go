package stdio

import "syscall"

// setDeathSignal kills the child if the gateway dies without a chance to stop
// it (e.g. SIGKILL, OOM), so no orphaned server keeps running.
func setDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
