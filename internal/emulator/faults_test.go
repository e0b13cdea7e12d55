package emulator_test

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
)

// rawCall sends a request with the seeded keys over a fresh connection, so
// that net/http never retries it on another, and returns the status, or
// the transport error of a dropped connection.
func (s *testServer) rawCall(t *testing.T, method, path, body string) (int, error) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	keys(s.APIKey(), s.AppKey())(req)
	req.Header.Set("Content-Type", "application/json")
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

func (s *testServer) addFault(t *testing.T, f emulator.Fault) emulator.Fault {
	t.Helper()
	added, err := s.AddFault(f)
	if err != nil {
		t.Fatal(err)
	}
	return added
}

func (s *testServer) keyNamed(name string) (emulator.Key, bool) {
	i := slices.IndexFunc(s.Keys(), func(k emulator.Key) bool { return k.Name == name })
	if i < 0 {
		return emulator.Key{}, false
	}
	return s.Keys()[i], true
}

const createAppKey = "CreateCurrentUserApplicationKey"

func appKeyBody(name string) string {
	return `{"data":{"type":"application_keys","attributes":{"name":"` + name + `"}}}`
}

func TestFaultActions(t *testing.T) {
	for _, tc := range []struct {
		action    string
		status    int  // 0: connection dropped
		committed bool // whether the key exists afterwards
	}{
		{emulator.FaultError, 500, false},
		{emulator.FaultRateLimit, 429, false},
		{emulator.FaultReset, 0, false},
		{emulator.FaultCommitThenError, 500, true},
		{emulator.FaultCommitThenReset, 0, true},
	} {
		t.Run(tc.action, func(t *testing.T) {
			s := newTestServer(t, emulator.Options{})
			s.addFault(t, emulator.Fault{Operation: createAppKey, Action: tc.action, Times: 1})
			status, err := s.rawCall(t, "POST", "/api/v2/current_user/application_keys", appKeyBody("faulted"))
			t.Logf("faulted call: %d, %v", status, err)
			if tc.status == 0 && err == nil || tc.status != 0 && (err != nil || status != tc.status) {
				t.Fatalf("faulted call: %d, %v; want status %d (0: dropped connection)", status, err, tc.status)
			}
			if _, exists := s.keyNamed("faulted"); exists != tc.committed {
				t.Errorf("key exists after the fault: %v, want %v", exists, tc.committed)
			}
			if tc.committed { // and it is live: listed through the API too
				_, list := s.admin(t, "GET", "/api/v2/current_user/application_keys?filter=faulted", "")
				if get(list, "meta.page.total_filtered_count") != 1.0 {
					t.Errorf("committed key not listed: %v", list)
				}
			}
			// Times: 1 means the next call goes through.
			if status, err := s.rawCall(t, "POST", "/api/v2/current_user/application_keys", appKeyBody("after")); err != nil || status != http.StatusCreated {
				t.Errorf("call after the fault expired: %d, %v", status, err)
			}
			if len(s.Faults()) != 0 {
				t.Errorf("expired fault still listed: %v", s.Faults())
			}
		})
	}
}

