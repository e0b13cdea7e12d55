package backend

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulatortest"
)

// testEnv is a backend on in-memory storage talking to an emulator on
// loopback through the real datadog-api-client-go adapter.
type testEnv struct {
	b       *datadogBackend
	storage logical.Storage
	emu     *emulatortest.Server
	url     string
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	return newTestEnvWith(t, emulator.Options{})
}

func newTestEnvWith(t *testing.T, opts emulator.Options) *testEnv {
	t.Helper()
	env := &testEnv{emu: emulatortest.Start(t, opts)}
	env.url = env.emu.URL

	conf := logical.TestBackendConfig()
	conf.BackendUUID = "4f6b0e0c-1d2a-4c1e-9a53-" + t.Name()
	conf.StorageView = &logical.InmemStorage{}
	conf.System = &logical.StaticSystemView{DefaultLeaseTTLVal: time.Hour, MaxLeaseTTLVal: 24 * time.Hour}
	b, err := Factory(context.Background(), conf)
	if err != nil {
		t.Fatal(err)
	}
	env.b = b.(*datadogBackend)
	env.storage = conf.StorageView
	return env
}

// restart gives the test a new backend on the same storage, as Vault does
// when it starts the plugin again.
func (env *testEnv) restart(t *testing.T) {
	t.Helper()
	conf := logical.TestBackendConfig()
	conf.BackendUUID = "4f6b0e0c-1d2a-4c1e-9a53-" + t.Name()
	conf.StorageView = env.storage
	conf.System = &logical.StaticSystemView{DefaultLeaseTTLVal: time.Hour, MaxLeaseTTLVal: 24 * time.Hour}
	restarted, err := Factory(context.Background(), conf)
	if err != nil {
		t.Fatal(err)
	}
	env.b = restarted.(*datadogBackend)
}

func (env *testEnv) do(t *testing.T, op logical.Operation, path string, data map[string]interface{}) (*logical.Response, error) {
	t.Helper()
	return env.b.HandleRequest(context.Background(), &logical.Request{
		Operation:   op,
		Path:        path,
		Data:        data,
		Storage:     env.storage,
		DisplayName: "token-ci-job",
	})
}

// mustDo fails the test unless the request succeeds without an error response.
func (env *testEnv) mustDo(t *testing.T, op logical.Operation, path string, data map[string]interface{}) *logical.Response {
	t.Helper()
	resp, err := env.do(t, op, path, data)
	if err != nil || resp.IsError() {
		t.Fatalf("%s %s: err=%v resp=%v", op, path, err, resp)
	}
	return resp
}

// wantUserError asserts a 400-style answer (an error response, or an error
// coded 400) whose message mentions every fragment.
func wantUserError(t *testing.T, resp *logical.Response, err error, fragments ...string) {
	t.Helper()
	var msg string
	var coded logical.HTTPCodedError
	switch {
	case errors.As(err, &coded) && coded.Code() == http.StatusBadRequest:
		msg = coded.Error()
	case err != nil:
		t.Fatalf("want an error response, got internal error %v", err)
	case resp == nil || !resp.IsError():
		t.Fatalf("want an error response, got %#v", resp)
	default:
		msg = resp.Error().Error()
	}
	for _, f := range fragments {
		if !strings.Contains(msg, f) {
			t.Errorf("error %q does not mention %q", msg, f)
		}
	}
}

func (env *testEnv) configure(t *testing.T) {
	t.Helper()
	env.mustDo(t, logical.CreateOperation, "config", map[string]interface{}{
		"api_key": env.emu.APIKey(),
		"app_key": env.emu.AppKey(),
		"api_url": env.url,
	})
}

func (env *testEnv) writeRole(t *testing.T, name string, data map[string]interface{}) {
	t.Helper()
	env.mustDo(t, logical.CreateOperation, "roles/"+name, data)
}

// snapshot returns every storage entry, to prove a refused request changed nothing.
func (env *testEnv) snapshot(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	var walk func(prefix string)
	walk = func(prefix string) {
		keys, err := env.storage.List(context.Background(), prefix)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if strings.HasSuffix(k, "/") {
				walk(prefix + k)
				continue
			}
			e, err := env.storage.Get(context.Background(), prefix+k)
			if err != nil {
				t.Fatal(err)
			}
			out[prefix+k] = string(e.Value)
		}
	}
	walk("")
	return out
}

func sameSnapshot(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestBackendReportsVersionAndSealWrapsConfig(t *testing.T) {
	env := newTestEnv(t)
	if env.b.RunningVersion != Version {
		t.Errorf("RunningVersion = %q, want %q", env.b.RunningVersion, Version)
	}
	if got := env.b.SpecialPaths().SealWrapStorage; len(got) != 2 || got[0] != "config" || got[1] != sharedSecretPrefix {
		t.Errorf("SealWrapStorage = %v, want [config %s]: the engine's keys and the shared API keys' secrets", got, sharedSecretPrefix)
	}
}
