package main

import (
	"os"
	"runtime/pprof"
	"strconv"
	"time"
)

// Profiling the plugin under load: with DATADOG_PLUGIN_CPUPROFILE=<file>
// in its environment (vault plugin register -env), the plugin writes a CPU
// profile of its first DATADOG_PLUGIN_CPUPROFILE_SECONDS (default 30)
// seconds. It stops on a timer because Vault kills plugin processes: a
// profile flushed at exit would be lost.
const (
	cpuProfileEnv        = "DATADOG_PLUGIN_CPUPROFILE"
	cpuProfileSecondsEnv = "DATADOG_PLUGIN_CPUPROFILE_SECONDS"
)

func startCPUProfile() {
	path := os.Getenv(cpuProfileEnv)
	if path == "" {
		return
	}
	seconds, err := strconv.Atoi(os.Getenv(cpuProfileSecondsEnv))
	if err != nil || seconds <= 0 {
		seconds = 30
	}
	f, err := os.Create(path)
	if err != nil {
		return
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return
	}
	time.AfterFunc(time.Duration(seconds)*time.Second, func() {
		pprof.StopCPUProfile()
		f.Close()
	})
}
