package emulator_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulatortest"
)

func createAPIKey(t testing.TB, s *testServer, name string) (int, any) {
	t.Helper()
	return s.admin(t, "POST", "/api/v2/api_keys", jsonBody(t, "api_keys", "", map[string]any{"name": name}))
}

// apiKeyListMeta returns meta.max_allowed and meta.page.total_filtered_count
// of the organisation's API key list.
func apiKeyListMeta(t testing.TB, s *testServer) (maxAllowed, total any) {
	t.Helper()
	list := s.mustAdmin(t, http.StatusOK, "GET", "/api/v2/api_keys?page[size]=1", "")
	return get(list, "meta.max_allowed"), get(list, "meta.page.total_filtered_count")
}

// orgSettings is GET /_emulator/org.
func orgSettings(t testing.TB, s *testServer) any {
	t.Helper()
	status, body, _ := s.send(t, noAuth, "GET", "/_emulator/org", "")
	if status != http.StatusOK {
		t.Fatalf("GET /_emulator/org: %d %v", status, body)
	}
	return body
}

const capMessage = "API key limit reached: this organisation may hold at most %d API keys"

// TestAPIKeyCap: the organisation holds at most its cap of API keys, the
// seeded and people's keys included, whoever creates them. One more is
// refused with a 400 and Datadog's usual error body (which the spec
// checker behind the test server accepts), and creates nothing; deleting
// one makes room again. Application keys do not count.
func TestAPIKeyCap(t *testing.T) {
	s := newTestServer(t, emulator.Options{MaxAPIKeys: 6}) // 1 seeded + 3 of people
	sa := s.createServiceAccount(t, "keymaker@example.com", "Datadog Admin Role")
	saKey := str(s.mustAdmin(t, http.StatusCreated, "POST", "/api/v2/service_accounts/"+sa+"/application_keys",
		jsonBody(t, "application_keys", "", map[string]any{"name": "keymaker"})), "data.attributes.key")

	if status, body := createAPIKey(t, s, "fifth"); status != http.StatusCreated {
		t.Fatalf("fifth API key: %d %v", status, body)
	}
	// Another user's create counts against the same organisation.
	if status, body := s.call(t, s.APIKey(), saKey, "POST", "/api/v2/api_keys",
		jsonBody(t, "api_keys", "", map[string]any{"name": "sixth"})); status != http.StatusCreated {
		t.Fatalf("sixth API key, by a service account: %d %v", status, body)
	}
	before := s.Keys()
	for _, call := range []func() (int, any){
		func() (int, any) { return createAPIKey(t, s, "seventh") },
		func() (int, any) {
			return s.call(t, s.APIKey(), saKey, "POST", "/api/v2/api_keys", jsonBody(t, "api_keys", "", map[string]any{"name": "seventh"}))
		},
	} {
		status, body := call()
		wantError(t, status, body, http.StatusBadRequest, fmt.Sprintf(capMessage, 6))
	}
	if after := s.Keys(); len(after) != len(before) {
		t.Errorf("refused creates changed the keys: %d before, %d after", len(before), len(after))
	}
	if maxAllowed, total := apiKeyListMeta(t, s); maxAllowed != 6.0 || total != 6.0 {
		t.Errorf("API key list meta: max_allowed %v, total_filtered_count %v; want 6 and 6", maxAllowed, total)
	}

	// Application keys have limits of their own, not this one.
	s.createAppKey(t, "not an API key")

	var fifth string
	for _, k := range s.Keys() {
		if k.Kind == emulator.KindAPIKey && k.Name == "fifth" {
			fifth = k.ID
		}
	}
	s.mustAdmin(t, http.StatusNoContent, "DELETE", "/api/v2/api_keys/"+fifth, "")
	if status, body := createAPIKey(t, s, "seventh"); status != http.StatusCreated {
		t.Errorf("create after a delete: %d %v, want 201", status, body)
	}
	if s.APIKeyCount() != 6 || s.APIKeyPeak() != 6 {
		t.Errorf("APIKeyCount() %d, APIKeyPeak() %d; want 6 and 6", s.APIKeyCount(), s.APIKeyPeak())
	}
}

