//go:build unix && !linux

package stdio

import "syscall"

func setDeathSignal(*syscall.SysProcAttr) {}