func TestFaultDetails(t *testing.T) {
	s := newTestServer(t, emulator.Options{})

	// A status of choice; other operations are untouched.
	s.addFault(t, emulator.Fault{Operation: "POST /api/v2/api_keys", Action: emulator.FaultError, Status: 503})
	status, body, _ := s.send(t, keys(s.APIKey(), s.AppKey()), "POST", "/api/v2/api_keys", jsonBody(t, "api_keys", "", map[string]any{"name": "x"}))
	wantError(t, status, body, http.StatusServiceUnavailable, "Service Unavailable")
	if status, _ := s.admin(t, "GET", "/api/v2/api_keys", ""); status != http.StatusOK {
		t.Errorf("another operation: %d", status)
	}
	if f := s.Faults(); len(f) != 1 || f[0].Hits != 1 {
		t.Errorf("Faults() = %+v", f)
	}
	s.ClearFaults()

	// An injected 429 carries the rate-limit headers clients read.
	s.addFault(t, emulator.Fault{Operation: "*", Action: emulator.FaultRateLimit, Times: 1})
	status, body, h := s.send(t, keys(s.APIKey(), s.AppKey()), "GET", "/api/v2/validate_keys", "")
	wantError(t, status, body, http.StatusTooManyRequests, "Rate limit exceeded")
	wantRateHeaders(t, h, "validate", "1", "1", "0", "1")

	// Latency delays, then serves.
	s.addFault(t, emulator.Fault{Operation: "ValidateAPIKey", Action: emulator.FaultLatency, Latency: 150 * time.Millisecond, Times: 1})
	start := time.Now()
	if status, _ := s.admin(t, "GET", "/api/v2/validate_keys", ""); status != http.StatusOK {
		t.Errorf("delayed call: %d", status)
	}
	if elapsed := time.Since(start); elapsed < 150*time.Millisecond {
		t.Errorf("delayed call took %s", elapsed)
	}

	// Faults that do not hit leave the call alone; the first that hits decides.
	s.addFault(t, emulator.Fault{Operation: "ListAPIKeys", Action: emulator.FaultError})
	s.addFault(t, emulator.Fault{Operation: "*", Action: emulator.FaultError, Status: 502})
	if status, _ := s.admin(t, "GET", "/api/v2/api_keys", ""); status != 500 {
		t.Errorf("first matching fault: %d, want 500", status)
	}
	if status, _ := s.admin(t, "GET", "/api/v2/validate_keys", ""); status != 502 {
		t.Errorf("catch-all fault: %d, want 502", status)
	}
	// Admin endpoints are never faulted.
	if status, _, _ := s.send(t, noAuth, "GET", "/_emulator/keys", ""); status != http.StatusOK {
		t.Errorf("admin endpoint under a catch-all fault: %d", status)
	}

	for _, bad := range []emulator.Fault{
		{Operation: "NoSuchOperation", Action: emulator.FaultError},
		{Operation: "GET /api/v2/nope", Action: emulator.FaultError},
		{Operation: "*", Action: "explode"},
		{Operation: "*", Action: emulator.FaultError, Status: 200},
		{Operation: "*", Action: emulator.FaultError, Probability: 1.5},
		{Operation: "*", Action: emulator.FaultLatency},
		{Operation: "*", Action: emulator.FaultDelayedCommit},                      // no delay
		{Operation: "*", Action: emulator.FaultDelayedCommit, Delay: -time.Second}, // negative delay
		{Operation: "*", Action: emulator.FaultError, Delay: time.Second},          // a delay on another action
	} {
		if _, err := s.AddFault(bad); err == nil {
			t.Errorf("AddFault(%+v) succeeded", bad)
		}
	}
}

// TestFaultProbability: draws come from a seeded generator, so a seed
// replays the same failures.
func TestFaultProbability(t *testing.T) {
	pattern := func(seed uint64) []int {
		s := newTestServer(t, emulator.Options{FaultSeed: seed})
		s.addFault(t, emulator.Fault{Operation: "ValidateAPIKey", Action: emulator.FaultError, Probability: 0.3})
		var statuses []int
		for range 200 {
			status, _ := s.admin(t, "GET", "/api/v2/validate_keys", "")
			statuses = append(statuses, status)
		}
		return statuses
	}
	first := pattern(42)
	if !slices.Equal(first, pattern(42)) {
		t.Error("the same seed gave different failures")
	}
	if slices.Equal(first, pattern(7)) {
		t.Error("different seeds gave the same failures")
	}
	failed := 0
	for _, status := range first {
		if status == 500 {
			failed++
		}
	}
	if failed < 30 || failed > 90 {
		t.Errorf("%d of 200 calls failed at probability 0.3", failed)
	}
}

