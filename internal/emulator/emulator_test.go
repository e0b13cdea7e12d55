package emulator_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
)

func TestSeededKeyFormats(t *testing.T) {
	emu := emulator.New(emulator.Options{})
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(emu.APIKey()) {
		t.Errorf("API key %q is not 32 lowercase hex", emu.APIKey())
	}
	if !regexp.MustCompile(`^ddapp_[A-Za-z0-9]{34}$`).MatchString(emu.AppKey()) {
		t.Errorf("application key %q is not ddapp_ + 34 alphanumerics", emu.AppKey())
	}
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(emu.UserID()) {
		t.Errorf("user id %q is not a UUID", emu.UserID())
	}
	given := emulator.New(emulator.Options{APIKey: "0123456789abcdef0123456789abcdef", AppKey: strings.Repeat("a", 40)})
	if given.APIKey() != "0123456789abcdef0123456789abcdef" || given.AppKey() != strings.Repeat("a", 40) {
		t.Error("given seeded keys not used")
	}
}

func TestAuthFailures(t *testing.T) {
	s := newTestServer(t, emulator.Options{})
	forbidden := []struct {
		name           string
		apiKey, appKey string
		path           string
	}{
		{"no keys", "", "", "/api/v2/validate_keys"},
		{"no app key", s.APIKey(), "", "/api/v2/validate_keys"},
		{"no api key", "", s.AppKey(), "/api/v2/validate_keys"},
		{"bad api key", strings.Repeat("0", 32), s.AppKey(), "/api/v2/validate_keys"},
		{"bad app key", s.APIKey(), "ddapp_" + strings.Repeat("0", 34), "/api/v2/validate_keys"},
		{"keys swapped", s.AppKey(), s.APIKey(), "/api/v2/current_user"},
		{"bad app key on key management", s.APIKey(), "nope", "/api/v2/current_user/application_keys"},
		{"v1 validate without api key", "", s.AppKey(), "/api/v1/validate"},
		{"v1 validate with bad api key", "bad", "", "/api/v1/validate"},
	}
	for _, tc := range forbidden {
		t.Run(tc.name, func(t *testing.T) {
			status, body := s.call(t, tc.apiKey, tc.appKey, "GET", tc.path, "")
			wantError(t, status, body, http.StatusForbidden, "Forbidden")
		})
	}

	status, body := s.call(t, s.APIKey(), "", "GET", "/api/v1/validate", "")
	if status != http.StatusOK || get(body, "valid") != true {
		t.Errorf("v1 validate with API key only: %d %v", status, body)
	}
	status, body = s.admin(t, "GET", "/api/v2/validate_keys", "")
	if status != http.StatusOK || get(body, "status") != "ok" {
		t.Errorf("validate_keys: %d %v", status, body)
	}
}

