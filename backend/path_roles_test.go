package backend

import (
	"context"
	"reflect"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

func TestRoleLifecycle(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)

	env.writeRole(t, "ci", map[string]interface{}{
		"scopes": " dashboards_read, monitors_read,dashboards_read ,",
		"ttl":    "30m",
	})
	resp := env.mustDo(t, logical.ReadOperation, "roles/ci", nil)
	want := map[string]interface{}{
		"credential_type":  "application_key",
		"scopes":           []string{"dashboards_read", "monitors_read"},
		"api_key_mode":     "shared",
		"api_key_rotation": int64(86400),
		"allow_unscoped":   false,
		"name_template":    defaultNameTemplate,
		"ttl":              int64(1800),
		"max_ttl":          int64(0),
		"idle_ttl":         int64(0),
	}
	if !reflect.DeepEqual(resp.Data, want) {
		t.Errorf("role = %#v, want %#v", resp.Data, want)
	}

	// A partial update changes only the fields given.
	env.mustDo(t, logical.UpdateOperation, "roles/ci", map[string]interface{}{"api_key_mode": "none", "max_ttl": "2h"})
	resp = env.mustDo(t, logical.ReadOperation, "roles/ci", nil)
	want["api_key_mode"], want["max_ttl"] = "none", int64(7200)
	delete(want, "api_key_rotation") // shared keys only
	if !reflect.DeepEqual(resp.Data, want) {
		t.Errorf("role after partial update = %#v, want %#v", resp.Data, want)
	}

	env.writeRole(t, "agent", map[string]interface{}{"scopes": "monitors_read"})
	resp = env.mustDo(t, logical.ListOperation, "roles/", nil)
	if got := resp.Data["keys"]; !reflect.DeepEqual(got, []string{"agent", "ci"}) {
		t.Errorf("role list = %v", got)
	}

	env.mustDo(t, logical.DeleteOperation, "roles/ci", nil)
	if resp := env.mustDo(t, logical.ReadOperation, "roles/ci", nil); resp != nil {
		t.Errorf("deleted role still reads as %v", resp.Data)
	}
}

