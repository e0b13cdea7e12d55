package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

func (d *datadog) root() map[string]string {
	return map[string]string{"DD-API-KEY": d.APIKey(), "DD-APPLICATION-KEY": d.AppKey()}
}

// serviceAccount creates an enabled service account holding the admin role,
// as a Datadog administrator would before writing a role for it.
func (d *datadog) serviceAccount(t *testing.T) string {
	t.Helper()
	return d.serviceAccountWithRole(t, "Datadog Admin Role")
}

// serviceAccountWithRole creates an enabled service account holding one of
// the organisation's roles, by name.
func (d *datadog) serviceAccountWithRole(t *testing.T, roleName string) string {
	t.Helper()
	status, roles := d.do(t, http.MethodGet, "/api/v2/roles", "", d.root())
	if status != http.StatusOK {
		t.Fatalf("listing Datadog roles: HTTP %d", status)
	}
	var roleID string
	for _, r := range roles["data"].([]any) {
		role := r.(map[string]any)
		if role["attributes"].(map[string]any)["name"] == roleName {
			roleID = role["id"].(string)
		}
	}
	body := fmt.Sprintf(`{"data":{"type":"users","attributes":{"email":"e2e-%d@example.com","service_account":true,"name":"e2e"},`+
		`"relationships":{"roles":{"data":[{"type":"roles","id":%q}]}}}}`, time.Now().UnixNano(), roleID)
	status, sa := d.do(t, http.MethodPost, "/api/v2/service_accounts", body, d.root())
	if status != http.StatusCreated {
		t.Fatalf("creating a service account: HTTP %d %v", status, sa)
	}
	return sa["data"].(map[string]any)["id"].(string)
}

// serviceAccountAppKey creates an unscoped application key of a service
// account: the identity an administrator hands the engine.
func (d *datadog) serviceAccountAppKey(t *testing.T, sa string) string {
	t.Helper()
	status, key := d.do(t, http.MethodPost, "/api/v2/service_accounts/"+sa+"/application_keys",
		`{"data":{"type":"application_keys","attributes":{"name":"engine identity"}}}`, d.root())
	if status != http.StatusCreated {
		t.Fatalf("creating an application key of %s: HTTP %d %v", sa, status, key)
	}
	secret := key["data"].(map[string]any)["attributes"].(map[string]any)["key"].(string)
	noteSecret(secret)
	return secret
}

// credentialUse says how a consumer authenticates with one kind's creds and
// which calls prove its scopes: allowed must answer 200, denied 403.
type credentialUse struct {
	kind            string
	auth            func(creds map[string]any) map[string]string
	allowed, denied string
	idField         string
}

var appKeyAuth = func(creds map[string]any) map[string]string {
	return map[string]string{"DD-API-KEY": creds["api_key"].(string), "DD-APPLICATION-KEY": creds["application_key"].(string)}
}

var bearerAuth = func(creds map[string]any) map[string]string {
	return map[string]string{"Authorization": "Bearer " + creds["access_token"].(string)}
}

var credentialUses = []credentialUse{
	{"application_key", appKeyAuth, "/api/v1/dashboard", "/api/v1/monitor", "application_key_id"},
	{"service_account_application_key", appKeyAuth, "/api/v1/dashboard", "/api/v1/monitor", "application_key_id"},
	{"service_access_token", bearerAuth, "/api/v1/dashboard", "/api/v1/monitor", "access_token_id"},
	{"personal_access_token", bearerAuth, "/api/v1/dashboard", "/api/v1/monitor", "access_token_id"},
	// An API key alone validates but cannot call the API, which needs an application key.
	{"api_key", func(creds map[string]any) map[string]string {
		return map[string]string{"DD-API-KEY": creds["api_key"].(string)}
	}, "/api/v1/validate", "/api/v1/dashboard", "api_key_id"},
}

