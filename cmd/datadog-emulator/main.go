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
// whose application keys stay readable. See docs/emulator.md.
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

func main() {
	listen := flag.String("listen", "127.0.0.1:18126", "address to listen on (port 0 picks a free port)")
	allowRemote := flag.Bool("allow-remote", false, "allow listening on a non-loopback address")
	apiKey := flag.String("api-key", "", "seeded API key (generated when empty)")
	appKey := flag.String("app-key", "", "seeded application key (generated when empty)")
	printEnv := flag.Bool("print-env", false, "print DD_API_KEY, DD_APP_KEY and DD_API_URL lines to stdout on start")
	opts := emulator.Options{RateLimits: map[string]emulator.RateLimit{}}
	flag.StringVar(&opts.StateFile, "state-file", "", "keep the organisation in this file across restarts (it holds secrets)")
	flag.Uint64Var(&opts.FaultSeed, "fault-seed", 0, "seed of the random draws of faults with a probability")
	flag.IntVar(&opts.MaxAppKeysPerUser, "max-app-keys-per-user", 0,
		"most application keys one owner may hold, below Datadog's 1000 (0: Datadog's), to reach the limit with a few keys")
	flag.BoolVar(&opts.OneTimeReadOff, "one-time-read-off", false,
		"emulate an organisation without One-Time Read mode (created before August 2025): the current user's application keys show their secret on GET and PATCH too")
	flag.Func("rate-limit", "rate limit as group=limit/period, e.g. api_keys=100/10s (repeatable); groups: "+
		strings.Join(emulator.RateLimitGroups(), ", "), func(s string) error {
		group, limit, err := emulator.ParseRateLimit(s)
		opts.RateLimits[group] = limit
		return err
	})
	flag.Parse()
	opts.APIKey, opts.AppKey = *apiKey, *appKey

	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	log.SetPrefix("datadog-emulator: ")
	if err := run(*listen, *allowRemote, opts, *printEnv); err != nil {
		log.Fatal(err)
	}
}

func run(listen string, allowRemote bool, opts emulator.Options, printEnv bool) error {
	if !allowRemote {
		if err := requireLoopback(listen); err != nil {
			return err
		}
	}
	emu, err := emulator.Open(opts)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	url := "http://" + ln.Addr().String()
	if printEnv {
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
