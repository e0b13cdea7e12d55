package backend

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
)

func (env *testEnv) storedConfig(t *testing.T) *datadogConfig {
	t.Helper()
	cfg, err := getConfig(context.Background(), env.storage)
	if err != nil || cfg == nil {
		t.Fatalf("config: %v %v", cfg, err)
	}
	return cfg
}

// rootWorks reports whether the stored root credential acts as the
// configured identity in Datadog.
func (env *testEnv) rootWorks(t *testing.T, cfg *datadogConfig) bool {
	t.Helper()
	if cfg.AccessToken != "" {
		return env.bearerStatus(t, "/api/v2/current_user", cfg.AccessToken) == http.StatusOK
	}
	return env.statusWith(t, "/api/v2/current_user", cfg.APIKey, cfg.AppKey) == http.StatusOK
}

// rootKeys lists the live keys of the kind of cfg's root owned by its owner.
func (env *testEnv) rootKeys(cfg *datadogConfig) []emulator.Key {
	var out []emulator.Key
	for _, k := range env.emu.Keys() {
		if k.Kind == cfg.rootKind() && k.OwnerID == cfg.OwnerID {
			out = append(out, k)
		}
	}
	return out
}

func (env *testEnv) walEntries(t *testing.T) []string {
	t.Helper()
	ids, err := framework.ListWAL(context.Background(), env.storage)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func TestRotateRootReplacesTheKeyAndLeasesStillRevoke(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read", "api_key_mode": "none"})
	before := env.mustDo(t, logical.ReadOperation, "creds/r", nil)
	oldKey := env.emu.AppKey()
	first := env.storedConfig(t)
	if first.RootKeyID == "" {
		t.Fatal("config did not identify its root application key")
	}

	resp := env.mustDo(t, logical.UpdateOperation, "config/rotate-root", nil)
	cfg := env.storedConfig(t)
	if cfg.AppKey == oldKey || !env.rootWorks(t, cfg) {
		t.Fatal("the stored application key is not a new, working one")
	}
	if env.statusWith(t, "/api/v2/current_user", cfg.APIKey, oldKey) != http.StatusForbidden {
		t.Error("the previous root application key still works")
	}
	if resp.Data["key_id"] != cfg.RootKeyID || resp.Data["key_last4"] != cfg.AppKey[36:] || cfg.RootKeyID == first.RootKeyID {
		t.Errorf("answer %v does not name the new key %s", resp.Data, cfg.RootKeyID)
	}
	for field, v := range resp.Data {
		if s, ok := v.(string); ok && strings.Contains(s, cfg.AppKey) {
			t.Errorf("the answer's %s holds the secret", field)
		}
	}
	if keys := env.rootKeys(cfg); len(keys) != 2 { // the root and the lease's key
		t.Errorf("application keys of the identity after the rotation: %v", keys)
	}
	for _, k := range env.rootKeys(cfg) {
		if k.ID == cfg.RootKeyID && !slices.Equal(k.Scopes, defaultRootScopes) {
			t.Errorf("the new root key's scopes are %v, want %v", k.Scopes, defaultRootScopes)
		}
	}
	if ids := env.walEntries(t); len(ids) != 0 {
		t.Errorf("WAL entries left by a rotation: %v", ids)
	}

	// The lease issued before the rotation revokes with the new key, and
	// the scoped root key goes on issuing.
	if _, err := env.revoke(t, before); err != nil {
		t.Fatalf("revoking a lease issued before the rotation: %v", err)
	}
	if id := before.Data["application_key_id"].(string); env.keyExists(id) {
		t.Error("the lease's key survived its revocation")
	}
	after := env.mustDo(t, logical.ReadOperation, "creds/r", nil)
	if _, err := env.revoke(t, after); err != nil {
		t.Fatal(err)
	}
	read := env.mustDo(t, logical.ReadOperation, "config", nil)
	if read.Data["root_key_id"] != cfg.RootKeyID || read.Data["last_rotation"] == "" || read.Data["app_key_last4"] != cfg.AppKey[36:] {
		t.Errorf("config read after the rotation: %v", read.Data)
	}
}

func TestRotateRootTwiceInARow(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.mustDo(t, logical.UpdateOperation, "config/rotate-root", nil)
	env.mustDo(t, logical.UpdateOperation, "config/rotate-root", nil)
	cfg := env.storedConfig(t)
	if keys := env.rootKeys(cfg); len(keys) != 1 || keys[0].ID != cfg.RootKeyID || !env.rootWorks(t, cfg) {
		t.Errorf("after two rotations: keys %v, root %s", keys, cfg.RootKeyID)
	}
}

// rotationCrash makes the plugin die at one step of a rotation.
type rotationCrash struct {
	datadogAPI
	afterCreate bool // the new root key exists in Datadog, config does not hold it yet
	onDelete    bool // config holds the new key, the old one is not deleted yet
}

func (c *rotationCrash) Create(ctx context.Context, o datadogObject, scopes []string) (createdObject, error) {
	created, err := c.datadogAPI.Create(ctx, o, scopes)
	if c.afterCreate && strings.HasPrefix(o.Name, "vault-root-") {
		panic("the plugin process dies")
	}
	return created, err
}

func (c *rotationCrash) Delete(ctx context.Context, o datadogObject) error {
	if c.onDelete {
		panic("the plugin process dies")
	}
	return c.datadogAPI.Delete(ctx, o)
}

// expireRotationWAL makes the rotation WAL entries' rotation surely over.
func (env *testEnv) expireRotationWAL(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	for _, id := range env.walEntries(t) {
		entry, err := framework.GetWAL(ctx, env.storage, id)
		if err != nil {
			t.Fatal(err)
		}
		var step rootStep
		if err := mapToStruct(entry.Data, &step); err != nil {
			t.Fatal(err)
		}
		step.Ends = time.Now().Add(-time.Second)
		if err := framework.DeleteWAL(ctx, env.storage, id); err != nil {
			t.Fatal(err)
		}
		if _, err := framework.PutWAL(ctx, env.storage, entry.Kind, &step); err != nil {
			t.Fatal(err)
		}
	}
}

// crashOnConfigPut makes the plugin die when config is about to be stored.
type crashOnConfigPut struct{ logical.Storage }

func (s crashOnConfigPut) Put(ctx context.Context, e *logical.StorageEntry) error {
	if e.Key == configPath {
		panic("the plugin process dies")
	}
	return s.Storage.Put(ctx, e)
}

func TestRotateRootCrashAtEachStepLeavesOneWorkingRoot(t *testing.T) {
	for _, step := range []string{"after the create", "before config is stored", "before the old key is deleted"} {
		t.Run(step, func(t *testing.T) {
			env := newTestEnv(t)
			env.configure(t)
			env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read", "api_key_mode": "none"})
			lease := env.mustDo(t, logical.ReadOperation, "creds/r", nil)
			old := env.storedConfig(t)
			crash := &rotationCrash{afterCreate: step == "after the create", onDelete: step == "before the old key is deleted"}
			storage := env.storage
			if step == "before config is stored" {
				env.storage = crashOnConfigPut{storage}
			}
			env.b.newClient = func(cfg *datadogConfig, logger hclog.Logger) (datadogAPI, error) {
				real, err := newDatadogClient(cfg, logger)
				crash.datadogAPI = real
				return crash, err
			}
			func() {
				defer func() { recover() }()
				env.do(t, logical.UpdateOperation, "config/rotate-root", nil)
				t.Fatal("the rotation did not crash")
			}()
			env.storage = storage
			owner := env.storedConfig(t).OwnerID
			if n := len(env.rootKeys(&datadogConfig{OwnerID: owner})); n != 3 {
				t.Fatalf("%d application keys after the crash, want the old root, the new one and the lease's", n)
			}

			env.restart(t)
			env.rollbackOnSchedule(t) // the rotation's time is not up: nothing happens
			if n := len(env.rootKeys(&datadogConfig{OwnerID: owner})); n != 3 {
				t.Fatalf("the rollback ran before the rotation's time was up (%d keys)", n)
			}
			env.expireRotationWAL(t)
			env.rollbackOnSchedule(t)

			cfg := env.storedConfig(t)
			if !env.rootWorks(t, cfg) {
				t.Fatal("the stored root key does not work after the rollback")
			}
			keys := env.rootKeys(cfg)
			if len(keys) != 2 || !slices.ContainsFunc(keys, func(k emulator.Key) bool { return k.ID == cfg.RootKeyID }) {
				t.Errorf("keys after the rollback: %v, want the stored root %s and the lease's", keys, cfg.RootKeyID)
			}
			if ids := env.walEntries(t); len(ids) != 0 {
				t.Errorf("WAL entries left: %v", ids)
			}
			if rotated := step == "before the old key is deleted"; rotated == (cfg.RootKeyID == old.RootKeyID) {
				t.Errorf("root %s after the rollback (was %s): the rotation should have %s", cfg.RootKeyID, old.RootKeyID,
					map[bool]string{true: "stood", false: "been undone"}[rotated])
			}
			if _, err := env.revoke(t, lease); err != nil {
				t.Errorf("revoking the lease issued before: %v", err)
			}
		})
	}
}

func TestRotateRootFailuresKeepTheOldKey(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	old := env.storedConfig(t)

	// A create Datadog refuses: nothing was made, nothing to roll back.
	stop := env.failCalls(t, "CreateCurrentUserApplicationKey", http.StatusBadRequest)
	if _, err := env.do(t, logical.UpdateOperation, "config/rotate-root", nil); err == nil || !strings.Contains(err.Error(), "previous one stays in use") {
		t.Errorf("refused create: %v", err)
	}
	stop()
	// A create applied whose answer is lost: the engine finds it by name.
	if _, err := env.emu.AddFault(emulator.Fault{Operation: "CreateCurrentUserApplicationKey", Action: emulator.FaultCommitThenError, Status: http.StatusBadGateway, Times: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.do(t, logical.UpdateOperation, "config/rotate-root", nil); err == nil {
		t.Error("a rotation whose create failed succeeded")
	}
	cfg := env.storedConfig(t)
	if cfg.AppKey != old.AppKey || cfg.RootKeyID != old.RootKeyID || !env.rootWorks(t, cfg) {
		t.Error("a failed rotation changed the root key")
	}
	if keys := env.rootKeys(cfg); len(keys) != 1 {
		t.Errorf("keys after failed rotations: %v, want the old root only", keys)
	}
	if ids := env.walEntries(t); len(ids) != 0 {
		t.Errorf("WAL entries left: %v", ids)
	}

	// The old key's deletion is refused: the rotation stands, with a
	// warning, and the rollback deletes the old key later.
	if _, err := env.emu.AddFault(emulator.Fault{Operation: "DeleteCurrentUserApplicationKey", Action: emulator.FaultError, Status: http.StatusForbidden, Times: 1}); err != nil {
		t.Fatal(err)
	}
	resp := env.mustDo(t, logical.UpdateOperation, "config/rotate-root", nil)
	if len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], old.RootKeyID) {
		t.Errorf("warnings %v do not name the old key", resp.Warnings)
	}
	if !env.keyExists(old.RootKeyID) {
		t.Fatal("the old key is gone despite the refusal")
	}
	if err := env.rollbackNow(t); err != nil {
		t.Fatal(err)
	}
	if env.keyExists(old.RootKeyID) {
		t.Error("the rollback left the old root key")
	}
	if ids := env.walEntries(t); len(ids) != 0 {
		t.Errorf("WAL entries left: %v", ids)
	}
}

func TestScheduledRotation(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.mustDo(t, logical.UpdateOperation, "config", map[string]interface{}{"rotation_period": "1h"})
	read := env.mustDo(t, logical.ReadOperation, "config", nil)
	last, _ := time.Parse(time.RFC3339, read.Data["last_rotation"].(string))
	next, _ := time.Parse(time.RFC3339, read.Data["next_rotation"].(string))
	if read.Data["rotation_period"] != int64(3600) || next.Sub(last) != time.Hour {
		t.Fatalf("config read: %v", read.Data)
	}
	first := env.storedConfig(t)
	env.rollbackOnSchedule(t)
	if env.storedConfig(t).RootKeyID != first.RootKeyID {
		t.Fatal("rotated before rotation_period passed")
	}

	cfg := env.storedConfig(t)
	cfg.LastRotation = time.Now().Add(-61 * time.Minute)
	entry, _ := logical.StorageEntryJSON(configPath, cfg)
	env.storage.Put(context.Background(), entry)
	env.b.reset()
	env.rollbackOnSchedule(t)
	rotated := env.storedConfig(t)
	if rotated.RootKeyID == first.RootKeyID || !env.rootWorks(t, rotated) || env.keyExists(first.RootKeyID) {
		t.Errorf("the due rotation did not happen: root %s (was %s)", rotated.RootKeyID, first.RootKeyID)
	}
	if time.Since(rotated.LastRotation) > time.Minute {
		t.Errorf("last_rotation %s not updated", rotated.LastRotation)
	}
}

// serviceAccessToken creates a token of a service account, as an
// administrator would to hand it to the engine.
func (env *testEnv) serviceAccessToken(t *testing.T, sa string, scopes []string, expires time.Time) string {
	t.Helper()
	body := fmt.Sprintf(`{"data":{"type":"service_access_tokens","attributes":{"name":"engine root","scopes":["%s"],"expires_at":%q}}}`,
		strings.Join(scopes, `","`), expires.UTC().Format(time.RFC3339))
	status, created := env.rootCall(t, http.MethodPost, "/api/v2/service_accounts/"+sa+"/access_tokens", body)
	if status != http.StatusCreated {
		t.Fatalf("creating an access token of %s: %d %v", sa, status, created)
	}
	return secretOf(created)
}

func TestAccessTokenRootIssuesRevokesAndRotates(t *testing.T) {
	env := newTestEnv(t)
	sa := env.createServiceAccount(t)
	token := env.serviceAccessToken(t, sa, defaultRootScopes, time.Now().Add(30*24*time.Hour))
	env.mustDo(t, logical.CreateOperation, "config", map[string]interface{}{
		"access_token": token, "service_account_id": sa, "api_url": env.url,
	})
	read := env.mustDo(t, logical.ReadOperation, "config", nil)
	// No rotation is scheduled: one would not move the token's end.
	if read.Data["root_credential_type"] != kindServiceAccessToken || read.Data["owner_id"] != sa ||
		read.Data["root_key_id"] == "" || read.Data["root_expires_at"] == "" || read.Data["next_rotation"] != "" {
		t.Fatalf("config read: %v", read.Data)
	}
	// A token may not make application keys, API keys it may.
	env.writeRole(t, "r", map[string]interface{}{"credential_type": "api_key", "api_key_mode": "dynamic"})
	lease := env.mustDo(t, logical.ReadOperation, "creds/r", nil)

	resp := env.mustDo(t, logical.UpdateOperation, "config/rotate-root", nil)
	cfg := env.storedConfig(t)
	if cfg.AccessToken == token || !env.rootWorks(t, cfg) || resp.Data["expires_at"] == nil {
		t.Fatalf("rotation answer %v; new token works: %v", resp.Data, env.rootWorks(t, cfg))
	}
	if env.bearerStatus(t, "/api/v2/current_user", token) != http.StatusUnauthorized {
		t.Error("the previous root token still works")
	}
	if _, err := env.revoke(t, lease); err != nil {
		t.Fatalf("revoking a lease issued before the rotation: %v", err)
	}
	if id := lease.Data["api_key_id"].(string); env.keyExists(id) {
		t.Errorf("key %s survived its lease", id)
	}
}

func TestRootConfigBadInputChangesNothing(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	sa := env.createServiceAccount(t)
	before := env.snapshot(t)
	calls := env.emu.Requests()
	for _, tc := range []struct {
		data map[string]interface{}
		want []string
	}{
		{map[string]interface{}{"root_scopes": "dashboards_read,no_such_scope"}, []string{"root_scopes", "no_such_scope"}},
		{map[string]interface{}{"root_scopes": "api_keys_write"}, []string{"root_scopes", "user_app_keys"}},
		{map[string]interface{}{"rotation_period": "30s"}, []string{"rotation_period", "1m"}},
		{map[string]interface{}{"app_key": env.emu.AppKey(), "access_token": "ddsat_x"}, []string{"app_key", "access_token", "not both"}},
		{map[string]interface{}{"access_token": "ddsat_x"}, []string{"service_account_id", "required"}},
		{map[string]interface{}{"service_account_id": sa}, []string{"service_account_id", "access_token"}},
	} {
		resp, err := env.do(t, logical.UpdateOperation, "config", tc.data)
		wantUserError(t, resp, err, tc.want...)
	}
	if !sameSnapshot(before, env.snapshot(t)) {
		t.Error("a refused config write changed storage")
	}
	if n := env.emu.Requests() - calls; n != 0 {
		t.Errorf("refused config writes made %d Datadog calls", n)
	}
	// A token of another user than service_account_id is refused once
	// Datadog says whose it is.
	other := env.createServiceAccount(t)
	token := env.serviceAccessToken(t, other, defaultRootScopes, time.Now().Add(24*time.Hour))
	resp, err := env.do(t, logical.UpdateOperation, "config", map[string]interface{}{"access_token": token, "service_account_id": sa})
	wantUserError(t, resp, err, "access_token belongs to user "+other)
}

// A root key's name never looks like a credential's: tidy must not take
// the engine's own key for an orphan.
func TestRootNameIsNotACredentialName(t *testing.T) {
	name := rootName(mountMarker("uuid"), time.Now())
	if _, _, ours := parseName(name); ours || !strings.HasPrefix(name, namePrefix) {
		t.Errorf("root name %q parses as a credential name", name)
	}
}

// A root key a rotation made has no copy outside Vault: when config stops
// using it (replaced, deleted) or the mount is disabled, it is deleted.
func TestRotatedRootIsDeletedWhenNoLongerUsed(t *testing.T) {
	for _, how := range []string{"config replaced", "config deleted", "mount disabled"} {
		t.Run(how, func(t *testing.T) {
			env := newTestEnv(t)
			env.configure(t)
			status, spare := env.rootCall(t, http.MethodPost, "/api/v2/current_user/application_keys",
				`{"data":{"type":"application_keys","attributes":{"name":"operator spare"}}}`)
			if status != http.StatusCreated {
				t.Fatalf("creating a spare key: %d", status)
			}
			env.mustDo(t, logical.UpdateOperation, "config/rotate-root", nil)
			made := env.storedConfig(t)
			switch how {
			case "config replaced":
				env.mustDo(t, logical.UpdateOperation, "config", map[string]interface{}{"app_key": secretOf(spare)})
				if cfg := env.storedConfig(t); !env.rootWorks(t, cfg) || cfg.RootKeyID == made.RootKeyID {
					t.Fatal("the operator's key is not the root")
				}
			case "config deleted":
				env.mustDo(t, logical.DeleteOperation, "config", nil)
			case "mount disabled":
				env.b.System().(*logical.StaticSystemView).TaintedVal = true
				env.b.Cleanup(context.Background())
			}
			if env.keyExists(made.RootKeyID) {
				t.Errorf("the engine's own root key %s is still in Datadog", made.RootKeyID)
			}
			if ids := env.walEntries(t); len(ids) != 0 {
				t.Errorf("WAL entries left: %v", ids)
			}
		})
	}
	// An operator's own key is theirs: a config change never deletes it.
	env := newTestEnv(t)
	env.configure(t)
	operators := env.storedConfig(t).RootKeyID
	env.mustDo(t, logical.DeleteOperation, "config", nil)
	if !env.keyExists(operators) {
		t.Error("deleting config deleted the operator's application key")
	}
}

// A root key Datadog created after its rotation gave up on it (a lost
// answer, a late create) is found by tidy; the root config holds is not.
func TestTidyDeletesRootKeysConfigDoesNotHold(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	stray := env.createKeyNamed(t, rootName(env.b.marker, time.Now()))
	otherMount := env.createKeyNamed(t, rootName(mountMarker("another mount"), time.Now()))
	env.mustDo(t, logical.UpdateOperation, "config/rotate-root", nil)
	root := env.storedConfig(t).RootKeyID

	status := env.tidyNow(t, map[string]interface{}{"safety_buffer": "0s"})
	if env.keyExists(stray) || !env.keyExists(root) || !env.keyExists(otherMount) {
		t.Errorf("after tidy: stray root key live %v, configured root live %v, another mount's live %v (status %v)",
			env.keyExists(stray), env.keyExists(root), env.keyExists(otherMount), status)
	}
}
