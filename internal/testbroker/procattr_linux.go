package testbroker

import "syscall"

// sysProcAttr makes the broker die with the test binary even when no
// cleanup runs (a test binary killed at its -timeout).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
