package emulator_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulatortest"
)

// minReplayed guards against cassettes vanishing unnoticed: every cassette
// in the recordings is replayed, and there were 29 when this was written.
const minReplayed = 29

// omitted lists, per cassette, recorded fields the emulator leaves out on
// purpose, with the reason. None today.
var omitted = map[string]map[string]string{}

// withoutOneTimeRead lists the cassettes recorded in an organisation
// without One-Time Read mode (its current-user application keys show their
// secret when read): they replay against such an organisation
// (Options.OneTimeReadOff), the others against one in the mode.
var withoutOneTimeRead = map[string]bool{
	"v2_Key_Management__Get_one_application_key_owned_by_current_user_returns_OK_response": true,
}

// addedSince lists fields the emulator sends that older recordings lack
// because Datadog added them later: newer recordings of the same objects
// have them.
var addedSince = map[string]string{
	"data.attributes.category":                   "API keys, recorded from 2025 on",
	"data.attributes.remote_config_read_enabled": "API keys, recorded from 2025 on",
	"data.attributes.uuid":                       "users, recorded from 2026 on",
	"data.attributes.last_login_time":            "users, recorded from 2026 on",
	"included[].attributes.uuid":                 "users, recorded from 2026 on",
	"included[].attributes.last_login_time":      "users, recorded from 2026 on",
	// Permissions included in a user's creation were recorded in 2023;
	// the 2025 permission list has name_aliases.
	"included[].attributes.name_aliases": "permissions, recorded from 2025 on",
}

type cassette struct {
	Interactions []struct {
		Request struct {
			Body   string `yaml:"body"`
			Method string `yaml:"method"`
			URL    string `yaml:"url"`
		} `yaml:"request"`
		Response struct {
			Body string `yaml:"body"`
			Code int    `yaml:"code"`
		} `yaml:"response"`
	} `yaml:"interactions"`
}

// recordingsDir is ../shared/datadog-recordings beside the checkout, or
// $DATADOG_RECORDINGS.
func recordingsDir() string {
	if dir := os.Getenv("DATADOG_RECORDINGS"); dir != "" {
		return dir
	}
	return filepath.Join("..", "..", "..", "shared", "datadog-recordings")
}

func TestReplayRecordings(t *testing.T) {
	dir := filepath.Join(recordingsDir(), "cassettes")
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no cassettes in %s (set DATADOG_RECORDINGS to the datadog-recordings directory): %v", dir, err)
	}
	if len(files) < minReplayed {
		t.Fatalf("only %d cassettes in %s, want at least %d", len(files), dir, minReplayed)
	}
	interactions := 0
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(name, func(t *testing.T) {
			interactions += replay(t, f, emulator.Options{OneTimeReadOff: withoutOneTimeRead[name]}, omitted[name])
		})
	}
	t.Logf("replayed %d cassettes, %d interactions", len(files), interactions)
	fmt.Printf("recordings: replayed %d cassettes, %d interactions\n", len(files), interactions)
}

// TestReplayNeedsTheOrganisationsMode: a cassette of an organisation
// without One-Time Read mode does not replay against one in the mode (the
// secret is missing from the read), so the mode is what makes it pass.
func TestReplayNeedsTheOrganisationsMode(t *testing.T) {
	for name := range withoutOneTimeRead {
		rec := &missingFields{TB: t}
		replay(rec, filepath.Join(recordingsDir(), "cassettes", name+".yaml"), emulator.Options{}, nil)
		if !slices.Contains(rec.errors, "data.attributes.key") {
			t.Errorf("%s replayed in One-Time Read mode without missing data.attributes.key (errors: %v)", name, rec.errors)
		}
	}
}

// missingFields collects the fields replay reports missing, instead of
// failing the test.
type missingFields struct {
	testing.TB
	errors []string
}

func (m *missingFields) Errorf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if _, field, found := strings.Cut(msg, "missing field "); found {
		m.errors = append(m.errors, field)
		return
	}
	m.TB.Errorf(format, args...)
}

