package emulatortest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/cassette"
	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
)

// ReplayStats says what a replay of a recorded run did.
type ReplayStats struct {
	Interactions int // in the recording
	Replayed     int // sent and compared
	RateLimited  int // recorded 429: Datadog did not serve them, so neither does the replay
	NoAnswer     int // recorded 5xx or no answer: not sent (whether Datadog applied them is unknown)
	Probes       int // timing-dependent calls whose recorded status the emulator did not repeat
}

func (s ReplayStats) String() string {
	return fmt.Sprintf("%d interactions: %d replayed, %d probes answered at once, %d rate-limited and %d unanswered not sent",
		s.Interactions, s.Replayed, s.Probes, s.RateLimited, s.NoAnswer)
}

// replayAdminScopes are the given token's scopes when the recording does
// not say.
var replayAdminScopes = []string{"api_keys_delete", "api_keys_read", "api_keys_write", "service_account_write",
	"user_access_read", "user_app_keys", "dashboards_read", "monitors_read"}

// ReplayRecording replays a run the acceptance suite recorded (a
// directory with run.json and cassettes/, see internal/cassette) against a
// fresh emulator, with every call checked against the specification.
//
// The calls go in the order they were sent, each at its recorded time on
// the emulator's clock, with the credentials it was sent with: the
// recording's placeholders are bound to the emulator's own values, the
// user's keys to its seeded keys, a service account and token the user
// gave to ones the replay makes, and every other placeholder to what the
// emulator answers where the recording has it (an id, a key's secret).
// Each answer must have the recorded status and, where both have them, the
// recorded JSON fields: a field Datadog sent that the emulator does not,
// or the reverse, fails the replay. Elements of a list are compared only
// where both lists have some (a real organisation holds dashboards and
// other people's keys that a fresh emulator does not). Calls that depend
// on timing (probes: a new key not yet working, a deleted one still
// working) need not repeat their status; calls Datadog refused with 429 or
// answered 5xx are not sent.
func ReplayRecording(t testing.TB, dir string) ReplayStats {
	t.Helper()
	rec, err := cassette.Load(dir)
	if err != nil {
		t.Fatalf("loading the recording: %v", err)
	}
	stats := ReplayStats{Interactions: len(rec.Interactions)}
	var clock atomic.Value
	start, err := time.Parse(time.RFC3339, rec.Manifest.StartedAt)
	if err != nil {
		start = time.Now()
	}
	clock.Store(start)
	srv := Start(t, emulator.Options{Now: func() time.Time { return clock.Load().(time.Time) }})

	b := bindings{}
	given := rec.Manifest.Given
	b.bind(given.APIKey, srv.APIKey())
	b.bind(given.AppKey, srv.AppKey())
	if rec.Manifest.Mode != "emulator" && given.ServiceAccountID != "" {
		// What the user gave the suite: a service account (with the
		// permissions of the Datadog Admin Role) and its token.
		sa := replaySetup(t, srv)
		b.bind(given.ServiceAccountID, sa)
		if given.AccessToken != "" {
			scopes := given.AccessTokenScopes
			if len(scopes) == 0 {
				scopes = replayAdminScopes
			}
			b.bind(given.AccessToken, replayToken(t, srv, sa, scopes))
		}
	}

	for _, in := range rec.Interactions {
		req := in.Request
		where := fmt.Sprintf("#%d %s %s (%s)", req.ID, req.Method, pathOf(req.URL), req.Header(cassette.HeaderScenario))
		if at, err := time.Parse(time.RFC3339Nano, req.Header(cassette.HeaderSentAt)); err == nil {
			clock.Store(at)
		}
		switch code := in.Response.Code; {
		case code == http.StatusTooManyRequests:
			stats.RateLimited++
			continue
		case code >= 500 || code == 0:
			stats.NoAnswer++
			continue
		}
		u, err := url.Parse(req.URL)
		if err != nil {
			t.Errorf("%s: %v", where, err)
			continue
		}
		target := b.replaceEscaped(u.EscapedPath(), url.PathEscape)
		if u.RawQuery != "" {
			target += "?" + b.replaceEscaped(u.RawQuery, url.QueryEscape)
		}
		r, err := http.NewRequest(req.Method, srv.URL+target, strings.NewReader(b.replace(req.Body)))
		if err != nil {
			t.Errorf("%s: %v", where, err)
			continue
		}
		for _, h := range []string{"Content-Type", "Accept", "DD-API-KEY", "DD-APPLICATION-KEY", "Authorization"} {
			if v := req.Header(h); v != "" {
				r.Header.Set(h, b.replace(v))
			}
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Errorf("%s: %v", where, err)
			continue
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		stats.Replayed++

		if resp.StatusCode != in.Response.Code {
			if req.Header(cassette.HeaderNote) == cassette.NoteProbe {
				stats.Probes++
				continue
			}
			t.Errorf("%s: status %d, recorded %d (body %s)", where, resp.StatusCode, in.Response.Code, got)
			continue
		}
		if strings.HasPrefix(u.Path, "/_emulator/") || strings.TrimSpace(in.Response.Body) == "" {
			continue
		}
		var recorded, answered any
		if json.Unmarshal([]byte(in.Response.Body), &recorded) != nil {
			continue // a body that is not JSON: its status is what counts
		}
		if err := json.Unmarshal(got, &answered); err != nil {
			t.Errorf("%s: body is not JSON: %v: %s", where, err, got)
			continue
		}
		compareRecorded(t, where, recorded, answered)
		b.learn(recorded, answered)
	}
	return stats
}

func pathOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	return u.Path
}

