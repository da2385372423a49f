package redistest

import (
	"os/exec"
	"syscall"
)

// dieWithTest makes the kernel kill the server when the test process dies,
// so that a test binary killed at its timeout leaves no server behind.
// Strictly, when the thread that started it ends: the Go runtime keeps its
// threads unless a goroutine locked to one (runtime.LockOSThread) exits,
// which nothing in these tests does.
func dieWithTest(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
