package emulator_test

import (
	"net/http"
	"path/filepath"
	"testing"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulatortest"
)

// secretShown reports, for each way of reaching a key after its creation,
// the secret the answer showed ("" when none).
func secretShown(t *testing.T, s *testServer, appKeyID, saID, saKeyID string) map[string]string {
	t.Helper()
	shown := map[string]string{}
	for what, call := range map[string]struct{ method, path, body string }{
		"current-user GET":      {"GET", "/api/v2/current_user/application_keys/" + appKeyID, ""},
		"current-user PATCH":    {"PATCH", "/api/v2/current_user/application_keys/" + appKeyID, jsonBody(t, "application_keys", appKeyID, map[string]any{"name": "renamed"})},
		"org-wide GET":          {"GET", "/api/v2/application_keys/" + appKeyID, ""},
		"org-wide PATCH":        {"PATCH", "/api/v2/application_keys/" + appKeyID, jsonBody(t, "application_keys", appKeyID, map[string]any{"name": "renamed again"})},
		"service-account GET":   {"GET", "/api/v2/service_accounts/" + saID + "/application_keys/" + saKeyID, ""},
		"service-account PATCH": {"PATCH", "/api/v2/service_accounts/" + saID + "/application_keys/" + saKeyID, jsonBody(t, "application_keys", saKeyID, map[string]any{"name": "sa renamed"})},
	} {
		body := s.mustAdmin(t, http.StatusOK, call.method, call.path, call.body)
		shown[what] = str(body, "data.attributes.key")
	}
	list := s.mustAdmin(t, http.StatusOK, "GET", "/api/v2/current_user/application_keys", "")
	shown["current-user list"] = ""
	for _, k := range get(list, "data").([]any) {
		if key := str(k, "attributes.key"); key != "" {
			shown["current-user list"] = key
		}
	}
	return shown
}

// TestOneTimeReadMode: in One-Time Read mode (the default) no answer but
// the create shows an application key's secret; without it, the current
// user's GET and PATCH show it too, and nothing else does.
func TestOneTimeReadMode(t *testing.T) {
	for _, off := range []bool{false, true} {
		s := newTestServer(t, emulator.Options{OneTimeReadOff: off})
		appKeyID, secret := s.createAppKey(t, "readable")
		sa := s.createServiceAccount(t, "otr@example.com")
		saKey := s.mustAdmin(t, http.StatusCreated, "POST", "/api/v2/service_accounts/"+sa+"/application_keys",
			jsonBody(t, "application_keys", "", map[string]any{"name": "sa-key"}))

		shown := secretShown(t, s, appKeyID, sa, str(saKey, "data.id"))
		for what, got := range shown {
			readable := off && (what == "current-user GET" || what == "current-user PATCH")
			switch {
			case readable && got != secret:
				t.Errorf("One-Time Read off: %s does not show the key's secret (shows %d characters)", what, len(got))
			case !readable && got != "":
				t.Errorf("One-Time Read off=%v: %s shows a secret", off, what)
			}
		}
		if len(shown) != 7 {
			t.Errorf("checked %d ways of reading a key, want 7 (the list included)", len(shown))
		}
	}
}

// TestOneTimeReadAdminSetting switches the mode through the admin call; a
// state file keeps it.
func TestOneTimeReadAdminSetting(t *testing.T) {
	stateFile := filepath.Join(t.TempDir(), "state.json")
	s := &testServer{emulatortest.Serve(t, emulator.New(emulator.Options{StateFile: stateFile}))}
	id, secret := s.createAppKey(t, "k")

	_, body, _ := s.send(t, noAuth, "GET", "/_emulator/org", "")
	if get(body, "one_time_read") != true {
		t.Errorf("GET /_emulator/org = %v, want one_time_read true by default", body)
	}
	status, body, _ := s.send(t, noAuth, "PATCH", "/_emulator/org", `{"one_time_read":false}`)
	if status != http.StatusOK || get(body, "one_time_read") != false {
		t.Fatalf("PATCH /_emulator/org: %d %v", status, body)
	}
	if got := str(s.mustAdmin(t, http.StatusOK, "GET", "/api/v2/current_user/application_keys/"+id, ""), "data.attributes.key"); got != secret {
		t.Errorf("after turning One-Time Read off, GET does not show the secret (%d characters)", len(got))
	}
	if status, _, _ := s.send(t, noAuth, "PATCH", "/_emulator/org", `{"one_time_reed":true}`); status != http.StatusBadRequest {
		t.Errorf("a misspelt setting answered %d, want 400", status)
	}

	reopened, err := emulator.Open(emulator.Options{StateFile: stateFile})
	if err != nil {
		t.Fatal(err)
	}
	if reopened.OneTimeRead() {
		t.Error("the state file did not keep One-Time Read off")
	}
	reopened.SetOneTimeRead(true)
	if !reopened.OneTimeRead() {
		t.Error("SetOneTimeRead(true) left the mode off")
	}
}