// TestAPIKeyCapDefault: without options the cap is Datadog's documented
// default, 50, reported in meta.max_allowed and enforced.
func TestAPIKeyCapDefault(t *testing.T) {
	emu := emulator.New(emulator.Options{})
	serve := serveDirect(t, emu)
	if emu.MaxAPIKeys() != 50 {
		t.Errorf("MaxAPIKeys() = %d, want 50", emu.MaxAPIKeys())
	}
	list := serve("GET", "/api/v2/api_keys?page[size]=1", "")
	var meta struct {
		Meta struct {
			MaxAllowed int `json:"max_allowed"`
			Page       struct {
				TotalFilteredCount int `json:"total_filtered_count"`
			} `json:"page"`
		} `json:"meta"`
	}
	if err := json.Unmarshal(list.Body.Bytes(), &meta); err != nil || meta.Meta.MaxAllowed != 50 || meta.Meta.Page.TotalFilteredCount != 4 {
		t.Errorf("API key list: %s, want max_allowed 50 and total_filtered_count 4 (seeded and 3 of people) (%v)", list.Body, err)
	}
	for i := 4; i < 50; i++ {
		if rec := serve("POST", "/api/v2/api_keys", fmt.Sprintf(`{"data":{"type":"api_keys","attributes":{"name":"k%d"}}}`, i)); rec.Code != http.StatusCreated {
			t.Fatalf("API key %d: %d %s", i+1, rec.Code, rec.Body)
		}
	}
	rec := serve("POST", "/api/v2/api_keys", `{"data":{"type":"api_keys","attributes":{"name":"k51"}}}`)
	if want := fmt.Sprintf(`{"errors":["`+capMessage+`"]}`, 50); rec.Code != http.StatusBadRequest || rec.Body.String() != want {
		t.Errorf("API key 51: %d %s, want 400 %s", rec.Code, rec.Body, want)
	}
	if emu.APIKeyCount() != 50 || emu.APIKeyPeak() != 50 {
		t.Errorf("APIKeyCount() %d, APIKeyPeak() %d; want 50 and 50", emu.APIKeyCount(), emu.APIKeyPeak())
	}
}

// TestAPIKeyCapAdminSetting changes the cap of a running organisation,
// through PATCH /_emulator/org and in Go. Lowering it below the count
// deletes nothing; a cap under one key is refused and changes nothing.
func TestAPIKeyCapAdminSetting(t *testing.T) {
	s := newTestServer(t, emulator.Options{})
	body := orgSettings(t, s)
	if get(body, "max_api_keys") != 50.0 || get(body, "api_keys") != 4.0 || get(body, "api_keys_peak") != 4.0 || get(body, "one_time_read") != true {
		t.Errorf("GET /_emulator/org = %v, want max_api_keys 50, api_keys 4, api_keys_peak 4, one_time_read true", body)
	}

	status, body, _ := s.send(t, noAuth, "PATCH", "/_emulator/org", `{"max_api_keys":5}`)
	if status != http.StatusOK || get(body, "max_api_keys") != 5.0 || get(body, "one_time_read") != true {
		t.Fatalf("PATCH /_emulator/org max_api_keys 5: %d %v", status, body)
	}
	if s.MaxAPIKeys() != 5 {
		t.Errorf("MaxAPIKeys() = %d after the PATCH, want 5", s.MaxAPIKeys())
	}
	if maxAllowed, _ := apiKeyListMeta(t, s); maxAllowed != 5.0 {
		t.Errorf("meta.max_allowed = %v, want 5", maxAllowed)
	}
	if status, body := createAPIKey(t, s, "fifth"); status != http.StatusCreated {
		t.Fatalf("fifth API key: %d %v", status, body)
	}
	status, refused := createAPIKey(t, s, "sixth")
	wantError(t, status, refused, http.StatusBadRequest, fmt.Sprintf(capMessage, 5))

	for _, bad := range []string{`{"max_api_keys":0}`, `{"max_api_keys":-1}`, `{"max_api_keys":"5"}`, `{"max_api_keys":0,"one_time_read":false}`, `{"max_keys":5}`} {
		if status, _, _ := s.send(t, noAuth, "PATCH", "/_emulator/org", bad); status != http.StatusBadRequest {
			t.Errorf("PATCH /_emulator/org %s: %d, want 400", bad, status)
		}
	}
	if s.MaxAPIKeys() != 5 || !s.OneTimeRead() {
		t.Errorf("refused PATCHes changed the settings: max_api_keys %d, one_time_read %v", s.MaxAPIKeys(), s.OneTimeRead())
	}

	if err := s.SetMaxAPIKeys(3); err != nil {
		t.Fatal(err)
	}
	if s.APIKeyCount() != 5 {
		t.Errorf("lowering the cap below the count left %d API keys, want the 5", s.APIKeyCount())
	}
	status, refused = createAPIKey(t, s, "over")
	wantError(t, status, refused, http.StatusBadRequest, fmt.Sprintf(capMessage, 3))
	if err := s.SetMaxAPIKeys(0); err == nil || s.MaxAPIKeys() != 3 {
		t.Errorf("SetMaxAPIKeys(0) = %v, cap now %d; want an error and the cap kept", err, s.MaxAPIKeys())
	}
}

