package backend

import (
	"bytes"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
)

// withScopes is the engine's default root scopes and more.
func withScopes(more ...string) []string {
	return append(slices.Clone(defaultRootScopes), more...)
}

// configureTokenRoot writes config with an access_token root: a token of
// service account sa with these scopes, expiring at end. It returns the
// write's warnings.
func (env *testEnv) configureTokenRoot(t *testing.T, sa string, scopes []string, end time.Time) []string {
	t.Helper()
	token := env.serviceAccessToken(t, sa, scopes, end)
	return warningsOf(env.mustDo(t, logical.UpdateOperation, "config", map[string]interface{}{
		"access_token": token, "service_account_id": sa, "api_url": env.url,
	}))
}

// warningsOf is a response's warnings; none for a write answered 204.
func warningsOf(resp *logical.Response) []string {
	if resp == nil {
		return nil
	}
	return resp.Warnings
}

// emuKey returns the live key or token with this id, or fails.
func (env *testEnv) liveKey(t *testing.T, id string) emulator.Key {
	t.Helper()
	for _, k := range env.emu.Keys() {
		if k.ID == id {
			return k
		}
	}
	t.Fatalf("no live key %s in Datadog", id)
	return emulator.Key{}
}

// appKeyStatus calls the emulator with a credential in DD-APPLICATION-KEY
// and no API key, as a tool reading DD_APP_KEY alone does.
func (env *testEnv) appKeyStatus(t *testing.T, path, secret string) int {
	t.Helper()
	status, _ := env.call(t, http.MethodGet, path, "", map[string]string{"DD-APPLICATION-KEY": secret})
	return status
}

// Under an access_token root, roles of the application key kinds (and
// personal access tokens, which a service access token may not make) are
// refused at write and at issue with a 400 that names what to use
// instead, and nothing reaches Datadog; API key roles still issue.
func TestTokenRootRefusesApplicationKeyRoles(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	sa := env.createServiceAccount(t)
	roles := map[string]map[string]interface{}{
		"app":    {"scopes": "dashboards_read"},
		"sa-app": {"credential_type": "service_account_application_key", "service_account_id": sa, "scopes": "dashboards_read"},
		"pat":    {"credential_type": "personal_access_token", "scopes": "dashboards_read"},
	}
	for name, role := range roles { // written under an application key root
		env.writeRole(t, name, role)
	}

	warnings := env.configureTokenRoot(t, sa, withScopes("dashboards_read"), time.Now().Add(30*24*time.Hour))
	for name := range roles {
		if !slices.ContainsFunc(warnings, func(w string) bool { return strings.Contains(w, `role "`+name+`" cannot issue`) }) {
			t.Errorf("the config write's warnings %v do not name role %q", warnings, name)
		}
	}

	before, calls := env.snapshot(t), env.emu.Requests()
	refusals := map[string]string{}
	for name, role := range roles {
		// The same role written now is refused, saying why and what to use.
		resp, err := env.do(t, logical.CreateOperation, "roles/"+name+"-new", role)
		wantUserError(t, resp, err, "service_access_token", "app_key")
		if resp.IsError() {
			refusals[name] = resp.Error().Error()
		}
	}
	for name := range roles {
		for _, narrowed := range []map[string]interface{}{nil, {"scopes": "dashboards_read"}} {
			var op logical.Operation = logical.ReadOperation
			if narrowed != nil {
				op = logical.UpdateOperation
			}
			resp, err := env.do(t, op, "creds/"+name, narrowed)
			wantUserError(t, resp, err, "nothing was created", refusals[name])
		}
	}
	if n := env.emu.Requests() - calls; n != 0 {
		t.Errorf("refused role writes and creds made %d Datadog calls", n)
	}
	if !sameSnapshot(before, env.snapshot(t)) {
		t.Error("refused role writes and creds changed storage")
	}
	if keys := env.issuedKeys(); len(keys) != 0 {
		t.Errorf("keys made in Datadog: %v", keys)
	}

	// An API key is not an application key: the rules let a token make one.
	env.writeRole(t, "agent", map[string]interface{}{"credential_type": "api_key"})
	agent := env.mustDo(t, logical.ReadOperation, "creds/agent", nil)
	if agent.Data["api_key"] == "" {
		t.Errorf("creds/agent = %v", agent.Data)
	}
	if _, err := env.revoke(t, agent); err != nil {
		t.Fatal(err)
	}
}

