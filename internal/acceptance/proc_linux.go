package acceptance

import (
	"os/exec"
	"syscall"
)

// detach starts a child in its own process group, so that Ctrl-C at the
// terminal reaches only the suite (which then cleans up through Vault
// before stopping it), and has the kernel stop it if the suite dies
// without doing so (SIGKILL), so that no server is left behind.
func detach(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
