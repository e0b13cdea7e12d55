package e2e

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
)

// liveVaultKeys lists what the engine created that still exists in Datadog.
func (d *datadog) liveVaultKeys() []emulator.Key {
	var live []emulator.Key
	for _, k := range d.Keys() {
		if strings.HasPrefix(k.Name, "vault-") {
			live = append(live, k)
		}
	}
	return live
}

// TestDatadogFailuresLeaveNoKeyBehind makes Datadog fail in the middle of a
// creds request, through a real Vault: the request fails, and whatever
// Datadog created anyway (its answer lost) is found by name and deleted.
func TestDatadogFailuresLeaveNoKeyBehind(t *testing.T) {
	for _, fault := range []emulator.Fault{
		{Operation: "CreateAPIKey", Action: emulator.FaultCommitThenReset, Times: 1},
		{Operation: "CreateCurrentUserApplicationKey", Action: emulator.FaultCommitThenError, Status: 503, Times: 1},
		{Operation: "CreateAPIKey", Action: emulator.FaultError, Status: 500, Times: 1},
	} {
		t.Run(fault.Operation+"/"+fault.Action, func(t *testing.T) {
			t.Parallel()
			dd, client, mount := startEngine(t)
			write(t, client, mount+"/roles/r", map[string]any{"scopes": "dashboards_read"})

			if _, err := dd.AddFault(fault); err != nil {
				t.Fatal(err)
			}
			if secret, err := tryReadCreds(client, mount+"/creds/r"); err == nil {
				t.Fatalf("creds read succeeded through the fault: lease %s", secret.LeaseID)
			}
			if live := dd.liveVaultKeys(); len(live) != 0 {
				t.Errorf("keys left in Datadog after the failed request: %+v", live)
			}
			// Datadog is back: the next request works.
			readCreds(t, client, mount+"/creds/r")
		})
	}
}

// TestFailedRevocationIsRetried: a deletion Datadog refuses keeps the lease,
// and the next revocation deletes the keys.
func TestFailedRevocationIsRetried(t *testing.T) {
	t.Parallel()
	dd, client, mount := startEngine(t)
	write(t, client, mount+"/roles/r", map[string]any{"scopes": "dashboards_read"})
	creds := readCreds(t, client, mount+"/creds/r")

	if _, err := dd.AddFault(emulator.Fault{Operation: "DeleteCurrentUserApplicationKey", Action: emulator.FaultError, Status: http.StatusForbidden, Times: 1}); err != nil {
		t.Fatal(err)
	}
	err := client.Sys().Revoke(creds.LeaseID)
	if err == nil {
		t.Fatal("revocation reported success while Datadog refused it")
	}
	noteError(err)
	if _, err := client.Sys().Lookup(creds.LeaseID); err != nil {
		t.Fatalf("the lease was dropped although its keys could not be deleted: %v", err)
	}
	if err := client.Sys().Revoke(creds.LeaseID); err != nil {
		t.Fatalf("second revocation: %v", err)
	}
	if live := dd.liveVaultKeys(); len(live) != 0 {
		t.Errorf("keys left after revocation: %+v", live)
	}
}

// TestTransientFailuresAreWaitedOut: a 429 on create was refused before
// anything was done, so the engine waits for the window to reset and sends
// it again; 5xx answers to deletions are retried. The caller sees neither.
func TestTransientFailuresAreWaitedOut(t *testing.T) {
	t.Parallel()
	dd, client, mount := startEngine(t)
	write(t, client, mount+"/roles/r", map[string]any{"scopes": "dashboards_read", "api_key_mode": "dynamic"})

	for _, f := range []emulator.Fault{
		{Operation: "CreateCurrentUserApplicationKey", Action: emulator.FaultRateLimit, Times: 1},
		{Operation: "DeleteCurrentUserApplicationKey", Action: emulator.FaultError, Status: http.StatusServiceUnavailable, Times: 2},
		{Operation: "DeleteAPIKey", Action: emulator.FaultReset, Times: 1},
	} {
		if _, err := dd.AddFault(f); err != nil {
			t.Fatal(err)
		}
	}
	creds := readCreds(t, client, mount+"/creds/r")
	if keys := dd.keysNamed(str(t, creds.Data, "name")); len(keys) != 2 {
		t.Errorf("Datadog holds %d keys for the credential, want its 2 (no duplicate create)", len(keys))
	}
	if err := client.Sys().Revoke(creds.LeaseID); err != nil {
		t.Fatalf("revocation through transient failures: %v", err)
	}
	if live := dd.liveVaultKeys(); len(live) != 0 {
		t.Errorf("keys left after revocation: %+v", live)
	}
	for _, f := range dd.Faults() {
		t.Errorf("fault %s on %s was never hit", f.Action, f.Operation)
	}
}

// TestCleanupByNameSparesOtherLeases: a name template without a unique part
// renders the same name for every request; one request's failed create must
// not make its clean-up delete another lease's keys.
func TestCleanupByNameSparesOtherLeases(t *testing.T) {
	t.Parallel()
	dd, client, mount := startEngine(t)
	write(t, client, mount+"/roles/r", map[string]any{"scopes": "dashboards_read", "name_template": "vault-{{ .RoleName }}", "api_key_mode": "dynamic"})
	first := readCreds(t, client, mount+"/creds/r")

	if _, err := dd.AddFault(emulator.Fault{Operation: "CreateAPIKey", Action: emulator.FaultCommitThenError, Status: http.StatusBadGateway, Times: 1}); err != nil {
		t.Fatal(err)
	}
	if secret, err := tryReadCreds(client, mount+"/creds/r"); err == nil {
		t.Fatalf("creds read succeeded through the fault: lease %s", secret.LeaseID)
	}
	if got := dd.get(t, "/api/v2/validate_keys", str(t, first.Data, "api_key"), str(t, first.Data, "application_key")); got != http.StatusOK {
		t.Errorf("the first lease's keys answer HTTP %d after another request's clean-up, want 200", got)
	}
	if live := dd.liveVaultKeys(); len(live) != 2 {
		t.Errorf("Datadog holds %d of the engine's keys, want the first lease's 2: %+v", len(live), live)
	}
}

