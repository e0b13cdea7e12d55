//go:build !linux

package e2e

import (
	"errors"
	"os/exec"
)

// stopWithTestProcess does nothing here: only Linux can tie a child's life
// to its parent's. TestMain still stops Vault on every normal exit.
func stopWithTestProcess(*exec.Cmd) {}

var errNoProc = errors.New("finding a Vault server's plugin processes needs Linux's /proc")

func childrenRunningFrom(int, string) ([]int, error) { return nil, errNoProc }

func killIfRunningFrom(int, string) error { return errNoProc }