// replay sends each recorded request, in order, to a fresh emulator and
// compares status codes and JSON field sets. It returns how many
// interactions it replayed.
func replay(t testing.TB, path string, opts emulator.Options, mayOmit map[string]string) int {
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c cassette
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatalf("parsing %s: %v", path, err)
	}
	if len(c.Interactions) == 0 {
		t.Fatalf("%s has no interactions", path)
	}

	// The clock stands still at the time of the recording, so that
	// recorded expiry dates are as far ahead as they were.
	at := recordedAt(c)
	opts.Now = func() time.Time { return at }
	emu := emulatortest.Start(t, opts)
	// ids maps ids in the recording to the emulator's ids for the same
	// objects, learnt from earlier responses.
	ids := strings.NewReplacer()
	var idPairs []string

	for i, in := range c.Interactions {
		u, err := url.Parse(in.Request.URL)
		if err != nil {
			t.Fatal(err)
		}
		target := ids.Replace(u.RequestURI())
		body := ids.Replace(in.Request.Body)
		req, err := http.NewRequest(in.Request.Method, emu.URL+target, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("DD-API-KEY", emu.APIKey())
		req.Header.Set("DD-APPLICATION-KEY", emu.AppKey())
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}

		where := in.Request.Method + " " + u.Path
		if resp.StatusCode != in.Response.Code {
			t.Errorf("#%d %s: status %d, recorded %d (body %s)", i, where, resp.StatusCode, in.Response.Code, got)
			continue
		}
		if strings.TrimSpace(in.Response.Body) == "" {
			if len(got) != 0 {
				t.Errorf("#%d %s: body %s, recorded none", i, where, got)
			}
			continue
		}
		var recordedJSON, gotJSON any
		if err := json.Unmarshal([]byte(in.Response.Body), &recordedJSON); err != nil {
			t.Fatalf("#%d %s: recorded body is not JSON: %v", i, where, err)
		}
		if err := json.Unmarshal(got, &gotJSON); err != nil {
			t.Errorf("#%d %s: body is not JSON: %v: %s", i, where, err, got)
			continue
		}
		compareFields(t, i, where, fieldPaths(recordedJSON), fieldPaths(gotJSON), mayOmit)

		if recordedID, gotID := str(recordedJSON, "data.id"), str(gotJSON, "data.id"); recordedID != "" && gotID != "" {
			idPairs = append(idPairs, recordedID, gotID)
			ids = strings.NewReplacer(idPairs...)
		}
	}
	return len(c.Interactions)
}

// recordedAt is when a cassette was recorded: the first creation time in
// its answers, or now.
func recordedAt(c cassette) time.Time {
	createdAt := regexp.MustCompile(`"created_at":"([^"]+)"`)
	for _, in := range c.Interactions {
		if m := createdAt.FindStringSubmatch(in.Response.Body); m != nil {
			if t, err := time.Parse(time.RFC3339Nano, m[1]); err == nil {
				return t
			}
		}
	}
	return time.Now()
}

func compareFields(t testing.TB, i int, where string, recorded, got map[string]bool, mayOmit map[string]string) {
	t.Helper()
	for _, p := range sortedPaths(recorded) {
		if !got[p] && mayOmit[p] == "" {
			t.Errorf("#%d %s: missing field %s", i, where, p)
		}
	}
	for _, p := range sortedPaths(got) {
		if !recorded[p] && addedSince[p] == "" {
			t.Errorf("#%d %s: field %s is not in the recording", i, where, p)
		}
	}
}

// fieldPaths returns the dotted paths of every member in a JSON value;
// array elements share the path segment "[]", so a list yields the union of
// its elements' fields.
func fieldPaths(v any) map[string]bool {
	paths := map[string]bool{}
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
			for _, child := range node {
				walk(child, prefix+"[]")
			}
		}
	}
	walk(v, "")
	return paths
}

func sortedPaths(paths map[string]bool) []string {
	out := make([]string, 0, len(paths))
	for p := range paths {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}
