package backend

import (
	"strings"
	"testing"

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