// A token credential's scopes must be among the root token's: checked at
// role write, and at issue (the root may have changed since), narrowed
// requests included.
func TestTokenRootScopesBoundTokenCredentials(t *testing.T) {
	env := newTestEnv(t)
	sa := env.createServiceAccount(t)
	end := time.Now().Add(30 * 24 * time.Hour)
	env.configureTokenRoot(t, sa, withScopes("dashboards_read", "monitors_read"), end)
	if got, _ := env.mustDo(t, logical.ReadOperation, "config", nil).Data["root_token_scopes"].([]string); !slices.Equal(got, withScopes("dashboards_read", "monitors_read")) {
		t.Errorf("root_token_scopes = %v", got)
	}
	env.writeRole(t, "sat", map[string]interface{}{
		"credential_type": "service_access_token", "service_account_id": sa, "scopes": "dashboards_read,monitors_read",
	})
	calls := env.emu.Requests()
	resp, err := env.do(t, logical.CreateOperation, "roles/beyond", map[string]interface{}{
		"credential_type": "service_access_token", "service_account_id": sa, "scopes": "dashboards_read,logs_read_data",
	})
	wantUserError(t, resp, err, "scopes logs_read_data", "not among the scopes of the engine's root access token")
	if n := env.emu.Requests() - calls; n != 0 {
		t.Errorf("the refused role write made %d Datadog calls", n)
	}

	// A narrower root: the role's full grant is refused, a narrowed
	// request within the root is served.
	env.configureTokenRoot(t, sa, withScopes("dashboards_read"), end)
	calls = env.emu.Requests()
	for _, narrowed := range []map[string]interface{}{nil, {"scopes": "monitors_read"}} {
		var op logical.Operation = logical.ReadOperation
		if narrowed != nil {
			op = logical.UpdateOperation
		}
		resp, err := env.do(t, op, "creds/sat", narrowed)
		wantUserError(t, resp, err, "scopes monitors_read", "not among the scopes of the engine's root access token", "nothing was created")
	}
	if n := env.emu.Requests() - calls; n != 0 {
		t.Errorf("refused creds made %d Datadog calls", n)
	}
	creds := env.mustDo(t, logical.UpdateOperation, "creds/sat", map[string]interface{}{"scopes": "dashboards_read"})
	token := creds.Data["access_token"].(string)
	if env.bearerStatus(t, "/api/v1/dashboard", token) != http.StatusOK || env.bearerStatus(t, "/api/v1/monitor", token) != http.StatusForbidden {
		t.Error("the narrowed token is not limited to dashboards_read")
	}
	if _, err := env.revoke(t, creds); err != nil {
		t.Fatal(err)
	}
}

// A token root's expiry bounds what it issues: a token expires in Datadog
// no later than the root, and every lease ends a token's expiry grace
// before it, so the root can still revoke it; the creds answer says so.
// Too close to the end, creds are refused without a Datadog call.
func TestTokenRootBoundsExpiryAndLeases(t *testing.T) {
	env := newTestEnv(t) // the mount's max lease TTL is 24h
	sa := env.createServiceAccount(t)
	end := time.Now().Add(3 * time.Hour).UTC().Truncate(time.Second)
	env.configureTokenRoot(t, sa, withScopes("dashboards_read"), end)
	read := env.mustDo(t, logical.ReadOperation, "config", nil)
	if read.Data["root_expires_at"] != end.Format(time.RFC3339) || len(read.Warnings) != 1 || !strings.Contains(read.Warnings[0], "another identity") {
		t.Errorf("config read: root_expires_at %v, warnings %v", read.Data["root_expires_at"], read.Warnings)
	}
	warnings := warningsOf(env.mustDo(t, logical.CreateOperation, "roles/sat", map[string]interface{}{
		"credential_type": "service_access_token", "service_account_id": sa, "scopes": "dashboards_read", "ttl": "1h",
	}))
	if len(warnings) != 1 || !strings.Contains(warnings[0], "will not last their max_ttl") {
		t.Errorf("role write warnings: %v", warnings)
	}

	creds := env.mustDo(t, logical.ReadOperation, "creds/sat", nil)
	token := env.liveKey(t, creds.Data["access_token_id"].(string))
	if token.ExpiresAt == nil || !token.ExpiresAt.Equal(end) || creds.Data["expires_at"] != end.Format(time.RFC3339) {
		t.Errorf("the token expires at %v (answer %v), want the root's end %s", token.ExpiresAt, creds.Data["expires_at"], end)
	}
	want := time.Until(end.Add(-expiryGrace))
	if got := creds.Secret.MaxTTL; got > want || got < want-5*time.Second {
		t.Errorf("lease max TTL %s, want about %s (the root's end less %s)", got, want, expiryGrace)
	}
	if len(creds.Warnings) != 1 || !strings.Contains(creds.Warnings[0], "root access token expires at "+end.Format(time.RFC3339)) {
		t.Errorf("creds warnings: %v", creds.Warnings)
	}
	renewed, err := env.renew(t, creds)
	if err != nil || renewed.IsError() || renewed.Secret.MaxTTL > want {
		t.Errorf("renewal: %v %v, max TTL past the root's end", renewed, err)
	}
	// A lease of any kind: an API key too must die while the root can
	// delete it.
	env.writeRole(t, "agent", map[string]interface{}{"credential_type": "api_key", "api_key_mode": "dynamic"})
	agent := env.mustDo(t, logical.ReadOperation, "creds/agent", nil)
	if agent.Secret.MaxTTL > want {
		t.Errorf("API key lease max TTL %s outlives the root's end", agent.Secret.MaxTTL)
	}
	for _, lease := range []*logical.Response{creds, agent} {
		if _, err := env.revoke(t, lease); err != nil {
			t.Fatal(err)
		}
	}

	// Minutes before the end, no lease could end in time: refused.
	env.configureTokenRoot(t, sa, withScopes("dashboards_read"), time.Now().Add(5*time.Minute))
	calls := env.emu.Requests()
	resp, err := env.do(t, logical.ReadOperation, "creds/sat", nil)
	wantUserError(t, resp, err, "root access token expires at", "another identity", "nothing was created")
	if n := env.emu.Requests() - calls; n != 0 {
		t.Errorf("a refused creds read made %d Datadog calls", n)
	}
}

