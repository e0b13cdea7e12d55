package backend

import (
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
)

// appKeyOf returns the emulator's record of the application key a creds
// answer names.
func (env *testEnv) appKeyOf(t *testing.T, resp *logical.Response) emulator.Key {
	t.Helper()
	id, _ := resp.Data["application_key_id"].(string)
	for _, k := range env.emu.Keys() {
		if k.ID == id {
			return k
		}
	}
	t.Fatalf("application key %q is not in Datadog", id)
	return emulator.Key{}
}

func TestCredsNarrowingRefusesMoreThanTheRole(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read,monitors_read", "ttl": "30m", "max_ttl": "2h"})
	env.writeRole(t, "default-ttl", map[string]interface{}{"scopes": "dashboards_read"})
	env.writeRole(t, "agent", map[string]interface{}{"credential_type": "api_key", "ttl": "30m"})
	env.writeRole(t, "wide", map[string]interface{}{"allow_unscoped": true})
	before, calls := env.snapshot(t), env.emu.Requests()

	for _, tc := range []struct {
		role string
		data map[string]interface{}
		want []string
	}{
		{"r", map[string]interface{}{"scopes": "dashboards_read,logs_read_data,users_read"}, []string{"logs_read_data, users_read", `role "r"`, "dashboards_read, monitors_read"}},
		{"r", map[string]interface{}{"scopes": ","}, []string{"scopes is empty"}},
		{"r", map[string]interface{}{"ttl": "31m"}, []string{"ttl 31m0s", `role "r"`, "30m0s"}},
		{"r", map[string]interface{}{"ttl": -5}, []string{`field "ttl"`, "negative"}},
		// A role without ttl grants the mount's default lease TTL (1 h here).
		{"default-ttl", map[string]interface{}{"ttl": "2h"}, []string{"ttl 2h0m0s", "1h0m0s"}},
		{"agent", map[string]interface{}{"scopes": "dashboards_read"}, []string{"scopes do not apply", "API key"}},
		{"wide", map[string]interface{}{"scopes": "dashboards_raed"}, []string{`"dashboards_raed"`, "dashboards_read"}},
	} {
		for _, op := range []logical.Operation{logical.UpdateOperation, logical.ReadOperation} {
			resp, err := env.do(t, op, "creds/"+tc.role, tc.data)
			wantUserError(t, resp, err, tc.want...)
		}
	}
	if len(env.issuedKeys()) != 0 {
		t.Errorf("refused requests created keys: %v", env.issuedKeys())
	}
	if !sameSnapshot(before, env.snapshot(t)) {
		t.Error("refused requests changed storage")
	}
	// Only the unknown scope of the unscoped role needs Datadog's
	// permission list (cached once fetched).
	if n := env.emu.Requests() - calls; n > 1 {
		t.Errorf("refused requests made %d Datadog calls, want at most the permission listing", n)
	}
}

