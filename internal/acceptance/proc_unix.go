//go:build unix && !linux

package acceptance

import (
	"os/exec"
	"syscall"
)

// detach starts a child in its own process group, so that Ctrl-C at the
// terminal reaches only the suite, which stops it after cleaning up. Only
// Linux can also tie the child's life to the suite's.
func detach(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}