func TestFaultsAdminEndpoint(t *testing.T) {
	s := newTestServer(t, emulator.Options{})
	status, body, _ := s.send(t, noAuth, "POST", "/_emulator/faults",
		`{"operation":"DeleteCurrentUserApplicationKey","action":"commit_then_error","status":502,"times":2,"latency":"10ms"}`)
	if status != http.StatusCreated || str(body, "id") == "" || str(body, "latency") != "10ms" {
		t.Fatalf("POST /_emulator/faults: %d %v", status, body)
	}
	id, _ := s.createAppKey(t, "doomed")
	if status, _ := s.admin(t, "DELETE", "/api/v2/current_user/application_keys/"+id, ""); status != 502 {
		t.Errorf("faulted delete: %d, want 502", status)
	}
	if _, exists := s.keyNamed("doomed"); exists {
		t.Error("the delete was not applied before the fault")
	}
	// The client retries and sees the key already gone.
	status, body = s.admin(t, "DELETE", "/api/v2/current_user/application_keys/"+id, "")
	if status != 502 {
		t.Errorf("second faulted delete: %d %v", status, body)
	}

	_, body, _ = s.send(t, noAuth, "GET", "/_emulator/faults", "")
	if faults := get(body, "faults").([]any); len(faults) != 0 {
		t.Errorf("faults after their 2 hits: %v", faults)
	}
	s.send(t, noAuth, "POST", "/_emulator/faults", `{"operation":"*","action":"error"}`)
	_, body, _ = s.send(t, noAuth, "POST", "/_emulator/faults", `{"operation":"ListAPIKeys","action":"reset","probability":0.5}`)
	second := str(body, "id")
	_, body, _ = s.send(t, noAuth, "GET", "/_emulator/faults", "")
	var listed []emulator.Fault
	raw, _ := json.Marshal(get(body, "faults"))
	if err := json.Unmarshal(raw, &listed); err != nil || len(listed) != 2 || listed[1].Probability != 0.5 || listed[1].ID != second {
		t.Errorf("GET /_emulator/faults = %s (%v)", raw, err)
	}
	if status, _, _ := s.send(t, noAuth, "DELETE", "/_emulator/faults/"+second, ""); status != http.StatusNoContent {
		t.Errorf("DELETE /_emulator/faults/{id}: %d", status)
	}
	if status, _, _ := s.send(t, noAuth, "DELETE", "/_emulator/faults/"+second, ""); status != http.StatusNotFound {
		t.Errorf("DELETE of a removed fault: %d", status)
	}
	if status, _, _ := s.send(t, noAuth, "DELETE", "/_emulator/faults", ""); status != http.StatusNoContent || len(s.Faults()) != 0 {
		t.Errorf("DELETE /_emulator/faults: %d, %v left", status, s.Faults())
	}
	if status, _, _ := s.send(t, noAuth, "POST", "/_emulator/faults", `{"operation":"*","action":"boom"}`); status != http.StatusBadRequest {
		t.Errorf("invalid fault: %d", status)
	}
}

