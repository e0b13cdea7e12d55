package emulator_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time { return c.t }

func newClock() *fakeClock { return &fakeClock{time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)} }

// tokenBody is a token create request.
func tokenBody(t testing.TB, typ, name string, expiresAt *time.Time, scopes ...string) string {
	t.Helper()
	attrs := map[string]any{"name": name, "scopes": scopes}
	if expiresAt != nil {
		attrs["expires_at"] = expiresAt.Format(time.RFC3339Nano)
	}
	return jsonBody(t, typ, "", attrs)
}

func ptr[T any](v T) *T { return &v }

// tokenKind is what the two kinds of token share in these tests.
type tokenKind struct {
	kind, typ, prefix, ownerType string
	collection                   func(sa string) string
}

var tokenKinds = []tokenKind{
	{emulator.KindPersonalAccessToken, "personal_access_tokens", "ddpat_", "users",
		func(string) string { return "/api/v2/personal_access_tokens" }},
	{emulator.KindServiceAccessToken, "service_access_tokens", "ddsat_", "service_account",
		func(sa string) string { return "/api/v2/service_accounts/" + sa + "/access_tokens" }},
}

func TestAccessTokenLifecycle(t *testing.T) {
	clock := newClock()
	s := newTestServer(t, emulator.Options{Now: clock.Now})
	sa := s.createServiceAccount(t, "tokens@example.com", "Datadog Admin Role")
	owners := map[string]string{emulator.KindPersonalAccessToken: s.UserID(), emulator.KindServiceAccessToken: sa}
	for _, k := range tokenKinds {
		t.Run(k.typ, func(t *testing.T) {
			collection := k.collection(sa)
			expires := clock.t.Add(48 * time.Hour)
			created := s.mustAdmin(t, http.StatusCreated, "POST", collection, tokenBody(t, k.typ, "life", &expires, "dashboards_read"))
			id, secret := str(created, "data.id"), str(created, "data.attributes.key")
			if !regexp.MustCompile(`^`+k.prefix+`[A-Za-z0-9]{22}_[A-Za-z0-9]{36}$`).MatchString(secret) || len(secret) != 65 {
				t.Errorf("token %q is not %s + 22 + _ + 36 characters (65)", secret, k.prefix)
			}
			if pp := str(created, "data.attributes.public_portion"); pp != secret[:28] {
				t.Errorf("public_portion %q, want the token's first 28 characters", pp)
			}
			if str(created, "data.type") != k.typ || str(created, "data.relationships.owned_by.data.type") != k.ownerType ||
				str(created, "data.relationships.owned_by.data.id") != owners[k.kind] {
				t.Errorf("created = %v", created)
			}
			if got := str(created, "data.attributes.expires_at"); got != "2026-06-03T12:00:00Z" {
				t.Errorf("expires_at = %q", got)
			}

			// The secret comes once; reads show the public portion only.
			item := collection + "/" + id
			read := s.mustAdmin(t, http.StatusOK, "GET", item, "")
			if raw, _ := json.Marshal(read); strings.Contains(string(raw), secret) || get(read, "data.attributes.key") != nil {
				t.Errorf("GET reveals the secret: %s", raw)
			}
			if _, has := get(read, "data.attributes").(map[string]any)["last_used_at"]; !has {
				t.Errorf("GET lacks last_used_at: %v", read)
			}
			list := s.mustAdmin(t, http.StatusOK, "GET", collection+"?filter=life", "")
			if get(list, "meta.page.total_filtered_count") != 1.0 || str(list, "data.0.id") != id {
				t.Errorf("list = %v", list)
			}

			// Scopes can change; expiry cannot; names must not be empty.
			updated := s.mustAdmin(t, http.StatusOK, "PATCH", item, jsonBody(t, k.typ, id, map[string]any{"name": "renamed", "scopes": []string{"monitors_read"}}))
			if str(updated, "data.attributes.name") != "renamed" || fmt.Sprint(get(updated, "data.attributes.scopes")) != "[monitors_read]" ||
				str(updated, "data.attributes.modified_at") == "" {
				t.Errorf("PATCH = %v", updated)
			}
			for _, bad := range []map[string]any{{"scopes": []string{}}, {"scopes": []string{"nope"}}, {"name": ""}} {
				if status, body := s.admin(t, "PATCH", item, jsonBody(t, k.typ, id, bad)); status != http.StatusBadRequest {
					t.Errorf("PATCH %v: %d %v, want 400", bad, status, body)
				}
			}
			if status, body := s.withToken(t, secret, "GET", "/api/v1/monitor", ""); status != http.StatusOK {
				t.Errorf("token after its scope change: %d %v", status, body)
			}

			// Revoking is idempotent; the token is then gone.
			for range 2 {
				if status, body := s.admin(t, "DELETE", item, ""); status != http.StatusNoContent || body != nil {
					t.Errorf("DELETE: %d %v, want 204 without body", status, body)
				}
			}
			status, body := s.admin(t, "GET", item, "")
			wantError(t, status, body, http.StatusNotFound, "Access token not found")
			status, body = s.admin(t, "PATCH", item, jsonBody(t, k.typ, id, map[string]any{"name": "x"}))
			wantError(t, status, body, http.StatusNotFound, "Access token not found")
			status, body = s.withToken(t, secret, "GET", "/api/v1/monitor", "")
			wantError(t, status, body, http.StatusUnauthorized, "Unauthorized")
			status, body = s.admin(t, "DELETE", collection+"/00000000-0000-0000-0000-000000000000", "")
			wantError(t, status, body, http.StatusNotFound, "Access token not found")
		})
	}
}

