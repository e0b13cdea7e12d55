package backend

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulatortest"
)

func TestConfigWriteReadNeverShowsSecrets(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)

	resp := env.mustDo(t, logical.ReadOperation, "config", nil)
	want := map[string]interface{}{
		"site":          "datadoghq.com",
		"api_url":       env.url,
		"owner_id":      env.emu.UserID(),
		"api_key_last4": env.emu.APIKey()[len(env.emu.APIKey())-4:],
		"app_key_last4": env.emu.AppKey()[len(env.emu.AppKey())-4:],
	}
	for k, v := range want {
		if resp.Data[k] != v {
			t.Errorf("config %s = %v, want %v", k, resp.Data[k], v)
		}
	}
	for k, v := range resp.Data {
		s := fmt.Sprint(v)
		if strings.Contains(s, env.emu.APIKey()) || strings.Contains(s, env.emu.AppKey()) {
			t.Errorf("config read returns a secret in %s", k)
		}
	}
	if _, ok := resp.Data["api_key"]; ok {
		t.Error("config read has an api_key field")
	}
}

func TestConfigPartialUpdateKeepsKeys(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.mustDo(t, logical.UpdateOperation, "config", map[string]interface{}{"site": "datadoghq.eu"})

	cfg, err := getConfig(t.Context(), env.storage)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Site != "datadoghq.eu" || cfg.APIKey != env.emu.APIKey() || cfg.AppKey != env.emu.AppKey() {
		t.Errorf("after a site-only update: site=%q, keys kept=%v", cfg.Site, cfg.APIKey == env.emu.APIKey() && cfg.AppKey == env.emu.AppKey())
	}
}

func TestConfigDelete(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.mustDo(t, logical.DeleteOperation, "config", nil)
	resp := env.mustDo(t, logical.ReadOperation, "config", nil)
	if resp != nil {
		t.Errorf("config read after delete = %v, want nothing", resp.Data)
	}
}

func TestConfigBadInput(t *testing.T) {
	cases := []struct {
		name      string
		data      func(env *testEnv) map[string]interface{}
		fragments []string
		datadog   bool // whether the refusal needs Datadog's answer
	}{
		{"missing api_key", func(env *testEnv) map[string]interface{} {
			return map[string]interface{}{"app_key": env.emu.AppKey(), "api_url": env.url}
		}, []string{"api_key is required"}, false},
		{"missing app_key", func(env *testEnv) map[string]interface{} {
			return map[string]interface{}{"api_key": env.emu.APIKey(), "api_url": env.url}
		}, []string{"app_key is required"}, false},
		{"unknown site", func(env *testEnv) map[string]interface{} {
			return map[string]interface{}{"api_key": env.emu.APIKey(), "app_key": env.emu.AppKey(), "site": "datadoghq.xyz"}
		}, []string{"site", "datadoghq.xyz", "datadoghq.eu"}, false},
		{"http to a remote host", func(env *testEnv) map[string]interface{} {
			return map[string]interface{}{"api_key": env.emu.APIKey(), "app_key": env.emu.AppKey(), "api_url": "http://dd-proxy.example.com"}
		}, []string{"api_url", "https", "loopback"}, false},
		{"unsupported scheme", func(env *testEnv) map[string]interface{} {
			return map[string]interface{}{"api_key": env.emu.APIKey(), "app_key": env.emu.AppKey(), "api_url": "ftp://127.0.0.1"}
		}, []string{"api_url", "https"}, false},
		{"api_url with a path", func(env *testEnv) map[string]interface{} {
			return map[string]interface{}{"api_key": env.emu.APIKey(), "app_key": env.emu.AppKey(), "api_url": env.url + "/api"}
		}, []string{"api_url", "without path"}, false},
		{"relative api_url", func(env *testEnv) map[string]interface{} {
			return map[string]interface{}{"api_key": env.emu.APIKey(), "app_key": env.emu.AppKey(), "api_url": "api.datadoghq.com"}
		}, []string{"api_url", "absolute URL"}, false},
		{"wrong api_key", func(env *testEnv) map[string]interface{} {
			return map[string]interface{}{"api_key": strings.Repeat("0", 32), "app_key": env.emu.AppKey(), "api_url": env.url}
		}, []string{"api_key was rejected", "403"}, true},
		{"wrong app_key", func(env *testEnv) map[string]interface{} {
			return map[string]interface{}{"api_key": env.emu.APIKey(), "app_key": strings.Repeat("0", 40), "api_url": env.url}
		}, []string{"app_key was rejected", "403"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := newTestEnv(t)
			resp, err := env.do(t, logical.CreateOperation, "config", tc.data(env))
			wantUserError(t, resp, err, tc.fragments...)
			if got := env.emu.Requests(); !tc.datadog && got != 0 {
				t.Errorf("refused input made %d Datadog calls, want none", got)
			}
			if cfg, _ := getConfig(t.Context(), env.storage); cfg != nil {
				t.Error("refused config was stored")
			}
			for _, secret := range []string{env.emu.APIKey(), env.emu.AppKey()} {
				if strings.Contains(resp.Error().Error(), secret) {
					t.Error("error message contains a key")
				}
			}
		})
	}
}