// waitForCommits waits until the emulator has applied every delayed commit.
func waitForCommits(t *testing.T, emu *emulator.Emulator, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for emu.PendingCommits() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d delayed commits still pending after %s", emu.PendingCommits(), within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDelayedCommitCreate: the client gets a 503 at once and finds no key;
// the key appears, as the request named it, once the delay is over.
func TestDelayedCommitCreate(t *testing.T) {
	s := newTestServer(t, emulator.Options{})
	const delay = 300 * time.Millisecond
	s.addFault(t, emulator.Fault{Operation: "CreateAPIKey", Action: emulator.FaultDelayedCommit, Delay: delay, Times: 1})

	start := time.Now()
	status, body, _ := s.send(t, keys(s.APIKey(), s.AppKey()), "POST", "/api/v2/api_keys", jsonBody(t, "api_keys", "", map[string]any{"name": "late"}))
	answered := time.Since(start)
	wantError(t, status, body, http.StatusServiceUnavailable, "Service Unavailable")
	t.Logf("answered in %s, delay %s", answered, delay)
	if answered >= delay/2 {
		t.Errorf("answered in %s: not at once (delay %s)", answered, delay)
	}
	if _, exists := s.keyNamed("late"); exists {
		t.Fatal("the key exists right after the 503")
	}
	if n := s.PendingCommits(); n != 1 {
		t.Errorf("PendingCommits() = %d right after the call, want 1", n)
	}
	_, list := s.admin(t, "GET", "/api/v2/api_keys?filter=late", "")
	if get(list, "meta.page.total_filtered_count") != 0.0 {
		t.Errorf("an immediate look-up finds the key: %v", list)
	}

	waitForCommits(t, s.Emulator, 2*time.Second)
	if applied := time.Since(start); applied < delay {
		t.Errorf("committed after %s, before the delay of %s", applied, delay)
	}
	key, exists := s.keyNamed("late")
	if !exists || key.Kind != emulator.KindAPIKey {
		t.Fatalf("after the delay: %+v, %v; want the API key \"late\"", key, exists)
	}
	_, list = s.admin(t, "GET", "/api/v2/api_keys?filter=late", "")
	if get(list, "meta.page.total_filtered_count") != 1.0 {
		t.Errorf("a later look-up does not find the key: %v", list)
	}
}

// TestDelayedCommitDelete: the delete answers 503 at once, and the key is
// gone only once the delay is over.
func TestDelayedCommitDelete(t *testing.T) {
	s := newTestServer(t, emulator.Options{})
	created := s.mustAdmin(t, http.StatusCreated, "POST", "/api/v2/api_keys", jsonBody(t, "api_keys", "", map[string]any{"name": "doomed"}))
	path := "/api/v2/api_keys/" + str(created, "data.id")
	const delay = 300 * time.Millisecond
	s.addFault(t, emulator.Fault{Operation: "DeleteAPIKey", Action: emulator.FaultDelayedCommit, Delay: delay})

	start := time.Now()
	status, body := s.admin(t, "DELETE", path, "")
	answered := time.Since(start)
	wantError(t, status, body, http.StatusServiceUnavailable, "Service Unavailable")
	if answered >= delay/2 {
		t.Errorf("answered in %s: not at once (delay %s)", answered, delay)
	}
	if _, exists := s.keyNamed("doomed"); !exists {
		t.Fatal("the key is gone right after the 503")
	}
	s.mustAdmin(t, http.StatusOK, "GET", path, "")
	if n := s.PendingCommits(); n != 1 {
		t.Errorf("PendingCommits() = %d right after the call, want 1", n)
	}

	waitForCommits(t, s.Emulator, 2*time.Second)
	if _, exists := s.keyNamed("doomed"); exists {
		t.Error("the key is still there after the delay")
	}
	s.mustAdmin(t, http.StatusNotFound, "GET", path, "")
}

// TestDelayedCommitOutlivesServer: the commit is made after the client
// hung up and the server closed, with the request as it was sent.
func TestDelayedCommitOutlivesServer(t *testing.T) {
	var emu *emulator.Emulator
	t.Run("call", func(t *testing.T) {
		s := newTestServer(t, emulator.Options{})
		emu = s.Emulator
		s.addFault(t, emulator.Fault{Operation: createAppKey, Action: emulator.FaultDelayedCommit, Status: 502, Delay: 200 * time.Millisecond})
		if status, err := s.rawCall(t, "POST", "/api/v2/current_user/application_keys", appKeyBody("orphan")); err != nil || status != http.StatusBadGateway {
			t.Fatalf("faulted call: %d, %v; want 502", status, err)
		}
	}) // the server is closed here
	waitForCommits(t, emu, 2*time.Second)
	i := slices.IndexFunc(emu.Keys(), func(k emulator.Key) bool { return k.Name == "orphan" })
	if i < 0 || emu.Keys()[i].OwnerID != emu.UserID() {
		t.Errorf("no key \"orphan\" of the seeded user after the delay: %+v", emu.Keys())
	}
}

func TestDelayedCommitAdminEndpoint(t *testing.T) {
	s := newTestServer(t, emulator.Options{})
	status, body, _ := s.send(t, noAuth, "POST", "/_emulator/faults", `{"operation":"CreateAPIKey","action":"delayed_commit","delay":"2s","times":1}`)
	if status != http.StatusCreated || str(body, "action") != "delayed_commit" || str(body, "delay") != "2s" || get(body, "latency") != nil {
		t.Fatalf("POST /_emulator/faults: %d %v", status, body)
	}
	_, body, _ = s.send(t, noAuth, "GET", "/_emulator/faults", "")
	var listed []emulator.Fault
	raw, _ := json.Marshal(get(body, "faults"))
	if err := json.Unmarshal(raw, &listed); err != nil || len(listed) != 1 ||
		listed[0].Action != emulator.FaultDelayedCommit || listed[0].Delay != 2*time.Second || listed[0].Times != 1 {
		t.Errorf("GET /_emulator/faults = %s (%v)", raw, err)
	}
	if f := s.Faults(); len(f) != 1 || f[0].Delay != 2*time.Second {
		t.Errorf("Faults() = %+v", f)
	}

	// A number of seconds, as for latency.
	status, body, _ = s.send(t, noAuth, "POST", "/_emulator/faults", `{"operation":"*","action":"delayed_commit","delay":0.5}`)
	if status != http.StatusCreated || str(body, "delay") != "500ms" {
		t.Errorf("delay in seconds: %d %v", status, body)
	}
	for _, bad := range []string{
		`{"operation":"*","action":"delayed_commit"}`,
		`{"operation":"*","action":"delayed_commit","delay":"-1s"}`,
		`{"operation":"*","action":"error","delay":"1s"}`,
		`{"operation":"*","action":"delayed_commit","delay":"soon"}`,
	} {
		if status, body, _ := s.send(t, noAuth, "POST", "/_emulator/faults", bad); status != http.StatusBadRequest {
			t.Errorf("POST /_emulator/faults %s: %d %v, want 400", bad, status, body)
		}
	}
}
