package emulator_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
)

func TestSeededRoles(t *testing.T) {
	s := newTestServer(t, emulator.Options{})
	list := s.mustAdmin(t, http.StatusOK, "GET", "/api/v2/roles", "")
	perms := map[string][]any{}
	for _, r := range get(list, "data").([]any) {
		perms[str(r, "attributes.name")] = get(r, "relationships.permissions.data").([]any)
	}
	admin, standard, readOnly := perms["Datadog Admin Role"], perms["Datadog Standard Role"], perms["Datadog Read Only Role"]
	if len(perms) != 3 || !(len(admin) > len(standard) && len(standard) > len(readOnly) && len(readOnly) > 0) {
		t.Fatalf("seeded roles = %v", list)
	}
	if get(list, "meta.page.total_count") != 3.0 || get(list, "data.0.attributes.user_count") != 1.0 {
		t.Errorf("role list = %v", list)
	}
	filtered := s.mustAdmin(t, http.StatusOK, "GET", "/api/v2/roles?filter=read+only", "")
	if get(filtered, "meta.page.total_filtered_count") != 1.0 {
		t.Errorf("filter=read only: %v", filtered)
	}
	_, me := s.admin(t, "GET", "/api/v2/current_user", "")
	if str(me, "included.0.attributes.name") != "Datadog Admin Role" {
		t.Errorf("current user's roles = %v", get(me, "included"))
	}
}

// TestServiceAccountPermissions: a service account holds the permissions
// of its roles, and its keys never more.
func TestServiceAccountPermissions(t *testing.T) {
	s := newTestServer(t, emulator.Options{})
	for _, tc := range []struct {
		roles                  []string
		dashboards, apiKeys    int // GET /api/v1/dashboard, GET /api/v2/api_keys
		createsServiceAccounts int
	}{
		{nil, 403, 403, 403},
		{[]string{"Datadog Read Only Role"}, 200, 403, 403},
		{[]string{"Datadog Standard Role"}, 200, 200, 403},
		{[]string{"Datadog Read Only Role", "Datadog Admin Role"}, 200, 200, 201},
	} {
		sa := s.createServiceAccount(t, fmt.Sprintf("perm-%d@example.com", len(tc.roles)*10+len(fmt.Sprint(tc.roles))), tc.roles...)
		created := s.mustAdmin(t, http.StatusCreated, "POST", "/api/v2/service_accounts/"+sa+"/application_keys",
			jsonBody(t, "application_keys", "", map[string]any{"name": "unscoped"}))
		if str(created, "data.relationships.owned_by.data.id") != sa || len(str(created, "data.attributes.key")) != 40 {
			t.Errorf("service account key = %v", created)
		}
		key := str(created, "data.attributes.key")
		got := []int{}
		for _, path := range []string{"/api/v1/dashboard", "/api/v2/api_keys"} {
			status, _ := s.call(t, s.APIKey(), key, "GET", path, "")
			got = append(got, status)
		}
		status, _ := s.call(t, s.APIKey(), key, "POST", "/api/v2/service_accounts",
			`{"data":{"type":"users","attributes":{"email":"child-`+sa+`@example.com","service_account":true}}}`)
		got = append(got, status)
		if want := []int{tc.dashboards, tc.apiKeys, tc.createsServiceAccounts}; !slices.Equal(got, want) {
			t.Errorf("roles %v: statuses %v, want %v", tc.roles, got, want)
		}
	}
}

