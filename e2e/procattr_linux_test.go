package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// stopWithTestProcess has the kernel stop Vault if the test binary dies
// without running its clean-up (a panic, or go test's -timeout), so that no
// server is left behind.
func stopWithTestProcess(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}

// childrenRunningFrom lists the processes whose parent is ppid and whose
// executable lies in dir: the plugin processes a Vault server runs.
func childrenRunningFrom(ppid int, dir string) ([]int, error) {
	dir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || parentOf(pid) != ppid {
			continue
		}
		if runsFrom(pid, dir) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// parentOf reads a process's parent from /proc/PID/stat, or -1 if it is
// gone. The fields after the command name, which may hold spaces and
// parentheses, start after its last ')': state, then ppid.
func parentOf(pid int) int {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return -1
	}
	s := string(stat)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 2 {
		return -1
	}
	ppid, err := strconv.Atoi(fields[1])
	if err != nil {
		return -1
	}
	return ppid
}

// runsFrom reports whether a live process's executable is in dir.
func runsFrom(pid int, dir string) bool {
	exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	return err == nil && filepath.Dir(strings.TrimSuffix(exe, " (deleted)")) == dir
}

// killIfRunningFrom sends SIGKILL to pid if it still runs an executable
// of dir, so that a recycled process id is never hit.
func killIfRunningFrom(pid int, dir string) error {
	dir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return err
	}
	if !runsFrom(pid, dir) {
		return nil
	}
	return syscall.Kill(pid, syscall.SIGKILL)
}
