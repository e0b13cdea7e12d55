package emulator_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
)

// TestAccessTokenContainment: a call authenticated with a personal or
// service access token, sent as a bearer token or in DD-APPLICATION-KEY
// (alone, or beside a DD-API-KEY that is not evaluated), is refused 403
// with an {"errors":[…]} body for each containment rule it breaks, and the
// same call made with an application key of the same owner succeeds.
func TestAccessTokenContainment(t *testing.T) {
	clock := newClock()
	s := newTestServer(t, emulator.Options{Now: clock.Now})
	sa := s.createServiceAccount(t, "root@example.com", "Datadog Admin Role")
	end := clock.t.Add(30 * 24 * time.Hour)
	own := []string{"user_app_keys", "service_account_write", "dashboards_read"}
	token := func(path, typ string) string {
		return str(s.mustAdmin(t, http.StatusCreated, "POST", path, tokenBody(t, typ, "caller", &end, own...)), "data.attributes.key")
	}
	saKey := func() (id, secret string) {
		created := s.mustAdmin(t, http.StatusCreated, "POST", "/api/v2/service_accounts/"+sa+"/application_keys",
			jsonBody(t, "application_keys", "", map[string]any{"name": "sa key"}))
		return str(created, "data.id"), str(created, "data.attributes.key")
	}
	_, saAppKey := saKey()

	type caller struct {
		name, token, owner, appKey string
		ownKey                     func() string // a new application key of the owner, for updates and revocations
	}
	callers := []caller{
		{"PAT", token("/api/v2/personal_access_tokens", "personal_access_tokens"), s.UserID(), s.AppKey(),
			func() string { id, _ := s.createAppKey(t, "admin key"); return id }},
		{"SAT", token("/api/v2/service_accounts/"+sa+"/access_tokens", "service_access_tokens"), sa, saAppKey,
			func() string { id, _ := saKey(); return id }},
	}
	senders := []struct {
		name string
		auth func(secret string) auth
	}{
		{"as bearer", bearer},
		{"in DD-APPLICATION-KEY alone", func(secret string) auth { return keys("", secret) }},
		{"in DD-APPLICATION-KEY with a wrong DD-API-KEY", func(secret string) auth { return keys(strings.Repeat("0", 32), secret) }},
		{"in DD-APPLICATION-KEY with the API key", func(secret string) auth { return keys(s.APIKey(), secret) }},
	}
	// A service access token of sa that the callers update.
	target := str(s.mustAdmin(t, http.StatusCreated, "POST", "/api/v2/service_accounts/"+sa+"/access_tokens",
		tokenBody(t, "service_access_tokens", "target", &end, "dashboards_read")), "data.id")
	sats, pats := "/api/v2/service_accounts/"+sa+"/access_tokens", "/api/v2/personal_access_tokens"
	later, sooner := end.Add(time.Hour), end.Add(-time.Hour)

	for _, c := range callers {
		appKeyID := c.ownKey()
		for _, send := range senders {
			t.Run(c.name+" "+send.name, func(t *testing.T) {
				cases := []struct {
					rule, method, path, body string
					refusal                  string // "" when the token may make the call
					want                     int    // with the token, when allowed
				}{
					{"create an application key", "POST", "/api/v2/current_user/application_keys",
						jsonBody(t, "application_keys", "", map[string]any{"name": "by token", "scopes": []string{"dashboards_read"}}), "cannot create or update application keys", 0},
					{"create a service account's application key", "POST", "/api/v2/service_accounts/" + sa + "/application_keys",
						jsonBody(t, "application_keys", "", map[string]any{"name": "by token"}), "cannot create or update application keys", 0},
					{"update an application key", "PATCH", "/api/v2/current_user/application_keys/" + appKeyID,
						jsonBody(t, "application_keys", appKeyID, map[string]any{"name": "renamed"}), "cannot create or update application keys", 0},
					{"create a SAT within its scopes and expiry", "POST", sats, tokenBody(t, "service_access_tokens", "ok", &end, "dashboards_read"), "", 201},
					{"create a SAT with scopes it lacks", "POST", sats, tokenBody(t, "service_access_tokens", "wide", &sooner, "dashboards_read", "monitors_read"),
						"Scopes monitors_read are not among the scopes", 0},
					{"create a SAT that outlives it", "POST", sats, tokenBody(t, "service_access_tokens", "long", &later, "dashboards_read"), "is later than the expiry", 0},
					{"create a SAT without expiry", "POST", sats, tokenBody(t, "service_access_tokens", "forever", nil, "dashboards_read"), "must expire no later than", 0},
					{"update a SAT within its scopes", "PATCH", sats + "/" + target,
						jsonBody(t, "service_access_tokens", target, map[string]any{"scopes": []string{"dashboards_read", "user_app_keys"}}), "", 200},
					{"update a SAT to scopes it lacks", "PATCH", sats + "/" + target,
						jsonBody(t, "service_access_tokens", target, map[string]any{"scopes": []string{"monitors_write"}}), "Scopes monitors_write are not among", 0},
				}
				if c.name == "PAT" {
					cases = append(cases, []struct {
						rule, method, path, body string
						refusal                  string
						want                     int
					}{
						{"create a PAT within its scopes and expiry", "POST", pats, tokenBody(t, "personal_access_tokens", "ok", &end, "dashboards_read"), "", 201},
						{"create a PAT with scopes it lacks", "POST", pats, tokenBody(t, "personal_access_tokens", "wide", &sooner, "monitors_read"), "Scopes monitors_read are not among", 0},
						{"create a PAT that outlives it", "POST", pats, tokenBody(t, "personal_access_tokens", "long", &later, "dashboards_read"), "is later than the expiry", 0},
					}...)
				} else {
					cases = append(cases, struct {
						rule, method, path, body string
						refusal                  string
						want                     int
					}{"create a PAT (assumed refused)", "POST", pats, tokenBody(t, "personal_access_tokens", "pat", &sooner, "dashboards_read"), "cannot create personal access tokens", 0})
				}
				for _, tc := range cases {
					status, body, _ := s.send(t, send.auth(c.token), tc.method, tc.path, tc.body)
					if tc.refusal == "" {
						if status != tc.want {
							t.Errorf("%s: %d %v, want %d", tc.rule, status, body, tc.want)
						}
						continue
					}
					errs, _ := get(body, "errors").([]any)
					if status != http.StatusForbidden || len(errs) != 1 || !strings.Contains(fmt.Sprint(errs[0]), tc.refusal) {
						t.Errorf("%s: %d %v, want 403 saying %q", tc.rule, status, body, tc.refusal)
					}
					// The same call with an application key of the same owner.
					if status, body := s.call(t, s.APIKey(), c.appKey, tc.method, tc.path, tc.body); status != http.StatusOK && status != http.StatusCreated {
						t.Errorf("%s with an application key: %d %v, want 2xx", tc.rule, status, body)
					}
				}
				// Revoking an application key is allowed.
				id := c.ownKey()
				if status, body, _ := s.send(t, send.auth(c.token), "DELETE", "/api/v2/current_user/application_keys/"+id, ""); status != http.StatusNoContent {
					t.Errorf("revoking an application key: %d %v, want 204", status, body)
				}
			})
		}
	}

	// Without an expiry of its own, a token limits no expiry.
	forever := str(s.mustAdmin(t, http.StatusCreated, "POST", sats, tokenBody(t, "service_access_tokens", "forever", nil, own...)), "data.attributes.key")
	if status, body := s.withToken(t, forever, "POST", sats, tokenBody(t, "service_access_tokens", "any", nil, "dashboards_read")); status != http.StatusCreated {
		t.Errorf("a token without expiry making one without expiry: %d %v, want 201", status, body)
	}
	// The body's own rules come first: an invalid request is 400, not 403.
	past := clock.t.Add(-time.Minute)
	status, body := s.withToken(t, forever, "POST", sats, tokenBody(t, "service_access_tokens", "bad", &past, "monitors_read"))
	wantError(t, status, body, http.StatusBadRequest, "expires_at must be in the future")
}
