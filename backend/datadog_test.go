package backend

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
)

// A burst of revocations meets Datadog's rate limit: they share out its
// windows (X-RateLimit-Remaining, -Reset) instead of failing back to Vault,
// and do not storm Datadog with calls it can only refuse.
func TestRevocationsWaitOutTheRateLimit(t *testing.T) {
	const leases, limit = 12, 3
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read", "api_key_mode": "none"})
	var issued []*logical.Response
	for i := 0; i < leases; i++ {
		issued = append(issued, env.mustDo(t, logical.ReadOperation, "creds/r", nil))
	}
	if err := env.emu.SetRateLimit("application_keys", emulator.RateLimit{Limit: limit, Period: time.Second}); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	errs := make([]error, len(issued))
	for i, lease := range issued {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = env.revoke(t, lease)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Errorf("revocations failed under the rate limit: %v", err)
	}
	if left := env.issuedKeys(); len(left) != 0 {
		t.Errorf("%d keys left", len(left))
	}
	if refused := env.emu.Answers(http.StatusTooManyRequests); refused > limit {
		t.Errorf("Datadog answered 429 %d times to %d deletions: the engine sent calls into spent windows", refused, leases)
	}
}

// Deletions and look-ups are safe to repeat: a 5xx is retried with back-off.
func TestDeletionRetriedAfterServerErrors(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read", "api_key_mode": "none"})
	creds := env.mustDo(t, logical.ReadOperation, "creds/r", nil)
	if _, err := env.emu.AddFault(emulator.Fault{Operation: "DeleteCurrentUserApplicationKey", Action: emulator.FaultError, Status: 503, Times: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.revoke(t, creds); err != nil {
		t.Errorf("revocation failed on a transient 503: %v", err)
	}
	if left := env.issuedKeys(); len(left) != 0 {
		t.Errorf("%d keys left", len(left))
	}
}

// A create refused with 429 was not applied, so it is sent again once the
// window resets; a create answered 5xx may have been applied, so it is not.
func TestCreateWaitsForTheRateLimitButIsNeverRetriedBlindly(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read", "api_key_mode": "none"})
	if err := env.emu.SetRateLimit("application_keys", emulator.RateLimit{Limit: 1, Period: time.Second}); err != nil {
		t.Fatal(err)
	}
	env.mustDo(t, logical.ReadOperation, "creds/r", nil)
	env.mustDo(t, logical.ReadOperation, "creds/r", nil) // waits for the next window

	env.emu.SetRateLimit("application_keys", emulator.RateLimit{})
	fault, _ := env.emu.AddFault(emulator.Fault{Operation: "CreateCurrentUserApplicationKey", Action: emulator.FaultError, Status: 500})
	env.do(t, logical.ReadOperation, "creds/r", nil)
	for _, f := range env.emu.Faults() {
		if f.ID == fault.ID && f.Hits != 1 {
			t.Errorf("a create answered 500 was sent %d times, want once", f.Hits)
		}
	}
}

// When the rate limit resets after the request's deadline, the caller gets
// a 429 naming Datadog's rate limit at once, not a 500 after the deadline.
func TestCreateRateLimitedBeyondTheDeadline(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read", "api_key_mode": "none"})
	if err := env.emu.SetRateLimit("application_keys", emulator.RateLimit{Limit: 1, Period: time.Minute}); err != nil {
		t.Fatal(err)
	}
	env.mustDo(t, logical.ReadOperation, "creds/r", nil)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	_, err := env.b.HandleRequest(ctx, &logical.Request{Operation: logical.ReadOperation, Path: "creds/r", Storage: env.storage})
	var coded logical.HTTPCodedError
	if !errors.As(err, &coded) || coded.Code() != http.StatusTooManyRequests || !strings.Contains(err.Error(), "rate limit") {
		t.Errorf("got %v, want HTTP 429 naming Datadog's rate limit", err)
	}
	if waited := time.Since(start); waited > 2*time.Second {
		t.Errorf("waited %s for a reset that could not come before the deadline", waited)
	}
}

// Datadog's credentials never follow a redirect to another host.
func TestRedirectsNeverCarryCredentials(t *testing.T) {
	var leaked atomic.Int32
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("DD-API-KEY") != "" || r.Header.Get("DD-APPLICATION-KEY") != "" || r.Header.Get("Authorization") != "" {
			leaked.Add(1)
		}
		w.WriteHeader(http.StatusOK)
		w.Write([]byte(`{"valid":true}`))
	}))
	defer elsewhere.Close()
	target := strings.Replace(elsewhere.URL, "127.0.0.1", "localhost", 1)
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer redirector.Close()

	env := newTestEnv(t)
	resp, err := env.do(t, logical.CreateOperation, "config", map[string]interface{}{
		"api_key": env.emu.APIKey(), "app_key": env.emu.AppKey(), "api_url": redirector.URL,
	})
	wantUserError(t, resp, err, "api_url", "redirect")
	if leaked.Load() != 0 {
		t.Errorf("%d requests carried Datadog credentials to another host", leaked.Load())
	}
}
func TestRedirectPolicy(t *testing.T) {
	for _, tc := range []struct {
		from, to string
		allowed  bool
	}{
		{"https://api.datadoghq.com/api/v2/x", "https://api.datadoghq.com/api/v2/y", true},
		{"https://api.datadoghq.com/api/v2/x", "https://evil.example.com/api/v2/x", false},
		{"https://api.datadoghq.com/api/v2/x", "http://api.datadoghq.com/api/v2/x", false},
		{"https://api.datadoghq.com/api/v2/x", "https://api.datadoghq.com:8443/api/v2/x", false},
		{"http://127.0.0.1:8080/a", "http://127.0.0.1:9090/a", false},
	} {
		from, _ := http.NewRequest(http.MethodGet, tc.from, nil)
		to, _ := http.NewRequest(http.MethodGet, tc.to, nil)
		err := checkRedirect(to, []*http.Request{from})
		if (err == nil) != tc.allowed {
			t.Errorf("redirect %s -> %s: err=%v, want allowed=%v", tc.from, tc.to, err, tc.allowed)
		}
	}
}
