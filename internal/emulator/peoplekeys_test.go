package emulator_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
)

// TestSeededPeopleAPIKeys: a new organisation holds, besides the seeded API
// key, API keys its people made: 3 unless told, named after the Agent's
// environments, created by the seeded admin, working, and all distinct.
func TestSeededPeopleAPIKeys(t *testing.T) {
	for _, tc := range []struct {
		people int // Options.PeopleAPIKeys
		want   []string
	}{
		{0, []string{"Datadog Agent – prod", "Datadog Agent – staging", "Datadog Agent – dev"}},
		{-1, nil},
		{10, []string{"Datadog Agent – prod", "Datadog Agent – staging", "Datadog Agent – dev", "Datadog Agent – ci",
			"Datadog Agent – qa", "Datadog Agent – sandbox", "Datadog Agent – prod 2", "Datadog Agent – staging 2",
			"Datadog Agent – dev 2", "Datadog Agent – ci 2"}},
	} {
		s := newTestServer(t, emulator.Options{PeopleAPIKeys: tc.people})
		list := s.mustAdmin(t, http.StatusOK, "GET", "/api/v2/api_keys?page[size]=100&sort=created_at&filter=Datadog%20Agent", "")
		var names []string
		for _, k := range get(list, "data").([]any) {
			names = append(names, str(k, "attributes.name"))
			if str(k, "relationships.created_by.data.id") != s.UserID() || str(k, "attributes.category") != "default" {
				t.Errorf("people's API key %v, want one created by the seeded admin, category default", k)
			}
			got := s.mustAdmin(t, http.StatusOK, "GET", "/api/v2/api_keys/"+str(k, "id"), "")
			if secret := str(got, "data.attributes.key"); secret == s.APIKey() {
				t.Errorf("%s has the seeded API key's secret", str(k, "attributes.name"))
			} else if status, _ := s.call(t, secret, "", "GET", "/api/v1/validate", ""); status != http.StatusOK {
				t.Errorf("%s does not validate: %d", str(k, "attributes.name"), status)
			}
		}
		if !slices.Equal(names, tc.want) {
			t.Errorf("PeopleAPIKeys %d: people's API keys %q, want %q", tc.people, names, tc.want)
		}
		if s.APIKeyCount() != 1+len(tc.want) || s.APIKeyPeak() != 1+len(tc.want) {
			t.Errorf("PeopleAPIKeys %d: APIKeyCount() %d, APIKeyPeak() %d; want %d", tc.people, s.APIKeyCount(), s.APIKeyPeak(), 1+len(tc.want))
		}
		// The engine's keys are told apart by their names.
		for _, k := range s.Keys() {
			if strings.HasPrefix(k.Name, "vault-") {
				t.Errorf("seeded key %q looks like the engine's", k.Name)
			}
		}
	}
}