func TestConfigBadUpdateKeepsPreviousConfig(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	before := env.snapshot(t)
	resp, err := env.do(t, logical.UpdateOperation, "config", map[string]interface{}{"app_key": strings.Repeat("1", 40)})
	wantUserError(t, resp, err, "app_key was rejected")
	if !sameSnapshot(before, env.snapshot(t)) {
		t.Error("a refused config update changed storage")
	}
}

func TestParseAPIURL(t *testing.T) {
	for raw, ok := range map[string]bool{
		"https://api.datadoghq.com":         true,
		"https://dd-proxy.internal:8443":    true,
		"http://127.0.0.1:8126":             true,
		"http://127.3.4.5:1":                true,
		"http://[::1]:8080":                 true,
		"http://localhost:8080":             true,
		"http://10.0.0.1:8080":              false,
		"http://localhost.example.com":      false,
		"https://api.datadoghq.com/v2":      false,
		"https://user:pw@api.datadoghq.com": false,
		"https://api.datadoghq.com?x=1":     false,
		"":                                  false,
	} {
		_, _, err := parseAPIURL(raw)
		if (err == nil) != ok {
			t.Errorf("parseAPIURL(%q) error = %v, want ok=%v", raw, err, ok)
		}
	}
}

func TestConfigRequestTimeout(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	if got := env.mustDo(t, logical.ReadOperation, "config", nil).Data["request_timeout"]; got != int64(30) {
		t.Errorf("default request_timeout = %v, want 30", got)
	}
	resp, err := env.do(t, logical.UpdateOperation, "config", map[string]interface{}{"request_timeout": "10m"})
	wantUserError(t, resp, err, "request_timeout", "5m")
	env.mustDo(t, logical.UpdateOperation, "config", map[string]interface{}{"request_timeout": "5s"})
	if got := env.mustDo(t, logical.ReadOperation, "config", nil).Data["request_timeout"]; got != int64(5) {
		t.Errorf("request_timeout = %v, want 5", got)
	}
}

// keyExists reports whether a key or token with this id is live in Datadog.
func (env *testEnv) keyExists(id string) bool {
	for _, k := range env.emu.Keys() {
		if k.ID == id {
			return true
		}
	}
	return false
}

// A new identity that can reach the old owner's keys through Datadog's
// org-wide endpoints is accepted, and revocations delete the old keys there.
func TestConfigNewOwnerRevokesOldKeysWhereTheyLive(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read"})
	creds := env.mustDo(t, logical.ReadOperation, "creds/r", nil)
	appKeyID, apiKeyID := creds.Data["application_key_id"].(string), creds.Data["api_key_id"].(string)

	admin := env.createServiceAccount(t)
	env.mustDo(t, logical.UpdateOperation, "config", map[string]interface{}{"app_key": env.serviceAccountAppKey(t, admin)})
	if owner := env.mustDo(t, logical.ReadOperation, "config", nil).Data["owner_id"]; owner != admin {
		t.Fatalf("config owner_id = %v, want the new identity %s", owner, admin)
	}

	if _, err := env.revoke(t, creds); err != nil {
		t.Fatalf("revoking a lease of the previous owner: %v", err)
	}
	if env.keyExists(appKeyID) || env.keyExists(apiKeyID) {
		t.Errorf("keys of the previous owner survived their revocation: application key %v, API key %v", env.keyExists(appKeyID), env.keyExists(apiKeyID))
	}
}

// A new identity that cannot reach the old owner's keys is refused while
// leases depend on the old one; force=true accepts it, names what is left
// behind, and revocations then fail (Vault keeps the lease) instead of
// pretending the key is gone.
func TestConfigNewOwnerThatCannotReachOldKeysIsRefused(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read", "api_key_mode": "none"})
	creds := env.mustDo(t, logical.ReadOperation, "creds/r", nil)
	appKeyID := creds.Data["application_key_id"].(string)

	// The Standard role may manage its own application keys, not other users'.
	standardKey := env.serviceAccountAppKey(t, env.createServiceAccountWithRole(t, "Datadog Standard Role"))
	before := env.snapshot(t)
	resp, err := env.do(t, logical.UpdateOperation, "config", map[string]interface{}{"app_key": standardKey})
	wantUserError(t, resp, err, "1 lease", env.emu.UserID(), "org_app_keys_write", "force=true")
	if !sameSnapshot(before, env.snapshot(t)) {
		t.Error("a refused config write changed storage")
	}

	resp = env.mustDo(t, logical.UpdateOperation, "config", map[string]interface{}{"app_key": standardKey, "force": true})
	if resp == nil || !strings.Contains(strings.Join(resp.Warnings, " "), appKeyID) {
		t.Errorf("forced config write does not name the key it leaves behind: %v", resp)
	}
	if _, err := env.revoke(t, creds); err == nil {
		t.Error("revocation reported success for a key the configured identity cannot reach")
	}
	if !env.keyExists(appKeyID) {
		t.Fatal("the key vanished")
	}
}

