package e2e

import (
	"os/exec"
	"syscall"
)

// stopWithTestProcess has the kernel stop Vault if the test binary dies
// without running its clean-up (a panic, or go test's -timeout), so that no
// server is left behind.
func stopWithTestProcess(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