func TestRoleExistenceCheck(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	req := &logical.Request{Operation: logical.CreateOperation, Path: "roles/ci", Storage: env.storage}
	check := func() bool {
		_, exists, err := env.b.HandleExistenceCheck(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		return exists
	}
	if check() {
		t.Error("missing role reported as existing")
	}
	env.writeRole(t, "ci", map[string]interface{}{"scopes": "dashboards_read"})
	if !check() {
		t.Error("written role reported as missing")
	}
}

func TestRoleBadInput(t *testing.T) {
	cases := []struct {
		name      string
		data      map[string]interface{}
		fragments []string
	}{
		{"no scopes", map[string]interface{}{}, []string{"scopes is required"}},
		{"empty scopes", map[string]interface{}{"scopes": " , ,"}, []string{"scopes is required"}},
		{"unknown scope", map[string]interface{}{"scopes": "dashboards_read,dashbaords_write"}, []string{"dashbaords_write", "did you mean dashboards_write"}},
		{"ttl above max_ttl", map[string]interface{}{"scopes": "dashboards_read", "ttl": "2h", "max_ttl": "1h"}, []string{"ttl", "max_ttl"}},
		{"negative ttl", map[string]interface{}{"scopes": "dashboards_read", "ttl": -5}, []string{"ttl"}},
		{"unknown credential_type", map[string]interface{}{"scopes": "dashboards_read", "credential_type": "password"}, []string{"credential_type", "application_key"}},
		{"unknown api_key_mode", map[string]interface{}{"scopes": "dashboards_read", "api_key_mode": "always"}, []string{"api_key_mode", "dynamic, none, static"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := newTestEnv(t)
			env.configure(t)
			env.writeRole(t, "existing", map[string]interface{}{"scopes": "dashboards_read"})
			before := env.snapshot(t)

			resp, err := env.do(t, logical.CreateOperation, "roles/new", tc.data)
			wantUserError(t, resp, err, tc.fragments...)
			resp, err = env.do(t, logical.UpdateOperation, "roles/existing", tc.data)
			if len(tc.data) > 0 { // an update with no fields is a valid no-op
				wantUserError(t, resp, err, tc.fragments...)
			}
			if !sameSnapshot(before, env.snapshot(t)) {
				t.Error("a refused role write changed storage")
			}
		})
	}
}

func TestRoleScopesUseLivePermissionListWithFallback(t *testing.T) {
	env := newTestEnv(t)
	// Before config exists, the built-in list from Datadog's specification is used.
	env.writeRole(t, "early", map[string]interface{}{"scopes": "dashboards_read"})
	if env.emu.Requests() != 0 {
		t.Error("role write without config called Datadog")
	}
	env.configure(t)
	before := env.emu.Requests()
	env.writeRole(t, "a", map[string]interface{}{"scopes": "monitors_read"})
	env.writeRole(t, "b", map[string]interface{}{"scopes": "monitors_read"})
	if got := env.emu.Requests() - before; got != 1 {
		t.Errorf("two role writes made %d Datadog calls, want 1 (the cached permission list)", got)
	}
}

func TestRoleWarnsAboveMountMaxAndForStaticAPIKey(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	resp := env.mustDo(t, logical.CreateOperation, "roles/long", map[string]interface{}{
		"scopes": "dashboards_read", "max_ttl": "48h", "api_key_mode": "static",
	})
	if resp == nil || len(resp.Warnings) != 2 {
		t.Fatalf("want 2 warnings (max_ttl above mount max, static API key), got %v", resp)
	}
}

func TestRoleScopesFallBackWhenPermissionsMayNotBeListed(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	// Reconfigure with a key that may manage keys but not list permissions
	// (user_access_read), as a least-privilege operator would.
	env.mustDo(t, logical.CreateOperation, "roles/engine", map[string]interface{}{
		"scopes": "user_app_keys,api_keys_read,api_keys_write,api_keys_delete", "api_key_mode": "none",
	})
	creds := env.mustDo(t, logical.ReadOperation, "creds/engine", nil)
	appKey := creds.Data["application_key"].(string)
	if got := env.statusWith(t, "/api/v2/permissions", env.emu.APIKey(), appKey); got != 403 {
		t.Fatalf("the least-privilege key may list permissions (HTTP %d): the fallback is not exercised", got)
	}
	env.mustDo(t, logical.UpdateOperation, "config", map[string]interface{}{"app_key": appKey})

	env.writeRole(t, "dash", map[string]interface{}{"scopes": "dashboards_read"})
	r, err := env.do(t, logical.CreateOperation, "roles/typo", map[string]interface{}{"scopes": "dashbords_read"})
	wantUserError(t, r, err, "dashbords_read", "did you mean dashboards_read")
	// The least-privilege identity still issues keys.
	env.mustDo(t, logical.ReadOperation, "creds/dash", nil)
}

// Creds reads take the role from memory; a role written here, or by
// another node (Vault then invalidates the key), is used from the next read.
func TestCredsUseTheRoleAsLastWritten(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read", "api_key_mode": "none"})
	scopesOf := func() interface{} { return env.mustDo(t, logical.ReadOperation, "creds/r", nil).Data["scopes"] }
	if got := scopesOf(); !reflect.DeepEqual(got, []string{"dashboards_read"}) {
		t.Fatalf("scopes %v", got)
	}
	env.writeRole(t, "r", map[string]interface{}{"scopes": "monitors_read"})
	if got := scopesOf(); !reflect.DeepEqual(got, []string{"monitors_read"}) {
		t.Errorf("after a role write here: scopes %v", got)
	}

	role, _ := getRole(context.Background(), env.storage, "r")
	role.Scopes = []string{"dashboards_write"}
	entry, _ := logical.StorageEntryJSON(rolePrefix+"r", role)
	env.storage.Put(context.Background(), entry) // as replication from another node would
	env.b.InvalidateKey(context.Background(), rolePrefix+"r")
	if got := scopesOf(); !reflect.DeepEqual(got, []string{"dashboards_write"}) {
		t.Errorf("after another node's role write: scopes %v", got)
	}
}
