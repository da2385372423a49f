//go:build !linux

package redistest

import "os/exec"

// dieWithTest does nothing where the kernel cannot kill a child with its
// parent: a test binary killed at its timeout may leave servers behind.
func dieWithTest(*exec.Cmd) {}
