package emulator_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
)

// TestLoweredApplicationKeyLimit: with MaxAppKeysPerUser the limit is
// reached after a few keys, per owner, and answered as Datadog answers its
// own: a 400, and the limit reported in list meta. Access tokens are not
// limited.
func TestLoweredApplicationKeyLimit(t *testing.T) {
	s := newTestServer(t, emulator.Options{MaxAppKeysPerUser: 3})
	sa := s.createServiceAccount(t, "capped@example.com", "Datadog Admin Role")
	other := s.createServiceAccount(t, "other@example.com", "Datadog Admin Role")
	appKey := func(owner string) string {
		return jsonBody(t, "application_keys", "", map[string]any{"name": "k " + owner})
	}

	for _, tc := range []struct {
		collection string
		seeded     int
	}{
		{"/api/v2/current_user/application_keys", 1}, // the seeded key counts
		{"/api/v2/service_accounts/" + sa + "/application_keys", 0},
	} {
		for i := tc.seeded; i < 3; i++ {
			s.mustAdmin(t, http.StatusCreated, "POST", tc.collection, appKey(tc.collection))
		}
		status, body := s.admin(t, "POST", tc.collection, appKey(tc.collection))
		wantError(t, status, body, http.StatusBadRequest, "Cannot create more than 3 application keys per user; delete unused keys first")
		list := s.mustAdmin(t, http.StatusOK, "GET", tc.collection+"?page[size]=1&sort=-created_at", "")
		if get(list, "meta.max_allowed_per_user") != 3.0 || get(list, "meta.page.total_filtered_count") != 3.0 {
			t.Errorf("%s list meta: %v, want max_allowed_per_user 3 and total_filtered_count 3", tc.collection, get(list, "meta"))
		}
		// Deleting one (the newest: the seeded key authenticates these calls) makes room for one.
		id := str(get(list, "data.0"), "id")
		s.mustAdmin(t, http.StatusNoContent, "DELETE", "/api/v2/application_keys/"+id, "")
		s.mustAdmin(t, http.StatusCreated, "POST", tc.collection, appKey(tc.collection))
	}

	// Another owner has a limit of its own.
	s.mustAdmin(t, http.StatusCreated, "POST", "/api/v2/service_accounts/"+other+"/application_keys", appKey(other))

	// Access tokens have no per-owner limit.
	expires := time.Now().Add(48 * time.Hour).UTC().Format(time.RFC3339)
	for range 4 {
		s.mustAdmin(t, http.StatusCreated, "POST", "/api/v2/service_accounts/"+sa+"/access_tokens",
			jsonBody(t, "service_access_tokens", "", map[string]any{"name": "t", "scopes": []string{"dashboards_read"}, "expires_at": expires}))
	}
}

// TestApplicationKeyLimitBounds: the limit can only be lowered.
func TestApplicationKeyLimitBounds(t *testing.T) {
	for _, n := range []int{-1, 1001} {
		if _, err := emulator.Open(emulator.Options{MaxAppKeysPerUser: n}); err == nil {
			t.Errorf("MaxAppKeysPerUser %d accepted", n)
		}
	}
	for _, n := range []int{0, 1, 1000} {
		if _, err := emulator.Open(emulator.Options{MaxAppKeysPerUser: n}); err != nil {
			t.Errorf("MaxAppKeysPerUser %d: %v", n, err)
		}
	}
}
