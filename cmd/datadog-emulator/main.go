// Command datadog-emulator serves the in-memory Datadog API emulator over
// HTTP, for development and end-to-end tests where Datadog is unreachable.
//
//	datadog-emulator -listen 127.0.0.1:0 -print-env
//
// prints DD_API_KEY, DD_APP_KEY and DD_API_URL lines for the seeded
// credentials, then serves until SIGINT or SIGTERM. With -state-file the
// organisation survives restarts; -rate-limit group=limit/period (repeated)
// sets rate limits; -max-app-keys-per-user lowers Datadog's limit of 1000
// application keys per owner; -one-time-read-off emulates an organisation
// whose application keys stay readable; -max-api-keys sets the
// organisation's API key cap (Datadog's default: 50); -people-api-keys how
// many API keys people made before the engine came (default 3). See
// docs/emulator.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
)

// config is what the command line asks for.
type config struct {
	listen      string
	allowRemote bool
	printEnv    bool
	opts        emulator.Options
}

func main() {
	cfg, err := parseFlags(flag.CommandLine, os.Args[1:])
	if err != nil {
		os.Exit(2) // the flag package has printed the problem and the usage
	}
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	log.SetPrefix("datadog-emulator: ")
	if err := run(cfg); err != nil {
		log.Fatal(err)
	}
}

// parseFlags reads the command line into a config, with fs (its own flag
// set in tests).
func parseFlags(fs *flag.FlagSet, args []string) (config, error) {
	var cfg config
	fs.StringVar(&cfg.listen, "listen", "127.0.0.1:18126", "address to listen on (port 0 picks a free port)")
	fs.BoolVar(&cfg.allowRemote, "allow-remote", false, "allow listening on a non-loopback address")
	fs.BoolVar(&cfg.printEnv, "print-env", false, "print DD_API_KEY, DD_APP_KEY and DD_API_URL lines to stdout on start")
	opts := &cfg.opts
	opts.RateLimits = map[string]emulator.RateLimit{}
	fs.StringVar(&opts.APIKey, "api-key", "", "seeded API key (generated when empty)")
	fs.StringVar(&opts.AppKey, "app-key", "", "seeded application key (generated when empty)")
	fs.StringVar(&opts.StateFile, "state-file", "", "keep the organisation in this file across restarts (it holds secrets)")
	fs.Uint64Var(&opts.FaultSeed, "fault-seed", 0, "seed of the random draws of faults with a probability")
	fs.IntVar(&opts.MaxAppKeysPerUser, "max-app-keys-per-user", 0,
		"most application keys one owner may hold, below Datadog's 1000 (0: Datadog's), to reach the limit with a few keys")
	fs.BoolVar(&opts.OneTimeReadOff, "one-time-read-off", false,
		"emulate an organisation without One-Time Read mode (created before August 2025): the current user's application keys show their secret on GET and PATCH too")
	fs.IntVar(&opts.MaxAPIKeys, "max-api-keys", 0,
		"most API keys the organisation may hold, as Datadog support sets it (0: Datadog's default, 50, or a loaded -state-file's own)")
	people := fs.Int("people-api-keys", 3,
		"API keys people of a new organisation made before the engine came (\"Datadog Agent – prod\", …), besides the seeded one")
	fs.Func("rate-limit", "rate limit as group=limit/period, e.g. api_keys=100/10s (repeatable); groups: "+
		strings.Join(emulator.RateLimitGroups(), ", "), func(s string) error {
		group, limit, err := emulator.ParseRateLimit(s)
		opts.RateLimits[group] = limit
		return err
	})
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	// Options read 0 as the default of 3; here 0 means none.
	opts.PeopleAPIKeys = *people
	if *people == 0 {
		opts.PeopleAPIKeys = -1
	}
	return cfg, nil
}

func run(cfg config) error {
	if !cfg.allowRemote {
		if err := requireLoopback(cfg.listen); err != nil {
			return err
		}
	}
	emu, err := emulator.Open(cfg.opts)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return err
	}
	url := "http://" + ln.Addr().String()
	if cfg.printEnv {
		fmt.Printf("DD_API_KEY=%s\nDD_APP_KEY=%s\nDD_API_URL=%s\n", emu.APIKey(), emu.AppKey(), url)
	}
	log.Printf("listening on %s", url)

	srv := &http.Server{Handler: logRequests(emu), ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	log.Print("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// requireLoopback refuses addresses reachable from other machines: the
// emulator accepts anyone holding its keys, and its admin endpoints no one.
func requireLoopback(listen string) error {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("invalid -listen address %q: %w", listen, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("refusing to listen on non-loopback address %q; pass -allow-remote to do so", listen)
}

// logRequests logs each request's method, path and status to stderr. It
// never logs headers or query strings, which carry keys and key names.
func logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &emulator.StatusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		log.Printf("%s %s %d", r.Method, r.URL.Path, rec.Status)
	})
}
