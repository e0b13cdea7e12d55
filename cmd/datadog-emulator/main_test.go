package main

import (
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
)

// TestLoggingKeepsFaultsWorking: the request log wraps the response
// writer; the emulator must still be able to drop a connection through it.
func TestLoggingKeepsFaultsWorking(t *testing.T) {
	emu := emulator.New(emulator.Options{})
	srv := httptest.NewServer(logRequests(emu))
	defer srv.Close()
	if _, err := emu.AddFault(emulator.Fault{Operation: "*", Action: emulator.FaultReset, Times: 1}); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	if resp, err := client.Get(srv.URL + "/api/v2/validate_keys"); err == nil {
		resp.Body.Close()
		t.Errorf("reset fault answered %d", resp.StatusCode)
	}
	resp, err := client.Get(srv.URL + "/api/v1/validate")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("after the fault: %d, want 403 (no key)", resp.StatusCode)
	}
}

func TestRequireLoopback(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:0": true, "localhost:8080": true, "[::1]:1": true,
		"0.0.0.0:80": false, ":80": false, "10.0.0.1:80": false, "nonsense": false,
	} {
		if err := requireLoopback(addr); (err == nil) != ok {
			t.Errorf("requireLoopback(%q) = %v", addr, err)
		}
	}
}

func parse(t *testing.T, args ...string) config {
	t.Helper()
	fs := flag.NewFlagSet("datadog-emulator", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg, err := parseFlags(fs, args)
	if err != nil {
		t.Fatalf("parseFlags(%q): %v", args, err)
	}
	return cfg
}

// TestFlags: the flags reach the emulator's Options; -people-api-keys 0
// means none, which Options spell as a negative number.
func TestFlags(t *testing.T) {
	cfg := parse(t)
	if cfg.listen != "127.0.0.1:18126" || cfg.opts.MaxAPIKeys != 0 || cfg.opts.PeopleAPIKeys != 3 || cfg.opts.MaxAppKeysPerUser != 0 {
		t.Errorf("defaults: %+v", cfg)
	}
	cfg = parse(t, "-listen", "127.0.0.1:0", "-max-api-keys", "7", "-people-api-keys", "5", "-max-app-keys-per-user", "3",
		"-one-time-read-off", "-rate-limit", "api_keys=2/10s", "-api-key", "0123456789abcdef0123456789abcdef")
	opts := cfg.opts
	if opts.MaxAPIKeys != 7 || opts.PeopleAPIKeys != 5 || opts.MaxAppKeysPerUser != 3 || !opts.OneTimeReadOff ||
		opts.RateLimits["api_keys"] != (emulator.RateLimit{Limit: 2, Period: 10 * time.Second}) || opts.APIKey != "0123456789abcdef0123456789abcdef" {
		t.Errorf("options from flags: %+v", opts)
	}
	emu, err := emulator.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	if emu.MaxAPIKeys() != 7 || emu.APIKeyCount() != 6 {
		t.Errorf("-max-api-keys 7 -people-api-keys 5: MaxAPIKeys() %d, APIKeyCount() %d; want 7 and 6", emu.MaxAPIKeys(), emu.APIKeyCount())
	}
	if none := parse(t, "-people-api-keys", "0"); emulator.New(none.opts).APIKeyCount() != 1 {
		t.Error("-people-api-keys 0 seeded people's API keys")
	}
	fs := flag.NewFlagSet("datadog-emulator", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if _, err := parseFlags(fs, []string{"-max-api-keys", "many"}); err == nil {
		t.Error("-max-api-keys many accepted")
	}
}

// TestMaxAPIKeysFlagAndStateFile: without -max-api-keys a restart keeps
// the cap the state file holds; with it, the flag wins.
func TestMaxAPIKeysFlagAndStateFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "org.json")
	first := emulator.New(parse(t, "-state-file", file, "-max-api-keys", "9").opts)
	if err := first.SetMaxAPIKeys(12); err != nil {
		t.Fatal(err)
	}
	if got := emulator.New(parse(t, "-state-file", file).opts).MaxAPIKeys(); got != 12 {
		t.Errorf("restart without -max-api-keys: cap %d, want the saved 12", got)
	}
	if got := emulator.New(parse(t, "-state-file", file, "-max-api-keys", "20").opts).MaxAPIKeys(); got != 20 {
		t.Errorf("restart with -max-api-keys 20: cap %d", got)
	}
}
