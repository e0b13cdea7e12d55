package backend

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
)

// rootCall sends a request to the emulator with the engine's root keys, as
// an administrator preparing the organisation would.
func (env *testEnv) rootCall(t *testing.T, method, path, body string) (int, map[string]interface{}) {
	t.Helper()
	return env.call(t, method, path, body, map[string]string{"DD-API-KEY": env.emu.APIKey(), "DD-APPLICATION-KEY": env.emu.AppKey()})
}

// createServiceAccount makes an enabled service account with the admin role.
func (env *testEnv) createServiceAccount(t *testing.T) string {
	t.Helper()
	return env.createServiceAccountWithRole(t, "Datadog Admin Role")
}

// createServiceAccountWithRole makes an enabled service account with one of
// the organisation's roles, by name.
func (env *testEnv) createServiceAccountWithRole(t *testing.T, roleName string) string {
	t.Helper()
	status, roles := env.rootCall(t, http.MethodGet, "/api/v2/roles", "")
	if status != http.StatusOK {
		t.Fatalf("listing roles: %d", status)
	}
	var roleID string
	for _, r := range roles["data"].([]interface{}) {
		role := r.(map[string]interface{})
		if role["attributes"].(map[string]interface{})["name"] == roleName {
			roleID = role["id"].(string)
		}
	}
	body := fmt.Sprintf(`{"data":{"type":"users","attributes":{"email":"ci-%d@example.com","service_account":true,"name":"ci"},`+
		`"relationships":{"roles":{"data":[{"type":"roles","id":%q}]}}}}`, time.Now().UnixNano(), roleID)
	status, sa := env.rootCall(t, http.MethodPost, "/api/v2/service_accounts", body)
	if status != http.StatusCreated {
		t.Fatalf("creating a service account: %d %v", status, sa)
	}
	return sa["data"].(map[string]interface{})["id"].(string)
}

// serviceAccountAppKey creates an unscoped application key of a service
// account, as an administrator would to hand the engine a new identity.
func (env *testEnv) serviceAccountAppKey(t *testing.T, sa string) string {
	t.Helper()
	status, key := env.rootCall(t, http.MethodPost, "/api/v2/service_accounts/"+sa+"/application_keys",
		`{"data":{"type":"application_keys","attributes":{"name":"engine identity"}}}`)
	if status != http.StatusCreated {
		t.Fatalf("creating an application key of %s: %d %v", sa, status, key)
	}
	return secretOf(key)
}

// secretOf reads the secret from Datadog's answer to a key create.
func secretOf(created map[string]interface{}) string {
	return created["data"].(map[string]interface{})["attributes"].(map[string]interface{})["key"].(string)
}

func (env *testEnv) bearerStatus(t *testing.T, path, token string) int {
	t.Helper()
	status, _ := env.call(t, http.MethodGet, path, "", map[string]string{"Authorization": "Bearer " + token})
	return status
}

func TestServiceAccountApplicationKey(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	sa := env.createServiceAccount(t)
	env.writeRole(t, "sa", map[string]interface{}{
		"credential_type": "service_account_application_key", "service_account_id": sa, "scopes": "dashboards_read",
	})

	resp := env.mustDo(t, logical.ReadOperation, "creds/sa", nil)
	if resp.Data["service_account_id"] != sa || resp.Secret.InternalData["secret_type"] != "datadog_service_account_application_key" {
		t.Errorf("creds = %v", resp.Data)
	}
	appKey, apiKey := resp.Data["application_key"].(string), resp.Data["api_key"].(string)
	if env.statusWith(t, "/api/v1/dashboard", apiKey, appKey) != 200 || env.statusWith(t, "/api/v1/monitor", apiKey, appKey) != 403 {
		t.Error("service account key is not limited to its scopes")
	}
	for _, k := range env.issuedKeys() {
		if k.Kind == emulator.KindApplicationKey && k.OwnerID != sa {
			t.Errorf("application key owned by %s, want the service account %s", k.OwnerID, sa)
		}
	}
	if _, err := env.revoke(t, resp); err != nil {
		t.Fatal(err)
	}
	if left := env.issuedKeys(); len(left) != 0 {
		t.Errorf("left after revoke: %v", left)
	}
}

