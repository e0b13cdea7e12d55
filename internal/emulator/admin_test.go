package emulator_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
)

// noAuth sends a request without credentials, as the admin endpoints take.
func noAuth(*http.Request) {}

func TestAdminKeysListsEveryCredential(t *testing.T) {
	clock := newClock()
	s := newTestServer(t, emulator.Options{Now: clock.Now})
	sa := s.createServiceAccount(t, "listed@example.com")
	expires := clock.t.Add(48 * time.Hour)
	pat := s.mustAdmin(t, http.StatusCreated, "POST", "/api/v2/personal_access_tokens",
		tokenBody(t, "personal_access_tokens", "pat", &expires, "dashboards_read"))
	sat := s.mustAdmin(t, http.StatusCreated, "POST", "/api/v2/service_accounts/"+sa+"/access_tokens",
		tokenBody(t, "service_access_tokens", "sat", nil, "monitors_read"))
	s.mustAdmin(t, http.StatusCreated, "POST", "/api/v2/service_accounts/"+sa+"/application_keys",
		jsonBody(t, "application_keys", "", map[string]any{"name": "sa-key"}))

	_, body, _ := s.send(t, noAuth, "GET", "/_emulator/keys", "")
	byName := map[string]any{}
	for _, k := range get(body, "keys").([]any) {
		byName[str(k, "name")] = k
	}
	for name, want := range map[string]struct{ kind, owner string }{
		"Seeded API key":          {emulator.KindAPIKey, s.UserID()},
		"Seeded application key":  {emulator.KindApplicationKey, s.UserID()},
		"Datadog Agent – prod":    {emulator.KindAPIKey, s.UserID()}, // people's keys, seeded
		"Datadog Agent – staging": {emulator.KindAPIKey, s.UserID()},
		"Datadog Agent – dev":     {emulator.KindAPIKey, s.UserID()},
		"pat":                     {emulator.KindPersonalAccessToken, s.UserID()},
		"sat":                     {emulator.KindServiceAccessToken, sa},
		"sa-key":                  {emulator.KindApplicationKey, sa},
	} {
		k := byName[name]
		if str(k, "kind") != want.kind || str(k, "owner_id") != want.owner {
			t.Errorf("%s: %v, want kind %s owned by %s", name, k, want.kind, want.owner)
		}
	}
	if got := str(byName["pat"], "expires_at"); got != "2026-06-03T12:00:00Z" || str(byName["pat"], "id") != str(pat, "data.id") {
		t.Errorf("PAT entry = %v", byName["pat"])
	}
	if get(byName["sat"], "expires_at") != nil || str(get(byName["sat"], "scopes"), "0") != "monitors_read" {
		t.Errorf("SAT entry = %v", byName["sat"])
	}

	// Revoking out of band, through the admin endpoint, ends the token.
	satID := str(sat, "data.id")
	if status, _, _ := s.send(t, noAuth, "DELETE", "/_emulator/keys/"+satID, ""); status != http.StatusNoContent {
		t.Errorf("DELETE /_emulator/keys/{token}: %d", status)
	}
	if status, _ := s.withToken(t, str(sat, "data.attributes.key"), "GET", "/api/v2/validate_keys", ""); status != http.StatusUnauthorized {
		t.Errorf("token revoked out of band: %d", status)
	}
	if status, _ := s.admin(t, "DELETE", "/api/v2/service_accounts/"+sa+"/access_tokens/"+satID, ""); status != http.StatusNoContent {
		t.Errorf("revoking again through the API: %d, want 204", status)
	}
	if len(byName) != 8 || len(s.Keys()) != len(byName)-1 {
		t.Errorf("listed %d keys, want 8; Keys() = %v, want all of them but the revoked SAT", len(byName), s.Keys())
	}
}

func TestAdminClock(t *testing.T) {
	clock := newClock()
	s := newLenientServer(t, emulator.Options{Now: clock.Now})
	expires := clock.t.Add(25 * time.Hour)
	token := str(s.mustAdmin(t, http.StatusCreated, "POST", "/api/v2/personal_access_tokens",
		tokenBody(t, "personal_access_tokens", "pat", &expires, "dashboards_read")), "data.attributes.key")

	status, body, _ := s.send(t, noAuth, "POST", "/_emulator/clock", `{"advance":"25h"}`)
	if status != http.StatusOK || str(body, "now") != "2026-06-02T13:00:00.000000+00:00" || str(body, "advance") != "25h0m0s" {
		t.Errorf("POST /_emulator/clock: %d %v", status, body)
	}
	if status, _ := s.withToken(t, token, "GET", "/api/v1/dashboard", ""); status != http.StatusUnauthorized {
		t.Errorf("token after the clock passed its expiry: %d", status)
	}
	_, body, _ = s.send(t, noAuth, "POST", "/_emulator/clock", `{"set":"2026-06-01T12:00:00Z"}`)
	if str(body, "now") != "2026-06-01T12:00:00.000000+00:00" || !s.Now().Equal(clock.t) {
		t.Errorf("set the clock back: %v", body)
	}
	if status, _ := s.withToken(t, token, "GET", "/api/v1/dashboard", ""); status != http.StatusOK {
		t.Errorf("token with the clock set back: %d", status)
	}
	_, body, _ = s.send(t, noAuth, "GET", "/_emulator/clock", "")
	if str(body, "advance") != "0s" {
		t.Errorf("GET /_emulator/clock = %v", body)
	}
	for _, bad := range []string{`{"advance":"soon"}`, `{"forward":"1h"}`, `not json`} {
		if status, _, _ := s.send(t, noAuth, "POST", "/_emulator/clock", bad); status != http.StatusBadRequest {
			t.Errorf("POST /_emulator/clock %s: %d, want 400", bad, status)
		}
	}
	if status, _, _ := s.send(t, noAuth, "GET", "/_emulator/nothing", ""); status != http.StatusNotFound {
		t.Errorf("unknown admin path: %d", status)
	}
}

func TestAdminEndpoints(t *testing.T) {
	s := newTestServer(t, emulator.Options{})
	_, body, _ := s.send(t, noAuth, "GET", "/_emulator/endpoints", "")
	endpoints := get(body, "endpoints").([]any)
	if len(endpoints) != len(s.Endpoints()) || len(endpoints) < 40 {
		t.Fatalf("%d endpoints listed", len(endpoints))
	}
	found := false
	for _, ep := range endpoints {
		if str(ep, "operation_id") == "CreateServiceAccountAccessToken" {
			found = str(ep, "method") == "POST" && str(ep, "path") == "/api/v2/service_accounts/{service_account_id}/access_tokens" &&
				str(ep, "rate_limit_group") == "access_tokens"
		}
	}
	if !found {
		t.Errorf("CreateServiceAccountAccessToken missing or wrong in %v", endpoints)
	}
}
