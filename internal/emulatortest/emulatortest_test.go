package emulatortest

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
)

// recordingTB collects the errors a test would report, so that the checker
// itself can be tested.
type recordingTB struct {
	testing.TB
	errors []string
}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func send(t *testing.T, s *Server, method, path, body string) int {
	t.Helper()
	req, _ := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	req.Header.Set("DD-API-KEY", s.APIKey())
	req.Header.Set("DD-APPLICATION-KEY", s.AppKey())
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestConformingTrafficPasses(t *testing.T) {
	rec := &recordingTB{TB: t}
	s := Start(rec, emulator.Options{})
	send(t, s, "POST", "/api/v2/current_user/application_keys", `{"data":{"type":"application_keys","attributes":{"name":"k","scopes":["dashboards_read"]}}}`)
	send(t, s, "GET", "/api/v2/current_user/application_keys?filter=k", "")
	send(t, s, "GET", "/api/v1/validate", "")
	if len(rec.errors) != 0 {
		t.Errorf("conforming traffic reported: %v", rec.errors)
	}
	if s.Requests() != 3 {
		t.Errorf("Requests() = %d, want 3", s.Requests())
	}
	for _, op := range []string{"CreateCurrentUserApplicationKey", "ListCurrentUserApplicationKeys", "Validate"} {
		if !slices.Contains(ValidatedOperations(), op) {
			t.Errorf("ValidatedOperations() = %v, lacks %s", ValidatedOperations(), op)
		}
	}
}

// TestDroppedConnectionPassesThrough: a connection the emulator drops on
// purpose reaches the client as a transport error, and is no mismatch.
func TestDroppedConnectionPassesThrough(t *testing.T) {
	rec := &recordingTB{TB: t}
	s := Start(rec, emulator.Options{})
	if _, err := s.AddFault(emulator.Fault{Operation: "ValidateAPIKey", Action: emulator.FaultCommitThenReset}); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", s.URL+"/api/v2/validate_keys", nil)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	if resp, err := client.Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("dropped connection answered %d", resp.StatusCode)
	}
	if len(rec.errors) != 0 {
		t.Errorf("a dropped connection reported: %v", rec.errors)
	}
}

func TestMismatchNamesOperationAndField(t *testing.T) {
	rec := &recordingTB{TB: t}
	s := Start(rec, emulator.Options{})
	// data.type is an enum in the specification.
	send(t, s, "POST", "/api/v2/api_keys", `{"data":{"type":"apikeys","attributes":{"name":"k"}}}`)
	send(t, s, "GET", "/api/v2/no_such_endpoint", "")
	all := strings.Join(rec.errors, "\n")
	for _, want := range []string{"CreateAPIKey request", "type", "not an operation of the specification"} {
		if !strings.Contains(all, want) {
			t.Errorf("reported mismatches do not mention %q:\n%s", want, all)
		}
	}
}

// TestAPIKeyCapRefusalConforms: the emulator's refusal of an API key past
// the organisation's cap (no recording exists) is a response the
// specification allows for CreateAPIKey, and a Server reports the
// organisation's peak of API keys to the test.
func TestAPIKeyCapRefusalConforms(t *testing.T) {
	rec := &recordingTB{TB: t}
	s := Start(rec, emulator.Options{MaxAPIKeys: 2, PeopleAPIKeys: -1})
	create := `{"data":{"type":"api_keys","attributes":{"name":"k"}}}`
	if status := send(t, s, "POST", "/api/v2/api_keys", create); status != http.StatusCreated {
		t.Fatalf("second API key: %d", status)
	}
	if status := send(t, s, "POST", "/api/v2/api_keys", create); status != http.StatusBadRequest {
		t.Errorf("third API key: %d, want 400", status)
	}
	if len(rec.errors) != 0 {
		t.Errorf("the refusal departs from the specification: %v", rec.errors)
	}
	if s.Answers(http.StatusBadRequest) != 1 || s.APIKeyPeak() != 2 || s.MaxAPIKeys() != 2 {
		t.Errorf("Answers(400) %d, APIKeyPeak() %d, MaxAPIKeys() %d; want 1, 2, 2", s.Answers(http.StatusBadRequest), s.APIKeyPeak(), s.MaxAPIKeys())
	}
}