func TestScopedApplicationKey(t *testing.T) {
	s := newTestServer(t, emulator.Options{})
	_, dashboardsOnly := s.createAppKey(t, "dashboards only", "dashboards_read")
	_, usersOnly := s.createAppKey(t, "users only", "user_access_read")

	cases := []struct {
		appKey string
		path   string
		want   int
	}{
		{dashboardsOnly, "/api/v1/dashboard", http.StatusOK},
		{dashboardsOnly, "/api/v1/monitor", http.StatusForbidden},
		{dashboardsOnly, "/api/v2/users", http.StatusForbidden},
		{dashboardsOnly, "/api/v2/permissions", http.StatusForbidden},
		{dashboardsOnly, "/api/v2/current_user/application_keys", http.StatusForbidden}, // needs user_app_keys
		{dashboardsOnly, "/api/v2/api_keys", http.StatusForbidden},                      // needs api_keys_read
		{dashboardsOnly, "/api/v2/application_keys", http.StatusForbidden},              // needs org_app_keys_read
		{dashboardsOnly, "/api/v2/validate_keys", http.StatusOK},                        // OPEN
		{dashboardsOnly, "/api/v2/current_user", http.StatusOK},                         // no x-permission
		{usersOnly, "/api/v2/users", http.StatusOK},
		{usersOnly, "/api/v2/permissions", http.StatusOK},
		{usersOnly, "/api/v1/dashboard", http.StatusForbidden},
		{s.AppKey(), "/api/v1/monitor", http.StatusOK}, // unscoped: all of the admin's permissions
		{s.AppKey(), "/api/v2/users", http.StatusOK},
	}
	for _, tc := range cases {
		status, body := s.call(t, s.APIKey(), tc.appKey, "GET", tc.path, "")
		if tc.want == http.StatusForbidden {
			wantError(t, status, body, tc.want, "Forbidden")
		} else if status != tc.want {
			t.Errorf("GET %s: %d, want %d (%v)", tc.path, status, tc.want, body)
		}
	}

	_, body := s.call(t, s.APIKey(), usersOnly, "GET", "/api/v2/users", "")
	if str(body, "data.0.id") != s.UserID() {
		t.Errorf("users list %v does not hold the seeded user", body)
	}
	_, body = s.call(t, s.APIKey(), dashboardsOnly, "GET", "/api/v1/dashboard", "")
	if list, ok := get(body, "dashboards").([]any); !ok || len(list) != 0 {
		t.Errorf("dashboards = %v", body)
	}

	// Writes are guarded too: a key scoped to user_app_keys can manage its
	// owner's keys but not API keys.
	_, keysOnly := s.createAppKey(t, "keys only", "user_app_keys")
	status, _ := s.call(t, s.APIKey(), keysOnly, "POST", "/api/v2/current_user/application_keys",
		jsonBody(t, "application_keys", "", map[string]any{"name": "child"}))
	if status != http.StatusCreated {
		t.Errorf("create with user_app_keys scope: %d", status)
	}
	status, body = s.call(t, s.APIKey(), keysOnly, "POST", "/api/v2/api_keys", jsonBody(t, "api_keys", "", map[string]any{"name": "x"}))
	wantError(t, status, body, http.StatusForbidden, "Forbidden")
}

func TestInvalidScopes(t *testing.T) {
	s := newTestServer(t, emulator.Options{})
	status, body := s.admin(t, "POST", "/api/v2/current_user/application_keys",
		jsonBody(t, "application_keys", "", map[string]any{"name": "k", "scopes": []string{"dashboards_read", "no_such_scope"}}))
	wantError(t, status, body, http.StatusBadRequest, "Invalid scopes")

	id, _ := s.createAppKey(t, "k", "dashboards_read")
	status, body = s.admin(t, "PATCH", "/api/v2/current_user/application_keys/"+id,
		jsonBody(t, "application_keys", id, map[string]any{"scopes": []string{"bogus"}}))
	wantError(t, status, body, http.StatusBadRequest, "Invalid scopes")
	_, body = s.admin(t, "GET", "/api/v2/current_user/application_keys/"+id, "")
	if scopes := get(body, "data.attributes.scopes"); fmt.Sprint(scopes) != "[dashboards_read]" {
		t.Errorf("a refused update changed scopes to %v", scopes)
	}

	// Scopes are stored as given, duplicates included; [] means unscoped.
	_, body = s.admin(t, "POST", "/api/v2/current_user/application_keys",
		jsonBody(t, "application_keys", "", map[string]any{"name": "dup", "scopes": []string{"monitors_read", "monitors_read"}}))
	if scopes := get(body, "data.attributes.scopes"); fmt.Sprint(scopes) != "[monitors_read monitors_read]" {
		t.Errorf("scopes = %v", scopes)
	}
	_, body = s.admin(t, "POST", "/api/v2/current_user/application_keys",
		jsonBody(t, "application_keys", "", map[string]any{"name": "empty", "scopes": []string{}}))
	if scopes, present := get(body, "data.attributes").(map[string]any)["scopes"]; !present || scopes != nil {
		t.Errorf("scopes [] answered as %v, want null", scopes)
	}
}

