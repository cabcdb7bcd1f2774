// Package procsec hardens the gateway process against other processes of
// the same user, such as the stdio MCP servers it starts.
//
// On Linux, Harden clears the process's "dumpable" flag (prctl
// PR_SET_DUMPABLE, see prctl(2) and proc(5)): the kernel then writes no core
// dump, makes /proc/PID/environ, mem, maps, fd and the like owned by root,
// and refuses ptrace to processes without CAP_SYS_PTRACE, so a same-user
// child can no longer read the gateway's environment or memory. A process
// running as root, or with CAP_SYS_PTRACE, still can: run children as
// another user (run_as) for that.
package procsec

import "errors"

// ErrUnsupported is returned where the platform has no such control.
var ErrUnsupported = errors.New("procsec: not supported on this platform")
