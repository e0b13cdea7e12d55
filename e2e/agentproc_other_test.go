//go:build !linux

package e2e

import (
	"errors"
	"os/exec"
)

var errNoProcGroups = errors.New("running Vault Agent and reading its child's environment needs Linux's /proc")

func startInOwnGroup(*exec.Cmd) {}

func groupMembers(int) ([]int, error) { return nil, errNoProcGroups }

func killGroup(int) error { return errNoProcGroups }

func childEnvirons(int) (map[int]map[string]string, error) { return nil, errNoProcGroups }