func TestCredsNarrowedScopesAndTTL(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read,monitors_read", "ttl": "30m", "max_ttl": "2h"})

	resp := env.mustDo(t, logical.UpdateOperation, "creds/r", map[string]interface{}{"scopes": "monitors_read", "ttl": "5m"})
	if resp.Secret.TTL != 5*time.Minute || resp.Secret.MaxTTL != 2*time.Hour {
		t.Errorf("lease ttl=%s max=%s, want 5m and the role's 2h", resp.Secret.TTL, resp.Secret.MaxTTL)
	}
	if got := resp.Data["scopes"]; !slices.Equal(got.([]string), []string{"monitors_read"}) {
		t.Errorf("answer scopes = %v", got)
	}
	if k := env.appKeyOf(t, resp); !slices.Equal(k.Scopes, []string{"monitors_read"}) {
		t.Errorf("application key scopes in Datadog = %v, want [monitors_read]", k.Scopes)
	}
	apiKey, appKey := resp.Data["api_key"].(string), resp.Data["application_key"].(string)
	if got := env.statusWith(t, "/api/v1/monitor", apiKey, appKey); got != 200 {
		t.Errorf("GET /api/v1/monitor with the narrowed key: %d", got)
	}
	if got := env.statusWith(t, "/api/v1/dashboard", apiKey, appKey); got != 403 {
		t.Errorf("GET /api/v1/dashboard outside the narrowed scopes: %d, want 403", got)
	}

	// Renewals keep the narrowed ttl, while the role covers the scopes,
	// even when it no longer grants others.
	renewed, err := env.renew(t, resp)
	if err != nil || renewed.IsError() || renewed.Secret.TTL != 5*time.Minute {
		t.Fatalf("renewal: %v %v", err, renewed)
	}
	env.mustDo(t, logical.UpdateOperation, "roles/r", map[string]interface{}{"scopes": "monitors_read,events_read"})
	if renewed, err := env.renew(t, resp); err != nil || renewed.IsError() {
		t.Fatalf("renewal while the role still grants monitors_read: %v %v", err, renewed)
	}
	// A role whose ttl shrank below the narrowed one shortens renewals.
	env.mustDo(t, logical.UpdateOperation, "roles/r", map[string]interface{}{"ttl": "2m"})
	if renewed, err := env.renew(t, resp); err != nil || renewed.IsError() || renewed.Secret.TTL != 2*time.Minute {
		t.Fatalf("renewal after the role's ttl shrank to 2m: %v %v", err, renewed)
	}
	env.mustDo(t, logical.UpdateOperation, "roles/r", map[string]interface{}{"scopes": "dashboards_read"})
	renewed, err = env.renew(t, resp)
	wantUserError(t, renewed, err, "no longer grants scopes [monitors_read]", "narrowed to [monitors_read]")

	// A lease of the role's full scopes still needs them all.
	full := env.mustDo(t, logical.ReadOperation, "creds/r", nil)
	if full.Secret.TTL != 2*time.Minute || !slices.Equal(env.appKeyOf(t, full).Scopes, []string{"dashboards_read"}) {
		t.Errorf("plain read: ttl %s, scopes %v", full.Secret.TTL, env.appKeyOf(t, full).Scopes)
	}
	env.mustDo(t, logical.UpdateOperation, "roles/r", map[string]interface{}{"scopes": "dashboards_read,monitors_read"})
	renewed, err = env.renew(t, full)
	wantUserError(t, renewed, err, "now grants scopes")

	for _, r := range []*logical.Response{resp, full} {
		if _, err := env.revoke(t, r); err != nil {
			t.Fatal(err)
		}
	}
	if left := env.issuedKeys(); len(left) != 0 {
		t.Errorf("keys left after revoking: %v", left)
	}
}

func TestCredsNarrowAnUnscopedRole(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "wide", map[string]interface{}{"allow_unscoped": true})

	// A read with query parameters narrows as a write does.
	resp := env.mustDo(t, logical.ReadOperation, "creds/wide", map[string]interface{}{"scopes": "dashboards_read"})
	if k := env.appKeyOf(t, resp); !slices.Equal(k.Scopes, []string{"dashboards_read"}) {
		t.Errorf("application key scopes in Datadog = %v, want [dashboards_read]", k.Scopes)
	}
	if renewed, err := env.renew(t, resp); err != nil || renewed.IsError() {
		t.Fatalf("renewal while the role is unscoped: %v %v", err, renewed)
	}
	env.mustDo(t, logical.UpdateOperation, "roles/wide", map[string]interface{}{"scopes": "monitors_read"})
	renewed, err := env.renew(t, resp)
	wantUserError(t, renewed, err, "no longer grants scopes [dashboards_read]")
}

// TestCredsNarrowedWithinAllowedScopes: config's allowed_scopes judges what
// the credential gets, not what its role could have given.
func TestCredsNarrowedWithinAllowedScopes(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read,monitors_read"})
	env.mustDo(t, logical.UpdateOperation, "config", map[string]interface{}{"allowed_scopes": "dashboards_read"})

	resp, err := env.do(t, logical.ReadOperation, "creds/r", nil)
	wantUserError(t, resp, err, "monitors_read are outside")
	resp = env.mustDo(t, logical.UpdateOperation, "creds/r", map[string]interface{}{"scopes": "dashboards_read"})
	if k := env.appKeyOf(t, resp); !slices.Equal(k.Scopes, []string{"dashboards_read"}) {
		t.Errorf("application key scopes in Datadog = %v", k.Scopes)
	}
}
