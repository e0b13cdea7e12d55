package backend

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"
)

// tidyNow runs tidy and waits for its status.
func (env *testEnv) tidyNow(t *testing.T, data map[string]interface{}) map[string]interface{} {
	t.Helper()
	resp := env.mustDo(t, logical.UpdateOperation, "tidy", data)
	if resp.Data[logical.HTTPStatusCode] != http.StatusAccepted {
		t.Fatalf("tidy answered %v, want 202 Accepted", resp.Data)
	}
	return env.waitTidy(t)
}

func (env *testEnv) waitTidy(t *testing.T) map[string]interface{} {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		status := env.mustDo(t, logical.ReadOperation, "tidy/status", nil)
		if status != nil && status.Data["state"] != "running" {
			return status.Data
		}
		if time.Now().After(deadline) {
			t.Fatalf("tidy still running after 20s: %v", status)
		}
	}
}

// createKeyNamed makes an application key of the configured user directly
// in Datadog, as a late or lost create of the engine would leave it.
func (env *testEnv) createKeyNamed(t *testing.T, name string) string {
	t.Helper()
	status, key := env.rootCall(t, http.MethodPost, "/api/v2/current_user/application_keys",
		fmt.Sprintf(`{"data":{"type":"application_keys","attributes":{"name":%q}}}`, name))
	if status != http.StatusCreated {
		t.Fatalf("creating key %q: %d", name, status)
	}
	return key["data"].(map[string]interface{})["id"].(string)
}

func TestTidyDeletesWhatNoLeaseAccountsFor(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read", "api_key_mode": "dynamic"})
	live := env.mustDo(t, logical.ReadOperation, "creds/r", nil)
	lost := env.mustDo(t, logical.ReadOperation, "creds/r", nil)

	orphan := env.createKeyNamed(t, "vault-r-token-1795700000-"+env.b.marker+"abcdefghijklmnop")
	otherMount := env.createKeyNamed(t, "vault-r-token-1795700000-"+mountMarker("another mount")+"abcdefghijklmnop")
	unmarked := env.createKeyNamed(t, "vault-made-by-hand")
	foreign := env.createKeyNamed(t, "ci-pipeline-"+env.b.marker+"abcdefghijklmnop")

	// Vault lost the second lease: its record says it ended a day ago.
	rec, err := getRecord(context.Background(), env.storage, lost.Secret.InternalData["record"].(string))
	if err != nil {
		t.Fatal(err)
	}
	rec.LeaseEnds = time.Now().Add(-24 * time.Hour)
	if err := putRecord(context.Background(), env.storage, rec); err != nil {
		t.Fatal(err)
	}

	dry := env.tidyNow(t, map[string]interface{}{"dry_run": true, "safety_buffer": "1h"})
	if dry["found"] != 3 || dry["deleted"] != 0 || len(dry["candidates"].([]tidyCandidate)) != 3 {
		t.Errorf("dry run: %v; want 3 found (the orphan and the lost lease's 2 keys), none deleted", dry)
	}
	if !env.keyExists(orphan) {
		t.Fatal("a dry run deleted a key")
	}

	status := env.tidyNow(t, map[string]interface{}{"safety_buffer": "1h"})
	if status["state"] != "finished" || status["found"] != 3 || status["deleted"] != 3 || status["failed"] != 0 || status["dropped"] != 1 {
		t.Errorf("tidy status: %v; want 3 found and deleted, the lost lease's record dropped", status)
	}
	if byKind := status["by_kind"].(map[string]*tidyCount); byKind[kindApplicationKey].Deleted != 2 || byKind[kindAPIKey].Deleted != 1 {
		t.Errorf("by kind: %+v %+v", byKind[kindApplicationKey], byKind[kindAPIKey])
	}
	for name, id := range map[string]string{"orphan": orphan, "lost lease's application key": lost.Data["application_key_id"].(string), "lost lease's API key": lost.Data["api_key_id"].(string)} {
		if env.keyExists(id) {
			t.Errorf("tidy left the %s", name)
		}
	}
	for name, id := range map[string]string{"live lease's application key": live.Data["application_key_id"].(string), "live lease's API key": live.Data["api_key_id"].(string),
		"other mount's key": otherMount, "key without the engine's suffix": unmarked, "key without the engine's prefix": foreign} {
		if !env.keyExists(id) {
			t.Errorf("tidy deleted the %s", name)
		}
	}
	if _, err := env.revoke(t, live); err != nil {
		t.Errorf("revoking the live lease after tidy: %v", err)
	}
}

