// Command datadog-bench measures what the Datadog secrets engine costs
// inside a real Vault server, against floors measured in the same run: a
// kv-v2 read and write (Vault's own floor), a read of a minimal external
// plugin that returns a leased secret at once (Vault's floor for any
// dynamic-secret engine), and the engine's Datadog calls made directly
// with datadog-api-client-go (the upstream floor). It runs a dev server
// and a server with integrated raft storage in turn, each against its own
// in-process Datadog emulator, at several concurrencies; then lets 1,000
// leases expire together against a Datadog delete rate limit, and reports
// the plugin's memory and the storage each lease takes.
//
// It prints markdown tables to stdout and its progress to stderr. `make
// bench` builds the plugins and runs it; see -h for the flags.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

type options struct {
	vaultBin      string
	pluginDir     string
	pluginVersion string
	pluginEnv     []string
	servers       []string
	clients       []int
	duration      time.Duration
	latency       time.Duration
	massExpiry    bool
	leases        int
	leaseTTL      time.Duration
	deleteLimit   int
	vaultPprof    string
	workDir       string
	keep          bool
}

func main() {
	opts := options{}
	flag.StringVar(&opts.vaultBin, "vault", os.Getenv("VAULT_BIN"), "vault binary (default $VAULT_BIN)")
	flag.StringVar(&opts.pluginDir, "plugin-dir", "bin/bench/plugins", "directory holding the engine ("+enginePlugin+") and the floor plugin ("+floorPlugin+")")
	flag.StringVar(&opts.pluginVersion, "plugin-version", "v0.1.0-dev", "version the engine was built with, to register it under")
	flag.Func("plugin-env", "KEY=VALUE added to the engine's environment when it is registered (repeatable)", func(s string) error {
		if !strings.Contains(s, "=") {
			return fmt.Errorf("%q is not KEY=VALUE", s)
		}
		opts.pluginEnv = append(opts.pluginEnv, s)
		return nil
	})
	servers := flag.String("servers", "dev,raft", "Vault servers to run, in order: dev (in-memory storage) and raft (integrated storage)")
	clients := flag.String("clients", "1,4,16,64", "concurrent clients of each measurement")
	flag.DurationVar(&opts.duration, "duration", 2*time.Second, "how long each operation runs at each concurrency")
	flag.DurationVar(&opts.latency, "latency", 0, "added to every Datadog API call, e.g. 50ms for a real Datadog round trip")
	flag.BoolVar(&opts.massExpiry, "mass-expiry", true, "end each server's run with the mass expiry, the memory with live leases and the storage per lease")
	flag.IntVar(&opts.leases, "leases", 1000, "leases of the mass expiry (Datadog allows 1000 application keys per owner)")
	flag.DurationVar(&opts.leaseTTL, "lease-ttl", 30*time.Second, "TTL of the mass expiry's leases: long enough to issue them all and size their storage")
	flag.IntVar(&opts.deleteLimit, "delete-limit", 20, "Datadog's application key rate limit during the mass expiry, per second")
	flag.StringVar(&opts.vaultPprof, "vault-pprof", "", "directory to write Vault's CPU profile (sys/pprof/profile) taken under 16 clients of creds reads, one per server")
	flag.StringVar(&opts.workDir, "work-dir", "", "where servers keep their data and logs (default: a new temporary directory, removed after a run without failure)")
	flag.BoolVar(&opts.keep, "keep", false, "keep the work directory")
	flag.Parse()

	opts.servers = strings.Split(*servers, ",")
	for _, s := range strings.Split(*clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fatalf("-clients: %q is not a positive number", s)
		}
		opts.clients = append(opts.clients, n)
	}
	if opts.vaultBin == "" {
		fatalf("no vault binary: pass -vault or set VAULT_BIN (scripts/vault-bin.sh prints one)")
	}
	if opts.deleteLimit < 1 || opts.leases < 1 {
		fatalf("-delete-limit and -leases must be positive")
	}
	// The benchmark's own Vault clients must talk to its servers only.
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "VAULT_") {
			os.Unsetenv(name)
		}
	}
	os.Exit(run(&opts))
}

