package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// Vault calls the engine's periodic function every minute: with a
// watch_interval of 1m a run starts on every tick, and a credential is seen
// at the latest by the run of the second tick after it changed.
const (
	watchInterval = time.Minute
	watchDeadline = 2*watchInterval + 30*time.Second
)

// watchStatus reads mount's watch/status.
func watchStatus(t *testing.T, client *api.Client, mount string) map[string]any {
	t.Helper()
	status, err := client.Logical().Read(mount + "/watch/status")
	if err != nil {
		noteError(err)
		t.Fatalf("reading %s/watch/status: %v", mount, err)
	}
	if status == nil {
		return nil
	}
	return status.Data
}

func jsonInt(t *testing.T, v any) int {
	t.Helper()
	n, err := v.(json.Number).Int64()
	if err != nil {
		t.Fatalf("%v is not a number", v)
	}
	return int(n)
}

// TestLeakedCredentialsAreDeletedWithinAWatchInterval: Datadog flags a key
// of three leases as leaked (an application key's API key, an API key, a
// personal access token) before the engine's first watch run, and one more
// (an application key) once the watch runs; the watch deletes each
// credential in Datadog, their renewals are refused with a 400 naming the
// leak, and their revocations succeed. A clean lease is left alone.
func TestLeakedCredentialsAreDeletedWithinAWatchInterval(t *testing.T) {
	t.Parallel()
	dd, client, mount := startEngine(t)
	cli(t, "write", mount+"/config", "watch_interval=1m")
	cli(t, "write", mount+"/roles/app", "scopes=dashboards_read", "api_key_mode=dynamic", "ttl=1h")
	cli(t, "write", mount+"/roles/agent", "credential_type=api_key", "api_key_mode=dynamic", "ttl=1h")
	cli(t, "write", mount+"/roles/pat", "credential_type=personal_access_token", "scopes=dashboards_read", "ttl=1h")

	app, agent, pat := readCreds(t, client, mount+"/creds/app"), readCreds(t, client, mount+"/creds/agent"), readCreds(t, client, mount+"/creds/pat")
	late, clean := readCreds(t, client, mount+"/creds/app"), readCreds(t, client, mount+"/creds/app")
	type leak struct {
		lease *api.Secret
		key   string // the key Datadog flags
	}
	first := map[string]leak{
		"application key's API key": {app, str(t, app.Data, "api_key_id")},
		"API key":                   {agent, str(t, agent.Data, "api_key_id")},
		"personal access token":     {pat, str(t, pat.Data, "access_token_id")},
	}
	// Detection to deletion: from Datadog's flag to the credential's last
	// key gone from Datadog.
	flagAndWait := func(when string, leaked map[string]leak) {
		t.Helper()
		flagged := time.Now()
		for _, l := range leaked {
			if !dd.MarkLeaked(l.key, "github") {
				t.Fatalf("Datadog has no key %s to flag", l.key)
			}
		}
		deleted := map[string]time.Duration{}
		for len(deleted) < len(leaked) {
			for what, l := range leaked {
				if _, done := deleted[what]; !done && !dd.anyLive(credentialIDs(l.lease.Data)) {
					deleted[what] = time.Since(flagged)
					t.Logf("%s, flagged %s: leaked credential deleted %s after Datadog flagged it (watch_interval 1m)", what, when, deleted[what].Round(time.Second))
				}
			}
			if time.Since(flagged) > watchDeadline {
				t.Fatalf("leaked credentials still in Datadog %s after they were flagged: only %v deleted", watchDeadline, deleted)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	flagAndWait("before the first watch run", first)
	if status := watchStatus(t, client, mount); status == nil || jsonInt(t, status["leaked"]) != 3 || jsonInt(t, status["checked"]) != 5 {
		t.Errorf("watch/status after the first kills: %v; want 5 checked, 3 leaked", status)
	}
	second := map[string]leak{"application key": {late, str(t, late.Data, "application_key_id")}}
	flagAndWait("while the watch runs every minute", second)
	for _, id := range credentialIDs(clean.Data) {
		if _, ok := dd.key(id); !ok {
			t.Errorf("the clean lease's key %s was deleted", id)
		}
	}

	leaked := first
	for what, l := range second {
		leaked[what] = l
	}
	for what, l := range leaked {
		_, err := client.Sys().Renew(l.lease.LeaseID, 0)
		requireBadRequest(t, err, "leaked", l.key, "request new credentials")
		if err := client.Sys().Revoke(l.lease.LeaseID); err != nil {
			t.Errorf("%s: revoking the killed lease: %v", what, err)
		}
	}
	// As a user sees it.
	out, err := vault.cli("lease", "renew", clean.LeaseID)
	if err != nil {
		t.Errorf("renewing the clean lease: %v\n%s", err, redactSecrets(out))
	}
	if _, err := client.Sys().Lookup(app.LeaseID); err == nil {
		t.Error("the revoked lease still exists")
	} else {
		noteError(err)
	}
}

// TestRenewalOfALeakedCredentialIsRefused: with the periodic watch off, the
// renewal itself finds the leak, deletes the credential at once and
// answers 400 with where Datadog found it.
func TestRenewalOfALeakedCredentialIsRefused(t *testing.T) {
	t.Parallel()
	dd, client, mount := startEngine(t)
	cli(t, "write", mount+"/config", "watch_interval=0")
	cli(t, "write", mount+"/roles/pat", "credential_type=personal_access_token", "scopes=dashboards_read", "ttl=1h")
	creds := readCreds(t, client, mount+"/creds/pat")
	id := str(t, creds.Data, "access_token_id")
	dd.MarkLeaked(id, "gitlab")

	out, err := vault.cli("lease", "renew", creds.LeaseID)
	if err == nil || !strings.Contains(out, "leaked") || !strings.Contains(out, "in gitlab") || !strings.Contains(out, "Code: 400") {
		t.Errorf("vault lease renew of a leaked token: %v\n%s", err, redactSecrets(out))
	}
	dd.waitKeysGone(t, 5*time.Second, id)
	bearer := map[string]string{"Authorization": "Bearer " + str(t, creds.Data, "access_token")}
	if status, _ := dd.do(t, http.MethodGet, "/api/v1/dashboard", "", bearer); status != http.StatusUnauthorized {
		t.Errorf("the leaked token answers HTTP %d after the refused renewal, want 401", status)
	}
	cli(t, "lease", "revoke", creds.LeaseID)
	if status := watchStatus(t, client, mount); status["state"] != "never" || status["next_run_at"] != nil {
		t.Errorf("watch/status with watch_interval 0: %v; want no run, none due", status)
	}
}

// TestIdleCredentialIsDeletedAndAUsedOneIsNot: two leases of a role with
// idle_ttl 1m, one never used, one used every few seconds by the test (its
// application key and API key both). The watch deletes the idle one once it
// has been unused for idle_ttl, not before, and keeps the used one.
func TestIdleCredentialIsDeletedAndAUsedOneIsNot(t *testing.T) {
	t.Parallel()
	dd, client, mount := startEngine(t)
	cli(t, "write", mount+"/config", "watch_interval=1m")
	cli(t, "write", mount+"/roles/idle", "scopes=dashboards_read", "api_key_mode=dynamic", "idle_ttl=1m", "ttl=1h")
	idle := readCreds(t, client, mount+"/creds/idle")
	used := readCreds(t, client, mount+"/creds/idle")
	issued := time.Now()
	idleKey, _ := dd.key(str(t, idle.Data, "application_key_id"))

	use := func() {
		if got := dd.get(t, "/api/v2/validate_keys", str(t, used.Data, "api_key"), str(t, used.Data, "application_key")); got != http.StatusOK {
			t.Fatalf("using the used lease's keys: HTTP %d", got)
		}
	}
	deadline := issued.Add(idleTTLDeadline)
	var killed time.Time
	for {
		use()
		if killed.IsZero() && !dd.anyLive(credentialIDs(idle.Data)) {
			killed = time.Now()
		}
		// The run that killed the idle lease also looked at the used one,
		// by then older than idle_ttl as well.
		if status := watchStatus(t, client, mount); !killed.IsZero() && status["state"] != "running" && jsonInt(t, status["idle"]) >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the idle lease's keys are still in Datadog %s after they were issued with idle_ttl 1m", time.Since(issued).Round(time.Second))
		}
		time.Sleep(3 * time.Second)
	}
	t.Logf("idle credential deleted %s after its creation (idle_ttl 1m, watch_interval 1m)", killed.Sub(idleKey.CreatedAt).Round(time.Second))
	if age := killed.Sub(idleKey.CreatedAt); age < time.Minute {
		t.Errorf("the idle credential was deleted %s after its creation, before its idle_ttl of 1m", age)
	}
	for _, id := range credentialIDs(used.Data) {
		if k, ok := dd.key(id); !ok {
			t.Errorf("the used lease's key %s was deleted", id)
		} else if k.LastUsedAt == nil || time.Since(*k.LastUsedAt) > 10*time.Second {
			t.Errorf("the used lease's key %s: last use %v, want within the last few seconds", id, k.LastUsedAt)
		}
	}
	use()

	_, err := client.Sys().Renew(idle.LeaseID, 0)
	requireBadRequest(t, err, "not used for", "idle_ttl", "request new credentials")
	if _, err := client.Sys().Renew(used.LeaseID, 0); err != nil {
		t.Errorf("renewing the used lease: %v", err)
	}
	cli(t, "lease", "revoke", idle.LeaseID)
}

// idleTTLDeadline bounds the idle test's wait: idle_ttl, then a run at the
// next minute's tick that sees it, with margin.
const idleTTLDeadline = time.Minute + watchDeadline

// anyLive reports whether any of the keys still exists in Datadog.
func (d *datadog) anyLive(ids []string) bool {
	for _, id := range ids {
		if _, ok := d.key(id); ok {
			return true
		}
	}
	return false
}