// TestAPIKeyPeak: the organisation's peak of API keys follows creates, not
// deletions (in the API or out of band), refusals or other kinds of key,
// and starts again from the count when reset.
func TestAPIKeyPeak(t *testing.T) {
	s := newTestServer(t, emulator.Options{PeopleAPIKeys: -1, MaxAPIKeys: 4})
	if s.APIKeyCount() != 1 || s.APIKeyPeak() != 1 {
		t.Fatalf("new organisation: APIKeyCount() %d, APIKeyPeak() %d; want 1 and 1 (the seeded key)", s.APIKeyCount(), s.APIKeyPeak())
	}
	var ids []string
	for i := range 3 {
		ids = append(ids, str(s.mustAdmin(t, http.StatusCreated, "POST", "/api/v2/api_keys",
			jsonBody(t, "api_keys", "", map[string]any{"name": fmt.Sprint("k", i)})), "data.id"))
	}
	if status, _ := createAPIKey(t, s, "refused"); status != http.StatusBadRequest {
		t.Errorf("fifth API key: %d, want 400", status)
	}
	s.createAppKey(t, "an application key")
	s.mustAdmin(t, http.StatusNoContent, "DELETE", "/api/v2/api_keys/"+ids[0], "")
	s.DeleteKey(ids[1])

	body := orgSettings(t, s)
	if get(body, "api_keys") != 2.0 || get(body, "api_keys_peak") != 4.0 || s.APIKeyPeak() != 4 {
		t.Errorf("after deleting 2 of 4: GET /_emulator/org = %v, APIKeyPeak() %d; want api_keys 2, api_keys_peak 4", body, s.APIKeyPeak())
	}

	status, body, _ := s.send(t, noAuth, "PATCH", "/_emulator/org", `{"reset_api_keys_peak":true}`)
	if status != http.StatusOK || get(body, "api_keys_peak") != 2.0 || s.APIKeyPeak() != 2 {
		t.Errorf("PATCH reset_api_keys_peak: %d %v, APIKeyPeak() %d; want the peak back to the count, 2", status, body, s.APIKeyPeak())
	}
	createAPIKey(t, s, "after the reset")
	if s.APIKeyPeak() != 3 {
		t.Errorf("APIKeyPeak() = %d after one more create, want 3", s.APIKeyPeak())
	}
	s.DeleteKey(ids[2])
	s.ResetAPIKeyPeak()
	if s.APIKeyPeak() != 2 {
		t.Errorf("APIKeyPeak() = %d after ResetAPIKeyPeak, want the count, 2", s.APIKeyPeak())
	}
}

