package emulator_test

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulatortest"
)

// TestStateFileSurvivesRestart: what one emulator process made, the next
// one started from the same file still knows.
func TestStateFileSurvivesRestart(t *testing.T) {
	clock := newClock()
	file := filepath.Join(t.TempDir(), "org.json")
	opts := emulator.Options{Now: clock.Now, StateFile: file}

	first := newTestServer(t, opts)
	if info, err := os.Stat(file); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("state file after start: %v, %v; want it written, readable by its owner only", info, err)
	}
	_, appKey := first.createAppKey(t, "survivor", "dashboards_read")
	sa := first.createServiceAccount(t, "persisted@example.com", "Datadog Read Only Role")
	token := str(first.mustAdmin(t, http.StatusCreated, "POST", "/api/v2/service_accounts/"+sa+"/access_tokens",
		tokenBody(t, "service_access_tokens", "t", ptr(clock.t.Add(2*time.Hour)), "dashboards_read")), "data.attributes.key")
	revokedID, revoked := first.createAppKey(t, "revoked")
	first.mustAdmin(t, http.StatusNoContent, "DELETE", "/api/v2/current_user/application_keys/"+revokedID, "")
	first.Advance(time.Hour)
	keysBefore := first.Keys()

	second, err := emulator.Open(emulator.Options{Now: clock.Now, StateFile: file, APIKey: "ignored"})
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{emulatortest.Serve(t, second)}
	if s.APIKey() != first.APIKey() || s.AppKey() != first.AppKey() || s.UserID() != first.UserID() {
		t.Error("the seeded credentials changed across the restart")
	}
	if status, _ := s.call(t, s.APIKey(), appKey, "GET", "/api/v1/dashboard", ""); status != http.StatusOK {
		t.Errorf("key created before the restart: %d", status)
	}
	if status, _ := s.call(t, s.APIKey(), appKey, "GET", "/api/v1/monitor", ""); status != http.StatusForbidden {
		t.Errorf("key's scopes after the restart: %d", status)
	}
	if status, _ := s.withToken(t, token, "GET", "/api/v1/dashboard", ""); status != http.StatusOK {
		t.Errorf("token created before the restart: %d", status)
	}
	if status, _ := s.call(t, s.APIKey(), revoked, "GET", "/api/v2/validate_keys", ""); status != http.StatusForbidden {
		t.Errorf("key deleted before the restart: %d", status)
	}
	if got := s.Keys(); len(got) != len(keysBefore) || !s.Now().Equal(clock.t.Add(time.Hour)) {
		t.Errorf("after the restart: %d keys (want %d), clock %v (want an hour ahead)", len(got), len(keysBefore), s.Now())
	}
	// The clock's advance was kept: one more hour ends the token.
	s.Advance(time.Hour)
	if status, _ := s.withToken(t, token, "GET", "/api/v1/dashboard", ""); status != http.StatusUnauthorized {
		t.Errorf("token past its expiry after the restart: %d", status)
	}
	// Out-of-band deletions are saved too.
	s.DeleteKey(keysBefore[len(keysBefore)-1].ID)
	third, err := emulator.Open(emulator.Options{StateFile: file})
	if err != nil {
		t.Fatal(err)
	}
	if len(third.Keys()) != len(keysBefore)-1 {
		t.Errorf("third start: %d keys, want %d", len(third.Keys()), len(keysBefore)-1)
	}
	if leftovers, _ := filepath.Glob(file + ".*"); len(leftovers) != 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
}

func TestStateFileErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.json")
	os.WriteFile(garbage, []byte("{not json"), 0o600)
	if _, err := emulator.Open(emulator.Options{StateFile: garbage}); err == nil {
		t.Error("Open accepted a corrupt state file")
	}
	other := filepath.Join(dir, "other.json")
	os.WriteFile(other, []byte(`{"version":99}`), 0o600)
	if _, err := emulator.Open(emulator.Options{StateFile: other}); err == nil {
		t.Error("Open accepted another version's state file")
	}
	if _, err := emulator.Open(emulator.Options{StateFile: filepath.Join(dir, "missing", "org.json")}); err == nil {
		t.Error("Open accepted a state file it cannot write")
	}
	defer func() {
		if recover() == nil {
			t.Error("New did not panic on a corrupt state file")
		}
	}()
	emulator.New(emulator.Options{StateFile: garbage})
}