// A rotation of a token root makes a token that ends when the old one
// did, with its scopes; the engine keeps issuing and revoking; no rotation
// is scheduled at or past the end; root_scopes beyond the token's are
// refused.
func TestTokenRootRotationKeepsItsEnd(t *testing.T) {
	env := newTestEnv(t)
	sa := env.createServiceAccount(t)
	end := time.Now().Add(30 * 24 * time.Hour).UTC().Truncate(time.Second)
	scopes := withScopes("dashboards_read")
	env.configureTokenRoot(t, sa, scopes, end)
	first := env.storedConfig(t)
	env.writeRole(t, "r", map[string]interface{}{"credential_type": "service_access_token", "service_account_id": sa, "scopes": "dashboards_read"})
	before := env.mustDo(t, logical.ReadOperation, "creds/r", nil)

	resp := env.mustDo(t, logical.UpdateOperation, "config/rotate-root", nil)
	cfg := env.storedConfig(t)
	made := env.liveKey(t, cfg.RootKeyID)
	if cfg.AccessToken == first.AccessToken || cfg.RootKeyID == first.RootKeyID || !env.rootWorks(t, cfg) {
		t.Fatal("the rotation did not store a new, working root token")
	}
	if made.ExpiresAt == nil || !made.ExpiresAt.Equal(end) || resp.Data["expires_at"] != end.Format(time.RFC3339) ||
		!cfg.RootExpiresAt.Equal(end) || !slices.Equal(made.Scopes, scopes) || !slices.Equal(cfg.RootTokenScopes, scopes) {
		t.Errorf("new root token expires %v with scopes %v (answer %v), want %s and %v", made.ExpiresAt, made.Scopes, resp.Data, end, scopes)
	}
	if env.bearerStatus(t, "/api/v2/current_user", first.AccessToken) != http.StatusUnauthorized {
		t.Error("the previous root token still works")
	}
	if _, err := env.revoke(t, before); err != nil {
		t.Fatalf("revoking a lease issued before the rotation: %v", err)
	}
	if env.keyExists(before.Data["access_token_id"].(string)) {
		t.Error("the lease's token survived its revocation")
	}
	after := env.mustDo(t, logical.ReadOperation, "creds/r", nil)
	if env.bearerStatus(t, "/api/v1/dashboard", after.Data["access_token"].(string)) != http.StatusOK {
		t.Error("a token issued after the rotation does not work")
	}

	// Scheduled: due once rotation_period has passed, and never at or past
	// the end, which no rotation could move.
	env.mustDo(t, logical.UpdateOperation, "config", map[string]interface{}{"rotation_period": (40 * 24 * time.Hour).String()})
	if next := env.mustDo(t, logical.ReadOperation, "config", nil).Data["next_rotation"]; next != "" {
		t.Errorf("next_rotation %v is past the root's end %s", next, end)
	}
	env.mustDo(t, logical.UpdateOperation, "config", map[string]interface{}{"rotation_period": "1h"})
	stored := env.storedConfig(t)
	stored.LastRotation = time.Now().Add(-61 * time.Minute)
	entry, _ := logical.StorageEntryJSON(configPath, stored)
	env.storage.Put(t.Context(), entry)
	env.b.reset()
	env.rollbackOnSchedule(t)
	scheduled := env.storedConfig(t)
	if scheduled.RootKeyID == stored.RootKeyID || !scheduled.RootExpiresAt.Equal(end) || !env.rootWorks(t, scheduled) {
		t.Errorf("scheduled rotation: root %s (was %s), expires %v", scheduled.RootKeyID, stored.RootKeyID, scheduled.RootExpiresAt)
	}

	// Datadog would refuse a new root with scopes the current one lacks.
	calls := env.emu.Requests()
	wide, err := env.do(t, logical.UpdateOperation, "config", map[string]interface{}{"root_scopes": strings.Join(withScopes("monitors_read"), ",")})
	wantUserError(t, wide, err, "root_scopes monitors_read", "not among the current root token's scopes")
	if n := env.emu.Requests() - calls; n > 2 { // the write's checks of the root; no create
		t.Errorf("a refused root_scopes made %d Datadog calls", n)
	}
	for _, lease := range []*logical.Response{after} {
		if _, err := env.revoke(t, lease); err != nil {
			t.Fatal(err)
		}
	}
}

