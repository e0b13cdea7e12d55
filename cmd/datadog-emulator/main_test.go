package main

import (
	"net/http"
	"net/http/httptest"
	"testing"

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