func TestAccessTokenValidation(t *testing.T) {
	clock := newClock()
	s := newLenientServer(t, emulator.Options{Now: clock.Now}) // some bodies lack what the spec requires
	sa := s.createServiceAccount(t, "validation@example.com")
	at := func(d time.Duration) *time.Time { return ptr(clock.t.Add(d)) }
	const day, year = 24 * time.Hour, 365 * 24 * time.Hour
	pat, sat := "/api/v2/personal_access_tokens", "/api/v2/service_accounts/"+sa+"/access_tokens"
	for _, tc := range []struct {
		name, path, typ string
		expires         *time.Time
		scopes          []string
		want            int
	}{
		{"PAT without expiry", pat, "personal_access_tokens", nil, []string{"dashboards_read"}, 400},
		{"PAT expiring in the past", pat, "personal_access_tokens", at(-time.Hour), []string{"dashboards_read"}, 400},
		{"PAT expiring in 23 h", pat, "personal_access_tokens", at(23 * time.Hour), []string{"dashboards_read"}, 400},
		{"PAT expiring in 24 h", pat, "personal_access_tokens", at(day), []string{"dashboards_read"}, 201},
		{"PAT expiring in a year", pat, "personal_access_tokens", at(year), []string{"dashboards_read"}, 201},
		{"PAT expiring in a year and a second", pat, "personal_access_tokens", at(year + time.Second), []string{"dashboards_read"}, 400},
		{"PAT without scopes", pat, "personal_access_tokens", at(2 * day), []string{}, 400},
		{"PAT with an unknown scope", pat, "personal_access_tokens", at(2 * day), []string{"dashboards_read", "bogus"}, 400},
		{"SAT without expiry", sat, "service_access_tokens", nil, []string{"dashboards_read"}, 201},
		{"SAT expiring in a minute", sat, "service_access_tokens", at(time.Minute), []string{"dashboards_read"}, 201},
		{"SAT expiring in the past", sat, "service_access_tokens", at(-time.Minute), []string{"dashboards_read"}, 400},
		{"SAT expiring in a year", sat, "service_access_tokens", at(year), []string{"dashboards_read"}, 201},
		{"SAT expiring in more than a year", sat, "service_access_tokens", at(year + time.Hour), []string{"dashboards_read"}, 400},
		{"SAT without scopes", sat, "service_access_tokens", nil, nil, 400},
		{"SAT of an unknown service account", "/api/v2/service_accounts/" + s.UserID() + "/access_tokens", "service_access_tokens", nil, []string{"dashboards_read"}, 404},
	} {
		status, body := s.admin(t, "POST", tc.path, tokenBody(t, tc.typ, tc.name, tc.expires, tc.scopes...))
		if status != tc.want {
			t.Errorf("%s: %d %v, want %d", tc.name, status, body, tc.want)
		}
	}
	status, body := s.admin(t, "POST", pat, jsonBody(t, "personal_access_tokens", "", map[string]any{"scopes": []string{"dashboards_read"}, "expires_at": at(2 * day)}))
	wantError(t, status, body, http.StatusBadRequest, "data.attributes.name is required")
}

