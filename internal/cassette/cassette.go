// Package cassette reads and writes recordings of Datadog API traffic in
// the format of the recordings in ../shared/datadog-recordings: go-vcr v2
// cassettes (one YAML file per scenario, interactions in order), which the
// acceptance suite (internal/acceptance) writes and the emulator's replay
// tests (internal/emulatortest) replay.
//
// A recording made by the acceptance suite is a directory:
//
//	run.json            Manifest: the run's mode, site, results, and the
//	                    placeholders of what it was given
//	cassettes/*.yaml    one cassette per scenario
//
// Its interactions carry a run-wide id (request.id), so that the replay
// can put the cassettes of a run back in the order the calls were sent.
// Request headers named X-Acceptance-* are the suite's annotations, never
// sent to Datadog: who made the call, in which scenario, when, and whether
// its answer depends on timing (a probe).
package cassette

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Cassette is a go-vcr v2 cassette.
type Cassette struct {
	Interactions []Interaction `yaml:"interactions"`
	Version      int           `yaml:"version"`
}

// Interaction is one HTTP exchange.
type Interaction struct {
	Request  Request  `yaml:"request"`
	Response Response `yaml:"response"`
}

// Request is what was sent, redacted.
type Request struct {
	Body    string              `yaml:"body"`
	Form    map[string][]string `yaml:"form"`
	Headers map[string][]string `yaml:"headers"`
	ID      int                 `yaml:"id"`
	Method  string              `yaml:"method"`
	URL     string              `yaml:"url"`
}

// Response is what came back, redacted.
type Response struct {
	Body     string              `yaml:"body"`
	Code     int                 `yaml:"code"`
	Duration string              `yaml:"duration"`
	Headers  map[string][]string `yaml:"headers"`
	Status   string              `yaml:"status"`
}

// Annotation headers: set on a recorded request by the suite, never sent.
const (
	HeaderCaller   = "X-Acceptance-Caller"   // "suite" or "engine"
	HeaderScenario = "X-Acceptance-Scenario" // the scenario running when the call was sent
	HeaderSentAt   = "X-Acceptance-Sent-At"  // RFC 3339, when the call was sent
	HeaderNote     = "X-Acceptance-Note"     // "probe": an answer that depends on timing
)

// NoteProbe marks a call whose answer depends on how soon Datadog applies a
// change (a new key starting to work, a deleted one stopping): a replay
// does not hold it to its recorded status. The suite follows every series
// of probes with one call that does count.
const NoteProbe = "probe"

// Header returns the first value of a recorded header.
func (r Request) Header(name string) string {
	if v := r.Headers[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Manifest describes a recorded run (run.json).
type Manifest struct {
	Format     int        `json:"format"` // 1
	Suite      string     `json:"suite"`  // "datadog-acceptance"
	RunID      string     `json:"run_id"`
	Mode       string     `json:"mode"` // "real" (a Datadog organisation, or what DD_API_URL points at) or "emulator"
	Site       string     `json:"site"`
	APIURLSet  bool       `json:"api_url_overridden"` // DD_API_URL replaced https://api.<site>
	StartedAt  string     `json:"started_at"`
	FinishedAt string     `json:"finished_at"`
	Given      Given      `json:"given"`
	Scenarios  []Scenario `json:"scenarios"`
	Facts      []Fact     `json:"facts"`
	Calls      int        `json:"calls"`
	Redacted   []string   `json:"redacted"` // what the recording replaced, in words
}

// Given holds the placeholders that stand for what the user handed the
// suite: a replay binds them to an emulator's own (its seeded keys, and a
// service account and token it makes).
type Given struct {
	APIKey            string   `json:"api_key"`
	AppKey            string   `json:"app_key"`
	ServiceAccountID  string   `json:"service_account_id,omitempty"`
	AccessToken       string   `json:"access_token,omitempty"`
	AccessTokenScopes []string `json:"access_token_scopes,omitempty"`
}

// Scenario is one row of the suite's table.
type Scenario struct {
	Name      string  `json:"name"`
	Result    string  `json:"result"` // pass, fail, skipped, interrupted
	Detail    string  `json:"detail,omitempty"`
	Calls     int     `json:"calls"`
	Leftovers int     `json:"leftovers"`
	Seconds   float64 `json:"seconds"`
}

// Fact is one checked assumption of the emulator's about Datadog.
type Fact struct {
	Name     string `json:"name"`
	Result   string `json:"result"` // holds, differs, not checked
	Expected string `json:"expected"`
	Seen     string `json:"seen"`
}

// Placeholders: the same value always becomes the same placeholder within
// a recording. Identifiers keep the UUID form, so that paths stay valid.
var (
	placeholderText = regexp.MustCompile(`REDACTED_[A-Z0-9_]*?_[0-9]+\b`)
	placeholderID   = regexp.MustCompile(`00000000-0000-4000-8000-[0-9]{12}`)
	placeholderAny  = regexp.MustCompile(placeholderText.String() + `|` + placeholderID.String())
)

// IDPlaceholder is the placeholder of the n-th identifier.
func IDPlaceholder(n int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", n) }

// TextPlaceholder is the placeholder of the n-th value of a kind
// (API_KEY, APP_KEY, ACCESS_TOKEN, NAME, EMAIL, ...).
func TextPlaceholder(kind string, n int) string { return fmt.Sprintf("REDACTED_%s_%d", kind, n) }

// IsPlaceholder reports whether s is exactly one placeholder.
func IsPlaceholder(s string) bool {
	loc := placeholderAny.FindStringIndex(s)
	return loc != nil && loc[0] == 0 && loc[1] == len(s)
}

// ReplacePlaceholders replaces every placeholder in s that bound maps.
func ReplacePlaceholders(s string, bound func(string) (string, bool)) string {
	return placeholderAny.ReplaceAllStringFunc(s, func(p string) string {
		if v, ok := bound(p); ok {
			return v
		}
		return p
	})
}

// Write writes a cassette as YAML.
func Write(path string, c Cassette) error {
	c.Version = 2
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2) // as go-vcr writes them
	if err := enc.Encode(c); err != nil {
		return err
	}
	if err := enc.Close(); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// Read reads one cassette.
func Read(path string) (Cassette, error) {
	var c Cassette
	data, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	if err := yaml.Unmarshal(data, &c); err != nil {
		return c, fmt.Errorf("parsing %s: %w", path, err)
	}
	return c, nil
}

// Recording is a recorded run: its manifest and its interactions, from
// every cassette, in the order they were sent.
type Recording struct {
	Dir          string
	Manifest     Manifest
	Files        []string
	Interactions []Interaction
}

// Load reads a recording directory.
func Load(dir string) (*Recording, error) {
	rec := &Recording{Dir: dir}
	raw, err := os.ReadFile(filepath.Join(dir, "run.json"))
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(raw, &rec.Manifest); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", filepath.Join(dir, "run.json"), err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "cassettes", "*.yaml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no cassettes in %s", filepath.Join(dir, "cassettes"))
	}
	for _, f := range files {
		c, err := Read(f)
		if err != nil {
			return nil, err
		}
		rec.Files = append(rec.Files, f)
		rec.Interactions = append(rec.Interactions, c.Interactions...)
	}
	slices.SortStableFunc(rec.Interactions, func(a, b Interaction) int { return a.Request.ID - b.Request.ID })
	return rec, nil
}

// FileName turns a scenario name into a cassette file name:
// "creds/application_key" → "acceptance__creds_application_key.yaml".
func FileName(scenario string) string {
	clean := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-':
			return r
		}
		return '_'
	}, scenario)
	return "acceptance__" + clean + ".yaml"
}
