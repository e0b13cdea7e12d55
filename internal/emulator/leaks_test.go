package emulator_test

import (
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulatortest"
)

// A key marked leaked points to its leak in leak_information, on every
// path that shows it, and gives the LeakedKey (date, leak_source) when
// asked to include it; it keeps working, as in Datadog.
func TestLeakedKeysShowTheirLeak(t *testing.T) {
	clock := newClock()
	s := newTestServer(t, emulator.Options{Now: clock.Now})
	appID, appSecret := s.createAppKey(t, "leaky app key", "dashboards_read")
	apiKey := s.mustAdmin(t, http.StatusCreated, "POST", "/api/v2/api_keys", jsonBody(t, "api_keys", "", map[string]any{"name": "leaky API key"}))
	apiID := str(apiKey, "data.id")

	clean := s.mustAdmin(t, http.StatusOK, "GET", "/api/v2/application_keys/"+appID, "")
	if rel, ok := get(clean, "data.relationships.leak_information").(map[string]any); !ok || rel["data"] != nil {
		t.Errorf("clean application key: leak_information = %v, want data null", get(clean, "data.relationships.leak_information"))
	}

	// Through the admin endpoint, with a source; and through Go.
	status, body, _ := s.send(t, noAuth, "POST", "/_emulator/keys/"+appID+"/leak", `{"source":"gitlab"}`)
	if status != http.StatusOK || str(body, "leak.leak_source") != "gitlab" || str(body, "leak.id") == "" || str(body, "id") != appID {
		t.Fatalf("POST /_emulator/keys/{id}/leak: %d %v", status, body)
	}
	if !s.MarkLeaked(apiID, "") {
		t.Fatal("MarkLeaked of a live API key reported false")
	}
	appLeak, apiLeak := leakOf(t, s, appID), leakOf(t, s, apiID)
	if apiLeak.Source != "github" || !apiLeak.Date.Equal(clock.t) {
		t.Errorf("API key's leak = %+v, want the default source github, dated now", apiLeak)
	}
	// Marking again keeps the first leak.
	s.MarkLeaked(appID, "elsewhere")
	if again := leakOf(t, s, appID); again != appLeak {
		t.Errorf("a second mark changed the leak: %+v, was %+v", again, appLeak)
	}

	for _, tc := range []struct{ path, leakID string }{
		{"/api/v2/current_user/application_keys/" + appID, appLeak.ID},
		{"/api/v2/application_keys/" + appID, appLeak.ID},
		{"/api/v2/api_keys/" + apiID, apiLeak.ID},
	} {
		got := s.mustAdmin(t, http.StatusOK, "GET", tc.path, "")
		if str(got, "data.relationships.leak_information.data.id") != tc.leakID ||
			str(got, "data.relationships.leak_information.data.type") != "leaked_keys" {
			t.Errorf("GET %s: leak_information = %v, want leaked_keys %s", tc.path, get(got, "data.relationships.leak_information"), tc.leakID)
		}
	}
	included := s.mustAdmin(t, http.StatusOK, "GET", "/api/v2/application_keys/"+appID+"?include=owned_by,leak_information", "")
	if !hasLeakedKey(included, appLeak.ID, "gitlab", "2026-06-01T12:00:00Z") || !hasIncluded(included, "users") {
		t.Errorf("include=owned_by,leak_information: %v", get(included, "included"))
	}
	included = s.mustAdmin(t, http.StatusOK, "GET", "/api/v2/api_keys/"+apiID+"?include=leak_information", "")
	if !hasLeakedKey(included, apiLeak.ID, "github", "2026-06-01T12:00:00Z") {
		t.Errorf("API key include=leak_information: %v", get(included, "included"))
	}
	list := s.mustAdmin(t, http.StatusOK, "GET", "/api/v2/current_user/application_keys?filter=leaky", "")
	if str(list, "data.0.relationships.leak_information.data.id") != appLeak.ID {
		t.Errorf("list: %v", list)
	}

	// Datadog flags a leaked key; it does not revoke it.
	if status, _ := s.call(t, str(apiKey, "data.attributes.key"), appSecret, "GET", "/api/v1/dashboard", ""); status != http.StatusOK {
		t.Errorf("leaked keys answer %d, want 200: they still work", status)
	}
}

