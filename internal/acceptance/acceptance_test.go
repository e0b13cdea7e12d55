package acceptance

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/cassette"
	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulatortest"
)

func TestRedactorReplacesSecretsIDsAndNamesConsistently(t *testing.T) {
	const (
		apiKey  = "0123456789abcdef0123456789abcdef"
		appKey  = "ddapp_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefgh"
		token   = "ddsat_AbCdEfGhIjKlMnOpQrStUv_0123456789abcdefghijABCDEFGHIJ012345"
		keyID   = "3ad549bf-eba0-11e9-a77a-0705486660d0"
		userID  = "f625994a-4ee7-4967-b08c-7067d1f1cdac"
		ourName = "vault-acc-abc123-app-0123456789abcdefabcdefghijklmnop"
	)
	r := newRedactor("vault-acc-abc123-")
	r.Secret(appKey)
	body := fmt.Sprintf(`{"data":{"id":%q,"type":"application_keys","attributes":{"key":%q,"name":%q,"last4":"Zq9W",
		"created_at":"2026-05-28T14:36:45.255584+00:00","scopes":["dashboards_read","monitors_read"]},
		"relationships":{"owned_by":{"data":{"id":%q,"type":"users"}}}},
		"included":[{"type":"users","id":%q,"attributes":{"email":"jane.doe@example.org","name":"Jane Doe","handle":"jane.doe@example.org"}}],
		"meta":{"max_allowed":200,"page":{"total_filtered_count":7}},
		"errors":["API key %s of user %s was refused"],
		"other":{"name":"Datadog Agent – prod","title":"an SRE"}}`, keyID, token, ourName, userID, userID, apiKey, userID)
	out := r.JSON([]byte(body))
	for _, secret := range []string{apiKey, appKey, token, keyID, userID, "jane.doe", "Jane Doe", "Datadog Agent", "an SRE", "Zq9W"} {
		if strings.Contains(out, secret) {
			t.Errorf("the redacted body still holds %q: %s", secret, out)
		}
	}
	for _, kept := range []string{ourName, "dashboards_read", "2026-05-28T14:36:45.255584+00:00", `"max_allowed":200`, `"type":"users"`, "was refused"} {
		if !strings.Contains(out, kept) {
			t.Errorf("the redacted body lost %q: %s", kept, out)
		}
	}
	// The same value, the same placeholder: in bodies, headers and URLs.
	userPlaceholder := r.ID(userID)
	if strings.Count(out, userPlaceholder) != 3 {
		t.Errorf("the user's id became %s %d times in %s, want 3", userPlaceholder, strings.Count(out, userPlaceholder), out)
	}
	if got := r.Header("Authorization", "Bearer "+token); got != "Bearer "+r.Secret(token) || !strings.HasPrefix(got, "Bearer REDACTED_ACCESS_TOKEN_") {
		t.Errorf("the bearer header became %q", got)
	}
	if got := r.Header("DD-APPLICATION-KEY", appKey); !strings.HasPrefix(got, "REDACTED_APP_KEY_") {
		t.Errorf("the application key header became %q", got)
	}
	u, _ := url.Parse("http://127.0.0.1:1234/api/v2/service_accounts/" + userID + "/access_tokens/" + keyID +
		"?filter=vault-acc-abc123-&page%5Bsize%5D=100&filter%5Bowned_by%5D=" + userID + "&filter%5Bother%5D=secret-team-name&include=")
	got := r.URL(u, "https://api.datadoghq.com")
	want := "https://api.datadoghq.com/api/v2/service_accounts/" + userPlaceholder + "/access_tokens/" + r.ID(keyID) + "?"
	if !strings.HasPrefix(got, want) || !strings.Contains(got, "filter=vault-acc-abc123-") || !strings.Contains(got, "page%5Bsize%5D=100") ||
		strings.Contains(got, "secret-team-name") || !strings.Contains(got, "include=") || !strings.Contains(got, "filter%5Bowned_by%5D="+userPlaceholder) {
		t.Errorf("the URL became %s", got)
	}
	for _, s := range []string{apiKey, appKey, token} {
		if !slices.Contains(r.Secrets(), s) {
			t.Errorf("the secret %s… was not registered", s[:8])
		}
	}
	var parsed any
	if err := json.Unmarshal([]byte(out), &parsed); err != nil {
		t.Errorf("the redacted body is not JSON: %v", err)
	}
	if !cassette.IsPlaceholder(userPlaceholder) || cassette.IsPlaceholder(userID) {
		t.Errorf("placeholders are not told from values")
	}
}

