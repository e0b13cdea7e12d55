package backend

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
)

// engineAPIKeys returns the API keys the engine made that Datadog holds.
func (env *testEnv) engineAPIKeys() []emulator.Key {
	var out []emulator.Key
	for _, k := range env.issuedKeys() {
		if k.Kind == emulator.KindAPIKey {
			out = append(out, k)
		}
	}
	return out
}

// keysWork reports whether Datadog accepts the pair (GET /api/v2/validate_keys).
func (env *testEnv) keysWork(t *testing.T, apiKey, appKey string) bool {
	t.Helper()
	return env.statusWith(t, "/api/v2/validate_keys", apiKey, appKey) == http.StatusOK
}

func TestSharedAPIKeyIsTheDefaultAndHandedToEveryLeaseOfTheWindow(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read"})
	role := env.mustDo(t, logical.ReadOperation, "roles/r", nil)
	if role.Data["api_key_mode"] != apiKeyModeShared || role.Data["api_key_rotation"] != int64(86400) {
		t.Fatalf("default role: api_key_mode %v, api_key_rotation %v; want shared, 86400", role.Data["api_key_mode"], role.Data["api_key_rotation"])
	}

	var leases []*logical.Response
	for range 5 {
		leases = append(leases, env.mustDo(t, logical.ReadOperation, "creds/r", nil))
	}
	if n := len(env.engineAPIKeys()); n != 1 {
		t.Fatalf("5 leases of one window made %d API keys, want 1", n)
	}
	for i, l := range leases {
		if l.Data["api_key"] != leases[0].Data["api_key"] || l.Data["api_key_id"] != leases[0].Data["api_key_id"] {
			t.Errorf("lease %d got another API key than lease 0", i)
		}
		if l.Data["application_key"] == leases[0].Data["application_key"] && i > 0 {
			t.Errorf("lease %d shares lease 0's application key", i)
		}
		if !env.keysWork(t, l.Data["api_key"].(string), l.Data["application_key"].(string)) {
			t.Errorf("lease %d's keys do not validate", i)
		}
	}

	// Revoking leases never breaks another lease's API key...
	for i, l := range leases[:4] {
		if _, err := env.revoke(t, l); err != nil {
			t.Fatalf("revoke %d: %v", i, err)
		}
		if !env.keysWork(t, leases[4].Data["api_key"].(string), leases[4].Data["application_key"].(string)) {
			t.Fatalf("revoking lease %d broke the last lease's keys", i)
		}
	}
	if n := len(env.engineAPIKeys()); n != 1 {
		t.Fatalf("with one lease left, %d API keys, want 1", n)
	}
	// ...and the last one takes the key with it, though its window is open.
	if _, err := env.revoke(t, leases[4]); err != nil {
		t.Fatal(err)
	}
	if keys := env.issuedKeys(); len(keys) != 0 {
		t.Errorf("after every lease was revoked, %d keys of the engine are left: %v", len(keys), keys)
	}
	if env.statusWith(t, "/api/v1/validate", leases[0].Data["api_key"].(string), "") != http.StatusForbidden {
		t.Error("the shared API key still validates after its last lease was revoked")
	}
	if entries, _ := env.storage.List(context.Background(), sharedSecretPrefix); len(entries) != 0 {
		t.Errorf("the shared key's stored secret outlived it: %v", entries)
	}

	// A new lease in the same window gets a new key.
	again := env.mustDo(t, logical.ReadOperation, "creds/r", nil)
	if again.Data["api_key_id"] == leases[0].Data["api_key_id"] {
		t.Error("a deleted shared key was handed out again")
	}
	if !env.keysWork(t, again.Data["api_key"].(string), again.Data["application_key"].(string)) {
		t.Error("the new window key does not validate")
	}
}

