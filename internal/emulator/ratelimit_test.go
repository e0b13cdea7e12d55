package emulator_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
)

func wantRateHeaders(t *testing.T, h http.Header, name, limit, period, remaining, reset string) {
	t.Helper()
	for header, want := range map[string]string{
		"X-RateLimit-Name": name, "X-RateLimit-Limit": limit, "X-RateLimit-Period": period,
		"X-RateLimit-Remaining": remaining, "X-RateLimit-Reset": reset,
	} {
		if got := h.Get(header); got != want {
			t.Errorf("%s = %q, want %q", header, got, want)
		}
	}
}

func TestRateLimits(t *testing.T) {
	clock := newClock()
	s := newTestServer(t, emulator.Options{Now: clock.Now, RateLimits: map[string]emulator.RateLimit{
		"api_keys": {Limit: 2, Period: 10 * time.Second},
	}})
	seeded := keys(s.APIKey(), s.AppKey())
	seededKeys := len(s.Keys())

	// Unlimited groups send no rate-limit headers.
	if _, _, h := s.send(t, seeded, "GET", "/api/v2/current_user/application_keys", ""); h.Get("X-RateLimit-Name") != "" {
		t.Errorf("unlimited group sent rate-limit headers: %v", h)
	}

	status, _, h := s.send(t, seeded, "GET", "/api/v2/api_keys", "")
	if status != http.StatusOK {
		t.Fatalf("first call: %d", status)
	}
	wantRateHeaders(t, h, "api_keys", "2", "10", "1", "10")
	clock.t = clock.t.Add(3 * time.Second)
	status, _, h = s.send(t, seeded, "POST", "/api/v2/api_keys", jsonBody(t, "api_keys", "", map[string]any{"name": "k"}))
	if status != http.StatusCreated {
		t.Fatalf("second call: %d", status)
	}
	wantRateHeaders(t, h, "api_keys", "2", "10", "0", "7")
	status, body, h := s.send(t, seeded, "GET", "/api/v2/api_keys", "")
	wantError(t, status, body, http.StatusTooManyRequests, "Rate limit exceeded")
	wantRateHeaders(t, h, "api_keys", "2", "10", "0", "7")
	if n := len(s.Keys()); n != seededKeys+1 {
		t.Errorf("%d keys, want the %d seeded and the one created", n, seededKeys)
	}

	// The window ends with the emulator's clock.
	s.Advance(7 * time.Second)
	status, _, h = s.send(t, seeded, "GET", "/api/v2/api_keys", "")
	if status != http.StatusOK {
		t.Errorf("after the window: %d", status)
	}
	wantRateHeaders(t, h, "api_keys", "2", "10", "1", "10")

	// Limits change at run time, in Go or through the admin endpoint.
	if err := s.SetRateLimit("api_keys", emulator.RateLimit{}); err != nil {
		t.Fatal(err)
	}
	if _, _, h := s.send(t, seeded, "GET", "/api/v2/api_keys", ""); h.Get("X-RateLimit-Name") != "" {
		t.Errorf("removed limit still sends headers")
	}
	status, body, _ = s.send(t, noAuth, "PUT", "/_emulator/rate_limits/access_tokens", `{"limit":1,"period":"1m"}`)
	if status != http.StatusOK || get(body, "limit") != 1.0 || str(body, "period") != "1m0s" {
		t.Errorf("PUT /_emulator/rate_limits/access_tokens: %d %v", status, body)
	}
	s.send(t, seeded, "GET", "/api/v2/personal_access_tokens", "")
	status, _, h = s.send(t, seeded, "GET", "/api/v2/personal_access_tokens", "")
	if status != http.StatusTooManyRequests || h.Get("X-RateLimit-Name") != "access_tokens" || h.Get("X-RateLimit-Period") != "60" {
		t.Errorf("second token call in a 1/min budget: %d %v", status, h)
	}
	_, body, _ = s.send(t, noAuth, "GET", "/_emulator/rate_limits", "")
	if get(body, "rate_limits.access_tokens.limit") != 1.0 || len(get(body, "groups").([]any)) != len(emulator.RateLimitGroups()) {
		t.Errorf("GET /_emulator/rate_limits = %v", body)
	}
	if status, _, _ := s.send(t, noAuth, "DELETE", "/_emulator/rate_limits/access_tokens", ""); status != http.StatusNoContent {
		t.Errorf("DELETE /_emulator/rate_limits/access_tokens: %d", status)
	}
	if len(s.RateLimits()) != 0 {
		t.Errorf("RateLimits() = %v", s.RateLimits())
	}
	for _, bad := range []struct{ path, body string }{
		{"/_emulator/rate_limits/nope", `{"limit":1,"period":"1s"}`},
		{"/_emulator/rate_limits/users", `{"limit":1,"period":"1ms"}`},
		{"/_emulator/rate_limits/users", `{"limit":-1,"period":"1s"}`},
		{"/_emulator/rate_limits/users", `{"limit":1,"period":"x"}`},
	} {
		if status, _, _ := s.send(t, noAuth, "PUT", bad.path, bad.body); status != http.StatusBadRequest {
			t.Errorf("PUT %s %s: %d, want 400", bad.path, bad.body, status)
		}
	}
}

func TestParseRateLimit(t *testing.T) {
	group, l, err := emulator.ParseRateLimit("application_keys=100/10s")
	if err != nil || group != "application_keys" || l != (emulator.RateLimit{Limit: 100, Period: 10 * time.Second}) {
		t.Errorf("ParseRateLimit = %q, %v, %v", group, l, err)
	}
	for _, bad := range []string{"application_keys", "application_keys=100", "application_keys=x/10s", "application_keys=1/ten"} {
		if _, _, err := emulator.ParseRateLimit(bad); err == nil {
			t.Errorf("ParseRateLimit(%q) succeeded", bad)
		}
	}
	if _, err := emulator.Open(emulator.Options{RateLimits: map[string]emulator.RateLimit{"nope": {Limit: 1, Period: time.Second}}}); err == nil {
		t.Error("Open accepted a rate limit for an unknown group")
	}
}