func TestSecretOnlyOnCreate(t *testing.T) {
	s := newTestServer(t, emulator.Options{})
	status, created := s.admin(t, "POST", "/api/v2/current_user/application_keys",
		jsonBody(t, "application_keys", "", map[string]any{"name": "once"}))
	if status != http.StatusCreated {
		t.Fatalf("create: %d %v", status, created)
	}
	id, secret := str(created, "data.id"), str(created, "data.attributes.key")
	if len(secret) != 40 || str(created, "data.attributes.last4") != secret[36:] {
		t.Errorf("key %q, last4 %q", secret, str(created, "data.attributes.last4"))
	}
	if get(created, "data.attributes.scopes") != nil {
		t.Errorf("unscoped key has scopes %v", get(created, "data.attributes.scopes"))
	}
	for _, read := range []struct{ method, path, body string }{
		{"GET", "/api/v2/current_user/application_keys/" + id, ""},
		{"GET", "/api/v2/application_keys/" + id, ""},
		{"GET", "/api/v2/current_user/application_keys?filter=once", ""},
		{"GET", "/api/v2/application_keys?filter=once", ""},
		{"PATCH", "/api/v2/application_keys/" + id, jsonBody(t, "application_keys", id, map[string]any{"name": "once-renamed"})},
		{"PATCH", "/api/v2/current_user/application_keys/" + id, jsonBody(t, "application_keys", id, map[string]any{"name": "once"})},
	} {
		status, body := s.admin(t, read.method, read.path, read.body)
		if status != http.StatusOK {
			t.Errorf("%s %s: %d %v", read.method, read.path, status, body)
		}
		if raw, _ := json.Marshal(body); strings.Contains(string(raw), `"key"`) || strings.Contains(string(raw), secret) {
			t.Errorf("%s %s reveals the secret: %s", read.method, read.path, raw)
		}
	}

	// API keys: the value comes with the create answer; lists leave it out.
	status, apiKey := s.admin(t, "POST", "/api/v2/api_keys", jsonBody(t, "api_keys", "", map[string]any{"name": "agent"}))
	if status != http.StatusCreated || !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(str(apiKey, "data.attributes.key")) {
		t.Fatalf("create API key: %d %v", status, apiKey)
	}
	_, list := s.admin(t, "GET", "/api/v2/api_keys?filter=agent", "")
	if raw, _ := json.Marshal(list); strings.Contains(string(raw), `"key"`) {
		t.Errorf("API key list reveals values: %s", raw)
	}
}

func TestDeleteTwice(t *testing.T) {
	s := newTestServer(t, emulator.Options{})
	for _, tc := range []struct {
		collection, typ, notFound string
	}{
		{"/api/v2/current_user/application_keys", "application_keys", "Application key not found"},
		{"/api/v2/api_keys", "api_keys", "API key not found"},
	} {
		_, created := s.admin(t, "POST", tc.collection, jsonBody(t, tc.typ, "", map[string]any{"name": "doomed"}))
		path := tc.collection + "/" + str(created, "data.id")
		if status, body := s.admin(t, "DELETE", path, ""); status != http.StatusNoContent || body != nil {
			t.Errorf("DELETE %s: %d %v, want 204 without body", path, status, body)
		}
		status, body := s.admin(t, "DELETE", path, "")
		wantError(t, status, body, http.StatusNotFound, tc.notFound)
		status, body = s.admin(t, "GET", path, "")
		wantError(t, status, body, http.StatusNotFound, tc.notFound)
		status, body = s.admin(t, "PATCH", path, jsonBody(t, tc.typ, str(created, "data.id"), map[string]any{"name": "x"}))
		wantError(t, status, body, http.StatusNotFound, tc.notFound)
	}

	// A key deleted through the org-wide path is gone from the caller's too.
	id, _ := s.createAppKey(t, "org-deleted")
	if status, _ := s.admin(t, "DELETE", "/api/v2/application_keys/"+id, ""); status != http.StatusNoContent {
		t.Errorf("org-wide delete: %d", status)
	}
	status, body := s.admin(t, "DELETE", "/api/v2/current_user/application_keys/"+id, "")
	wantError(t, status, body, http.StatusNotFound, "Application key not found")
}

