package backend

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
)

// rollbackNow runs Vault's periodic rollback as if every write-ahead log
// entry were older than the minimum age.
func (env *testEnv) rollbackNow(t *testing.T) error {
	t.Helper()
	_, err := env.b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.RollbackOperation,
		Storage:   env.storage,
		Data:      map[string]interface{}{"immediate": true},
	})
	return err
}

// requireRolledBack runs the rollback and checks that it left no key of the
// engine in Datadog and no WAL entry.
func (env *testEnv) requireRolledBack(t *testing.T) {
	t.Helper()
	if err := env.rollbackNow(t); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	if left := env.issuedKeys(); len(left) != 0 {
		t.Errorf("keys left after the rollback: %v", left)
	}
	if ids := env.walIDs(t); len(ids) != 0 {
		t.Errorf("WAL entries left after the rollback: %v", ids)
	}
}

// failCalls makes every call to an operation fail with status until the
// returned function is called.
func (env *testEnv) failCalls(t *testing.T, operation string, status int) (stop func()) {
	t.Helper()
	f, err := env.emu.AddFault(emulator.Fault{Operation: operation, Action: emulator.FaultError, Status: status})
	if err != nil {
		t.Fatal(err)
	}
	return func() { env.emu.RemoveFault(f.ID) }
}

// The WAL entry of a failed request keeps the ids Datadog returned, so the
// rollback deletes those objects by id even when no listing works.
func TestRollbackDeletesByRecordedIDs(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read", "api_key_mode": "dynamic"})

	// The application key is created; the API key create fails for sure;
	// deleting the application key fails, so it must wait for the rollback.
	fault := &faultyClient{deleteFails: &apiError{Op: "deletion", Status: http.StatusServiceUnavailable}}
	env.injectFaults(fault)
	stopCreate := env.failCalls(t, "CreateAPIKey", http.StatusForbidden)
	env.failCalls(t, "ListCurrentUserApplicationKeys", http.StatusServiceUnavailable)
	env.failCalls(t, "ListApplicationKeys", http.StatusServiceUnavailable)
	if resp, err := env.do(t, logical.ReadOperation, "creds/r", nil); err == nil && !resp.IsError() {
		t.Fatal("creds read succeeded through the fault")
	}
	if n := len(env.issuedKeys()); n != 1 {
		t.Fatalf("%d keys in Datadog, want the application key whose deletion failed", n)
	}
	stopCreate()
	fault.deleteFails = nil
	env.requireRolledBack(t)
}

// The engine's write-ahead log is local to the cluster, as Vault's own
// engines keep theirs.
func TestWriteAheadLogIsLocalStorage(t *testing.T) {
	env := newTestEnv(t)
	local := env.b.SpecialPaths().LocalStorage
	if len(local) == 0 {
		t.Fatal("no LocalStorage paths: the write-ahead log would be replicated")
	}
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read"})
	env.failCalls(t, "CreateAPIKey", http.StatusInternalServerError)
	env.do(t, logical.ReadOperation, "creds/r", nil)
	for key := range env.snapshot(t) {
		if key == configPath || len(key) > len(rolePrefix) && key[:len(rolePrefix)] == rolePrefix {
			continue
		}
		inLocal := false
		for _, prefix := range local {
			inLocal = inLocal || len(key) >= len(prefix) && key[:len(prefix)] == prefix
		}
		if !inLocal {
			t.Errorf("storage entry %q written on the creds path is not under a LocalStorage prefix %v", key, local)
		}
	}
}

// On a performance standby the rollback does nothing: the active node owns
// the write-ahead log (Vault's AWS engine skips it there too).
func TestRollbackSkippedOnPerformanceStandby(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read"})
	fault := &faultyClient{deleteFails: &apiError{Op: "deletion", Status: http.StatusServiceUnavailable}}
	env.injectFaults(fault)
	env.failCalls(t, "CreateAPIKey", http.StatusForbidden)
	env.do(t, logical.ReadOperation, "creds/r", nil)
	env.emu.ClearFaults()
	fault.deleteFails = nil
	before := env.snapshot(t)
	keys := len(env.issuedKeys())

	env.b.System().(*logical.StaticSystemView).ReplicationStateVal = consts.ReplicationPerformanceStandby
	calls := env.emu.Requests()
	if err := env.rollbackNow(t); err != nil {
		t.Fatal(err)
	}
	if env.emu.Requests() != calls || !sameSnapshot(before, env.snapshot(t)) || len(env.issuedKeys()) != keys {
		t.Error("the rollback ran on a performance standby")
	}

	env.b.System().(*logical.StaticSystemView).ReplicationStateVal = 0
	env.requireRolledBack(t)
}