// TestBearerAuthentication covers what a token may do: its scopes, within
// its owner's permissions, until it expires or its owner is disabled.
func TestBearerAuthentication(t *testing.T) {
	clock := newClock()
	s := newTestServer(t, emulator.Options{Now: clock.Now})
	readOnlySA := s.createServiceAccount(t, "ro@example.com", "Datadog Read Only Role")
	noRoleSA := s.createServiceAccount(t, "none@example.com")
	newSAT := func(sa string, expires *time.Time, scopes ...string) string {
		body := s.mustAdmin(t, http.StatusCreated, "POST", "/api/v2/service_accounts/"+sa+"/access_tokens",
			tokenBody(t, "service_access_tokens", "sat", expires, scopes...))
		return str(body, "data.attributes.key")
	}
	pat := str(s.mustAdmin(t, http.StatusCreated, "POST", "/api/v2/personal_access_tokens",
		tokenBody(t, "personal_access_tokens", "pat", ptr(clock.t.Add(48*time.Hour)), "dashboards_read", "user_app_keys")), "data.attributes.key")
	roDashboards := newSAT(readOnlySA, nil, "dashboards_read", "dashboards_write")
	roWrite := newSAT(readOnlySA, nil, "api_keys_write")
	noRole := newSAT(noRoleSA, nil, "dashboards_read")

	for _, tc := range []struct {
		name, token, method, path string
		want                      int
	}{
		{"PAT in scope", pat, "GET", "/api/v1/dashboard", 200},
		{"PAT out of scope", pat, "GET", "/api/v1/monitor", 403},
		{"PAT managing its owner's keys", pat, "GET", "/api/v2/current_user/application_keys", 200},
		{"PAT validates", pat, "GET", "/api/v2/validate_keys", 200},
		{"PAT is not an API key", pat, "GET", "/api/v1/validate", 403},
		{"read-only owner, read scope", roDashboards, "GET", "/api/v1/dashboard", 200},
		{"scope beyond the owner's role", roWrite, "POST", "/api/v2/api_keys", 403},
		{"owner without roles", noRole, "GET", "/api/v1/dashboard", 403},
		{"owner without roles may still validate", noRole, "GET", "/api/v2/validate_keys", 200},
		{"unknown token", "ddsat_" + strings.Repeat("a", 22) + "_" + strings.Repeat("b", 36), "GET", "/api/v2/validate_keys", 401},
		{"application key as bearer", s.AppKey(), "GET", "/api/v2/validate_keys", 401},
	} {
		body := ""
		if tc.method == "POST" {
			body = jsonBody(t, "api_keys", "", map[string]any{"name": "x"})
		}
		status, resp, _ := s.send(t, bearer(tc.token), tc.method, tc.path, body)
		if status != tc.want {
			t.Errorf("%s: %s %s = %d %v, want %d", tc.name, tc.method, tc.path, status, resp, tc.want)
		}
	}

	// The current user of a token is its owner.
	_, me := s.withToken(t, roDashboards, "GET", "/api/v2/current_user", "")
	if str(me, "data.id") != readOnlySA || get(me, "data.attributes.service_account") != true {
		t.Errorf("current_user with a service account's token = %v", me)
	}
	// Datadog also takes a token in DD-APPLICATION-KEY, without an API key.
	if status, _ := s.call(t, "", pat, "GET", "/api/v1/dashboard", ""); status != http.StatusOK {
		t.Errorf("PAT in DD-APPLICATION-KEY: %d", status)
	}

	// Expiry: a token works until its expires_at, not after.
	expiring := newSAT(readOnlySA, ptr(clock.t.Add(time.Hour)), "dashboards_read")
	clock.t = clock.t.Add(time.Hour - time.Second)
	if status, _ := s.withToken(t, expiring, "GET", "/api/v1/dashboard", ""); status != http.StatusOK {
		t.Errorf("token a second before expiry: %d", status)
	}
	s.Advance(time.Second) // the emulator's own clock control moves past it
	status, body := s.withToken(t, expiring, "GET", "/api/v1/dashboard", "")
	wantError(t, status, body, http.StatusUnauthorized, "Unauthorized")
	// An expired token is still listed until revoked.
	if !slices.ContainsFunc(s.Keys(), func(k emulator.Key) bool { return k.ExpiresAt != nil && !k.ExpiresAt.After(s.Now()) }) {
		t.Error("Keys() does not list the expired token")
	}
	clock.t = clock.t.Add(47 * time.Hour)
	status, body = s.withToken(t, pat, "GET", "/api/v1/dashboard", "")
	wantError(t, status, body, http.StatusUnauthorized, "Unauthorized")
	// In DD-APPLICATION-KEY a failed token is a wrong application key: 403.
	status, body = s.call(t, "", pat, "GET", "/api/v1/dashboard", "")
	wantError(t, status, body, http.StatusForbidden, "Forbidden")
	created := s.mustAdmin(t, http.StatusCreated, "POST", "/api/v2/service_accounts/"+readOnlySA+"/access_tokens",
		tokenBody(t, "service_access_tokens", "revoked", nil, "dashboards_read"))
	revoked := str(created, "data.attributes.key")
	if status, _ := s.call(t, "", revoked, "GET", "/api/v1/dashboard", ""); status != http.StatusOK {
		t.Errorf("SAT in DD-APPLICATION-KEY: %d", status)
	}
	s.mustAdmin(t, http.StatusNoContent, "DELETE", "/api/v2/service_accounts/"+readOnlySA+"/access_tokens/"+str(created, "data.id"), "")
	status, body = s.call(t, s.APIKey(), revoked, "GET", "/api/v1/dashboard", "")
	wantError(t, status, body, http.StatusForbidden, "Forbidden")
	status, body = s.withToken(t, revoked, "GET", "/api/v1/dashboard", "")
	wantError(t, status, body, http.StatusUnauthorized, "Unauthorized")
}