// An issued access token works where an application key goes: sent as
// DD-APPLICATION-KEY alone, without an API key, it is served within its
// scopes (200), refused outside them (403), and refused once its lease is
// revoked (403).
func TestAccessTokenAsApplicationKey(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	sa := env.createServiceAccount(t)
	env.writeRole(t, "sat", map[string]interface{}{"credential_type": "service_access_token", "service_account_id": sa, "scopes": "dashboards_read"})
	env.writeRole(t, "pat", map[string]interface{}{"credential_type": "personal_access_token", "scopes": "dashboards_read"})
	for _, role := range []string{"sat", "pat"} {
		creds := env.mustDo(t, logical.ReadOperation, "creds/"+role, nil)
		token := creds.Data["access_token"].(string)
		if got := env.appKeyStatus(t, "/api/v1/dashboard", token); got != http.StatusOK {
			t.Errorf("%s as DD-APPLICATION-KEY, in scope: %d, want 200", role, got)
		}
		if got := env.appKeyStatus(t, "/api/v1/monitor", token); got != http.StatusForbidden {
			t.Errorf("%s as DD-APPLICATION-KEY, out of scope: %d, want 403", role, got)
		}
		if _, err := env.revoke(t, creds); err != nil {
			t.Fatal(err)
		}
		if got := env.appKeyStatus(t, "/api/v1/dashboard", token); got != http.StatusForbidden {
			t.Errorf("%s as DD-APPLICATION-KEY after revocation: %d, want 403", role, got)
		}
	}
}

// lockedBuffer is a log destination tests read while the backend writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// From 14 days before a token root's end the periodic function logs a
// warning that says what to do, once a day rather than every minute.
func TestTokenRootEndIsWarnedInTheLog(t *testing.T) {
	env := newTestEnv(t)
	sa := env.createServiceAccount(t)
	end := time.Now().Add(5 * 24 * time.Hour)
	env.configureTokenRoot(t, sa, withScopes(), end)

	var logs lockedBuffer
	conf := logical.TestBackendConfig()
	conf.BackendUUID = "4f6b0e0c-1d2a-4c1e-9a53-" + t.Name()
	conf.StorageView = env.storage
	conf.System = &logical.StaticSystemView{DefaultLeaseTTLVal: time.Hour, MaxLeaseTTLVal: 24 * time.Hour}
	conf.Logger = hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Warn})
	b, err := Factory(t.Context(), conf)
	if err != nil {
		t.Fatal(err)
	}
	env.b = b.(*datadogBackend)
	for range 3 {
		env.rollbackOnSchedule(t)
	}
	if n := strings.Count(logs.String(), "the engine's root access token expires at"); n != 1 {
		t.Errorf("%d warnings of the root's end in three periodic runs, want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "another identity") {
		t.Errorf("the warning does not say how to extend the root:\n%s", logs.String())
	}

	// 20 days ahead: outside the lead time, nothing.
	quiet := newTestEnv(t)
	quiet.configureTokenRoot(t, quiet.createServiceAccount(t), withScopes(), time.Now().Add(20*24*time.Hour))
	if msg := quiet.storedConfig(t).rootEndWarning(time.Now()); msg != "" {
		t.Errorf("a root 20 days from its end is warned of: %s", msg)
	}
}