// Requests that write storage or change Datadog go to the active node of
// the primary cluster.
func TestWritePathsAreForwarded(t *testing.T) {
	env := newTestEnv(t)
	want := map[string][]logical.Operation{
		"config":             {logical.CreateOperation, logical.UpdateOperation, logical.DeleteOperation},
		"config/rotate-root": {logical.UpdateOperation},
		"roles/x":            {logical.CreateOperation, logical.UpdateOperation, logical.DeleteOperation},
		"creds/x":            {logical.ReadOperation},
	}
	for path, ops := range want {
		p := env.b.Route(path)
		if p == nil {
			t.Fatalf("no path for %s", path)
		}
		for _, op := range ops {
			handler, ok := p.Operations[op].(*framework.PathOperation)
			if !ok {
				t.Errorf("%s %s: no operation", op, path)
				continue
			}
			if !handler.ForwardPerformanceStandby || !handler.ForwardPerformanceSecondary {
				t.Errorf("%s %s is not forwarded to the active node of the primary (standby %v, secondary %v)",
					op, path, handler.ForwardPerformanceStandby, handler.ForwardPerformanceSecondary)
			}
		}
	}
}

// A create that Datadog applies seconds after answering 5xx is not found by
// the request's own look-up: its WAL entry stays, and the rollback finds
// the late key by its name.
func TestCreateCommittedAfterTheLookUpIsRolledBack(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read"})
	if _, err := env.emu.AddFault(emulator.Fault{Operation: "CreateAPIKey", Action: emulator.FaultDelayedCommit, Delay: time.Second, Times: 1}); err != nil {
		t.Fatal(err)
	}
	if resp, err := env.do(t, logical.ReadOperation, "creds/r", nil); err == nil && !resp.IsError() {
		t.Fatal("creds read succeeded through the fault")
	}
	for deadline := time.Now().Add(10 * time.Second); env.emu.PendingCommits() > 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the delayed commit never happened")
		}
	}
	if n := len(env.issuedKeys()); n != 1 {
		t.Fatalf("%d keys in Datadog after the late commit, want the API key", n)
	}
	if ids := env.walIDs(t); len(ids) != 1 {
		t.Fatalf("WAL entries after an ambiguous failure: %v, want one", ids)
	}
	env.requireRolledBack(t)
}

// rollbackOnSchedule runs Vault's periodic rollback as its timer does.
func (env *testEnv) rollbackOnSchedule(t *testing.T) {
	t.Helper()
	if _, err := env.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.RollbackOperation, Storage: env.storage}); err != nil {
		t.Fatal(err)
	}
}