func TestListFilterSortAndPaging(t *testing.T) {
	s := newLenientServer(t, emulator.Options{}) // sends invalid sorts and page sizes
	for i := range 25 {
		s.createAppKey(t, fmt.Sprintf("Page-%02d", i))
	}
	s.createAppKey(t, "other")

	names := func(body any) []string {
		var out []string
		for _, item := range get(body, "data").([]any) {
			out = append(out, str(item, "attributes.name"))
		}
		return out
	}
	for _, collection := range []string{"/api/v2/current_user/application_keys", "/api/v2/application_keys"} {
		status, body := s.admin(t, "GET", collection+"?filter=page-", "")
		if status != http.StatusOK {
			t.Fatalf("list: %d %v", status, body)
		}
		if got := get(body, "meta.page.total_filtered_count"); got != 25.0 {
			t.Errorf("total_filtered_count = %v, want 25", got)
		}
		if got := get(body, "meta.max_allowed_per_user"); got != 1000.0 {
			t.Errorf("max_allowed_per_user = %v, want 1000", got)
		}
		if got := names(body); len(got) != 10 || got[0] != "Page-00" {
			t.Errorf("default page (size 10, sorted by name) = %v", got)
		}
		_, body = s.admin(t, "GET", collection+"?filter=Page-&page[size]=10&page[number]=2", "")
		if got := names(body); !slices.Equal(got, []string{"Page-20", "Page-21", "Page-22", "Page-23", "Page-24"}) {
			t.Errorf("third page = %v", got)
		}
		_, body = s.admin(t, "GET", collection+"?filter=Page-&page[size]=3&sort=-name", "")
		if got := names(body); !slices.Equal(got, []string{"Page-24", "Page-23", "Page-22"}) {
			t.Errorf("sort=-name = %v", got)
		}
		_, body = s.admin(t, "GET", collection+"?sort=-created_at&page[size]=1", "")
		if got := names(body); !slices.Equal(got, []string{"other"}) {
			t.Errorf("sort=-created_at = %v", got)
		}
		_, body = s.admin(t, "GET", collection+"?filter=Page-&page[number]=9", "")
		if got := get(body, "data").([]any); len(got) != 0 {
			t.Errorf("page past the end = %v", got)
		}
		if status, _ := s.admin(t, "GET", collection+"?page[size]=100", ""); status != http.StatusOK {
			t.Errorf("page[size]=100: %d", status)
		}
		for _, bad := range []string{"page[size]=101", "page[size]=0", "page[size]=x", "page[number]=-1", "sort=owner"} {
			if status, body := s.admin(t, "GET", collection+"?"+bad, ""); status != http.StatusBadRequest || get(body, "errors") == nil {
				t.Errorf("%s: %d %v, want 400 with errors", bad, status, body)
			}
		}
	}

	status, body := s.admin(t, "GET", "/api/v2/api_keys?page[size]=101", "")
	if status != http.StatusBadRequest {
		t.Errorf("API keys page[size]=101: %d %v", status, body)
	}
	_, body = s.admin(t, "GET", "/api/v2/api_keys?filter=seeded", "")
	if get(body, "meta.page.total_filtered_count") != 1.0 || get(body, "meta.max_allowed") == nil {
		t.Errorf("API key list meta = %v", get(body, "meta"))
	}
}