// Tokens: the recorded answers of clean tokens have no leak_information;
// a leaked one has it, its LeakedKey is included on request, and
// filter[leaked]=true lists the leaked tokens alone.
func TestLeakedTokens(t *testing.T) {
	clock := newClock()
	s := newTestServer(t, emulator.Options{Now: clock.Now})
	sa := s.createServiceAccount(t, "leaky@example.com", "Datadog Admin Role")
	expires := clock.t.Add(48 * time.Hour)
	pat := str(s.mustAdmin(t, http.StatusCreated, "POST", "/api/v2/personal_access_tokens",
		tokenBody(t, "personal_access_tokens", "leaky pat", &expires, "dashboards_read")), "data.id")
	s.mustAdmin(t, http.StatusCreated, "POST", "/api/v2/personal_access_tokens",
		tokenBody(t, "personal_access_tokens", "clean pat", &expires, "dashboards_read"))
	sat := str(s.mustAdmin(t, http.StatusCreated, "POST", "/api/v2/service_accounts/"+sa+"/access_tokens",
		tokenBody(t, "service_access_tokens", "leaky sat", nil, "dashboards_read")), "data.id")

	clean := s.mustAdmin(t, http.StatusOK, "GET", "/api/v2/personal_access_tokens/"+pat, "")
	if _, present := get(clean, "data.relationships").(map[string]any)["leak_information"]; present {
		t.Errorf("clean token has leak_information: %v", get(clean, "data.relationships"))
	}
	list := s.mustAdmin(t, http.StatusOK, "GET", "/api/v2/personal_access_tokens?filter[leaked]=true", "")
	if get(list, "meta.page.total_filtered_count") != 0.0 {
		t.Errorf("filter[leaked]=true before any leak: %v", list)
	}

	s.MarkLeaked(pat, "github")
	if status, _, _ := s.send(t, noAuth, "POST", "/_emulator/keys/"+sat+"/leak", ""); status != http.StatusOK {
		t.Fatalf("POST /_emulator/keys/{sat}/leak without a body: %d", status)
	}
	patLeak, satLeak := leakOf(t, s, pat), leakOf(t, s, sat)

	got := s.mustAdmin(t, http.StatusOK, "GET", "/api/v2/personal_access_tokens/"+pat+"?include=leak_information", "")
	if str(got, "data.relationships.leak_information.data.id") != patLeak.ID || !hasLeakedKey(got, patLeak.ID, "github", "2026-06-01T12:00:00Z") {
		t.Errorf("leaked PAT: %v", got)
	}
	got = s.mustAdmin(t, http.StatusOK, "GET", "/api/v2/service_accounts/"+sa+"/access_tokens/"+sat+"?include=leak_information", "")
	if str(got, "data.relationships.leak_information.data.id") != satLeak.ID || !hasLeakedKey(got, satLeak.ID, "github", "2026-06-01T12:00:00Z") {
		t.Errorf("leaked SAT: %v", got)
	}
	list = s.mustAdmin(t, http.StatusOK, "GET", "/api/v2/personal_access_tokens?filter[leaked]=true&include=leak_information", "")
	if get(list, "meta.page.total_filtered_count") != 2.0 || len(get(list, "included").([]any)) != 2 {
		t.Errorf("filter[leaked]=true: %v", list)
	}
	list = s.mustAdmin(t, http.StatusOK, "GET", "/api/v2/personal_access_tokens?sort=-leaked", "")
	if str(list, "data.2.attributes.name") != "clean pat" {
		t.Errorf("sort=-leaked does not put the clean token last: %v", list)
	}
	list = s.mustAdmin(t, http.StatusOK, "GET", "/api/v2/service_accounts/"+sa+"/access_tokens?filter[leaked]=true", "")
	if get(list, "meta.page.total_filtered_count") != 1.0 {
		t.Errorf("service account's filter[leaked]=true: %v", list)
	}
}