func TestServiceAccountKeys(t *testing.T) {
	s := newTestServer(t, emulator.Options{})
	sa := s.createServiceAccount(t, "keys@example.com", "Datadog Standard Role")
	collection := "/api/v2/service_accounts/" + sa + "/application_keys"
	created := s.mustAdmin(t, http.StatusCreated, "POST", collection,
		jsonBody(t, "application_keys", "", map[string]any{"name": "sa-key", "scopes": []string{"dashboards_read"}}))
	id := str(created, "data.id")
	item := collection + "/" + id

	read := s.mustAdmin(t, http.StatusOK, "GET", item, "")
	if get(read, "data.attributes.key") != nil || str(read, "data.attributes.last4") != str(created, "data.attributes.key")[36:] {
		t.Errorf("GET = %v", read)
	}
	list := s.mustAdmin(t, http.StatusOK, "GET", collection, "")
	if get(list, "meta.max_allowed_per_user") != 1000.0 || get(list, "meta.page.total_filtered_count") != 1.0 {
		t.Errorf("list = %v", list)
	}
	updated := s.mustAdmin(t, http.StatusOK, "PATCH", item, jsonBody(t, "application_keys", id, map[string]any{"name": "renamed"}))
	if str(updated, "data.attributes.name") != "renamed" || get(updated, "data.relationships.owned_by") != nil {
		t.Errorf("PATCH = %v (recorded without owned_by)", updated)
	}
	// The key is the service account's: not the caller's, but the org's.
	status, body := s.admin(t, "GET", "/api/v2/current_user/application_keys/"+id, "")
	wantError(t, status, body, http.StatusNotFound, "Application key not found")
	s.mustAdmin(t, http.StatusOK, "GET", "/api/v2/application_keys/"+id, "")
	// Another service account's path does not reach it.
	other := s.createServiceAccount(t, "other@example.com")
	status, body = s.admin(t, "GET", "/api/v2/service_accounts/"+other+"/application_keys/"+id, "")
	wantError(t, status, body, http.StatusNotFound, "Application key not found")
	status, body = s.admin(t, "GET", "/api/v2/service_accounts/"+s.UserID()+"/application_keys", "")
	wantError(t, status, body, http.StatusNotFound, "Service account not found")

	if status, _ := s.admin(t, "DELETE", item, ""); status != http.StatusNoContent {
		t.Errorf("DELETE: %d", status)
	}
	status, body = s.admin(t, "DELETE", item, "")
	wantError(t, status, body, http.StatusNotFound, "Application key not found")
}

// TestDisableServiceAccount: disabling keeps the account (readable, with
// disabled true) and its keys, which stop authenticating.
func TestDisableServiceAccount(t *testing.T) {
	s := newTestServer(t, emulator.Options{})
	sa := s.createServiceAccount(t, "doomed@example.com", "Datadog Admin Role")
	key := str(s.mustAdmin(t, http.StatusCreated, "POST", "/api/v2/service_accounts/"+sa+"/application_keys",
		jsonBody(t, "application_keys", "", map[string]any{"name": "k"})), "data.attributes.key")
	token := str(s.mustAdmin(t, http.StatusCreated, "POST", "/api/v2/service_accounts/"+sa+"/access_tokens",
		tokenBody(t, "service_access_tokens", "t", nil, "dashboards_read")), "data.attributes.key")
	if status, _ := s.call(t, s.APIKey(), key, "GET", "/api/v2/validate_keys", ""); status != http.StatusOK {
		t.Fatalf("key before disabling: %d", status)
	}

	if status, body := s.admin(t, "DELETE", "/api/v2/users/"+sa, ""); status != http.StatusNoContent || body != nil {
		t.Fatalf("disable: %d %v", status, body)
	}
	status, body := s.admin(t, "DELETE", "/api/v2/users/"+sa, "")
	wantError(t, status, body, http.StatusNotFound, sa+" not found")

	status, body = s.call(t, s.APIKey(), key, "GET", "/api/v2/validate_keys", "")
	wantError(t, status, body, http.StatusForbidden, "Forbidden")
	status, body = s.withToken(t, token, "GET", "/api/v2/validate_keys", "")
	wantError(t, status, body, http.StatusForbidden, "Forbidden")

	user := s.mustAdmin(t, http.StatusOK, "GET", "/api/v2/users/"+sa, "")
	if get(user, "data.attributes.disabled") != true || str(user, "data.attributes.status") != "Disabled" {
		t.Errorf("disabled service account = %v", user)
	}
	// Its keys are still there to be cleaned up.
	list := s.mustAdmin(t, http.StatusOK, "GET", "/api/v2/service_accounts/"+sa+"/application_keys", "")
	if get(list, "meta.page.total_filtered_count") != 1.0 {
		t.Errorf("keys of a disabled service account = %v", list)
	}
	// Its email is free again.
	s.createServiceAccount(t, "doomed@example.com")
}

