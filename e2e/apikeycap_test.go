package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
)

// engineAPIKeys counts the API keys the engine made that Datadog holds.
func (d *datadog) engineAPIKeys() int {
	n := 0
	for _, k := range d.Keys() {
		if k.Kind == emulator.KindAPIKey && strings.HasPrefix(k.Name, "vault-") {
			n++
		}
	}
	return n
}

// TestThousandLeasesWithinTheAPIKeyCap: an organisation capped at 50 API
// keys, 10 of them held by people, serves 1,000 concurrent leases of the
// default role from 16 clients: each lease's API key and application key
// validate, the organisation never holds more than its cap, revoking one
// lease leaves the others working, and once every lease ended no API key
// the engine made is left.
func TestThousandLeasesWithinTheAPIKeyCap(t *testing.T) {
	const (
		leases  = 1000
		clients = 16
		apiCap  = 50
		people  = 10
	)
	started := time.Now()
	dd := startDatadogWith(t, emulator.Options{MaxAPIKeys: apiCap, PeopleAPIKeys: people})
	client := newClient(t)
	mount := mountPath(t)
	enableEngine(t, client, mount, dd)
	configure(t, client, mount, dd)
	cli(t, "write", mount+"/roles/fleet", "scopes=dashboards_read", "ttl=30m", "max_ttl=1h")
	if out := cli(t, "read", "-field=api_key_mode", mount+"/roles/fleet"); strings.TrimSpace(out) != "shared" {
		t.Fatalf("the default role's api_key_mode is %q, want shared", out)
	}
	keptByOthers := len(dd.Keys()) // the seeded identity's and people's keys

	issued := make([]*api.Secret, leases)
	var wg sync.WaitGroup
	errs := make(chan error, leases)
	next := make(chan int)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				secret, err := tryReadCreds(client, mount+"/creds/fleet")
				if err != nil || secret == nil || secret.LeaseID == "" {
					errs <- fmt.Errorf("lease %d: %v", i, err)
					continue
				}
				issued[i] = secret
			}
		}()
	}
	for i := range leases {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if failed++; failed <= 5 {
			t.Error(err)
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d creds reads failed", failed, leases)
	}
	issuing := time.Since(started)

	apiKeyIDs := map[string]bool{}
	for i, s := range issued {
		apiKeyIDs[str(t, s.Data, "api_key_id")] = true
		if got := dd.get(t, "/api/v2/validate_keys", str(t, s.Data, "api_key"), str(t, s.Data, "application_key")); got != http.StatusOK {
			t.Fatalf("lease %d's api_key + application_key: validate_keys HTTP %d, want 200", i, got)
		}
	}
	if peak := dd.APIKeyPeak(); peak > apiCap {
		t.Errorf("the organisation held %d API keys at its peak, over its cap of %d", peak, apiCap)
	}

	// Revoking one lease leaves every other lease's keys working.
	if err := client.Sys().Revoke(issued[0].LeaseID); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{1, leases / 2, leases - 1} {
		if got := dd.get(t, "/api/v2/validate_keys", str(t, issued[i].Data, "api_key"), str(t, issued[i].Data, "application_key")); got != http.StatusOK {
			t.Errorf("after another lease was revoked, lease %d's keys: HTTP %d, want 200", i, got)
		}
	}

	cli(t, "lease", "revoke", "-prefix", mount+"/creds/fleet")
	for deadline := time.Now().Add(5 * time.Minute); len(dd.Keys()) > keptByOthers; time.Sleep(time.Second) {
		if time.Now().After(deadline) {
			t.Fatalf("5 minutes after every lease was revoked, %d keys of the engine are left (%d API keys)", len(dd.Keys())-keptByOthers, dd.engineAPIKeys())
		}
	}
	for i, s := range issued {
		if got := dd.get(t, "/api/v1/validate", str(t, s.Data, "api_key"), ""); got == http.StatusOK {
			t.Fatalf("lease %d's API key still works after every lease was revoked", i)
		}
	}
	t.Logf("%d leases issued by %d clients in %s; API keys the engine made: %d; the organisation's peak: %d API keys (cap %d, %d of people); "+
		"left at the end: %d; wall time %s", leases, clients, issuing.Round(time.Millisecond), len(apiKeyIDs), dd.APIKeyPeak(), apiCap, people,
		dd.engineAPIKeys(), time.Since(started).Round(time.Millisecond))
}

// TestDynamicAPIKeysRefusedAtTheCap: per-lease API keys stop short of the
// organisation's cap, less the reserve left for people, with a 400 that
// names the cap and the count; no application key is made for the
// refused request.
func TestDynamicAPIKeysRefusedAtTheCap(t *testing.T) {
	t.Parallel()
	dd := startDatadogWith(t, emulator.Options{MaxAPIKeys: 8, PeopleAPIKeys: 2})
	client := newClient(t)
	mount := mountPath(t)
	enableEngine(t, client, mount, dd)
	configure(t, client, mount, dd)
	write(t, client, mount+"/config", map[string]any{"api_key_reserve": 2})
	cli(t, "write", mount+"/roles/perlease", "scopes=dashboards_read", "api_key_mode=dynamic")

	// 8 = the seeded key, 2 of people, 3 leases' and 2 kept free.
	for range 3 {
		readCreds(t, client, mount+"/creds/perlease")
	}
	appKeys := len(dd.Keys()) - dd.engineAPIKeys()
	_, err := tryReadCreds(client, mount+"/creds/perlease")
	requireBadRequest(t, err, "cap of 8", "holds 6 API keys", "api_key_mode=shared", "api_key_reserve")
	if got := len(dd.Keys()) - dd.engineAPIKeys(); got != appKeys {
		t.Errorf("the refused request made %d keys", got-appKeys)
	}
	// The shared mode still serves.
	cli(t, "write", mount+"/roles/perlease", "api_key_mode=shared")
	readCreds(t, client, mount+"/creds/perlease")
	cli(t, "lease", "revoke", "-prefix", mount+"/creds/perlease")
}
