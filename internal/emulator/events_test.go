package emulator_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/DataDog/datadog-api-client-go/v2/api/datadog"
	"github.com/DataDog/datadog-api-client-go/v2/api/datadogV1"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
)

// TestPostEventWithClientGo posts an event with the official client, with
// the API key alone as Datadog's events intake takes it, and finds it in
// the admin list.
func TestPostEventWithClientGo(t *testing.T) {
	clock := newClock()
	s := newTestServer(t, emulator.Options{Now: clock.Now})
	cfg := datadog.NewConfiguration()
	cfg.Host, cfg.Scheme = strings.TrimPrefix(s.URL, "http://"), "http"
	events := datadogV1.NewEventsApi(datadog.NewAPIClient(cfg))
	ctx := context.WithValue(context.Background(), datadog.ContextAPIKeys, map[string]datadog.APIKey{"apiKeyAuth": {Key: s.APIKey()}})

	body := datadogV1.NewEventCreateRequest("role: r", "Vault issued a key") // text, title
	body.SetTags([]string{"vault_role:r", "vault_event:issue"})
	body.SetAggregationKey("vault-lease-1")
	body.SetSourceTypeName("vault")
	body.SetAlertType(datadogV1.EVENTALERTTYPE_SUCCESS)
	body.SetDateHappened(clock.t.Add(-time.Minute).Unix())
	created, resp, err := events.CreateEvent(ctx, *body)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("CreateEvent: %v %v", resp, err)
	}
	assertParsed(t, created)
	ev := created.GetEvent()
	if created.GetStatus() != "ok" || ev.GetId() == 0 || ev.GetIdStr() != fmt.Sprint(ev.GetId()) || ev.GetTitle() != "Vault issued a key" ||
		ev.GetAlertType() != datadogV1.EVENTALERTTYPE_SUCCESS || ev.GetDateHappened() != clock.t.Add(-time.Minute).Unix() {
		t.Errorf("answer %+v", created)
	}

	_, listed, _ := s.send(t, noAuth, "GET", "/_emulator/events", "")
	list, _ := get(listed, "events").([]any)
	if len(list) != 1 || str(list[0], "aggregation_key") != "vault-lease-1" || str(list[0], "source_type_name") != "vault" ||
		str(list[0], "text") != "role: r" || str(list[0], "priority") != "normal" || str(list[0], "tags.1") != "vault_event:issue" {
		t.Errorf("GET /_emulator/events = %v", listed)
	}
	if got := s.Events(); len(got) != 1 || got[0].ID != ev.GetId() || !slices.Equal(got[0].Tags, []string{"vault_role:r", "vault_event:issue"}) {
		t.Errorf("Events() = %+v", got)
	}

	// The events intake takes the API key alone, and only a live one.
	if status, _ := s.call(t, "", s.AppKey(), "POST", "/api/v1/events", `{"title":"t","text":"x"}`); status != http.StatusForbidden {
		t.Errorf("without an API key: %d, want 403", status)
	}
	if status, _ := s.call(t, s.APIKey(), "", "POST", "/api/v1/events", `{"title":"t","text":"x"}`); status != http.StatusAccepted {
		t.Errorf("with the API key alone: %d, want 202", status)
	}
}

// TestPostEventRefusals: what the specification limits is refused with 400
// and not recorded.
func TestPostEventRefusals(t *testing.T) {
	clock := newClock()
	s := newLenientServer(t, emulator.Options{Now: clock.Now})
	for _, tc := range []struct{ body, message string }{
		{`{"text":"x"}`, "Event title is required"},
		{`{"title":"t"}`, "Event text is required"},
		{fmt.Sprintf(`{"title":"t","text":%q}`, strings.Repeat("x", 4001)), "Event text is limited to 4000 characters"},
		{fmt.Sprintf(`{"title":"t","text":"x","aggregation_key":%q}`, strings.Repeat("k", 101)), "aggregation_key is limited to 100 characters"},
		{`{"title":"t","text":"x","alert_type":"fatal"}`, `Invalid alert_type "fatal"`},
		{`{"title":"t","text":"x","priority":"high"}`, `Invalid priority "high"`},
		{fmt.Sprintf(`{"title":"t","text":"x","date_happened":%d}`, clock.t.Add(-19*time.Hour).Unix()), "date_happened is limited to events no older than 18 hours"},
		{`{"title":`, "Invalid JSON body"},
	} {
		status, body := s.call(t, s.APIKey(), "", "POST", "/api/v1/events", tc.body)
		if status != http.StatusBadRequest || !strings.Contains(fmt.Sprint(get(body, "errors")), tc.message) {
			t.Errorf("%.60s: %d %v, want 400 %q", tc.body, status, body, tc.message)
		}
	}
	if n := len(s.Events()); n != 0 {
		t.Errorf("%d refused events recorded", n)
	}
}