// TestAPIKeyCapOptionsBounds: a cap under one key, or one the seeded
// organisation already exceeds, is refused.
func TestAPIKeyCapOptionsBounds(t *testing.T) {
	for _, opts := range []emulator.Options{{MaxAPIKeys: -1}, {MaxAPIKeys: 3}, {MaxAPIKeys: 5, PeopleAPIKeys: 10}} {
		if _, err := emulator.Open(opts); err == nil {
			t.Errorf("Open(%+v) accepted a cap the organisation cannot keep", opts)
		}
	}
	for _, opts := range []emulator.Options{{MaxAPIKeys: 4}, {MaxAPIKeys: 1, PeopleAPIKeys: -1}, {MaxAPIKeys: 11, PeopleAPIKeys: 10}, {MaxAPIKeys: 1000}} {
		if _, err := emulator.Open(opts); err != nil {
			t.Errorf("Open(%+v): %v", opts, err)
		}
	}
}

// TestAPIKeyCapStateFile: the state file keeps the cap and the peak; the
// loaded organisation keeps its people's keys rather than seeding more; a
// cap given when loading replaces the saved one; a file from before the
// cap loads with Datadog's default.
func TestAPIKeyCapStateFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "org.json")
	first := newTestServer(t, emulator.Options{StateFile: file, MaxAPIKeys: 7})
	var ids []string
	for i := range 2 {
		_, created := createAPIKey(t, first, fmt.Sprint("k", i))
		ids = append(ids, str(created, "data.id"))
	}
	first.DeleteKey(ids[0])
	if err := first.SetMaxAPIKeys(8); err != nil {
		t.Fatal(err)
	}

	reopen := func(opts emulator.Options) *emulator.Emulator {
		t.Helper()
		opts.StateFile = file
		emu, err := emulator.Open(opts)
		if err != nil {
			t.Fatal(err)
		}
		return emu
	}
	second := reopen(emulator.Options{PeopleAPIKeys: 10})
	if second.MaxAPIKeys() != 8 || second.APIKeyCount() != 5 || second.APIKeyPeak() != 6 {
		t.Errorf("after a restart: MaxAPIKeys() %d, APIKeyCount() %d, APIKeyPeak() %d; want 8, 5 (no more people's keys), 6",
			second.MaxAPIKeys(), second.APIKeyCount(), second.APIKeyPeak())
	}
	s := &testServer{emulatortest.Serve(t, second)}
	if maxAllowed, total := apiKeyListMeta(t, s); maxAllowed != 8.0 || total != 5.0 {
		t.Errorf("after a restart, list meta: max_allowed %v, total_filtered_count %v; want 8 and 5", maxAllowed, total)
	}

	if third := reopen(emulator.Options{MaxAPIKeys: 9}); third.MaxAPIKeys() != 9 {
		t.Errorf("MaxAPIKeys() = %d when loaded with Options.MaxAPIKeys 9", third.MaxAPIKeys())
	}
	if fourth := reopen(emulator.Options{}); fourth.MaxAPIKeys() != 9 {
		t.Errorf("MaxAPIKeys() = %d on the next start, want the 9 given before, saved", fourth.MaxAPIKeys())
	}
	if _, err := emulator.Open(emulator.Options{StateFile: file, MaxAPIKeys: -1}); err == nil {
		t.Error("Open accepted a negative cap with a state file")
	}

	// A state file written before the cap existed.
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var state map[string]any
	if err := json.Unmarshal(raw, &state); err != nil {
		t.Fatal(err)
	}
	org := state["org"].(map[string]any)
	delete(org, "max_api_keys")
	delete(org, "api_keys_peak")
	if raw, err = json.Marshal(state); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if old := reopen(emulator.Options{}); old.MaxAPIKeys() != 50 || old.APIKeyPeak() != old.APIKeyCount() {
		t.Errorf("an older state file: MaxAPIKeys() %d, APIKeyPeak() %d, APIKeyCount() %d; want 50 and the peak at the count",
			old.MaxAPIKeys(), old.APIKeyPeak(), old.APIKeyCount())
	}
}
