package acceptance

import "os/exec"

// detach does nothing on Windows: the suite stops Vault itself when it
// ends normally or is interrupted.
func detach(*exec.Cmd) {}