// TestEveryCredentialKind issues each kind through a real Vault, uses it in
// and out of its scopes, refuses renewal once it was deleted out of band,
// and deletes it on revoke.
func TestEveryCredentialKind(t *testing.T) {
	for _, use := range credentialUses {
		t.Run(use.kind, func(t *testing.T) {
			t.Parallel()
			dd, client, mount := startEngine(t)
			role := map[string]any{"credential_type": use.kind, "ttl": "10m", "max_ttl": "1h"}
			if use.kind != "api_key" {
				role["scopes"] = "dashboards_read"
			}
			if strings.HasPrefix(use.kind, "service_") {
				role["service_account_id"] = dd.serviceAccount(t)
			}
			write(t, client, mount+"/roles/r", role)

			creds := readCreds(t, client, mount+"/creds/r")
			id := str(t, creds.Data, use.idField)
			if got, _ := dd.do(t, http.MethodGet, use.allowed, "", use.auth(creds.Data)); got != http.StatusOK {
				t.Errorf("GET %s with the %s: HTTP %d, want 200", use.allowed, use.kind, got)
			}
			if got, _ := dd.do(t, http.MethodGet, use.denied, "", use.auth(creds.Data)); got != http.StatusForbidden {
				t.Errorf("GET %s with the %s: HTTP %d, want 403", use.denied, use.kind, got)
			}
			if strings.HasSuffix(use.kind, "access_token") {
				expiresAt, err := time.Parse(time.RFC3339, str(t, creds.Data, "expires_at"))
				if err != nil || time.Until(expiresAt) < time.Hour {
					t.Errorf("expires_at %v: want Datadog's expiry at least the role's max_ttl ahead", creds.Data["expires_at"])
				}
			}

			// The CLI queues the revocation: wait for it to reach Datadog.
			cli(t, "lease", "revoke", creds.LeaseID)
			dd.waitKeysGone(t, 30*time.Second, id)
			if got, _ := dd.do(t, http.MethodGet, use.allowed, "", use.auth(creds.Data)); got == http.StatusOK {
				t.Errorf("revoked %s still works", use.kind)
			}

			// Deleted in Datadog behind Vault's back: renewal must say so.
			creds = readCreds(t, client, mount+"/creds/r")
			if !dd.DeleteKey(str(t, creds.Data, use.idField)) {
				t.Fatalf("emulator could not delete %s out of band", use.kind)
			}
			_, err := client.Sys().Renew(creds.LeaseID, 60)
			requireBadRequest(t, err, "deleted outside Vault")
			// Its revocation meets a 404 where the key lived: success.
			if err := client.Sys().Revoke(creds.LeaseID); err != nil {
				t.Errorf("revoking a lease whose %s is already gone: %v", use.kind, err)
			}
		})
	}
}

// TestServiceAccessTokenDiesWithoutVault: even if Vault never revokes, the
// token's Datadog expiry (the lease's max TTL plus a grace) ends it.
func TestServiceAccessTokenDiesWithoutVault(t *testing.T) {
	t.Parallel()
	dd, client, mount := startEngine(t)
	write(t, client, mount+"/roles/sat", map[string]any{
		"credential_type": "service_access_token", "service_account_id": dd.serviceAccount(t),
		"scopes": "dashboards_read", "ttl": "5m", "max_ttl": "15m",
	})
	creds := readCreds(t, client, mount+"/creds/sat")
	if creds.LeaseDuration > 15*60 {
		t.Errorf("lease %ds outlives max_ttl", creds.LeaseDuration)
	}
	auth := bearerAuth(creds.Data)
	if got, _ := dd.do(t, http.MethodGet, "/api/v1/dashboard", "", auth); got != http.StatusOK {
		t.Fatalf("fresh token: HTTP %d", got)
	}
	dd.Advance(time.Hour)
	if got, _ := dd.do(t, http.MethodGet, "/api/v1/dashboard", "", auth); got == http.StatusOK {
		t.Error("token still authenticates after its Datadog expiry")
	}
}

// TestRoleRulesOfTheKinds sends role writes that only Datadog can judge
// through a real Vault: each is a 400 naming the problem.
func TestRoleRulesOfTheKinds(t *testing.T) {
	t.Parallel()
	dd, client, mount := startEngine(t)
	disabled := dd.serviceAccount(t)
	if status, _ := dd.do(t, http.MethodDelete, "/api/v2/users/"+disabled, "", dd.root()); status != http.StatusNoContent {
		t.Fatalf("disabling the service account: HTTP %d", status)
	}
	for _, tc := range []struct {
		role map[string]any
		want []string
	}{
		{map[string]any{"credential_type": "service_access_token", "scopes": "dashboards_read", "service_account_id": disabled}, []string{"disabled service account"}},
		{map[string]any{"credential_type": "service_account_application_key", "scopes": "dashboards_read", "service_account_id": "no-such-id"}, []string{"no such Datadog user"}},
		{map[string]any{"credential_type": "personal_access_token", "scopes": "dashboards_read", "max_ttl": "9000h"}, []string{"max_ttl", "365 days"}},
		{map[string]any{"credential_type": "application_key"}, []string{"scopes is required", "allow_unscoped"}},
		{map[string]any{"scopes": "dashbords_read"}, []string{"dashbords_read", "did you mean dashboards_read"}},
		{map[string]any{"scopes": "dashboards_read", "name_template": "{{ .RoleName }}"}, []string{"name_template", "vault-"}},
	} {
		_, err := client.Logical().Write(mount+"/roles/bad", tc.role)
		requireBadRequest(t, err, tc.want...)
	}
	if secret, err := client.Logical().Read(mount + "/roles/bad"); err != nil || secret != nil {
		t.Errorf("a refused role was stored: %v %v", secret, err)
	}
}
