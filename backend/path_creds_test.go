package backend

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
)

// call sends a request to the emulated Datadog API with the given headers
// and returns the status and the decoded JSON body, if any.
func (env *testEnv) call(t *testing.T, method, path, body string, headers map[string]string) (int, map[string]interface{}) {
	t.Helper()
	req, _ := http.NewRequest(method, env.url+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]interface{}
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// statusWith calls the emulator as a consumer of issued keys would.
func (env *testEnv) statusWith(t *testing.T, path, apiKey, appKey string) int {
	t.Helper()
	status, _ := env.call(t, http.MethodGet, path, "", map[string]string{"DD-API-KEY": apiKey, "DD-APPLICATION-KEY": appKey})
	return status
}

// issuedKeys returns the keys the engine created (all but the seeded ones).
func (env *testEnv) issuedKeys() []emulator.Key {
	var out []emulator.Key
	for _, k := range env.emu.Keys() {
		if strings.HasPrefix(k.Name, "vault-") {
			out = append(out, k)
		}
	}
	return out
}

func (env *testEnv) revoke(t *testing.T, resp *logical.Response) (*logical.Response, error) {
	t.Helper()
	return env.b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.RevokeOperation,
		Storage:   env.storage,
		Secret:    resp.Secret,
	})
}

func (env *testEnv) renew(t *testing.T, resp *logical.Response) (*logical.Response, error) {
	t.Helper()
	secret := *resp.Secret
	secret.IssueTime = time.Now()
	return env.b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.RenewOperation,
		Storage:   env.storage,
		Secret:    &secret,
	})
}

func TestCredsIssueUseRevoke(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "agent-role", map[string]interface{}{"scopes": "dashboards_read", "ttl": "15m", "max_ttl": "1h", "api_key_mode": "dynamic"})

	resp := env.mustDo(t, logical.ReadOperation, "creds/agent-role", nil)
	if resp.Secret == nil || resp.Secret.TTL != 15*time.Minute || resp.Secret.MaxTTL != time.Hour {
		t.Fatalf("lease = %#v, want ttl 15m max 1h", resp.Secret)
	}
	d := resp.Data
	name, _ := d["name"].(string)
	if !regexp.MustCompile(`^vault-agent-role-token-ci-job-\d{10}-[0-9a-f]{16}[a-z2-7]{16}$`).MatchString(name) {
		t.Errorf("name %q does not trace back to role and requester", name)
	}
	if !reflect.DeepEqual(d["scopes"], []string{"dashboards_read"}) || d["site"] != "datadoghq.com" || d["api_url"] != env.url {
		t.Errorf("scopes/site/api_url = %v %v %v", d["scopes"], d["site"], d["api_url"])
	}
	appKey, apiKey := d["application_key"].(string), d["api_key"].(string)
	if appKey == "" || apiKey == "" || d["application_key_id"] == "" || d["api_key_id"] == "" {
		t.Fatalf("missing key fields in %v", d)
	}
	if apiKey == env.emu.APIKey() {
		t.Error("dynamic mode returned the engine's own API key")
	}

	issued := env.issuedKeys()
	if len(issued) != 2 {
		t.Fatalf("emulator holds %d issued keys, want 2", len(issued))
	}
	for _, k := range issued {
		if k.Name != name || k.OwnerID != env.emu.UserID() {
			t.Errorf("issued %s named %q owned by %s", k.Kind, k.Name, k.OwnerID)
		}
		if k.Kind == emulator.KindApplicationKey && !reflect.DeepEqual(k.Scopes, []string{"dashboards_read"}) {
			t.Errorf("application key scopes = %v", k.Scopes)
		}
	}

	for path, want := range map[string]int{
		"/api/v2/validate_keys": http.StatusOK,
		"/api/v1/dashboard":     http.StatusOK,
		"/api/v1/monitor":       http.StatusForbidden,
	} {
		if got := env.statusWith(t, path, apiKey, appKey); got != want {
			t.Errorf("GET %s with issued keys = %d, want %d", path, got, want)
		}
	}

	if _, err := env.revoke(t, resp); err != nil {
		t.Fatal(err)
	}
	if left := env.issuedKeys(); len(left) != 0 {
		t.Errorf("keys left after revoke: %v", left)
	}
	if got := env.statusWith(t, "/api/v2/validate_keys", apiKey, appKey); got != http.StatusForbidden {
		t.Errorf("revoked keys still validate: %d", got)
	}
	// Revocation is retried by Vault; keys already gone count as deleted.
	if _, err := env.revoke(t, resp); err != nil {
		t.Errorf("second revoke: %v", err)
	}
}