// A lease whose keys were deleted outside Vault leaves a record that
// accounts for nothing; tidy drops it, once older than the buffer.
func TestTidyDropsRecordsOfKeysDeletedOutsideVault(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read", "api_key_mode": "dynamic"})
	creds := env.mustDo(t, logical.ReadOperation, "creds/r", nil)
	for _, k := range env.issuedKeys() {
		env.emu.DeleteKey(k.ID)
	}

	if status := env.tidyNow(t, map[string]interface{}{"safety_buffer": "1h"}); status["dropped"] != 0 {
		t.Errorf("tidy dropped a record younger than the buffer: %v", status)
	}
	if status := env.tidyNow(t, map[string]interface{}{"safety_buffer": 0}); status["dropped"] != 1 || status["found"] != 0 {
		t.Errorf("tidy status: %v; want the record dropped and nothing to delete", status)
	}
	if rec, _ := getRecord(context.Background(), env.storage, creds.Secret.InternalData["record"].(string)); rec != nil {
		t.Error("the record is still there")
	}
	if _, err := env.revoke(t, creds); err != nil {
		t.Errorf("revoking after the record was dropped: %v", err)
	}
}

// Two mounts acting as the same Datadog user never tidy each other's keys.
func TestTidyLeavesAnotherMountsKeys(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read"})
	creds := env.mustDo(t, logical.ReadOperation, "creds/r", nil)

	conf := logical.TestBackendConfig()
	conf.BackendUUID = "second mount"
	conf.StorageView = &logical.InmemStorage{}
	conf.System = &logical.StaticSystemView{DefaultLeaseTTLVal: time.Hour, MaxLeaseTTLVal: 24 * time.Hour}
	second, err := Factory(context.Background(), conf)
	if err != nil {
		t.Fatal(err)
	}
	other := &testEnv{b: second.(*datadogBackend), storage: conf.StorageView, emu: env.emu, url: env.url}
	other.configure(t)
	if status := other.tidyNow(t, map[string]interface{}{"safety_buffer": 0}); status["found"] != 0 {
		t.Errorf("the second mount's tidy found %v of the first mount's keys", status["found"])
	}
	if !env.keyExists(creds.Data["application_key_id"].(string)) {
		t.Error("the second mount's tidy deleted the first mount's key")
	}
}

// The engine tidies by itself every tidy_interval, from Vault's periodic
// rollback call.
func TestTidyRunsEveryInterval(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	if got := env.mustDo(t, logical.ReadOperation, "config", nil).Data["tidy_interval"]; got != int64(3600) {
		t.Errorf("default tidy_interval = %v, want 3600", got)
	}
	orphan := env.createKeyNamed(t, "vault-r-token-1795700000-"+env.b.marker+"abcdefghijklmnop")

	env.rollbackOnSchedule(t)
	if status := env.mustDo(t, logical.ReadOperation, "tidy/status", nil); status != nil {
		t.Fatalf("tidy ran before its interval: %v", status.Data)
	}
	env.mustDo(t, logical.UpdateOperation, "config", map[string]interface{}{"tidy_interval": "1s"})
	time.Sleep(1100 * time.Millisecond)
	env.rollbackOnSchedule(t)
	if status := env.waitTidy(t); status["deleted"] != 1 || env.keyExists(orphan) {
		t.Errorf("periodic tidy: %v", status)
	}

	env.mustDo(t, logical.UpdateOperation, "config", map[string]interface{}{"tidy_interval": 0})
	started := env.mustDo(t, logical.ReadOperation, "tidy/status", nil).Data["started_at"]
	time.Sleep(1100 * time.Millisecond)
	env.rollbackOnSchedule(t)
	if again := env.mustDo(t, logical.ReadOperation, "tidy/status", nil).Data["started_at"]; again != started {
		t.Error("tidy ran with tidy_interval 0")
	}
}