func run(opts *options) int {
	var err error
	if opts.pluginDir, err = filepath.Abs(opts.pluginDir); err != nil {
		fatalf("%v", err)
	}
	for _, name := range []string{enginePlugin, floorPlugin} {
		if _, err := os.Stat(filepath.Join(opts.pluginDir, name)); err != nil {
			fatalf("plugin %s not found in %s (make bench builds it): %v", name, opts.pluginDir, err)
		}
	}
	if opts.workDir == "" {
		if opts.workDir, err = os.MkdirTemp("", "datadog-bench-"); err != nil {
			fatalf("%v", err)
		}
	}
	// Ctrl-C stops the servers before exiting; they would otherwise stop
	// with this process anyway (see stopWithParent).
	var current atomic.Pointer[server]
	interrupted := make(chan os.Signal, 1)
	signal.Notify(interrupted, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-interrupted
		progress("interrupted: stopping Vault")
		current.Load().stop()
		os.Exit(130)
	}()

	start := time.Now()
	printHeader(opts)
	failed := false
	for _, kind := range opts.servers {
		report, err := benchServer(opts, kind, current.Store)
		if report != nil {
			report.print(opts)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "datadog-bench: %s server: %v\n", kind, err)
			failed = true
		}
	}
	fmt.Printf("Total run time: %s.\n", time.Since(start).Round(time.Second))
	if failed || opts.keep {
		fmt.Fprintf(os.Stderr, "datadog-bench: servers' logs and data are kept in %s\n", opts.workDir)
	} else {
		os.RemoveAll(opts.workDir)
	}
	if failed {
		return 1
	}
	return 0
}

// benchServer runs every measurement on one server, started for it with
// its own emulator.
func benchServer(opts *options, kind string, started func(*server)) (*serverReport, error) {
	dd, err := startDatadog(opts.latency, slices.Max(opts.clients))
	if err != nil {
		return nil, err
	}
	defer dd.close()
	progress("%s: starting Vault", kind)
	s, err := startServer(kind, opts.vaultBin, filepath.Join(opts.workDir, kind), opts.pluginDir)
	started(s)
	defer s.stop()
	if err != nil {
		return nil, err
	}
	e := &env{opts: opts, s: s, dd: dd}
	if err := e.setup(); err != nil {
		return nil, fmt.Errorf("setting up: %w", err)
	}
	report := &serverReport{kind: kind}
	ops := e.ops()

	progress("%s: warming up", kind)
	for _, op := range ops {
		if c := runCell(e.workers, 1, 300*time.Millisecond, op); c.errors > 0 {
			return nil, fmt.Errorf("warm-up of %s: %v", op.label, c.lastErr)
		}
	}
	if report.idle, err = e.memory(); err != nil {
		return nil, err
	}

	peakClients := slices.Max(opts.clients)
	for _, n := range opts.clients {
		var sampler *peakSampler
		if n == peakClients {
			sampler = samplePeak(e.pluginPID, s.cmd.Process.Pid)
		}
		for _, op := range ops {
			var profile chan error
			if opts.vaultPprof != "" && n == 16 && op.id == "creds-none" {
				profile = e.vaultProfile(filepath.Join(opts.vaultPprof, "vault-"+kind+"-creds-16.pprof"))
			}
			c := runCell(e.workers, n, opts.duration, op)
			report.cells = append(report.cells, c)
			progress("%s: %2d clients: %-40s %8.1f/s p50 %s", kind, n, op.label, c.throughput(), ms(percentile(c.ops, 50)))
			if c.errors > 0 {
				progress("%s: %d errors, the last: %v", op.label, c.errors, c.lastErr)
			}
			if profile != nil {
				if err := <-profile; err != nil {
					progress("Vault's CPU profile: %v", err)
				}
			}
		}
		if sampler != nil {
			report.peak = sampler.peak()
			report.peak.clients = n
		}
	}

	if opts.massExpiry {
		if report.expiry, err = e.massExpiry(); err != nil {
			return report, fmt.Errorf("mass expiry: %w", err)
		}
	}
	return report, nil
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05")+" "+format+"\n", args...)
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "datadog-bench: "+format+"\n", args...)
	os.Exit(2)
}