// TestCreateAppliedAfterTheLookUpIsRolledBack: Datadog answers a create
// with 503 and applies it seconds later, after the engine's own look-up
// found nothing. The request's WAL entry stays, and the rollback that Vault
// runs when the engine is disabled deletes the late key by its name.
func TestCreateAppliedAfterTheLookUpIsRolledBack(t *testing.T) {
	t.Parallel()
	dd := startDatadog(t)
	client := newClient(t)
	mount := mountPath(t)
	if err := client.Sys().Mount(mount, &api.MountInput{Type: pluginName}); err != nil {
		t.Fatal(err)
	}
	configure(t, client, mount, dd)
	write(t, client, mount+"/roles/r", map[string]any{"scopes": "dashboards_read"})

	if _, err := dd.AddFault(emulator.Fault{Operation: "CreateAPIKey", Action: emulator.FaultDelayedCommit, Delay: 2 * time.Second, Times: 1}); err != nil {
		t.Fatal(err)
	}
	if secret, err := tryReadCreds(client, mount+"/creds/r"); err == nil {
		t.Fatalf("creds read succeeded through the fault: lease %s", secret.LeaseID)
	}
	for deadline := time.Now().Add(20 * time.Second); dd.PendingCommits() > 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the delayed commit never happened")
		}
	}
	late := dd.liveVaultKeys()
	if len(late) != 1 || late[0].Kind != emulator.KindAPIKey {
		t.Fatalf("after the late commit Datadog holds %+v, want the late API key alone", late)
	}

	if err := client.Sys().Unmount(mount); err != nil {
		t.Fatalf("disabling the engine: %v", err)
	}
	if live := dd.liveVaultKeys(); len(live) != 0 {
		t.Errorf("keys left after the rollback: %+v", live)
	}
}

// TestRedirectNeverCarriesTheKeys: an api_url that redirects to another
// host is refused with a 400, and the other host never sees a key.
func TestRedirectNeverCarriesTheKeys(t *testing.T) {
	t.Parallel()
	var leaked atomic.Int32
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("DD-API-KEY") != "" || r.Header.Get("DD-APPLICATION-KEY") != "" || r.Header.Get("Authorization") != "" {
			leaked.Add(1)
		}
		w.Write([]byte(`{"valid":true}`))
	}))
	t.Cleanup(elsewhere.Close)
	target := strings.Replace(elsewhere.URL, "127.0.0.1", "localhost", 1)
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirector.Close)

	dd := startDatadog(t)
	client := newClient(t)
	mount := mountPath(t)
	enableEngine(t, client, mount, dd)
	_, err := client.Logical().Write(mount+"/config", map[string]any{"api_key": dd.APIKey(), "app_key": dd.AppKey(), "api_url": redirector.URL})
	requireBadRequest(t, err, "api_url", "redirect")
	if n := leaked.Load(); n != 0 {
		t.Errorf("%d requests carried Datadog credentials to another host", n)
	}
}

// TestMassExpiryUnderADeleteRateLimit lets 200 leases expire together while
// Datadog allows 20 deletions per 10 seconds: the engine waits out the rate
// limit (without sending calls Datadog can only refuse), every key is
// deleted, and Vault marks no lease irrevocable.
func TestMassExpiryUnderADeleteRateLimit(t *testing.T) {
	t.Parallel()
	const leases, limit, period = 200, 20, 10 * time.Second
	dd, client, mount := startEngine(t)
	write(t, client, mount+"/roles/r", map[string]any{"scopes": "dashboards_read", "api_key_mode": "none", "ttl": "20s"})

	var wg sync.WaitGroup
	ids := make(chan string, leases)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < leases; i += 8 {
				secret, err := tryReadCreds(client, mount+"/creds/r")
				if err != nil {
					t.Errorf("creds read %d: %v", i, err)
					return
				}
				ids <- secret.Data["application_key_id"].(string)
			}
		}()
	}
	wg.Wait()
	close(ids)
	if len(ids) != leases {
		t.Fatalf("issued %d leases, want %d", len(ids), leases)
	}
	if err := dd.SetRateLimit("application_keys", emulator.RateLimit{Limit: limit, Period: period}); err != nil {
		t.Fatal(err)
	}
	issuedAt := time.Now()
	var all []string
	for id := range ids {
		all = append(all, id)
	}

	bound := time.Duration(leases/limit) * period
	dd.waitKeysGone(t, 4*bound, all...)
	took := time.Since(issuedAt) - 20*time.Second // from expiry
	refused := dd.Answers(http.StatusTooManyRequests)
	t.Logf("%d leases expired together against a limit of %d deletions per %s: all keys deleted %s after expiry (bound %s, ratio %.2f); Datadog answered 429 %d times",
		leases, limit, period, took.Round(time.Second), bound, took.Seconds()/bound.Seconds(), refused)
	// Waiting out the rate limit means sending no call into a spent window.
	if refused > limit {
		t.Errorf("Datadog answered 429 %d times: the engine kept sending deletions into spent windows", refused)
	}

	if n := irrevocableLeases(t, client, mount); n != 0 {
		t.Errorf("%d leases of the engine are irrevocable", n)
	}
	dd.SetRateLimit("application_keys", emulator.RateLimit{})
}
