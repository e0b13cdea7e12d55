package e2e

import (
	"net/http"
	"testing"
	"time"
)

// TestCredsAreDeletedWhenTheLeaseExpires leaves a short lease alone: Vault's
// expiry must revoke it, which deletes both keys in Datadog.
func TestCredsAreDeletedWhenTheLeaseExpires(t *testing.T) {
	t.Parallel()
	dd, client, mount := startEngine(t)
	write(t, client, mount+"/roles/short", map[string]any{"scopes": "dashboards_read", "ttl": "2s"})

	creds := readCreds(t, client, mount+"/creds/short")
	if creds.LeaseDuration != 2 {
		t.Errorf("lease duration %ds, want the role's ttl of 2s", creds.LeaseDuration)
	}
	dd.requireKeysIssued(t, creds.Data, "short", []string{"dashboards_read"})
	apiKey, appKey := str(t, creds.Data, "api_key"), str(t, creds.Data, "application_key")
	if got := dd.get(t, "/api/v2/validate_keys", apiKey, appKey); got != http.StatusOK {
		t.Fatalf("GET /api/v2/validate_keys with fresh keys: HTTP %d, want 200", got)
	}

	dd.waitKeysGone(t, 30*time.Second, str(t, creds.Data, "application_key_id"), str(t, creds.Data, "api_key_id"))
	if got := dd.get(t, "/api/v2/validate_keys", apiKey, appKey); got != http.StatusForbidden {
		t.Errorf("GET /api/v2/validate_keys with expired keys: HTTP %d, want 403", got)
	}
	// Vault drops the lease once the revocation it runs has returned, just
	// after the keys are gone.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, err := client.Sys().Lookup(creds.LeaseID); err != nil {
			noteError(err)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lease %s still exists 10s after its keys were deleted", creds.LeaseID)
		}
	}
}

// TestRenewExtendsTheLeaseUpToMaxTTL renews through the API: the increment
// asked for is granted, but never past the role's max_ttl.
func TestRenewExtendsTheLeaseUpToMaxTTL(t *testing.T) {
	t.Parallel()
	dd, client, mount := startEngine(t)
	write(t, client, mount+"/roles/renewable", map[string]any{"scopes": "dashboards_read", "ttl": "1m", "max_ttl": "5m"})

	creds := readCreds(t, client, mount+"/creds/renewable")
	if creds.LeaseDuration != 60 || !creds.Renewable {
		t.Fatalf("lease: %ds renewable=%v, want 60s renewable", creds.LeaseDuration, creds.Renewable)
	}

	renewed, err := client.Sys().Renew(creds.LeaseID, 120)
	if err != nil {
		t.Fatalf("renewing with an increment of 120s: %v", err)
	}
	if renewed.LeaseDuration != 120 {
		t.Errorf("renewed with an increment of 120s: lease lasts %ds, want 120s", renewed.LeaseDuration)
	}

	capped, err := client.Sys().Renew(creds.LeaseID, 3600)
	if err != nil {
		t.Fatalf("renewing with an increment of 3600s: %v", err)
	}
	if capped.LeaseDuration > 300 || capped.LeaseDuration < 240 {
		t.Errorf("renewed with an increment of 3600s: lease lasts %ds, want it capped to the 300s max_ttl", capped.LeaseDuration)
	}
	if len(capped.Warnings) == 0 {
		t.Errorf("renewal past max_ttl gave no warning")
	}

	// The keys outlive every renewal until the lease ends.
	dd.requireKeysIssued(t, creds.Data, "renewable", []string{"dashboards_read"})
}

// TestAPIKeyModeNone issues an application key alone: the consumer brings
// its own API key.
func TestAPIKeyModeNone(t *testing.T) {
	t.Parallel()
	dd, client, mount := startEngine(t)
	write(t, client, mount+"/roles/app-only", map[string]any{"scopes": "monitors_read", "api_key_mode": "none"})

	creds := readCreds(t, client, mount+"/creds/app-only")
	for _, field := range []string{"api_key", "api_key_id"} {
		if v, ok := creds.Data[field]; ok {
			t.Errorf("creds have %s=%v, want none with api_key_mode none", field, v)
		}
	}
	keys := dd.keysNamed(str(t, creds.Data, "name"))
	if len(keys) != 1 || keys[0].ID != creds.Data["application_key_id"] {
		t.Fatalf("Datadog holds %+v for the credential, want only its application key", keys)
	}

	appKey := str(t, creds.Data, "application_key")
	if got := dd.get(t, "/api/v1/monitor", dd.APIKey(), appKey); got != http.StatusOK {
		t.Errorf("GET /api/v1/monitor with the issued application key: HTTP %d, want 200", got)
	}
	if got := dd.get(t, "/api/v1/dashboard", dd.APIKey(), appKey); got != http.StatusForbidden {
		t.Errorf("GET /api/v1/dashboard outside the key's scopes: HTTP %d, want 403", got)
	}

	if err := client.Sys().Revoke(creds.LeaseID); err != nil {
		t.Fatalf("revoking the lease: %v", err)
	}
	dd.waitKeysGone(t, 10*time.Second, keys[0].ID)
}