func TestCredsAPIKeyModes(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "none", map[string]interface{}{"scopes": "dashboards_read", "api_key_mode": "none"})
	env.writeRole(t, "static", map[string]interface{}{"scopes": "dashboards_read", "api_key_mode": "static"})

	resp := env.mustDo(t, logical.ReadOperation, "creds/none", nil)
	if _, ok := resp.Data["api_key"]; ok {
		t.Error("api_key_mode none returned an api_key")
	}
	if n := len(env.issuedKeys()); n != 1 {
		t.Errorf("api_key_mode none created %d keys, want 1", n)
	}

	resp = env.mustDo(t, logical.ReadOperation, "creds/static", nil)
	if resp.Data["api_key"] != env.emu.APIKey() {
		t.Error("api_key_mode static did not return the configured API key")
	}
	if _, ok := resp.Data["api_key_id"]; ok {
		t.Error("api_key_mode static returned an api_key_id")
	}
	if _, err := env.revoke(t, resp); err != nil {
		t.Fatal(err)
	}
	if env.statusWith(t, "/api/v1/validate", env.emu.APIKey(), "") != http.StatusOK {
		t.Error("revoking a static-mode lease deleted the engine's API key")
	}
}

func TestCredsBadInput(t *testing.T) {
	env := newTestEnv(t)
	resp, err := env.do(t, logical.ReadOperation, "creds/missing", nil)
	wantUserError(t, resp, err, `unknown role "missing"`)

	env.writeRole(t, "early", map[string]interface{}{"scopes": "dashboards_read"})
	resp, err = env.do(t, logical.ReadOperation, "creds/early", nil)
	wantUserError(t, resp, err, "not configured")
	if env.emu.Requests() != 0 {
		t.Error("refused creds reads called Datadog")
	}
}

func TestCredsRenew(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read", "ttl": "10m", "max_ttl": "1h"})

	resp := env.mustDo(t, logical.ReadOperation, "creds/r", nil)
	renewed, err := env.renew(t, resp)
	if err != nil || renewed.IsError() {
		t.Fatalf("renew: %v %v", err, renewed)
	}
	if renewed.Secret.TTL != 10*time.Minute || renewed.Secret.MaxTTL != time.Hour {
		t.Errorf("renewed lease ttl=%s max=%s", renewed.Secret.TTL, renewed.Secret.MaxTTL)
	}

	// Deleted out of band in Datadog: renewal must not pretend the key lives.
	for _, k := range env.issuedKeys() {
		if k.Kind == emulator.KindAPIKey {
			env.emu.DeleteKey(k.ID)
		}
	}
	renewed, err = env.renew(t, resp)
	wantUserError(t, renewed, err, "deleted outside Vault", "API key")

	resp = env.mustDo(t, logical.ReadOperation, "creds/r", nil)
	env.mustDo(t, logical.DeleteOperation, "roles/r", nil)
	renewed, err = env.renew(t, resp)
	wantUserError(t, renewed, err, `role "r" no longer exists`)
}

// faultyClient wraps the real adapter to fail chosen calls the way a network
// or Datadog outage would.
type faultyClient struct {
	datadogAPI
	createFails map[string]error // by kind
	failTimes   int              // how many creates fail before they pass again; 0: all
	commitFirst bool             // the create reaches Datadog, then the answer is lost
	deleteFails error
	// crashOn: a create of this kind takes the plugin down: it never
	// returns, and nothing after it runs (crashed is closed then).
	crashOn string
	crashed chan struct{}
	mu      sync.Mutex
	creates []datadogObject // every create asked for
}

func (f *faultyClient) Create(ctx context.Context, o datadogObject, scopes []string) (createdObject, error) {
	f.mu.Lock()
	f.creates = append(f.creates, o)
	if o.Kind == f.crashOn {
		close(f.crashed)
		f.mu.Unlock()
		select {} // the process is gone
	}
	err := f.createFails[o.Kind]
	if err != nil && f.failTimes > 0 {
		if f.failTimes--; f.failTimes == 0 {
			delete(f.createFails, o.Kind)
		}
	}
	f.mu.Unlock()
	if err != nil {
		if f.commitFirst {
			f.datadogAPI.Create(ctx, o, scopes)
		}
		return createdObject{}, err
	}
	return f.datadogAPI.Create(ctx, o, scopes)
}

func (f *faultyClient) Delete(ctx context.Context, o datadogObject) error {
	if f.deleteFails != nil {
		return f.deleteFails
	}
	return f.datadogAPI.Delete(ctx, o)
}

func (env *testEnv) injectFaults(f *faultyClient) {
	env.b.newClient = func(cfg *datadogConfig, logger hclog.Logger) (datadogAPI, error) {
		real, err := newDatadogClient(cfg, logger)
		f.datadogAPI = real
		return f, err
	}
	env.b.reset()
}

// walIDs lists the records that are WAL entries: those of creds requests
// that issued no lease.
func (env *testEnv) walIDs(t *testing.T) []string {
	t.Helper()
	all, err := records(context.Background(), env.storage)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, rec := range all {
		if !rec.Issued {
			ids = append(ids, rec.ID)
		}
	}
	return ids
}