// bindings maps a recording's placeholders to the emulator's values.
type bindings map[string]string

func (b bindings) bind(placeholder, value string) {
	if placeholder == "" || value == "" || !cassette.IsPlaceholder(placeholder) {
		return
	}
	if _, ok := b[placeholder]; !ok {
		b[placeholder] = value
	}
}

func (b bindings) replace(s string) string {
	return b.replaceEscaped(s, func(v string) string { return v })
}

// replaceEscaped replaces placeholders with their values, escaped for
// where they go (a URL's path or query).
func (b bindings) replaceEscaped(s string, escape func(string) string) string {
	return cassette.ReplacePlaceholders(s, func(p string) (string, bool) {
		v, ok := b[p]
		return escape(v), ok
	})
}

// learn walks a recorded answer and the emulator's together, binding each
// placeholder met for the first time to the emulator's value in its place.
// Lists are walked only when both have the same length.
func (b bindings) learn(recorded, answered any) {
	switch r := recorded.(type) {
	case string:
		if a, ok := answered.(string); ok && cassette.IsPlaceholder(r) {
			b.bind(r, a)
		}
	case map[string]any:
		a, ok := answered.(map[string]any)
		if !ok {
			return
		}
		for k, v := range r {
			if av, ok := a[k]; ok {
				b.learn(v, av)
			}
		}
	case []any:
		a, ok := answered.([]any)
		if !ok || len(a) != len(r) {
			return
		}
		for i := range r {
			b.learn(r[i], a[i])
		}
	}
}

// compareRecorded wants the same JSON fields in both answers, leaving out
// the elements of lists that one of them has empty.
func compareRecorded(t testing.TB, where string, recorded, answered any) {
	t.Helper()
	rPaths, rEmpty := jsonPaths(recorded)
	aPaths, aEmpty := jsonPaths(answered)
	skipped := func(p string) bool {
		for e := range rEmpty {
			if strings.HasPrefix(p, e+"[]") {
				return true
			}
		}
		for e := range aEmpty {
			if strings.HasPrefix(p, e+"[]") {
				return true
			}
		}
		return false
	}
	for _, p := range sortedKeys(rPaths) {
		if !aPaths[p] && !skipped(p) {
			t.Errorf("%s: the emulator's answer lacks the field %s that Datadog sent", where, p)
		}
	}
	for _, p := range sortedKeys(aPaths) {
		if !rPaths[p] && !skipped(p) {
			t.Errorf("%s: the emulator's answer has the field %s that Datadog did not send", where, p)
		}
	}
}

// jsonPaths returns the dotted paths of every member of a JSON value
// (list elements share the segment "[]") and the paths of its empty lists.
func jsonPaths(v any) (paths, empty map[string]bool) {
	paths, empty = map[string]bool{}, map[string]bool{}
	var walk func(v any, prefix string)
	walk = func(v any, prefix string) {
		switch node := v.(type) {
		case map[string]any:
			for k, child := range node {
				p := k
				if prefix != "" {
					p = prefix + "." + k
				}
				paths[p] = true
				walk(child, p)
			}
		case []any:
			if len(node) == 0 {
				empty[prefix] = true
			}
			for _, child := range node {
				walk(child, prefix+"[]")
			}
		}
	}
	walk(v, "")
	return paths, empty
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// replaySetup makes the service account a user gave the suite: one with
// the Datadog Admin Role.
func replaySetup(t testing.TB, srv *Server) string {
	t.Helper()
	var roles struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	srv.call(t, http.MethodGet, "/api/v2/roles?filter="+url.QueryEscape("Datadog Admin Role"), "", &roles)
	if len(roles.Data) == 0 {
		t.Fatal("the emulator has no Datadog Admin Role")
	}
	var sa struct {
		Data struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	srv.call(t, http.MethodPost, "/api/v2/service_accounts", fmt.Sprintf(
		`{"data":{"type":"users","attributes":{"email":"replay-given-service-account@example.com","service_account":true},`+
			`"relationships":{"roles":{"data":[{"type":"roles","id":%q}]}}}}`, roles.Data[0].ID), &sa)
	return sa.Data.ID
}

// replayToken makes the service access token a user gave the suite.
func replayToken(t testing.TB, srv *Server, sa string, scopes []string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"data": map[string]any{"type": "service_access_tokens",
		"attributes": map[string]any{"name": "replay given token", "scopes": scopes}}})
	var out struct {
		Data struct {
			Attributes struct {
				Key string `json:"key"`
			} `json:"attributes"`
		} `json:"data"`
	}
	srv.call(t, http.MethodPost, "/api/v2/service_accounts/"+sa+"/access_tokens", string(body), &out)
	return out.Data.Attributes.Key
}

// call sends a request with the seeded keys and decodes a 2xx answer.
func (s *Server) call(t testing.TB, method, path, body string, out any) {
	t.Helper()
	r, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("DD-API-KEY", s.APIKey())
	r.Header.Set("DD-APPLICATION-KEY", s.AppKey())
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, data)
	}
	if err := json.Unmarshal(data, out); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
}