func TestCreateUsersAndServiceAccounts(t *testing.T) {
	s := newLenientServer(t, emulator.Options{}) // sends bodies the spec refuses
	created := s.mustAdmin(t, http.StatusCreated, "POST", "/api/v2/users",
		`{"data":{"type":"users","attributes":{"email":"Jane.Doe@Example.com","title":"SRE"}}}`)
	if str(created, "data.attributes.email") != "jane.doe@example.com" || str(created, "data.attributes.handle") != "jane.doe@example.com" ||
		str(created, "data.attributes.status") != "Pending" || get(created, "data.attributes.name") != nil ||
		get(created, "data.attributes.service_account") != false || get(created, "included") != nil {
		t.Errorf("created user = %v", created)
	}
	sa := s.mustAdmin(t, http.StatusCreated, "POST", "/api/v2/service_accounts",
		`{"data":{"type":"users","attributes":{"email":"bot@example.com","service_account":true,"name":"Bot"},`+
			`"relationships":{"roles":{"data":[{"type":"roles","id":"`+s.roleID(t, "Datadog Read Only Role")+`"}]}}}}`)
	id := str(sa, "data.id")
	if str(sa, "data.attributes.handle") != id || str(sa, "data.attributes.status") != "Active" || get(sa, "data.attributes.service_account") != true ||
		str(sa, "data.relationships.roles.data.0.type") != "roles" || str(sa, "included.0.type") != "roles" || str(sa, "included.1.type") != "permissions" {
		t.Errorf("created service account = %v", sa)
	}

	for _, tc := range []struct {
		name, path, body string
		want             int
	}{
		{"email taken", "/api/v2/users", `{"data":{"type":"users","attributes":{"email":"jane.doe@example.com"}}}`, 409},
		{"email taken by a service account", "/api/v2/service_accounts", `{"data":{"type":"users","attributes":{"email":"BOT@example.com","service_account":true}}}`, 409},
		{"no email", "/api/v2/users", `{"data":{"type":"users","attributes":{"name":"x"}}}`, 400},
		{"not an email", "/api/v2/users", `{"data":{"type":"users","attributes":{"email":"nobody"}}}`, 400},
		{"service_account false", "/api/v2/service_accounts", `{"data":{"type":"users","attributes":{"email":"a@example.com","service_account":false}}}`, 400},
		{"unknown role", "/api/v2/service_accounts", `{"data":{"type":"users","attributes":{"email":"b@example.com","service_account":true},` +
			`"relationships":{"roles":{"data":[{"type":"roles","id":"3653d3c6-0c75-11ea-ad28-fb5701eabc7d"}]}}}}`, 400},
		{"wrong type", "/api/v2/users", `{"data":{"type":"roles","attributes":{"email":"c@example.com"}}}`, 400},
	} {
		if status, body := s.admin(t, "POST", tc.path, tc.body); status != tc.want {
			t.Errorf("%s: %d %v, want %d", tc.name, status, body, tc.want)
		}
	}

	list := s.mustAdmin(t, http.StatusOK, "GET", "/api/v2/users?filter=example.com&filter[status]=Active&sort=-name", "")
	if get(list, "meta.page.total_filtered_count") != 2.0 || str(list, "data.0.id") != s.UserID() || str(list, "data.1.id") != id {
		t.Errorf("users list = %v", list)
	}
	updated := s.mustAdmin(t, http.StatusOK, "PATCH", "/api/v2/users/"+id, jsonBody(t, "users", id, map[string]any{"name": "Robot", "title": nil}))
	if str(updated, "data.attributes.name") != "Robot" || get(updated, "data.attributes.title") != nil {
		t.Errorf("PATCH user = %v", updated)
	}
	status, body := s.admin(t, "PATCH", "/api/v2/users/"+id, jsonBody(t, "users", s.UserID(), map[string]any{"name": "x"}))
	wantError(t, status, body, http.StatusUnprocessableEntity, "User ID in the body does not match the path")
	status, body = s.admin(t, "GET", "/api/v2/users/nobody", "")
	wantError(t, status, body, http.StatusNotFound, "nobody not found")
}

