package emulator_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulatortest"
)

// TestMain reports how much of the emulator the run checked against the
// specification: every test here serves through emulatortest.
func TestMain(m *testing.M) {
	code := m.Run()
	validated := emulatortest.ValidatedOperations()
	var missed []string
	for _, ep := range emulator.New(emulator.Options{}).Endpoints() {
		if !slices.Contains(validated, ep.OperationID) {
			missed = append(missed, ep.OperationID)
		}
	}
	fmt.Printf("spec-validated operations: %d distinct (%s)\n", len(validated), strings.Join(validated, ", "))
	if len(missed) > 0 {
		fmt.Printf("emulator operations never validated in this run: %s\n", strings.Join(missed, ", "))
	}
	os.Exit(code)
}

// testServer is an emulator behind a spec-checking HTTP server.
type testServer struct {
	*emulatortest.Server
}

func newTestServer(t *testing.T, opts emulator.Options) *testServer {
	t.Helper()
	return &testServer{emulatortest.Start(t, opts)}
}

// newLenientServer is for tests that send requests the specification
// forbids, on purpose: it lets the checker's complaints about requests
// pass, and still fails the test on any response that departs from it.
func newLenientServer(t *testing.T, opts emulator.Options) *testServer {
	t.Helper()
	return &testServer{emulatortest.Start(tolerateBadRequests(t), opts)}
}

// badRequestTB passes through every report but the specification
// checker's complaints about requests.
type badRequestTB struct {
	testing.TB
	mu      sync.Mutex
	ignored []string
}

func tolerateBadRequests(t *testing.T) *badRequestTB {
	return &badRequestTB{TB: t}
}

func (b *badRequestTB) Errorf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if strings.Contains(msg, " request: ") || strings.Contains(msg, "not an operation of the specification") {
		b.mu.Lock()
		b.ignored = append(b.ignored, msg)
		b.mu.Unlock()
		return
	}
	b.TB.Helper()
	b.TB.Error(msg)
}

// auth sets a request's credentials.
type auth func(*http.Request)

func keys(apiKey, appKey string) auth {
	return func(r *http.Request) {
		if apiKey != "" {
			r.Header.Set("DD-API-KEY", apiKey)
		}
		if appKey != "" {
			r.Header.Set("DD-APPLICATION-KEY", appKey)
		}
	}
}

func bearer(token string) auth {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }
}

// send sends a request and returns the status, the decoded JSON body (nil
// when empty) and the headers.
func (s *testServer) send(t testing.TB, a auth, method, path, body string) (int, any, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	a(req)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) == 0 {
		return resp.StatusCode, nil, resp.Header
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q, want application/json", method, path, ct)
	}
	var decoded any
	if err := json.Unmarshal(raw, &decoded); err != nil {
		t.Fatalf("%s %s: invalid JSON %q: %v", method, path, raw, err)
	}
	return resp.StatusCode, decoded, resp.Header
}

// call sends a request authenticated with the given keys.
func (s *testServer) call(t testing.TB, apiKey, appKey, method, path, body string) (int, any) {
	t.Helper()
	status, decoded, _ := s.send(t, keys(apiKey, appKey), method, path, body)
	return status, decoded
}

// admin calls with the seeded, unscoped keys.
func (s *testServer) admin(t testing.TB, method, path, body string) (int, any) {
	t.Helper()
	return s.call(t, s.APIKey(), s.AppKey(), method, path, body)
}

// withToken calls with an access token as bearer.
func (s *testServer) withToken(t testing.TB, token, method, path, body string) (int, any) {
	t.Helper()
	status, decoded, _ := s.send(t, bearer(token), method, path, body)
	return status, decoded
}

// mustAdmin calls with the seeded keys and fails unless the status is want.
func (s *testServer) mustAdmin(t testing.TB, want int, method, path, body string) any {
	t.Helper()
	status, decoded := s.admin(t, method, path, body)
	if status != want {
		t.Fatalf("%s %s: %d %v, want %d", method, path, status, decoded, want)
	}
	return decoded
}

// createAppKey creates a current-user application key and returns its id
// and secret.
func (s *testServer) createAppKey(t testing.TB, name string, scopes ...string) (id, secret string) {
	t.Helper()
	attrs := map[string]any{"name": name}
	if scopes != nil {
		attrs["scopes"] = scopes
	}
	body := s.mustAdmin(t, http.StatusCreated, "POST", "/api/v2/current_user/application_keys", jsonBody(t, "application_keys", "", attrs))
	return str(body, "data.id"), str(body, "data.attributes.key")
}

// createServiceAccount creates a service account with the named roles
// (none: no permissions) and returns its id.
func (s *testServer) createServiceAccount(t testing.TB, email string, roleNames ...string) string {
	t.Helper()
	roles := []any{}
	for _, name := range roleNames {
		roles = append(roles, map[string]any{"type": "roles", "id": s.roleID(t, name)})
	}
	body, _ := json.Marshal(map[string]any{"data": map[string]any{
		"type":          "users",
		"attributes":    map[string]any{"email": email, "service_account": true, "name": "sa " + email},
		"relationships": map[string]any{"roles": map[string]any{"data": roles}},
	}})
	created := s.mustAdmin(t, http.StatusCreated, "POST", "/api/v2/service_accounts", string(body))
	return str(created, "data.id")
}

func (s *testServer) roleID(t testing.TB, name string) string {
	t.Helper()
	list := s.mustAdmin(t, http.StatusOK, "GET", "/api/v2/roles?page[size]=100", "")
	for _, r := range get(list, "data").([]any) {
		if str(r, "attributes.name") == name {
			return str(r, "id")
		}
	}
	t.Fatalf("no role %q", name)
	return ""
}

func jsonBody(t testing.TB, typ, id string, attrs map[string]any) string {
	t.Helper()
	data := map[string]any{"type": typ, "attributes": attrs}
	if id != "" {
		data["id"] = id
	}
	b, err := json.Marshal(map[string]any{"data": data})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// get walks a decoded JSON value along a dotted path; numbers index arrays.
func get(v any, path string) any {
	for _, part := range strings.Split(path, ".") {
		switch node := v.(type) {
		case map[string]any:
			v = node[part]
		case []any:
			var i int
			if _, err := fmt.Sscan(part, &i); err != nil || i >= len(node) {
				return nil
			}
			v = node[i]
		default:
			return nil
		}
	}
	return v
}

func str(v any, path string) string {
	s, _ := get(v, path).(string)
	return s
}

func wantError(t testing.TB, status int, body any, wantStatus int, wantMessage string) {
	t.Helper()
	if status != wantStatus {
		t.Errorf("status %d, want %d (body %v)", status, wantStatus, body)
		return
	}
	errs, _ := get(body, "errors").([]any)
	if len(errs) != 1 || errs[0] != wantMessage {
		t.Errorf("errors %v, want [%q]", get(body, "errors"), wantMessage)
	}
}

// serveDirect drives the spec-checking handler without a network, with the
// seeded keys: for tests that make many calls, or call from goroutines.
func serveDirect(t testing.TB, emu *emulator.Emulator) func(method, path, body string) *httptest.ResponseRecorder {
	handler := emulatortest.Handler(t, emu, nil)
	return func(method, path, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("DD-API-KEY", emu.APIKey())
		req.Header.Set("DD-APPLICATION-KEY", emu.AppKey())
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		return rec
	}
}