// TestApplicationKeyLimit drives the handler directly: 1000 creates over
// loopback would only add time. The limit holds for every owner.
func TestApplicationKeyLimit(t *testing.T) {
	emu := emulator.New(emulator.Options{})
	serve := serveDirect(t, emu)
	created := serve("POST", "/api/v2/service_accounts",
		`{"data":{"type":"users","attributes":{"email":"bulk@example.com","service_account":true}}}`)
	var sa struct{ Data struct{ ID string } }
	if err := json.Unmarshal(created.Body.Bytes(), &sa); err != nil || created.Code != http.StatusCreated {
		t.Fatalf("creating a service account: %d %s", created.Code, created.Body)
	}
	for _, tc := range []struct {
		owner, collection string
		seeded            int
	}{
		{emu.UserID(), "/api/v2/current_user/application_keys", 1},
		{sa.Data.ID, "/api/v2/service_accounts/" + sa.Data.ID + "/application_keys", 0},
	} {
		create := func() int {
			return serve("POST", tc.collection, `{"data":{"type":"application_keys","attributes":{"name":"bulk"}}}`).Code
		}
		for i := tc.seeded; i < 1000; i++ {
			if code := create(); code != http.StatusCreated {
				t.Fatalf("%s: create #%d: %d", tc.collection, i+1, code)
			}
		}
		if rec := serve("POST", tc.collection, `{"data":{"type":"application_keys","attributes":{"name":"bulk"}}}`); rec.Code != http.StatusBadRequest {
			t.Fatalf("%s: create #1001: %d %s, want 400", tc.collection, rec.Code, rec.Body)
		}
		list := serve("GET", tc.collection+"?page[size]=1", "")
		if !strings.Contains(list.Body.String(), `"max_allowed_per_user":1000`) || !strings.Contains(list.Body.String(), `"total_filtered_count":1000`) {
			t.Errorf("%s list meta: %s", tc.collection, list.Body)
		}
		var last emulator.Key
		for _, k := range emu.Keys() {
			if k.Kind == emulator.KindApplicationKey && k.OwnerID == tc.owner {
				last = k
			}
		}
		emu.DeleteKey(last.ID)
		if code := create(); code != http.StatusCreated {
			t.Errorf("%s: create after a delete: %d, want 201", tc.collection, code)
		}
	}
}