// Last use is reported as Datadog does: application keys' last_used_at,
// API keys' date_last_used, tokens' last_used_at, null until used; and
// Backdate makes a key look unused for a while.
func TestLastUseAndBackdate(t *testing.T) {
	clock := newClock()
	s := newTestServer(t, emulator.Options{Now: clock.Now})
	appID, appSecret := s.createAppKey(t, "used", "dashboards_read")
	apiKey := s.mustAdmin(t, http.StatusCreated, "POST", "/api/v2/api_keys", jsonBody(t, "api_keys", "", map[string]any{"name": "used"}))
	apiID, apiSecret := str(apiKey, "data.id"), str(apiKey, "data.attributes.key")
	expires := clock.t.Add(48 * time.Hour)
	pat := s.mustAdmin(t, http.StatusCreated, "POST", "/api/v2/personal_access_tokens", tokenBody(t, "personal_access_tokens", "used", &expires, "dashboards_read"))
	patID, patSecret := str(pat, "data.id"), str(pat, "data.attributes.key")

	lastUse := func(path, attr string) any {
		t.Helper()
		return get(s.mustAdmin(t, http.StatusOK, "GET", path, ""), "data.attributes."+attr)
	}
	paths := []struct{ path, attr string }{
		{"/api/v2/application_keys/" + appID, "last_used_at"},
		{"/api/v2/api_keys/" + apiID, "date_last_used"},
		{"/api/v2/personal_access_tokens/" + patID, "last_used_at"},
	}
	for _, p := range paths {
		if got := lastUse(p.path, p.attr); got != nil {
			t.Errorf("%s before any use: %s = %v, want null", p.path, p.attr, got)
		}
	}
	clock.t = clock.t.Add(time.Minute)
	s.call(t, apiSecret, appSecret, "GET", "/api/v1/dashboard", "")
	s.withToken(t, patSecret, "GET", "/api/v1/dashboard", "")
	want := map[string]string{
		"last_used_at":   "2026-06-01T12:01:00.000000+00:00",
		"date_last_used": "2026-06-01T12:01:00.000000+00:00",
	}
	for _, p := range paths[:2] {
		if got := lastUse(p.path, p.attr); got != want[p.attr] {
			t.Errorf("%s after a use: %s = %v, want %s", p.path, p.attr, got, want[p.attr])
		}
	}
	if got := lastUse(paths[2].path, "last_used_at"); got != "2026-06-01T12:01:00Z" {
		t.Errorf("token after a use: last_used_at = %v", got)
	}

	status, body, _ := s.send(t, noAuth, "POST", "/_emulator/keys/"+appID+"/backdate", `{"by":"2h"}`)
	if status != http.StatusOK || str(body, "last_used_at") != "2026-06-01T10:01:00Z" || str(body, "created_at") != "2026-06-01T10:00:00Z" {
		t.Errorf("POST /_emulator/keys/{id}/backdate: %d %v", status, body)
	}
	if got := lastUse(paths[0].path, "created_at"); got != "2026-06-01T10:00:00.000000+00:00" {
		t.Errorf("backdated key's created_at = %v", got)
	}
	s.Backdate(patID, time.Hour)
	if got := lastUse(paths[2].path, "last_used_at"); got != "2026-06-01T11:01:00Z" {
		t.Errorf("backdated token's last_used_at = %v", got)
	}
	if got := lastUse(paths[2].path, "expires_at"); got != "2026-06-03T12:00:00Z" {
		t.Errorf("backdating moved the token's expiry: %v", got)
	}

	for _, bad := range []struct{ path, body string }{
		{"/_emulator/keys/" + appID + "/backdate", `{"by":"-1h"}`},
		{"/_emulator/keys/" + appID + "/backdate", `{"for":"1h"}`},
		{"/_emulator/keys/" + appID + "/leak", `{"source":1}`},
	} {
		if status, _, _ := s.send(t, noAuth, "POST", bad.path, bad.body); status != http.StatusBadRequest {
			t.Errorf("POST %s %s: %d, want 400", bad.path, bad.body, status)
		}
	}
	s.DeleteKey(apiID)
	for path, body := range map[string]string{"/_emulator/keys/" + apiID + "/leak": "", "/_emulator/keys/nope/backdate": `{"by":"1h"}`} {
		if status, _, _ := s.send(t, noAuth, "POST", path, body); status != http.StatusNotFound {
			t.Errorf("POST %s for no live key: %d, want 404", path, status)
		}
	}
	if s.MarkLeaked(apiID, "") || s.Backdate(apiID, time.Hour) {
		t.Error("MarkLeaked or Backdate of a deleted key reported true")
	}
}

// A leak is kept in the state file.
func TestLeakSurvivesRestart(t *testing.T) {
	file := filepath.Join(t.TempDir(), "org.json")
	first := newTestServer(t, emulator.Options{StateFile: file})
	id, _ := first.createAppKey(t, "leaky")
	first.MarkLeaked(id, "github")
	leak := leakOf(t, first, id)

	second, err := emulator.Open(emulator.Options{StateFile: file})
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{emulatortest.Serve(t, second)}
	if got := leakOf(t, s, id); !got.Date.Equal(leak.Date) || got.ID != leak.ID || got.Source != leak.Source {
		t.Errorf("leak after the restart: %+v, want %+v", got, leak)
	}
}

func leakOf(t *testing.T, s *testServer, id string) emulator.Leak {
	t.Helper()
	for _, k := range s.Keys() {
		if k.ID == id && k.Leak != nil {
			return *k.Leak
		}
	}
	t.Fatalf("Keys() shows no leak for %s", id)
	return emulator.Leak{}
}

func hasIncluded(body any, typ string) bool {
	items, _ := get(body, "included").([]any)
	for _, item := range items {
		if str(item, "type") == typ {
			return true
		}
	}
	return false
}

func hasLeakedKey(body any, id, source, date string) bool {
	items, _ := get(body, "included").([]any)
	for _, item := range items {
		if str(item, "type") == "leaked_keys" && str(item, "id") == id &&
			str(item, "attributes.leak_source") == source && str(item, "attributes.date") == date {
			return true
		}
	}
	return false
}