func TestRoles(t *testing.T) {
	s := newTestServer(t, emulator.Options{})
	created := s.mustAdmin(t, http.StatusOK, "POST", "/api/v2/roles", `{"data":{"type":"roles","attributes":{"name":"custom"}}}`)
	id := str(created, "data.id")
	if n := len(get(created, "data.relationships.permissions.data").([]any)); n != 8 || get(created, "data.attributes.user_count") != nil {
		t.Errorf("a new role gets Datadog's 8 default permissions and no user count: %v", created)
	}
	status, body := s.admin(t, "POST", "/api/v2/roles", `{"data":{"type":"roles","attributes":{"name":"Custom"}}}`)
	wantError(t, status, body, http.StatusConflict, "Role with name Custom already exists")
	optOut := s.mustAdmin(t, http.StatusOK, "POST", "/api/v2/roles", `{"data":{"type":"roles","attributes":{"name":"bare","default_permissions_opt_out":true}}}`)
	if n := len(get(optOut, "data.relationships.permissions.data").([]any)); n != 0 {
		t.Errorf("opted-out role has %d permissions", n)
	}

	// A service account with the role holds its permissions, and loses them with it.
	sa := s.createServiceAccount(t, "custom@example.com", "custom")
	key := str(s.mustAdmin(t, http.StatusCreated, "POST", "/api/v2/service_accounts/"+sa+"/application_keys",
		jsonBody(t, "application_keys", "", map[string]any{"name": "k"})), "data.attributes.key")
	if status, _ := s.call(t, s.APIKey(), key, "GET", "/api/v1/monitor", ""); status != http.StatusOK {
		t.Errorf("monitors_read through the custom role: %d", status)
	}
	read := s.mustAdmin(t, http.StatusOK, "GET", "/api/v2/roles/"+id, "")
	if get(read, "data.attributes.user_count") != 1.0 {
		t.Errorf("GET role = %v", read)
	}
	perm := map[string]any{"type": "permissions", "id": str(s.mustAdmin(t, http.StatusOK, "GET", "/api/v2/permissions", ""), "data.0.id")}
	update := func(roleID, bodyID string, perms ...any) (int, any) {
		body, _ := json.Marshal(map[string]any{"data": map[string]any{
			"type": "roles", "id": bodyID, "attributes": map[string]any{},
			"relationships": map[string]any{"permissions": map[string]any{"data": perms}},
		}})
		return s.admin(t, "PATCH", "/api/v2/roles/"+roleID, string(body))
	}
	if status, body := update(id, id, perm); status != http.StatusOK || len(get(body, "data.relationships.permissions.data").([]any)) != 1 {
		t.Errorf("PATCH permissions: %d %v", status, body)
	}
	if status, _ := s.call(t, s.APIKey(), key, "GET", "/api/v1/monitor", ""); status != http.StatusForbidden {
		t.Errorf("monitors_read after the role lost it: %d", status)
	}
	for _, tc := range []struct {
		roleID, bodyID string
		perms          []any
		want           int
	}{
		{id, id, []any{map[string]any{"type": "permissions", "id": "11111111-dead-beef-dead-ffffffffffff"}}, 400},
		{id, "00000000-dead-beef-dead-ffffffffffff", []any{perm}, 422},
		{"00000000-dead-beef-dead-ffffffffffff", "00000000-dead-beef-dead-ffffffffffff", []any{perm}, 404},
		{s.roleID(t, "Datadog Admin Role"), s.roleID(t, "Datadog Admin Role"), []any{perm}, 400}, // managed
	} {
		if status, body := update(tc.roleID, tc.bodyID, tc.perms...); status != tc.want {
			t.Errorf("PATCH %s (body id %s): %d %v, want %d", tc.roleID, tc.bodyID, status, body, tc.want)
		}
	}

	if status, _ := s.admin(t, "DELETE", "/api/v2/roles/"+s.roleID(t, "Datadog Standard Role"), ""); status != http.StatusBadRequest {
		t.Errorf("deleting a managed role: %d, want 400", status)
	}
	if status, _ := s.admin(t, "DELETE", "/api/v2/roles/"+id, ""); status != http.StatusNoContent {
		t.Errorf("DELETE role: %d", status)
	}
	status, body = s.admin(t, "GET", "/api/v2/roles/"+id, "")
	wantError(t, status, body, http.StatusNotFound, "Role not found")
	user := s.mustAdmin(t, http.StatusOK, "GET", "/api/v2/users/"+sa, "")
	if roles := get(user, "data.relationships.roles.data").([]any); len(roles) != 0 {
		t.Errorf("service account keeps a deleted role: %v", roles)
	}
}
