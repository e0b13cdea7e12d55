package backend

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
)

// rendezvous lets a call of op through only once n such calls are in
// flight together: calls made one after the other never meet, and fail.
type rendezvous struct {
	datadogAPI
	op      string // "create", "delete" or "state"
	n       int
	mu      sync.Mutex
	waiting int
	met     chan struct{}
}

func newRendezvous(op string, n int) *rendezvous {
	return &rendezvous{op: op, n: n, met: make(chan struct{})}
}

var errNotConcurrent = errors.New("the calls were made one after the other")

func (r *rendezvous) meet() error {
	r.mu.Lock()
	if r.waiting++; r.waiting == r.n {
		close(r.met)
	}
	r.mu.Unlock()
	select {
	case <-r.met:
		return nil
	case <-time.After(3 * time.Second):
		return errNotConcurrent
	}
}

func (r *rendezvous) Create(ctx context.Context, o datadogObject, scopes []string) (createdObject, error) {
	if r.op == "create" {
		if err := r.meet(); err != nil {
			return createdObject{}, &apiError{Op: "creation", Status: http.StatusForbidden, Messages: []string{err.Error()}}
		}
	}
	return r.datadogAPI.Create(ctx, o, scopes)
}

func (r *rendezvous) Delete(ctx context.Context, o datadogObject) error {
	if r.op == "delete" {
		if err := r.meet(); err != nil {
			return err
		}
	}
	return r.datadogAPI.Delete(ctx, o)
}

func (r *rendezvous) State(ctx context.Context, o datadogObject) (objectState, error) {
	if r.op == "state" {
		if err := r.meet(); err != nil {
			return objectState{}, err
		}
	}
	return r.datadogAPI.State(ctx, o)
}

func (env *testEnv) wrapClient(wrap func(datadogAPI) datadogAPI) {
	env.b.newClient = func(cfg *datadogConfig, logger hclog.Logger) (datadogAPI, error) {
		real, err := newDatadogClient(cfg, logger)
		return wrap(real), err
	}
	env.b.reset()
}

// A lease's application key and API key (its own, or the role's shared
// one, made for it when no lease holds one) are created together, deleted
// together, and read together at renewal: one Datadog round trip each, not
// two.
func TestALeasesKeysGoToDatadogTogether(t *testing.T) {
	for _, tc := range []struct{ mode, op string }{
		{"dynamic", "create"}, {"dynamic", "state"}, {"dynamic", "delete"},
		{"shared", "create"}, {"shared", "state"}, {"shared", "delete"},
	} {
		op := tc.op
		t.Run(tc.mode+"/"+op, func(t *testing.T) {
			env := newTestEnv(t)
			env.configure(t)
			env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read", "api_key_mode": tc.mode})
			if op == "create" {
				env.wrapClient(func(c datadogAPI) datadogAPI { r := newRendezvous(op, 2); r.datadogAPI = c; return r })
			}
			creds := env.mustDo(t, logical.ReadOperation, "creds/r", nil)
			env.wrapClient(func(c datadogAPI) datadogAPI { r := newRendezvous(op, 2); r.datadogAPI = c; return r })
			if resp, err := env.renew(t, creds); err != nil || resp.IsError() {
				t.Fatalf("renew: %v %v", err, resp)
			}
			if _, err := env.revoke(t, creds); err != nil {
				t.Fatalf("revoke: %v", err)
			}
			if keys := env.issuedKeys(); len(keys) != 0 {
				t.Errorf("keys left: %v", keys)
			}
		})
	}
}

// One of two concurrent creates fails: the other key is deleted at once (a
// refusal), or found by name and deleted (a lost answer); nothing is left
// untracked, and no WAL entry stays once all is gone.
func TestConcurrentCreatesWithOneFailing(t *testing.T) {
	for name, fault := range map[string]emulator.Fault{
		"refused":           {Operation: "CreateAPIKey", Action: emulator.FaultError, Status: http.StatusForbidden, Times: 1},
		"applied, then 502": {Operation: "CreateAPIKey", Action: emulator.FaultCommitThenError, Status: http.StatusBadGateway, Times: 1},
	} {
		t.Run(name, func(t *testing.T) {
			env := newTestEnv(t)
			env.configure(t)
			env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read", "api_key_mode": "dynamic"})
			if _, err := env.emu.AddFault(fault); err != nil {
				t.Fatal(err)
			}
			if resp, err := env.do(t, logical.ReadOperation, "creds/r", nil); err == nil && !resp.IsError() {
				t.Fatal("creds read succeeded through the fault")
			}
			if keys := env.issuedKeys(); len(keys) != 0 {
				t.Errorf("a failed request left keys: %v", keys)
			}
			if ids := env.walIDs(t); len(ids) != 0 {
				t.Errorf("WAL entries left: %v", ids)
			}
		})
	}
}

// One of a lease's two deletions fails: the revocation fails and the lease
// stays; the next try deletes what is left and succeeds.
func TestConcurrentDeletesWithOneFailing(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read", "api_key_mode": "dynamic"})
	creds := env.mustDo(t, logical.ReadOperation, "creds/r", nil)
	if _, err := env.emu.AddFault(emulator.Fault{Operation: "DeleteAPIKey", Action: emulator.FaultError, Status: http.StatusForbidden, Times: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.revoke(t, creds); err == nil {
		t.Fatal("a revocation whose API key deletion failed succeeded")
	}
	if env.keyExists(creds.Data["application_key_id"].(string)) || !env.keyExists(creds.Data["api_key_id"].(string)) {
		t.Fatal("want the application key deleted and the API key kept by the failed revocation")
	}
	if env.record(t, creds) == nil {
		t.Fatal("the lease's record went with a failed revocation")
	}
	if _, err := env.revoke(t, creds); err != nil {
		t.Fatalf("the retried revocation: %v", err)
	}
	if keys := env.issuedKeys(); len(keys) != 0 {
		t.Errorf("keys left: %v", keys)
	}
}
