//go:build !linux

package e2e

import "os/exec"

// stopWithTestProcess does nothing here: only Linux can tie a child's life
// to its parent's. TestMain still stops Vault on every normal exit.
func stopWithTestProcess(*exec.Cmd) {}