func TestParseRun(t *testing.T) {
	for in, want := range map[string]string{"vault-acc-k3x9q2-": "k3x9q2", "vault-acc-k3x9q2": "k3x9q2", "k3x9q2": "k3x9q2"} {
		if got, err := ParseRun(in); err != nil || got != want {
			t.Errorf("ParseRun(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	// Nothing that would widen a sweep beyond one run.
	for _, in := range []string{"", "vault-", "vault-acc-", "vault-acc--", "*", "vault-acc-K3X9Q2-", "abc", "vault-acc-k3x9q2-x-"} {
		if got, err := ParseRun(in); err == nil {
			t.Errorf("ParseRun(%q) = %q, want an error", in, got)
		}
	}
}

// TestSweepDeletesOnlyTheRunsObjects: a sweep of one run (its prefix, and
// the markers its journal names) deletes that run's keys, tokens, root keys
// and service accounts, and nothing else: not another run's, not the
// engine's of another mount, not people's.
func TestSweepDeletesOnlyTheRunsObjects(t *testing.T) {
	srv := emulatortest.Start(t, emulator.Options{})
	admin := map[string]string{"DD-API-KEY": srv.APIKey(), "DD-APPLICATION-KEY": srv.AppKey()}
	do := func(method, path, body string) map[string]any {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		for k, v := range admin {
			req.Header.Set(k, v)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		if resp.StatusCode/100 != 2 {
			t.Fatalf("%s %s: %d %v", method, path, resp.StatusCode, out)
		}
		data, _ := out["data"].(map[string]any)
		return data
	}
	id := func(data map[string]any) string { return data["id"].(string) }
	roles := do("GET", "/api/v2/roles?filter=Datadog%20Admin%20Role", "")
	_ = roles
	serviceAccount := func(email string) string {
		return id(do("POST", "/api/v2/service_accounts", fmt.Sprintf(`{"data":{"type":"users","attributes":{"email":%q,"service_account":true}}}`, email)))
	}
	apiKey := func(name string) string {
		return id(do("POST", "/api/v2/api_keys", fmt.Sprintf(`{"data":{"type":"api_keys","attributes":{"name":%q}}}`, name)))
	}
	appKey := func(path, name string) string {
		return id(do("POST", path, fmt.Sprintf(`{"data":{"type":"application_keys","attributes":{"name":%q}}}`, name)))
	}
	expires := time.Now().Add(48 * time.Hour).UTC().Format(time.RFC3339)
	pat := func(name string) string {
		return id(do("POST", "/api/v2/personal_access_tokens", fmt.Sprintf(
			`{"data":{"type":"personal_access_tokens","attributes":{"name":%q,"scopes":["dashboards_read"],"expires_at":%q}}}`, name, expires)))
	}
	sat := func(sa, name string) string {
		return id(do("POST", "/api/v2/service_accounts/"+sa+"/access_tokens", fmt.Sprintf(
			`{"data":{"type":"service_access_tokens","attributes":{"name":%q,"scopes":["dashboards_read"]}}}`, name)))
	}

	const runID, marker, otherMarker = "k3x9q2", "0123456789abcdef", "fedcba9876543210"
	prefix := prefixOf(runID)
	given := serviceAccount("given@example.com") // the user's: only its keys of the run go
	runSA := serviceAccount(prefix + "sa@example.com")
	otherSA := serviceAccount("vault-acc-zzzzzz-sa@example.com")
	ours := []string{
		apiKey(prefix + "app-shared-1796579779-" + marker + "abcdefghijklmnop"),
		appKey("/api/v2/current_user/application_keys", prefix+"root-main"),
		appKey("/api/v2/current_user/application_keys", "vault-root-"+marker+"-1796579787-atl7x23t"),
		pat(prefix + "pat-" + marker + "abcdefghijklmnop"),
		appKey("/api/v2/service_accounts/"+given+"/application_keys", prefix+"saapp-"+marker+"abcdefghijklmnop"),
		sat(given, prefix+"root-token"),
		sat(given, "vault-root-"+marker+"-1796579790-bbbbbbbb"),
		sat(runSA, prefix+"given-token"),
	}
	theirs := []string{
		apiKey("vault-acc-zzzzzz-app-shared-1"),
		apiKey("vault-team-x-shared-1"),
		appKey("/api/v2/current_user/application_keys", "vault-acc-zzzzzz-root-main"),
		appKey("/api/v2/current_user/application_keys", "vault-root-"+otherMarker+"-1796579787-cccccccc"),
		appKey("/api/v2/current_user/application_keys", "x-"+prefix+"lookalike"),
		pat("vault-acc-zzzzzz-pat"),
		appKey("/api/v2/service_accounts/"+given+"/application_keys", "given-key"),
		sat(given, "given token"),
		sat(otherSA, "vault-acc-zzzzzz-sat"),
	}

	stateDir := t.TempDir()
	j, err := newJournal(stateDir, journalState{RunID: runID, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	j.addMount("acc-" + runID)
	j.setMarker("acc-"+runID, marker)
	j.addServiceAccount(given)

	env := map[string]string{EnvAPIKey: srv.APIKey(), EnvAppKey: srv.AppKey(), EnvSite: "datadoghq.com", EnvAPIURL: srv.URL}
	n, err := Sweep(context.Background(), SweepOptions{Run: prefix, StateDir: stateDir, Getenv: func(k string) string { return env[k] }})
	if err != nil {
		t.Fatal(err)
	}
	if n != len(ours)+1 { // and the run's service account
		t.Errorf("the sweep deleted %d objects, want %d", n, len(ours)+1)
	}
	live := map[string]bool{}
	for _, k := range srv.Keys() {
		live[k.ID] = true
	}
	for _, id := range ours {
		if live[id] {
			t.Errorf("the run's %s survived the sweep", id)
		}
	}
	for _, id := range theirs {
		if !live[id] {
			t.Errorf("%s, not the run's, was deleted", id)
		}
	}
	for sa, wantDisabled := range map[string]bool{runSA: true, given: false, otherSA: false} {
		user := do("GET", "/api/v2/users/"+sa, "")
		if disabled := user["attributes"].(map[string]any)["disabled"]; disabled != wantDisabled {
			t.Errorf("service account %s disabled %v, want %v", sa, disabled, wantDisabled)
		}
	}
	if _, found, _ := readJournal(stateDir, runID); found {
		t.Errorf("a clean sweep left the run's journal")
	}
}