func TestServiceAccessTokenExpiresInDatadog(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	sa := env.createServiceAccount(t)
	env.writeRole(t, "sat", map[string]interface{}{
		"credential_type": "service_access_token", "service_account_id": sa, "scopes": "dashboards_read", "ttl": "30m", "max_ttl": "1h",
	})

	before := time.Now()
	resp := env.mustDo(t, logical.ReadOperation, "creds/sat", nil)
	token, _ := resp.Data["access_token"].(string)
	if !strings.HasPrefix(token, "ddsat_") || resp.Data["access_token_id"] == "" {
		t.Fatalf("creds = %v", resp.Data)
	}
	expiresAt, err := time.Parse(time.RFC3339, resp.Data["expires_at"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if want := before.Add(time.Hour + expiryGrace); expiresAt.Before(want.Add(-2*time.Second)) || expiresAt.After(want.Add(5*time.Second)) {
		t.Errorf("expires_at = %s, want about %s", expiresAt, want)
	}
	if resp.Secret.MaxTTL > time.Hour {
		t.Errorf("lease max TTL %s outlives the role's max_ttl", resp.Secret.MaxTTL)
	}
	if env.bearerStatus(t, "/api/v1/dashboard", token) != 200 || env.bearerStatus(t, "/api/v1/monitor", token) != 403 {
		t.Error("token is not limited to its scopes")
	}

	// Vault never revokes: Datadog's own expiry still ends the token.
	env.emu.Advance(time.Hour + expiryGrace + time.Minute)
	if got := env.bearerStatus(t, "/api/v1/dashboard", token); got == 200 {
		t.Error("token still works after its Datadog expiry")
	}
}

func TestPersonalAccessToken(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "pat", map[string]interface{}{"credential_type": "personal_access_token", "scopes": "monitors_read", "max_ttl": "1h"})

	resp := env.mustDo(t, logical.ReadOperation, "creds/pat", nil)
	token, _ := resp.Data["access_token"].(string)
	expiresAt, _ := time.Parse(time.RFC3339, resp.Data["expires_at"].(string))
	if until := time.Until(expiresAt); until < 24*time.Hour {
		t.Errorf("PAT expires in %s; Datadog requires at least 24 h", until)
	}
	if resp.Secret.MaxTTL != time.Hour {
		t.Errorf("lease max TTL = %s, want the role's 1h", resp.Secret.MaxTTL)
	}
	if env.bearerStatus(t, "/api/v1/monitor", token) != 200 || env.bearerStatus(t, "/api/v1/dashboard", token) != 403 {
		t.Error("token is not limited to its scopes")
	}

	// Deleted out of band: renewal fails, revocation still succeeds.
	id := resp.Data["access_token_id"].(string)
	if status, _ := env.rootCall(t, http.MethodDelete, "/api/v2/personal_access_tokens/"+id, ""); status != http.StatusNoContent {
		t.Fatalf("out-of-band revoke: %d", status)
	}
	renewed, err := env.renew(t, resp)
	wantUserError(t, renewed, err, "deleted outside Vault")
	if _, err := env.revoke(t, resp); err != nil {
		t.Errorf("revoke after out-of-band deletion: %v", err)
	}
	if env.bearerStatus(t, "/api/v1/monitor", token) == 200 {
		t.Error("revoked token still works")
	}
}

func TestDisabledServiceAccountIsRefused(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	sa := env.createServiceAccount(t)
	if status, _ := env.rootCall(t, http.MethodDelete, "/api/v2/users/"+sa, ""); status != http.StatusNoContent {
		t.Fatalf("disabling: %d", status)
	}
	resp, err := env.do(t, logical.CreateOperation, "roles/sa", map[string]interface{}{
		"credential_type": "service_access_token", "service_account_id": sa, "scopes": "dashboards_read",
	})
	wantUserError(t, resp, err, "disabled service account")
}

func TestServiceAccessTokenExpiryRefusedIsRetriedAt24Hours(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	sa := env.createServiceAccount(t)
	env.writeRole(t, "sat", map[string]interface{}{
		"credential_type": "service_access_token", "service_account_id": sa, "scopes": "dashboards_read", "max_ttl": "1h",
	})
	fault := &faultyClient{
		createFails: map[string]error{kindServiceAccessToken: &apiError{Op: "service access token creation", Status: http.StatusBadRequest, Messages: []string{"expires_at is too soon"}}},
		failTimes:   1,
	}
	env.injectFaults(fault)

	resp := env.mustDo(t, logical.ReadOperation, "creds/sat", nil)
	if len(fault.creates) != 2 {
		t.Fatalf("want one refused create and one retry, got %d creates", len(fault.creates))
	}
	first, retry := fault.creates[0].ExpiresAt, fault.creates[1].ExpiresAt
	if time.Until(*first) > 2*time.Hour || time.Until(*retry) < 24*time.Hour {
		t.Errorf("expiries asked: first %s, retry %s; want about 1h then at least 24h ahead", first, retry)
	}
	expiresAt, _ := time.Parse(time.RFC3339, resp.Data["expires_at"].(string))
	if time.Until(expiresAt) < 24*time.Hour {
		t.Errorf("returned expires_at %s is not the retried expiry", expiresAt)
	}
	if resp.Secret.MaxTTL != time.Hour {
		t.Errorf("lease max TTL = %s, want the role's 1h (revocation ends the token early)", resp.Secret.MaxTTL)
	}
}