// A WAL entry is rolled back only once the request that wrote it is surely
// over: its own deadline (from config's request_timeout) has passed.
func TestRollbackWaitsForTheRequestToEnd(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.mustDo(t, logical.UpdateOperation, "config", map[string]interface{}{"request_timeout": "2s"})
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read"})
	env.failCalls(t, "CreateAPIKey", http.StatusBadGateway) // ambiguous, and never applied
	start := time.Now()
	env.do(t, logical.ReadOperation, "creds/r", nil)

	ids := env.walIDs(t)
	if len(ids) != 1 {
		t.Fatalf("WAL entries: %v, want one", ids)
	}
	rec, err := getRecord(context.Background(), env.storage, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	// 4 × 2s for the creates, 8s for the clean-up, 30s of margin.
	if want := start.Add(46 * time.Second); rec.RequestEnds.Before(want.Add(-time.Second)) || rec.RequestEnds.After(time.Now().Add(46*time.Second)) {
		t.Errorf("the request ends at %s, want about %s", rec.RequestEnds, want)
	}

	env.rollbackOnSchedule(t)
	if got := env.walIDs(t); len(got) != 1 {
		t.Fatalf("the rollback took the WAL entry of a request that may still run: %v left", got)
	}
	rec.RequestEnds = time.Now().Add(-time.Second)
	if err := putRecord(context.Background(), env.storage, rec); err != nil {
		t.Fatal(err)
	}
	env.rollbackOnSchedule(t)
	if got := env.walIDs(t); len(got) != 0 {
		t.Errorf("WAL entries left once the request was over: %v", got)
	}
}

// The plugin dies after creating the application key and before the lease
// is recorded: the next plugin process rolls the request back once the
// request is surely over.
func TestCrashAfterCreateBeforeTheLeaseIsRecorded(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read", "api_key_mode": "dynamic"})
	crash := &faultyClient{crashOn: kindAPIKey, crashed: make(chan struct{})}
	env.injectFaults(crash)
	go env.do(t, logical.ReadOperation, "creds/r", nil) // never returns
	<-crash.crashed
	for deadline := time.Now().Add(5 * time.Second); len(env.issuedKeys()) == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond) // the application key's create, sent with the API key's
	}
	if n := len(env.issuedKeys()); n != 1 {
		t.Fatalf("%d keys in Datadog after the crash, want the application key", n)
	}

	env.restart(t) // a new plugin process on the same storage
	ids := env.walIDs(t)
	if len(ids) != 1 {
		t.Fatalf("WAL entries after the crash: %v, want the request's", ids)
	}
	env.rollbackOnSchedule(t)
	if n := len(env.issuedKeys()); n != 1 {
		t.Fatalf("the rollback ran before the request's time was up")
	}
	rec, _ := getRecord(context.Background(), env.storage, ids[0])
	rec.RequestEnds = time.Now().Add(-time.Second)
	putRecord(context.Background(), env.storage, rec)
	env.rollbackOnSchedule(t)
	if left := env.issuedKeys(); len(left) != 0 {
		t.Errorf("keys left after the rollback: %v", left)
	}
	if ids := env.walIDs(t); len(ids) != 0 {
		t.Errorf("WAL entries left: %v", ids)
	}
}

// applyThenFail applies the write that marks a record issued, lets a
// rollback run (reading the record as issued), then reports the write as
// failed: the request abandons a record the rollback saw as a lease's.
type applyThenFail struct {
	logical.Storage
	between func()
	done    bool
}

func (s *applyThenFail) Put(ctx context.Context, e *logical.StorageEntry) error {
	if err := s.Storage.Put(ctx, e); err != nil {
		return err
	}
	if !s.done && strings.HasPrefix(e.Key, recordPrefix) && strings.Contains(string(e.Value), `"issued":true`) {
		s.done = true
		s.between()
		return errors.New("storage answer lost")
	}
	return nil
}

// A record that goes back to pending after a rollback read it as issued is
// hidden neither from the rollback nor from tidy.
func TestAbandonedRecordIsNotHiddenFromTheRollback(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read", "api_key_mode": "none"})
	fault := &faultyClient{deleteFails: &apiError{Op: "deletion", Status: http.StatusServiceUnavailable}}
	env.injectFaults(fault)
	real := env.storage
	env.storage = &applyThenFail{Storage: real, between: func() {
		if err := env.b.rollback(context.Background(), &logical.Request{Storage: real}, true); err != nil {
			t.Logf("rollback between the writes: %v", err)
		}
	}}
	if resp, err := env.do(t, logical.ReadOperation, "creds/r", nil); err == nil && !resp.IsError() {
		t.Fatal("creds read succeeded although its record was lost")
	}
	env.storage = real
	if keys := env.issuedKeys(); len(keys) != 1 {
		t.Fatalf("want the abandoned request's key in Datadog while deletes fail, got %v", keys)
	}
	fault.deleteFails = nil
	if err := env.rollbackNow(t); err != nil {
		t.Fatal(err)
	}
	if keys := env.issuedKeys(); len(keys) != 0 {
		t.Errorf("the rollback ignored the abandoned request's record: %v left", keys)
	}
}