func TestCredsFailureLeavesNoKeyBehind(t *testing.T) {
	lostAnswer := &apiError{Op: "API key creation", Status: http.StatusBadGateway}
	cases := []struct {
		name  string
		fault *faultyClient
	}{
		{"API key refused", &faultyClient{createFails: map[string]error{kindAPIKey: &apiError{Op: "API key creation", Status: http.StatusForbidden}}}},
		{"API key answer lost after commit", &faultyClient{createFails: map[string]error{kindAPIKey: lostAnswer}, commitFirst: true}},
		{"application key answer lost after commit", &faultyClient{createFails: map[string]error{kindApplicationKey: lostAnswer}, commitFirst: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := newTestEnv(t)
			env.configure(t)
			env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read"})
			env.injectFaults(tc.fault)

			resp, err := env.do(t, logical.ReadOperation, "creds/r", nil)
			if err == nil && !resp.IsError() {
				t.Fatal("creds read succeeded despite the fault")
			}
			if left := env.issuedKeys(); len(left) != 0 {
				t.Errorf("keys left in Datadog: %v", left)
			}
			if ids := env.walIDs(t); len(ids) != 0 {
				t.Errorf("WAL entries left after a clean failure: %v", ids)
			}
		})
	}
}

func TestCredsRollbackDeletesWhatCleanupCouldNot(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read", "api_key_mode": "dynamic"})
	fault := &faultyClient{
		createFails: map[string]error{kindAPIKey: &apiError{Op: "API key creation", Status: http.StatusServiceUnavailable}},
		commitFirst: true,
		deleteFails: &apiError{Op: "deletion", Status: http.StatusServiceUnavailable},
	}
	env.injectFaults(fault)

	if _, err := env.do(t, logical.ReadOperation, "creds/r", nil); err == nil {
		t.Fatal("creds read succeeded despite the fault")
	}
	if n := len(env.issuedKeys()); n != 2 {
		t.Fatalf("want both keys still in Datadog while deletes fail, got %d", n)
	}
	ids := env.walIDs(t)
	if len(ids) != 1 {
		t.Fatalf("want one WAL entry tracking the keys, got %v", ids)
	}

	// Datadog recovers; Vault's periodic rollback replays the entry.
	fault.deleteFails = nil
	env.requireRolledBack(t)
}

func TestCredsRevokeFailureIsRetried(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read"})
	fault := &faultyClient{}
	env.injectFaults(fault)
	resp := env.mustDo(t, logical.ReadOperation, "creds/r", nil)

	fault.deleteFails = &apiError{Op: "deletion", Status: http.StatusInternalServerError}
	if _, err := env.revoke(t, resp); err == nil {
		t.Fatal("revoke reported success while Datadog failed")
	} else if strings.Contains(err.Error(), resp.Data["application_key"].(string)) {
		t.Error("revoke error contains the secret")
	}
	fault.deleteFails = nil
	if _, err := env.revoke(t, resp); err != nil {
		t.Fatal(err)
	}
	if left := env.issuedKeys(); len(left) != 0 {
		t.Errorf("keys left: %v", left)
	}
}

func TestCredentialNameIsSanitizedAndBounded(t *testing.T) {
	name, err := credentialName(defaultNameTemplate, nameData{RoleName: "role", DisplayName: "oidc-Jane Doe <jane@example.com>" + strings.Repeat("x", 200)}, mountMarker("mount")+newRecordID())
	if err != nil {
		t.Fatal(err)
	}
	if len(name) > maxNameLength || !regexp.MustCompile(`^vault-role-oidc-Jane-Doe--jane-example\.co-\d{10}-[0-9a-f]{16}[a-z2-7]{16}$`).MatchString(name) {
		t.Errorf("name %q", name)
	}
}

func TestCredsNameDatadogKeyLimit(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read"})
	// Fill the owner's quota directly in the emulator (its seeded
	// application key counts; the organisation's API keys do not).
	held := 0
	for _, k := range env.emu.Keys() {
		if k.Kind == emulator.KindApplicationKey && k.OwnerID == env.emu.UserID() {
			held++
		}
	}
	for i := held; i < 1000; i++ {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/api/v2/current_user/application_keys",
			strings.NewReader(fmt.Sprintf(`{"data":{"type":"application_keys","attributes":{"name":"filler-%d"}}}`, i)))
		req.Header.Set("DD-API-KEY", env.emu.APIKey())
		req.Header.Set("DD-APPLICATION-KEY", env.emu.AppKey())
		env.emu.Emulator.ServeHTTP(rec, req)
		if rec.Code != http.StatusCreated {
			t.Fatalf("filler key %d: %d %s", i, rec.Code, rec.Body)
		}
	}
	resp, err := env.do(t, logical.ReadOperation, "creds/r", nil)
	wantUserError(t, resp, err, "limit of 1000 application keys per user")
	if left := env.issuedKeys(); len(left) != 0 {
		t.Errorf("keys left after a refused create: %v", left)
	}
}
