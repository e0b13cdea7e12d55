package backend

import (
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
)

func TestAPIKeyKindIssuesAnAPIKeyAlone(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "agent", map[string]interface{}{"credential_type": "api_key"})

	resp := env.mustDo(t, logical.ReadOperation, "creds/agent", nil)
	if resp.Secret.InternalData["secret_type"] != "datadog_api_key" {
		t.Errorf("secret type = %v", resp.Secret.InternalData["secret_type"])
	}
	for _, absent := range []string{"application_key", "scopes", "access_token"} {
		if _, ok := resp.Data[absent]; ok {
			t.Errorf("api_key creds returned %s", absent)
		}
	}
	apiKey, _ := resp.Data["api_key"].(string)
	if env.statusWith(t, "/api/v1/validate", apiKey, "") != 200 {
		t.Error("issued API key does not validate")
	}
	issued := env.issuedKeys()
	if len(issued) != 1 || issued[0].Kind != emulator.KindAPIKey || issued[0].ID != resp.Data["api_key_id"] {
		t.Fatalf("issued = %v", issued)
	}
	if _, err := env.revoke(t, resp); err != nil {
		t.Fatal(err)
	}
	if env.statusWith(t, "/api/v1/validate", apiKey, "") != 403 {
		t.Error("revoked API key still validates")
	}
}

func TestUnscopedNeedsExplicitOptIn(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	resp, err := env.do(t, logical.CreateOperation, "roles/wide", map[string]interface{}{})
	wantUserError(t, resp, err, "scopes is required", "allow_unscoped")

	resp = env.mustDo(t, logical.CreateOperation, "roles/wide", map[string]interface{}{"allow_unscoped": true})
	if resp == nil || !strings.Contains(strings.Join(resp.Warnings, " "), "UNSCOPED") {
		t.Errorf("writing an unscoped role gave no warning: %v", resp)
	}
	read := env.mustDo(t, logical.ReadOperation, "roles/wide", nil)
	if read.Data["allow_unscoped"] != true || !strings.Contains(strings.Join(read.Warnings, " "), "UNSCOPED") {
		t.Errorf("reading an unscoped role does not show it: %v %v", read.Data, read.Warnings)
	}
	creds := env.mustDo(t, logical.ReadOperation, "creds/wide", nil)
	appKey := creds.Data["application_key"].(string)
	apiKey := creds.Data["api_key"].(string)
	if env.statusWith(t, "/api/v1/monitor", apiKey, appKey) != 200 || env.statusWith(t, "/api/v1/dashboard", apiKey, appKey) != 200 {
		t.Error("unscoped key lacks its owner's permissions")
	}
}

func TestAllowedScopesGuardrail(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.mustDo(t, logical.UpdateOperation, "config", map[string]interface{}{"allowed_scopes": "dashboards_read,monitors_read"})
	if got := env.mustDo(t, logical.ReadOperation, "config", nil).Data["allowed_scopes"]; len(got.([]string)) != 2 {
		t.Errorf("config allowed_scopes = %v", got)
	}
	env.writeRole(t, "ok", map[string]interface{}{"scopes": "monitors_read"})
	resp, err := env.do(t, logical.CreateOperation, "roles/bad", map[string]interface{}{"scopes": "monitors_read,dashboards_write"})
	wantUserError(t, resp, err, "dashboards_write", "allowed_scopes")
}

func TestNameTemplate(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "ci", map[string]interface{}{
		"scopes":        "dashboards_read",
		"name_template": `vault-ci-{{ .DisplayName }}-{{ random 4 }}`,
	})
	resp := env.mustDo(t, logical.ReadOperation, "creds/ci", nil)
	if name := resp.Data["name"].(string); !strings.HasPrefix(name, "vault-ci-token-ci-job-") || len(name) != len("vault-ci-token-ci-job-")+4+1+markerLength+recordIDLength {
		t.Errorf("name = %q", name)
	}

	for tmpl, fragment := range map[string]string{
		`vault-{{ .RoleName `:            "not a valid template",
		`{{ .RoleName }}-{{ random 8 }}`: `starting with "vault-"`,
		`vault-{{ .NoSuchField }}`:       "not a valid template",
	} {
		resp, err := env.do(t, logical.CreateOperation, "roles/bad", map[string]interface{}{"scopes": "dashboards_read", "name_template": tmpl})
		wantUserError(t, resp, err, "name_template", fragment)
	}
}

func TestKindSpecificRoleRules(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	cases := []struct {
		data      map[string]interface{}
		fragments []string
	}{
		{map[string]interface{}{"credential_type": "api_key", "scopes": "dashboards_read"}, []string{"scopes do not apply", "api_key"}},
		{map[string]interface{}{"credential_type": "personal_access_token", "allow_unscoped": true}, []string{"allow_unscoped applies only"}},
		{map[string]interface{}{"credential_type": "personal_access_token"}, []string{"scopes is required"}},
		{map[string]interface{}{"credential_type": "personal_access_token", "scopes": "dashboards_read", "max_ttl": (400 * 24 * time.Hour).String()}, []string{"max_ttl", "365 days"}},
		{map[string]interface{}{"credential_type": "service_access_token", "scopes": "dashboards_read"}, []string{"service_account_id is required"}},
		{map[string]interface{}{"credential_type": "service_account_application_key", "scopes": "dashboards_read"}, []string{"service_account_id is required"}},
		{map[string]interface{}{"credential_type": "application_key", "scopes": "dashboards_read", "service_account_id": "abc"}, []string{"service_account_id applies only"}},
		{map[string]interface{}{"credential_type": "service_access_token", "scopes": "dashboards_read", "service_account_id": "00000000-0000-0000-0000-000000000000"}, []string{"no such Datadog user"}},
		{map[string]interface{}{"credential_type": "service_access_token", "scopes": "dashboards_read", "service_account_id": env.emu.UserID()}, []string{"not a service account"}},
	}
	for _, tc := range cases {
		before := env.snapshot(t)
		resp, err := env.do(t, logical.CreateOperation, "roles/r", tc.data)
		wantUserError(t, resp, err, tc.fragments...)
		if !sameSnapshot(before, env.snapshot(t)) {
			t.Errorf("refused role %v changed storage", tc.data)
		}
	}
}

func TestTokenExpiry(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	pat, sat := credentialKinds[kindPersonalAccessToken], credentialKinds[kindServiceAccessToken]
	for _, tc := range []struct {
		kind     credentialKind
		maxLease time.Duration
		want     time.Duration
	}{
		{sat, time.Hour, time.Hour + expiryGrace},
		{pat, time.Hour, 24*time.Hour + expiryGrace},
		{pat, 48 * time.Hour, 48*time.Hour + expiryGrace},
		{sat, 2 * year, year},
	} {
		if got := tc.kind.tokenExpiry(now, tc.maxLease).Sub(now); got != tc.want {
			t.Errorf("%s expiry for a %s lease = %s, want %s", tc.kind.name, tc.maxLease, got, tc.want)
		}
	}
}
