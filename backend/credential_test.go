package backend

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// allowed_scopes is a guardrail for every role: an unscoped key carries
// every permission of its owner, so it is refused while the guardrail is
// set, and the guardrail holds at issue time for roles written before it.
func TestAllowedScopesHoldForUnscopedRolesAndAtIssue(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "monitors", map[string]interface{}{"scopes": "monitors_read"})
	env.writeRole(t, "wide", map[string]interface{}{"allow_unscoped": true})
	env.mustDo(t, logical.UpdateOperation, "config", map[string]interface{}{"allowed_scopes": "dashboards_read"})

	resp, err := env.do(t, logical.CreateOperation, "roles/wide2", map[string]interface{}{"allow_unscoped": true})
	wantUserError(t, resp, err, "allowed_scopes", "unscoped")

	calls := env.emu.Requests()
	resp, err = env.do(t, logical.ReadOperation, "creds/monitors", nil)
	wantUserError(t, resp, err, "monitors_read", "allowed_scopes")
	resp, err = env.do(t, logical.ReadOperation, "creds/wide", nil)
	wantUserError(t, resp, err, "unscoped", "allowed_scopes")
	if env.emu.Requests() != calls {
		t.Error("refused creds reads called Datadog")
	}
}

// A lease is renewed only while its role still issues what it holds.
func TestRenewRefusedWhenTheRoleNoLongerMatches(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change map[string]interface{}
		want   string
	}{
		{"scopes narrowed", map[string]interface{}{"scopes": "dashboards_read"}, "scopes"},
		{"scopes widened", map[string]interface{}{"scopes": "dashboards_read,monitors_read,metrics_read"}, "scopes"},
		{"kind changed", map[string]interface{}{"credential_type": "personal_access_token", "scopes": "dashboards_read,monitors_read"}, "credential_type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newTestEnv(t)
			env.configure(t)
			env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read,monitors_read", "ttl": "10m", "max_ttl": "1h"})
			creds := env.mustDo(t, logical.ReadOperation, "creds/r", nil)
			if renewed, err := env.renew(t, creds); err != nil || renewed.IsError() {
				t.Fatalf("renew before the change: %v %v", err, renewed)
			}
			env.mustDo(t, logical.UpdateOperation, "roles/r", tc.change)
			renewed, err := env.renew(t, creds)
			wantUserError(t, renewed, err, tc.want, `role "r"`)
		})
	}
}

func TestRenewRefusedWhenAllowedScopesNarrowed(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "monitors_read"})
	creds := env.mustDo(t, logical.ReadOperation, "creds/r", nil)
	env.mustDo(t, logical.UpdateOperation, "config", map[string]interface{}{"allowed_scopes": "dashboards_read"})
	renewed, err := env.renew(t, creds)
	wantUserError(t, renewed, err, "monitors_read", "allowed_scopes")
}

// Help describes every credential kind, not application keys only.
func TestHelpDescribesEveryCredentialKind(t *testing.T) {
	env := newTestEnv(t)
	resp, err := env.b.HandleRequest(t.Context(), &logical.Request{Operation: logical.HelpOperation, Path: "creds/x", Storage: env.storage})
	if err != nil {
		t.Fatal(err)
	}
	for name, help := range map[string]string{"creds": resp.Data["help"].(string), "backend": env.b.Help} {
		for _, want := range append(credentialTypeNames(), "access_token", "expires_at") {
			if !strings.Contains(help, want) {
				t.Errorf("%s help does not mention %s", name, want)
			}
		}
	}
}

// Raising a role's max_ttl does not stretch leases issued before: the
// engine's record says when each lease ends at the latest, and tidy
// relies on it.
func TestRenewNeverPassesTheLeaseEndRecordedAtIssue(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read", "ttl": "10m", "max_ttl": "1h"})
	creds := env.mustDo(t, logical.ReadOperation, "creds/r", nil)
	env.mustDo(t, logical.UpdateOperation, "roles/r", map[string]interface{}{"max_ttl": "3h"})
	renewed, err := env.renew(t, creds)
	if err != nil || renewed.IsError() {
		t.Fatalf("renew: %v %v", err, renewed)
	}
	if renewed.Secret.MaxTTL > time.Hour+leaseRegistrationGrace {
		t.Errorf("renewed lease max TTL %s, want at most the 1h recorded at issue", renewed.Secret.MaxTTL)
	}
}

// The engine's own application key revoked in Datadog: revocations fail
// with an error that says so, Vault keeps the leases, and they succeed once
// config holds a working key.
func TestRevocationWithTheRootKeyRevokedInDatadog(t *testing.T) {
	env := newTestEnv(t)
	status, key := env.rootCall(t, http.MethodPost, "/api/v2/current_user/application_keys",
		`{"data":{"type":"application_keys","attributes":{"name":"engine key"}}}`)
	if status != http.StatusCreated {
		t.Fatalf("creating the engine's key: %d", status)
	}
	env.mustDo(t, logical.CreateOperation, "config", map[string]interface{}{"api_key": env.emu.APIKey(), "app_key": secretOf(key), "api_url": env.url})
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read"})
	creds := env.mustDo(t, logical.ReadOperation, "creds/r", nil)

	env.emu.DeleteKey(key["data"].(map[string]interface{})["id"].(string))
	_, err := env.revoke(t, creds)
	if err == nil || !strings.Contains(err.Error(), "refused the engine's own keys") || !strings.Contains(err.Error(), "lease is kept") {
		t.Fatalf("revocation with a revoked root key: %v; want an error saying the engine's keys were refused", err)
	}
	if n := len(env.issuedKeys()); n != 2 {
		t.Fatalf("%d keys left, want the lease's 2 still there", n)
	}

	env.mustDo(t, logical.UpdateOperation, "config", map[string]interface{}{"app_key": env.emu.AppKey()})
	if _, err := env.revoke(t, creds); err != nil {
		t.Fatalf("revocation once config is fixed: %v", err)
	}
	if left := env.issuedKeys(); len(left) != 0 {
		t.Errorf("keys left: %v", left)
	}
}
