package e2e

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// startInOwnGroup has cmd start a process group of its own, which the
// children it runs join, and has the kernel stop it if the test binary
// dies without running its clean-up.
func startInOwnGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}

// groupMembers lists the live processes of process group pgid. While one
// lives, no other process can take pgid as its id, so that killing the
// group then reaches no stranger.
func groupMembers(pgid int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if fields := statFields(pid); len(fields) >= 3 && fields[2] == strconv.Itoa(pgid) && fields[0] != "Z" {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// statFields returns the fields of /proc/PID/stat after the command name
// (state, ppid, pgrp, …), or nil if the process is gone.
func statFields(pid int) []string {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	s := string(stat)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
}

// killGroup sends SIGKILL to every process of group pgid, if it has any.
func killGroup(pgid int) error {
	members, err := groupMembers(pgid)
	if err != nil || len(members) == 0 {
		return err
	}
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}

// childEnvirons returns the environment of each live child of ppid, by
// process id, as the kernel holds it: what the child was started with.
func childEnvirons(ppid int) (map[int]map[string]string, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	envs := map[int]map[string]string{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || parentOf(pid) != ppid {
			continue
		}
		data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
		if err != nil {
			continue // gone since
		}
		env := map[string]string{}
		for _, kv := range bytes.Split(data, []byte{0}) {
			if name, value, ok := strings.Cut(string(kv), "="); ok {
				env[name] = value
			}
		}
		envs[pid] = env
	}
	return envs, nil
}