func TestTidyBadInput(t *testing.T) {
	env := newTestEnv(t)
	resp, err := env.do(t, logical.UpdateOperation, "tidy", nil)
	wantUserError(t, resp, err, "not configured")
	env.configure(t)
	resp, err = env.do(t, logical.UpdateOperation, "tidy", map[string]interface{}{"safety_buffer": "-1s"})
	wantUserError(t, resp, err, "safety_buffer")
	resp, err = env.do(t, logical.UpdateOperation, "config", map[string]interface{}{"tidy_interval": "-1s"})
	wantUserError(t, resp, err, "tidy_interval")
}

// Disabling the mount deletes every credential of its marker before the
// mount's storage goes: an orphan waiting for the next tidy, and a WAL
// entry's key whose rollback failed.
func TestDisablingTheMountLeavesNoKeyOfItsMarker(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read", "api_key_mode": "dynamic"})
	orphan := env.createKeyNamed(t, "vault-r-token-1795700000-"+env.b.marker+"abcdefghijklmnop")
	foreign := env.createKeyNamed(t, "vault-r-token-1795700000-"+mountMarker("another mount")+"abcdefghijklmnop")

	// A request whose API key create fails and whose clean-up and
	// rollback cannot delete its application key.
	fault := &faultyClient{
		createFails: map[string]error{kindAPIKey: &apiError{Op: "API key creation", Status: http.StatusServiceUnavailable}},
		commitFirst: true,
		deleteFails: &apiError{Op: "deletion", Status: http.StatusServiceUnavailable},
	}
	env.injectFaults(fault)
	if _, err := env.do(t, logical.ReadOperation, "creds/r", nil); err == nil {
		t.Fatal("creds read succeeded despite the fault")
	}
	if err := env.rollbackNow(t); err == nil {
		t.Fatal("the rollback succeeded although every deletion fails")
	}
	stuck := env.issuedKeys()
	if len(stuck) < 3 {
		t.Fatalf("want the orphans and the stuck request's keys in Datadog, got %v", stuck)
	}

	// Datadog recovers as the mount is disabled.
	fault.deleteFails = nil
	env.b.newClient = newDatadogClient
	env.b.System().(*logical.StaticSystemView).TaintedVal = true
	env.b.Cleanup(context.Background())
	for _, k := range env.issuedKeys() {
		if k.ID != foreign {
			t.Errorf("%s %s (%s) of the disabled mount is still in Datadog", k.Kind, k.ID, k.Name)
		}
	}
	if !env.keyExists(foreign) {
		t.Error("disabling a mount deleted another mount's key")
	}
	if env.keyExists(orphan) {
		t.Error("the orphan survived the mount")
	}
}

// Cleanup (plugin reload, step-down, unmount) stops a running tidy and
// waits for it: no old instance goes on deleting from stale storage.
func TestCleanupStopsTheRunningTidy(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	// Datadog's listings hang until the call is cancelled.
	env.b.newClient = func(cfg *datadogConfig, logger hclog.Logger) (datadogAPI, error) {
		real, err := newDatadogClient(cfg, logger)
		return hangingList{real}, err
	}
	env.b.reset()
	env.mustDo(t, logical.UpdateOperation, "tidy", nil)
	time.Sleep(200 * time.Millisecond)
	began := time.Now()
	env.b.Cleanup(context.Background())
	if took := time.Since(began); took > 10*time.Second {
		t.Errorf("cleanup took %s", took)
	}
	env.b.tidyLock.Lock()
	status := env.b.tidyRunning.snapshot()
	env.b.tidyLock.Unlock()
	if status.State == "running" {
		t.Fatal("a tidy still runs after its backend was cleaned up")
	}
	if env.b.startTidy(env.storage, nil, false, 0) {
		t.Error("a cleaned-up backend started another tidy")
	}
}

type hangingList struct{ datadogAPI }

func (hangingList) List(ctx context.Context, _ datadogObject, _ int) ([]listedObject, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}