func TestSharedAPIKeyOfAClosedWindowLivesWhileALeaseHoldsIt(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "agent", map[string]interface{}{"credential_type": "api_key", "api_key_rotation": "1m", "ttl": "1h", "max_ttl": "2h"})

	old := env.mustDo(t, logical.ReadOperation, "creds/agent", nil)
	// The lease ends by its key's end: the window's end plus max_ttl.
	if got, limit := old.Secret.MaxTTL, time.Minute+2*time.Hour; got > limit || got < 2*time.Hour {
		t.Errorf("lease max TTL %s; want between the role's 2h and the window's end plus 2h (%s)", got, limit)
	}
	// Close the window, as a minute passing would.
	env.b.sharedKeys.mu.Lock()
	env.b.sharedKeys.current["agent"].rec.Shared.WindowEnds = time.Now().Add(-time.Second)
	env.b.sharedKeys.mu.Unlock()

	next := env.mustDo(t, logical.ReadOperation, "creds/agent", nil)
	if next.Data["api_key_id"] == old.Data["api_key_id"] {
		t.Fatal("a lease issued after the window closed got the old window's key")
	}
	if n := len(env.engineAPIKeys()); n != 2 {
		t.Fatalf("%d API keys, want 2: the closed window's, still held, and the new one", n)
	}
	if env.statusWith(t, "/api/v1/validate", old.Data["api_key"].(string), "") != http.StatusOK {
		t.Error("the closed window's key stopped working while a lease holds it")
	}
	if _, err := env.renew(t, old); err != nil {
		t.Errorf("renewing a lease past its key's window: %v", err)
	}
	if _, err := env.revoke(t, old); err != nil {
		t.Fatal(err)
	}
	if env.statusWith(t, "/api/v1/validate", old.Data["api_key"].(string), "") != http.StatusForbidden {
		t.Error("the closed window's key outlived its last lease")
	}
	if env.statusWith(t, "/api/v1/validate", next.Data["api_key"].(string), "") != http.StatusOK {
		t.Error("revoking the old window's lease broke the new window's key")
	}
}