func TestPersonalAccessTokenListIsOrgWide(t *testing.T) {
	clock := newClock()
	s := newLenientServer(t, emulator.Options{Now: clock.Now}) // sends an invalid sort
	sa := s.createServiceAccount(t, "listed@example.com")
	s.mustAdmin(t, http.StatusCreated, "POST", "/api/v2/personal_access_tokens",
		tokenBody(t, "personal_access_tokens", "b-pat", ptr(clock.t.Add(48*time.Hour)), "dashboards_read"))
	satBody := s.mustAdmin(t, http.StatusCreated, "POST", "/api/v2/service_accounts/"+sa+"/access_tokens",
		tokenBody(t, "service_access_tokens", "a-sat", nil, "dashboards_read"))

	list := s.mustAdmin(t, http.StatusOK, "GET", "/api/v2/personal_access_tokens?sort=name", "")
	if str(list, "data.0.type") != "service_access_tokens" || str(list, "data.1.type") != "personal_access_tokens" ||
		str(list, "data.0.relationships.owned_by.data.type") != "service_account" {
		t.Errorf("organisation's token list = %v", list)
	}
	list = s.mustAdmin(t, http.StatusOK, "GET", "/api/v2/personal_access_tokens?filter[owned_by]="+sa, "")
	if get(list, "meta.page.total_filtered_count") != 1.0 {
		t.Errorf("filter[owned_by] = %v", list)
	}
	list = s.mustAdmin(t, http.StatusOK, "GET", "/api/v2/personal_access_tokens?sort=-expires_at&filter[leaked]=false", "")
	if get(list, "meta.page.total_filtered_count") != 2.0 {
		t.Errorf("sort=-expires_at = %v", list)
	}
	// A service access token is not a personal one on the item path.
	satPath := "/api/v2/personal_access_tokens/" + str(satBody, "data.id")
	status, body := s.admin(t, "GET", satPath, "")
	wantError(t, status, body, http.StatusNotFound, "Access token not found")
	// The service account's own list holds only its tokens.
	list = s.mustAdmin(t, http.StatusOK, "GET", "/api/v2/service_accounts/"+sa+"/access_tokens", "")
	if get(list, "meta.page.total_filtered_count") != 1.0 || str(list, "data.0.attributes.name") != "a-sat" {
		t.Errorf("service account's list = %v", list)
	}
	if status, _ := s.admin(t, "GET", "/api/v2/personal_access_tokens?sort=owner", ""); status != http.StatusBadRequest {
		t.Errorf("sort=owner: %d, want 400", status)
	}
}
