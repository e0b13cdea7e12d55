package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestConfigNewOwnerRevokesOldKeysWhereTheyLive points the engine at another
// Datadog user (an ordinary rotation of the engine's identity) while a lease
// is out: its revocation must delete the previous owner's keys, through the
// organisation-wide endpoints the new identity may use.
func TestConfigNewOwnerRevokesOldKeysWhereTheyLive(t *testing.T) {
	t.Parallel()
	dd, client, mount := startEngine(t)
	write(t, client, mount+"/roles/r", map[string]any{"scopes": "dashboards_read"})
	creds := readCreds(t, client, mount+"/creds/r")

	admin := dd.serviceAccount(t)
	write(t, client, mount+"/config", map[string]any{"app_key": dd.serviceAccountAppKey(t, admin)})
	cfg, err := client.Logical().Read(mount + "/config")
	if err != nil || cfg.Data["owner_id"] != admin {
		t.Fatalf("config after the change: %v %v, want owner_id %s", err, cfg, admin)
	}

	if err := client.Sys().Revoke(creds.LeaseID); err != nil {
		t.Fatalf("revoking a lease issued by the previous owner: %v", err)
	}
	dd.waitKeysGone(t, 10*time.Second, str(t, creds.Data, "application_key_id"), str(t, creds.Data, "api_key_id"))
}

// TestConfigChangesThatStrandLeasesAreRefused: a new identity that cannot
// delete the outstanding keys, another organisation, or no config at all
// would turn every revocation into a lie or a failure; each is refused with
// a 400 that says how many leases depend on the current identity. force=true
// goes ahead, names the keys left behind, and the lease is then kept (its
// revocation fails) rather than dropped while its key lives.
func TestConfigChangesThatStrandLeasesAreRefused(t *testing.T) {
	t.Parallel()
	dd, client, mount := startEngine(t)
	write(t, client, mount+"/roles/r", map[string]any{"scopes": "dashboards_read", "api_key_mode": "none"})
	creds := readCreds(t, client, mount+"/creds/r")
	keyID := str(t, creds.Data, "application_key_id")

	standardKey := dd.serviceAccountAppKey(t, dd.serviceAccountWithRole(t, "Datadog Standard Role"))
	other := startDatadog(t)
	for _, tc := range []struct {
		name string
		data map[string]any
		want []string
	}{
		{"a user who may not delete other users' keys", map[string]any{"app_key": standardKey}, []string{"org_app_keys_write", dd.UserID()}},
		{"another organisation", map[string]any{"api_key": other.APIKey(), "app_key": other.AppKey(), "api_url": other.URL}, []string{"organisation"}},
	} {
		_, err := client.Logical().Write(mount+"/config", tc.data)
		t.Run(tc.name, func(t *testing.T) {
			requireBadRequest(t, err, append(tc.want, "config not changed", "1 lease", "force=true", "vault lease revoke -prefix "+mount+"/creds/")...)
		})
	}
	_, err := client.Logical().Delete(mount + "/config")
	requireBadRequest(t, err, "config not deleted", "1 lease", "force=true")
	if cfg, err := client.Logical().Read(mount + "/config"); err != nil || cfg.Data["owner_id"] != dd.UserID() {
		t.Fatalf("config after refused changes: %v %v, want the original owner", err, cfg)
	}

	forced, err := client.Logical().Write(mount+"/config", map[string]any{"app_key": standardKey, "force": true})
	if err != nil {
		t.Fatalf("forced config change: %v", err)
	}
	if warnings := strings.Join(forced.Warnings, "\n"); !strings.Contains(warnings, keyID) {
		t.Errorf("forced config change does not name the key it leaves behind:\n%s", warnings)
	}
	err = client.Sys().Revoke(creds.LeaseID)
	if err == nil {
		t.Error("revocation reported success for a key the configured identity cannot delete")
	}
	noteError(err)
	if _, ok := dd.key(keyID); !ok {
		t.Fatal("the key vanished")
	}
	if _, err := client.Sys().Lookup(creds.LeaseID); err != nil {
		t.Errorf("the lease was dropped while its key lives: %v", err)
	}

	// The CLI sends force as a query parameter.
	cli(t, "delete", mount+"/config", "force=true")
	err = client.Sys().Revoke(creds.LeaseID)
	noteError(err)
	if err == nil || !strings.Contains(err.Error(), "not configured") {
		t.Errorf("revocation without config: %v, want an error saying the engine is not configured", err)
	}

	// Back to an identity that can reach the key: the lease revokes.
	configure(t, client, mount, dd)
	if err := client.Sys().Revoke(creds.LeaseID); err != nil {
		t.Fatalf("revoking once config is fixed: %v", err)
	}
	dd.waitKeysGone(t, 10*time.Second, keyID)
}

// TestRootKeyRevokedInDatadog: the engine's own application key is revoked
// in Datadog. Revocations fail with an error that says so and Vault keeps
// the lease; once config holds a working key, the revocation succeeds.
func TestRootKeyRevokedInDatadog(t *testing.T) {
	t.Parallel()
	dd := startDatadog(t)
	client := newClient(t)
	mount := mountPath(t)
	enableEngine(t, client, mount, dd)
	status, key := dd.do(t, http.MethodPost, "/api/v2/current_user/application_keys",
		`{"data":{"type":"application_keys","attributes":{"name":"engine key"}}}`, dd.root())
	if status != http.StatusCreated {
		t.Fatalf("creating the engine's key: HTTP %d", status)
	}
	engineKey := key["data"].(map[string]any)["attributes"].(map[string]any)["key"].(string)
	noteSecret(engineKey)
	write(t, client, mount+"/config", map[string]any{"api_key": dd.APIKey(), "app_key": engineKey, "api_url": dd.URL})
	write(t, client, mount+"/roles/r", map[string]any{"scopes": "dashboards_read"})
	creds := readCreds(t, client, mount+"/creds/r")

	dd.DeleteKey(key["data"].(map[string]any)["id"].(string))
	err := client.Sys().Revoke(creds.LeaseID)
	if err == nil || !strings.Contains(err.Error(), "refused the engine's own keys") {
		t.Fatalf("revocation with the engine's key revoked: %v; want an error saying Datadog refused the engine's keys", err)
	}
	if _, err := client.Sys().Lookup(creds.LeaseID); err != nil {
		t.Fatalf("the lease was dropped: %v", err)
	}

	configure(t, client, mount, dd)
	if err := client.Sys().Revoke(creds.LeaseID); err != nil {
		t.Fatalf("revocation once config is fixed: %v", err)
	}
	dd.waitKeysGone(t, 10*time.Second, str(t, creds.Data, "application_key_id"), str(t, creds.Data, "api_key_id"))
}
