//go:build !linux

package main

import (
	"errors"
	"os/exec"
)

var errNoProc = errors.New("process memory is read from /proc, which only Linux has")

func stopWithParent(*exec.Cmd) {}

func childRunning(int, string) (int, error) { return 0, errNoProc }

func rss(int) (int64, error) { return 0, errNoProc }