// Revocations and issues racing: the key is deleted exactly when its last
// holder goes, never under a lease, and never left behind.
func TestSharedAPIKeyRacingRevocationsAndIssues(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read", "api_key_mode": "shared"})

	for round := range 3 {
		var first []*logical.Response
		for range 8 {
			first = append(first, env.mustDo(t, logical.ReadOperation, "creds/r", nil))
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		var second []*logical.Response
		errs := make(chan error, 32)
		for _, l := range first {
			wg.Add(2)
			go func() {
				defer wg.Done()
				if _, err := env.revoke(t, l); err != nil {
					errs <- err
				}
			}()
			go func() {
				defer wg.Done()
				resp, err := env.do(t, logical.ReadOperation, "creds/r", nil)
				if err != nil || resp.IsError() {
					errs <- fmt.Errorf("creds: %v %v", err, resp)
					return
				}
				mu.Lock()
				second = append(second, resp)
				mu.Unlock()
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("round %d: %v", round, err)
		}
		for i, l := range second {
			if !env.keysWork(t, l.Data["api_key"].(string), l.Data["application_key"].(string)) {
				t.Fatalf("round %d: lease %d issued during the revocations holds a deleted API key", round, i)
			}
		}
		for _, l := range second {
			if _, err := env.revoke(t, l); err != nil {
				t.Fatal(err)
			}
		}
		if keys := env.issuedKeys(); len(keys) != 0 {
			t.Fatalf("round %d: %d keys left after every lease was revoked: %v", round, len(keys), keys)
		}
	}
}

func TestSharedAPIKeyAfterARestart(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read"})
	a := env.mustDo(t, logical.ReadOperation, "creds/r", nil)
	b := env.mustDo(t, logical.ReadOperation, "creds/r", nil)

	env.restart(t)
	c := env.mustDo(t, logical.ReadOperation, "creds/r", nil)
	if c.Data["api_key_id"] != a.Data["api_key_id"] {
		t.Error("after a restart the window's key was not handed out again")
	}
	for _, l := range []*logical.Response{a, b} {
		if _, err := env.revoke(t, l); err != nil {
			t.Fatal(err)
		}
	}
	if !env.keysWork(t, c.Data["api_key"].(string), c.Data["application_key"].(string)) {
		t.Fatal("revoking the leases issued before the restart deleted the key a later lease holds")
	}
	if _, err := env.revoke(t, c); err != nil {
		t.Fatal(err)
	}
	if keys := env.issuedKeys(); len(keys) != 0 {
		t.Errorf("%d keys left: %v", len(keys), keys)
	}
}

// A crash after the key was made but before its first lease's record was
// written leaves a key no lease holds: the sweep deletes it once the
// request is surely over.
func TestSharedAPIKeyWithoutHoldersIsSwept(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read"})
	sess, err := env.b.session(context.Background(), env.storage)
	if err != nil {
		t.Fatal(err)
	}
	role, _ := env.b.cachedRole(context.Background(), env.storage, "r")
	if _, resp, err := env.b.acquireSharedKey(context.Background(), env.storage, sess, "r", role, "crashed-request"); resp != nil || err != nil {
		t.Fatal(resp, err)
	}
	env.restart(t) // the request's holder record was never written
	if n := len(env.engineAPIKeys()); n != 1 {
		t.Fatalf("%d API keys before the sweep, want 1", n)
	}
	if err := env.b.sweepSharedKeys(context.Background(), env.storage, false); err != nil {
		t.Fatal(err)
	}
	if n := len(env.engineAPIKeys()); n != 1 {
		t.Fatal("the sweep deleted a key whose request may still be running")
	}
	if err := env.rollbackNow(t); err != nil {
		t.Fatal(err)
	}
	if keys := env.issuedKeys(); len(keys) != 0 {
		t.Errorf("the rollback left a shared key no lease holds: %v", keys)
	}
}

func TestSharedAPIKeyFoundByTidyWhenNoRecordHoldsIt(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read"})
	l := env.mustDo(t, logical.ReadOperation, "creds/r", nil)
	// Storage lost every record (a restore from an old snapshot, say).
	ids, _ := env.storage.List(context.Background(), recordPrefix)
	for _, id := range ids {
		env.storage.Delete(context.Background(), recordPrefix+id)
	}
	env.restart(t)
	env.tidyNow(t, map[string]interface{}{"safety_buffer": 0})
	if keys := env.issuedKeys(); len(keys) != 0 {
		t.Errorf("tidy left keys no record holds: %v", keys)
	}
	if env.statusWith(t, "/api/v1/validate", l.Data["api_key"].(string), "") != http.StatusForbidden {
		t.Error("the orphaned shared key still works")
	}
}

func TestAPIKeyModeShapesRoles(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	for _, tc := range []struct {
		data  map[string]interface{}
		wants []string
	}{
		{map[string]interface{}{"credential_type": "api_key", "api_key_mode": "none"}, []string{"api_key_mode", "shared, dynamic"}},
		{map[string]interface{}{"credential_type": "api_key", "api_key_mode": "static"}, []string{"api_key_mode", "shared, dynamic"}},
		{map[string]interface{}{"scopes": "dashboards_read", "api_key_rotation": "5s"}, []string{"api_key_rotation", "10s"}},
		{map[string]interface{}{"scopes": "dashboards_read", "api_key_mode": "weekly"}, []string{"api_key_mode", "shared"}},
	} {
		resp, err := env.do(t, logical.CreateOperation, "roles/bad", tc.data)
		wantUserError(t, resp, err, tc.wants...)
	}
	if entry, _ := env.storage.Get(context.Background(), rolePrefix+"bad"); entry != nil {
		t.Error("a refused role was stored")
	}
	env.writeRole(t, "agent", map[string]interface{}{"credential_type": "api_key"})
	read := env.mustDo(t, logical.ReadOperation, "roles/agent", nil)
	if read.Data["api_key_mode"] != "shared" {
		t.Errorf("api_key role read: api_key_mode %v, want shared", read.Data["api_key_mode"])
	}
	env.writeRole(t, "tok", map[string]interface{}{"credential_type": "personal_access_token", "scopes": "dashboards_read"})
	read = env.mustDo(t, logical.ReadOperation, "roles/tok", nil)
	for _, f := range []string{"api_key_mode", "api_key_rotation"} {
		if _, shown := read.Data[f]; shown {
			t.Errorf("a token role shows %s", f)
		}
	}
}

func TestAPIKeyRoleLeasesShareTheKey(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "agent", map[string]interface{}{"credential_type": "api_key"})
	a := env.mustDo(t, logical.ReadOperation, "creds/agent", nil)
	b := env.mustDo(t, logical.ReadOperation, "creds/agent", nil)
	if a.Data["api_key"] != b.Data["api_key"] || len(env.engineAPIKeys()) != 1 {
		t.Fatalf("two api_key leases of one window: %d API keys", len(env.engineAPIKeys()))
	}
	if _, err := env.renew(t, a); err != nil {
		t.Fatalf("renew: %v", err)
	}
	if _, err := env.revoke(t, a); err != nil {
		t.Fatal(err)
	}
	if env.statusWith(t, "/api/v1/validate", b.Data["api_key"].(string), "") != http.StatusOK {
		t.Fatal("revoking one api_key lease broke the other's key")
	}
	if _, err := env.revoke(t, b); err != nil {
		t.Fatal(err)
	}
	if keys := env.issuedKeys(); len(keys) != 0 {
		t.Errorf("%d keys left: %v", len(keys), keys)
	}
}

// A leaked shared API key dies at once, though leases hold it: their
// renewals are refused saying why, and new leases get a new key.
func TestLeakedSharedAPIKeyIsKilled(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read"})
	a := env.mustDo(t, logical.ReadOperation, "creds/r", nil)
	b := env.mustDo(t, logical.ReadOperation, "creds/r", nil)
	env.emu.MarkLeaked(a.Data["api_key_id"].(string), "github")

	if status := env.watchNow(t); status["leaked"] != 1 || status["checked"] != 2 || status["failed"] != 0 {
		t.Fatalf("watch status: %v; want the 2 leases checked, the shared key killed", status)
	}
	if env.statusWith(t, "/api/v1/validate", a.Data["api_key"].(string), "") != http.StatusForbidden {
		t.Fatal("the leaked shared key still works")
	}
	for _, l := range []*logical.Response{a, b} {
		renewed, err := env.renew(t, l)
		wantUserError(t, renewed, err, "shared API key", "leaked")
	}
	next := env.mustDo(t, logical.ReadOperation, "creds/r", nil)
	if next.Data["api_key_id"] == a.Data["api_key_id"] || !env.keysWork(t, next.Data["api_key"].(string), next.Data["application_key"].(string)) {
		t.Fatal("a lease issued after the kill did not get a new, working key")
	}
	for _, l := range []*logical.Response{a, b, next} {
		if _, err := env.revoke(t, l); err != nil {
			t.Fatal(err)
		}
	}
	if keys := env.issuedKeys(); len(keys) != 0 {
		t.Errorf("%d keys left: %v", len(keys), keys)
	}
	if ids := env.walIDs(t); len(ids) != 0 {
		t.Errorf("records left: %v", ids)
	}
}

// Per-lease API keys stop short of the organisation's cap, less the
// reserve for people: a 400 naming the cap and the count, and no
// application key made for the refused request. Datadog is counted once a
// minute while the room is large, before every request once it is not.
func TestDynamicAPIKeysStopShortOfTheCap(t *testing.T) {
	env := newTestEnvWith(t, emulator.Options{MaxAPIKeys: 12, PeopleAPIKeys: 3})
	env.configure(t)
	env.mustDo(t, logical.UpdateOperation, "config", map[string]interface{}{"api_key_reserve": 2})
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read", "api_key_mode": "dynamic"})
	// 12 = the seeded key, 3 of people, 6 leases' and 2 kept free.
	for i := range 6 {
		if resp, err := env.do(t, logical.ReadOperation, "creds/r", nil); err != nil || resp.IsError() {
			t.Fatalf("lease %d: %v %v", i, err, resp)
		}
	}
	before := len(env.issuedKeys())
	resp, err := env.do(t, logical.ReadOperation, "creds/r", nil)
	wantUserError(t, resp, err, "holds 10 API keys of its cap of 12", "api_key_reserve", "api_key_mode=shared")
	if after := len(env.issuedKeys()); after != before {
		t.Errorf("the refused request made %d keys", after-before)
	}
	if peak := env.emu.APIKeyPeak(); peak > 10 {
		t.Errorf("the organisation held %d API keys, past its cap less the reserve", peak)
	}
}

// A pool's request whose first service account Datadog refuses at its
// limit tries the next one: the role's shared API key it got meanwhile is
// still held, and works, when the lease is issued.
func TestSharedAPIKeyHeldAcrossAPoolsRetry(t *testing.T) {
	env, sas := poolEnv(t, 3, 2)
	a, b := sas[0], sas[1]
	env.writeRole(t, "p", map[string]interface{}{"credential_type": "service_account_application_key", "scopes": "dashboards_read",
		"service_account_ids": a + "," + b})
	for range 3 {
		env.serviceAccountAppKey(t, a) // full behind the engine's back
	}
	// The refusal comes once the shared API key is got.
	if _, err := env.emu.AddFault(emulator.Fault{Operation: "CreateServiceAccountApplicationKey", Action: emulator.FaultLatency,
		Latency: 300 * time.Millisecond, Times: 1}); err != nil {
		t.Fatal(err)
	}
	creds := env.mustDo(t, logical.ReadOperation, "creds/p", nil)
	if creds.Data["service_account_id"] != b {
		t.Fatalf("the key went to %v, want %s", creds.Data["service_account_id"], b)
	}
	if !env.keysWork(t, creds.Data["api_key"].(string), creds.Data["application_key"].(string)) {
		t.Fatal("the lease issued after the pool's retry holds a deleted shared API key")
	}
	if _, err := env.revoke(t, creds); err != nil {
		t.Fatal(err)
	}
	if n := len(env.engineAPIKeys()); n != 0 {
		t.Errorf("%d API keys left", n)
	}
}