func TestTimestamps(t *testing.T) {
	clock := time.Date(2022, 5, 12, 9, 52, 3, 65338123, time.FixedZone("CEST", 2*60*60))
	s := newTestServer(t, emulator.Options{Now: func() time.Time { return clock }})
	layout := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$`)

	_, created := s.admin(t, "POST", "/api/v2/current_user/application_keys", jsonBody(t, "application_keys", "", map[string]any{"name": "t"}))
	_, apiKey := s.admin(t, "POST", "/api/v2/api_keys", jsonBody(t, "api_keys", "", map[string]any{"name": "t"}))
	_, me := s.admin(t, "GET", "/api/v2/current_user", "")
	for _, ts := range []string{
		str(created, "data.attributes.created_at"),
		str(apiKey, "data.attributes.created_at"),
		str(apiKey, "data.attributes.modified_at"),
		str(me, "data.attributes.created_at"),
	} {
		if !layout.MatchString(ts) {
			t.Errorf("timestamp %q is not like 2022-05-12T09:52:03.065338+00:00", ts)
		}
		parsed, err := time.Parse(time.RFC3339, ts)
		if err != nil {
			t.Errorf("timestamp %q: %v", ts, err)
		} else if !parsed.Equal(clock.Truncate(time.Microsecond)) {
			t.Errorf("timestamp %q, want the clock's %v", ts, clock)
		}
	}
	if got := str(created, "data.attributes.created_at"); got != "2022-05-12T07:52:03.065338+00:00" {
		t.Errorf("created_at = %q", got)
	}
	// The seeded key is used by every call here, so it has a last use.
	_, seeded := s.admin(t, "GET", "/api/v2/application_keys?filter=Seeded", "")
	if ts := str(seeded, "data.0.attributes.last_used_at"); !layout.MatchString(ts) {
		t.Errorf("last_used_at of a used key = %q", ts)
	}
	for _, k := range s.Keys() {
		if !k.CreatedAt.Equal(clock.Truncate(time.Microsecond)) {
			t.Errorf("Keys() CreatedAt %v, want %v", k.CreatedAt, clock)
		}
	}
}

func TestDeleteKeyOutOfBand(t *testing.T) {
	s := newTestServer(t, emulator.Options{})
	seeded := len(s.Keys()) // the seeded API and application keys first, then people's API keys
	id, secret := s.createAppKey(t, "revoked in the UI", "dashboards_read")

	keys := s.Keys()
	last := keys[len(keys)-1]
	if len(keys) != seeded+1 || keys[0].Kind != emulator.KindAPIKey || keys[1].Kind != emulator.KindApplicationKey || last.ID != id {
		t.Fatalf("Keys() = %+v, want seeded API key, seeded app key, people's API keys, new key", keys)
	}
	if keys[1].Scopes != nil || !slices.Equal(last.Scopes, []string{"dashboards_read"}) || last.OwnerID != s.UserID() {
		t.Errorf("Keys() = %+v", keys)
	}

	if status, _ := s.call(t, s.APIKey(), secret, "GET", "/api/v1/dashboard", ""); status != http.StatusOK {
		t.Fatalf("new key does not work: %d", status)
	}
	if !s.DeleteKey(id) {
		t.Fatal("DeleteKey of a live key = false")
	}
	if s.DeleteKey(id) {
		t.Error("DeleteKey of a deleted key = true")
	}
	status, body := s.call(t, s.APIKey(), secret, "GET", "/api/v1/dashboard", "")
	wantError(t, status, body, http.StatusForbidden, "Forbidden")

	// The admin endpoints need no keys.
	status, body = s.call(t, "", "", "GET", "/_emulator/keys", "")
	if status != http.StatusOK {
		t.Fatalf("GET /_emulator/keys: %d", status)
	}
	listed := get(body, "keys").([]any)
	if len(listed) != seeded || str(listed[1], "id") != s.Keys()[1].ID || str(listed[1], "kind") != emulator.KindApplicationKey {
		t.Errorf("/_emulator/keys = %v", body)
	}
	for _, field := range []string{"id", "kind", "name", "owner_id", "scopes", "created_at", "expires_at"} {
		if _, present := listed[0].(map[string]any)[field]; !present {
			t.Errorf("/_emulator/keys entries lack %q: %v", field, listed[0])
		}
	}

	apiKeyID := s.Keys()[0].ID
	if status, _ := s.call(t, "", "", "DELETE", "/_emulator/keys/"+apiKeyID, ""); status != http.StatusNoContent {
		t.Errorf("DELETE /_emulator/keys/{id}: %d", status)
	}
	if status, _ := s.call(t, "", "", "DELETE", "/_emulator/keys/"+apiKeyID, ""); status != http.StatusNotFound {
		t.Errorf("second DELETE /_emulator/keys/{id}: %d", status)
	}
	// With its API key gone, the org's seeded credentials no longer work.
	status, body = s.admin(t, "GET", "/api/v2/validate_keys", "")
	wantError(t, status, body, http.StatusForbidden, "Forbidden")
}

func TestCreateAndUpdateValidation(t *testing.T) {
	s := newLenientServer(t, emulator.Options{}) // sends invalid bodies
	for _, tc := range []struct {
		name, path, body string
	}{
		{"invalid JSON", "/api/v2/current_user/application_keys", `{"data":`},
		{"no data", "/api/v2/current_user/application_keys", `{}`},
		{"wrong type", "/api/v2/current_user/application_keys", `{"data":{"type":"api_keys","attributes":{"name":"x"}}}`},
		{"no name", "/api/v2/current_user/application_keys", `{"data":{"type":"application_keys","attributes":{"scopes":["dashboards_read"]}}}`},
		{"empty name", "/api/v2/api_keys", `{"data":{"type":"api_keys","attributes":{"name":""}}}`},
		{"name not a string", "/api/v2/api_keys", `{"data":{"type":"api_keys","attributes":{"name":5}}}`},
		{"no attributes", "/api/v2/api_keys", `{"data":{"type":"api_keys"}}`},
	} {
		status, body := s.admin(t, "POST", tc.path, tc.body)
		if errs, _ := get(body, "errors").([]any); status != http.StatusBadRequest || len(errs) == 0 {
			t.Errorf("%s: %d %v, want 400 with errors", tc.name, status, body)
		}
	}

	id, _ := s.createAppKey(t, "orig")
	path := "/api/v2/application_keys/" + id
	status, body := s.admin(t, "PATCH", path, jsonBody(t, "application_keys", "00112233-4455-6677-8899-aabbccddeeff", map[string]any{"name": "x"}))
	if status != http.StatusBadRequest {
		t.Errorf("PATCH with another id: %d %v", status, body)
	}
	status, body = s.admin(t, "PATCH", path, jsonBody(t, "application_keys", id, map[string]any{"scopes": []string{"monitors_read"}}))
	if status != http.StatusOK || str(body, "data.attributes.name") != "orig" || fmt.Sprint(get(body, "data.attributes.scopes")) != "[monitors_read]" {
		t.Errorf("PATCH scopes only: %d %v", status, body)
	}
	status, body = s.admin(t, "PATCH", path, jsonBody(t, "application_keys", id, map[string]any{"scopes": nil}))
	if status != http.StatusOK || get(body, "data.attributes.scopes") != nil {
		t.Errorf("PATCH scopes null (unscope): %d %v", status, body)
	}

	_, apiKey := s.admin(t, "POST", "/api/v2/api_keys", jsonBody(t, "api_keys", "", map[string]any{"name": "a"}))
	apiPath := "/api/v2/api_keys/" + str(apiKey, "data.id")
	status, body = s.admin(t, "PATCH", apiPath, jsonBody(t, "api_keys", str(apiKey, "data.id"), map[string]any{"category": "x"}))
	if status != http.StatusBadRequest {
		t.Errorf("PATCH API key without name: %d %v (the spec requires name)", status, body)
	}
	status, body = s.admin(t, "PATCH", apiPath, jsonBody(t, "api_keys", str(apiKey, "data.id"), map[string]any{"name": "b", "remote_config_read_enabled": false}))
	if status != http.StatusOK || str(body, "data.attributes.name") != "b" || get(body, "data.attributes.remote_config_read_enabled") != false {
		t.Errorf("PATCH API key: %d %v", status, body)
	}
}

func TestUnknownRoutes(t *testing.T) {
	s := newLenientServer(t, emulator.Options{}) // the checker knows no such operations
	for _, tc := range []struct{ method, path string }{
		{"GET", "/api/v2/nope"},
		{"GET", "/api/v2/service_accounts"},
		{"POST", "/api/v2/application_keys"}, // no org-wide create in Datadog
		{"PUT", "/api/v2/api_keys"},
		{"GET", "/api/v2/current_user/application_keys/a/b"},
		{"GET", "/"},
	} {
		status, body := s.admin(t, tc.method, tc.path, "")
		wantError(t, status, body, http.StatusNotFound, "Not found")
	}
}

// TestConcurrentUse is meant for -race. It drives the handler directly, as
// t.Fatal must not be called from the goroutines.
func TestConcurrentUse(t *testing.T) {
	emu := emulator.New(emulator.Options{})
	serve := serveDirect(t, emu)
	seeded := len(emu.Keys())
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 10 {
				rec := serve("POST", "/api/v2/current_user/application_keys",
					fmt.Sprintf(`{"data":{"type":"application_keys","attributes":{"name":"w%d-%d"}}}`, w, i))
				var created struct{ Data struct{ ID string } }
				if err := json.Unmarshal(rec.Body.Bytes(), &created); err != nil || rec.Code != http.StatusCreated {
					t.Errorf("create: %d %s", rec.Code, rec.Body)
					return
				}
				emu.Keys()
				emu.Advance(time.Millisecond)
				if rec := serve("DELETE", "/api/v2/application_keys/"+created.Data.ID, ""); rec.Code != http.StatusNoContent {
					t.Errorf("delete: %d %s", rec.Code, rec.Body)
				}
			}
		})
	}
	wg.Wait()
	if n := len(emu.Keys()); n != seeded {
		t.Errorf("%d keys left, want the %d seeded", n, seeded)
	}
}