// The Standard role reads API keys but may not delete them: a new identity
// with it is refused while leases hold API keys, although it could read
// them.
func TestConfigNewOwnerWithoutTheDeletePermissionIsRefused(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "agent", map[string]interface{}{"credential_type": "api_key", "api_key_mode": "dynamic"})
	env.mustDo(t, logical.ReadOperation, "creds/agent", nil)

	standardKey := env.serviceAccountAppKey(t, env.createServiceAccountWithRole(t, "Datadog Standard Role"))
	resp, err := env.do(t, logical.UpdateOperation, "config", map[string]interface{}{"app_key": standardKey})
	wantUserError(t, resp, err, "1 lease", "api_keys_delete")
}

// Another organisation (here another Datadog at another api_url) can never
// reach the keys of this one.
func TestConfigAnotherOrganisationIsRefusedWhileLeasesDependOnThisOne(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read"})
	env.mustDo(t, logical.ReadOperation, "creds/r", nil)

	other := emulatortest.Start(t, emulator.Options{})
	resp, err := env.do(t, logical.UpdateOperation, "config", map[string]interface{}{
		"api_key": other.APIKey(), "app_key": other.AppKey(), "api_url": other.URL,
	})
	wantUserError(t, resp, err, "1 lease", "organisation", "force=true")
}

// Rotating the keys of the same identity is always allowed, and leases keep
// revoking through it.
func TestConfigKeyRotationOfTheSameIdentityIsAllowed(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read"})
	creds := env.mustDo(t, logical.ReadOperation, "creds/r", nil)

	status, key := env.rootCall(t, http.MethodPost, "/api/v2/current_user/application_keys",
		`{"data":{"type":"application_keys","attributes":{"name":"rotated engine key"}}}`)
	if status != http.StatusCreated {
		t.Fatalf("creating a second key of the admin: %d", status)
	}
	env.mustDo(t, logical.UpdateOperation, "config", map[string]interface{}{"app_key": secretOf(key)})
	if _, err := env.revoke(t, creds); err != nil {
		t.Fatal(err)
	}
	if left := env.issuedKeys(); len(left) != 0 {
		t.Errorf("keys left after revoke: %v", left)
	}
}

// Deleting config while leases depend on it would make every revocation
// fail: refused unless forced.
func TestConfigDeleteWithLeasesIsRefused(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read"})
	creds := env.mustDo(t, logical.ReadOperation, "creds/r", nil)

	resp, err := env.do(t, logical.DeleteOperation, "config", nil)
	wantUserError(t, resp, err, "1 lease", "force=true")
	if env.mustDo(t, logical.ReadOperation, "config", nil) == nil {
		t.Fatal("config was deleted")
	}

	if _, err := env.revoke(t, creds); err != nil {
		t.Fatal(err)
	}
	env.mustDo(t, logical.DeleteOperation, "config", nil) // nothing depends on it any more
}

func TestConfigDeleteForced(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read"})
	creds := env.mustDo(t, logical.ReadOperation, "creds/r", nil)

	// As the CLI sends it: vault delete datadog/config force=true.
	resp := env.mustDo(t, logical.DeleteOperation, "config", map[string]interface{}{"force": "true"})
	if resp == nil || !strings.Contains(strings.Join(resp.Warnings, " "), creds.Data["application_key_id"].(string)) {
		t.Errorf("forced delete does not name the keys it leaves behind: %v", resp)
	}
	if _, err := env.revoke(t, creds); err == nil || !strings.Contains(err.Error(), "not configured") {
		t.Errorf("revocation without config: %v", err)
	}
}

// A config delete while a creds request is in flight, between its look at
// config and its record, waits for the request: it then sees the lease
// and refuses, and the key stays revocable.
func TestConfigDeleteWaitsForCredsInFlight(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read", "api_key_mode": "dynamic"})
	// The request's API key count, before any record, takes a second.
	if _, err := env.emu.AddFault(emulator.Fault{Operation: "ListAPIKeys", Action: emulator.FaultLatency, Latency: time.Second, Times: 1}); err != nil {
		t.Fatal(err)
	}
	issued := make(chan *logical.Response, 1)
	go func() {
		resp, err := env.do(t, logical.ReadOperation, "creds/r", nil)
		if err != nil || resp.IsError() {
			t.Errorf("creds: %v %v", err, resp)
		}
		issued <- resp
	}()
	time.Sleep(300 * time.Millisecond)
	resp, err := env.do(t, logical.DeleteOperation, "config", nil)
	creds := <-issued
	wantUserError(t, resp, err, "config not deleted", "1 lease")
	if creds == nil {
		t.FailNow()
	}
	if _, err := env.revoke(t, creds); err != nil {
		t.Fatalf("the lease issued while config was being deleted cannot be revoked: %v", err)
	}
	if keys := env.issuedKeys(); len(keys) != 0 {
		t.Errorf("keys left: %v", keys)
	}
}
