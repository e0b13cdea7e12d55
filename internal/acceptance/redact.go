package acceptance

import (
	"encoding/json"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/cassette"
	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/permissions"
)

// redactor turns Datadog traffic into what a recording may hold: no
// secret, no identifier and no name of the organisation, each replaced by a
// placeholder, the same value always by the same placeholder. It keeps
// what a replay needs and what says nothing about the organisation: JSON
// keys (so field sets survive), types, timestamps, numbers and booleans,
// permission names, error messages (with any secret or id in them
// replaced), and the names of the objects the run made itself (they carry
// its run id, the role and the engine's marker, nothing else).
//
// It redacts by default: a string value is kept only when one of those
// rules says so.
type redactor struct {
	mu      sync.Mutex
	keep    []string          // substrings of the run's own values: the run id
	values  map[string]string // original → placeholder
	counts  map[string]int    // per placeholder kind
	secrets map[string]bool   // every secret seen, to check a recording afterwards
}

func newRedactor(keep ...string) *redactor {
	return &redactor{keep: keep, values: map[string]string{}, counts: map[string]int{}, secrets: map[string]bool{}}
}

// Datadog's credential formats (DESIGN.md §4, the emulator's): API keys 32
// hex; application keys ddapp_ and 34, or 40 hex (legacy); access tokens
// ddpat_/ddsat_, a 22-character id, _ and 36 more. Their public portion is
// the token's start.
var (
	reToken         = regexp.MustCompile(`dd[ps]at_[A-Za-z0-9]{10,}_[A-Za-z0-9]{10,}`)
	rePublicPortion = regexp.MustCompile(`dd[ps]at_[A-Za-z0-9]{10,}`)
	reAppKey        = regexp.MustCompile(`ddapp_[A-Za-z0-9]{20,}|\b[0-9a-f]{40}\b`)
	reAPIKey        = regexp.MustCompile(`\b[0-9a-fA-F]{32}\b`)
	reUUID          = regexp.MustCompile(`\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b`)
	reEmail         = regexp.MustCompile(`[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}`)
)

// secretKind names a secret's placeholder after its format.
func secretKind(s string) string {
	switch {
	case reToken.MatchString(s):
		return "ACCESS_TOKEN"
	case reAppKey.MatchString(s):
		return "APP_KEY"
	case reAPIKey.MatchString(s):
		return "API_KEY"
	}
	return "SECRET"
}

// placeholder returns value's placeholder of kind, making one the first
// time; identifiers ("ID") keep the UUID form.
func (r *redactor) placeholder(kind, value string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.placeholderLocked(kind, value)
}

func (r *redactor) placeholderLocked(kind, value string) string {
	if p, ok := r.values[value]; ok {
		return p
	}
	counter := kind
	if kind != "ID" {
		counter = "TEXT" // one sequence for every kind: REDACTED_NAME_7 is the 7th value replaced
	}
	r.counts[counter]++
	var p string
	if kind == "ID" {
		p = cassette.IDPlaceholder(r.counts[counter])
	} else {
		p = cassette.TextPlaceholder(kind, r.counts[counter])
	}
	r.values[value] = p
	return p
}

// Secret registers a secret (a key the user gave, one Vault issued, one a
// create answered with) and returns its placeholder.
func (r *redactor) Secret(s string) string {
	if s == "" || cassette.IsPlaceholder(s) {
		return s
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.secrets[s] = true
	return r.placeholderLocked(secretKind(s), s)
}

// ID returns an identifier's placeholder.
func (r *redactor) ID(id string) string {
	if id == "" || cassette.IsPlaceholder(id) {
		return id
	}
	return r.placeholder("ID", strings.ToLower(id))
}

// Secrets lists every secret registered so far.
func (r *redactor) Secrets() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.secrets))
	for s := range r.secrets {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// scrub replaces, inside any text, every registered secret, anything
// shaped like a credential, identifier or e-mail address that is not the
// run's own.
func (r *redactor) scrub(s string) string {
	r.mu.Lock()
	known := make([]string, 0, len(r.secrets))
	for k := range r.secrets {
		known = append(known, k)
	}
	r.mu.Unlock()
	// Longest first, so that a secret containing another is replaced whole.
	slices.SortFunc(known, func(a, b string) int { return len(b) - len(a) })
	for _, k := range known {
		if strings.Contains(s, k) {
			s = strings.ReplaceAll(s, k, r.Secret(k))
		}
	}
	s = reToken.ReplaceAllStringFunc(s, r.Secret)
	s = reAppKey.ReplaceAllStringFunc(s, r.Secret)
	s = reAPIKey.ReplaceAllStringFunc(s, r.Secret)
	s = rePublicPortion.ReplaceAllStringFunc(s, func(p string) string { return r.placeholder("PUBLIC_PORTION", p) })
	s = reUUID.ReplaceAllStringFunc(s, func(id string) string {
		if cassette.IsPlaceholder(id) {
			return id
		}
		return r.ID(id)
	})
	s = reEmail.ReplaceAllStringFunc(s, func(e string) string {
		if r.ours(e) {
			return e
		}
		return r.placeholder("EMAIL", e)
	})
	return s
}

// Keep adds a substring that marks the run's own values (a mount's
// marker, once known).
func (r *redactor) Keep(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s != "" && !slices.Contains(r.keep, s) {
		r.keep = append(r.keep, s)
	}
}

// ours reports whether a value names something the run made.
func (r *redactor) ours(s string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range r.keep {
		if k != "" && strings.Contains(s, k) {
			return true
		}
	}
	return false
}

// Keys whose string values say nothing about the organisation.
var keptKeys = map[string]bool{
	"type": true, "status": true, "category": true,
	"created_at": true, "modified_at": true, "expires_at": true, "last_used_at": true, "date_last_used": true,
	"timestamp": true, "date": true, "leak_source": true, "last_login_time": true,
	"scopes": true,
}

var reNonWord = regexp.MustCompile(`[^A-Za-z0-9]+`)

// value redacts one JSON string value found under key; inErrors: inside
// an "errors" member, whose messages are kept (scrubbed): an error's
// wording is one of the facts a recording shows.
func (r *redactor) value(key, s string, inErrors bool) string {
	if s == "" || cassette.IsPlaceholder(s) {
		return s
	}
	if key == "key" { // a secret, in every Datadog object that has one
		return r.Secret(s)
	}
	scrubbed := r.scrub(s)
	switch {
	case cassette.IsPlaceholder(scrubbed):
		return scrubbed
	case inErrors, keptKeys[key], r.ours(scrubbed), permissions.IsKnown(scrubbed), isTime(scrubbed):
		return scrubbed
	}
	kind := strings.ToUpper(strings.Trim(reNonWord.ReplaceAllString(key, "_"), "_"))
	if kind == "" {
		kind = "TEXT"
	}
	return r.placeholder(kind, s)
}

func isTime(s string) bool {
	_, err := time.Parse(time.RFC3339Nano, s)
	return err == nil
}

// JSON redacts a JSON body; a body that is not JSON is scrubbed as text.
func (r *redactor) JSON(body []byte) string {
	if len(strings.TrimSpace(string(body))) == 0 {
		return ""
	}
	var v any
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return r.scrub(string(body))
	}
	out, err := json.Marshal(r.walk("", v, false))
	if err != nil {
		return r.scrub(string(body))
	}
	return string(out)
}

func (r *redactor) walk(key string, v any, inErrors bool) any {
	switch node := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(node))
		for k, child := range node {
			out[k] = r.walk(k, child, inErrors || k == "errors")
		}
		return out
	case []any:
		out := make([]any, len(node))
		for i, child := range node {
			out[i] = r.walk(key, child, inErrors) // an array's items are judged by the array's key
		}
		return out
	case string:
		return r.value(key, node, inErrors)
	}
	return v
}

// URL redacts a request URL: identifiers in the path, and query values.
func (r *redactor) URL(u *url.URL, base string) string {
	segments := strings.Split(u.Path, "/")
	for i, seg := range segments {
		segments[i] = r.scrub(seg)
	}
	out := base + strings.Join(segments, "/")
	if u.RawQuery == "" {
		return out
	}
	q := u.Query()
	redacted := url.Values{}
	for k, values := range q {
		for _, v := range values {
			redacted.Add(k, r.queryValue(k, v))
		}
	}
	return out + "?" + redacted.Encode()
}

var (
	reSwitch     = regexp.MustCompile(`^(true|false|[0-9]+)$`)
	reSimpleWord = regexp.MustCompile(`^-?[a-z_.,\[\]]*$`)
	reEngineName = regexp.MustCompile(`^[0-9a-f]{16}$|^vault-`)
)

// queryValue keeps paging, sorting and switches, the run's own names and
// the engine's markers and name prefixes; filters on anything else are
// replaced.
func (r *redactor) queryValue(key, v string) string {
	if v == "" {
		return v
	}
	scrubbed := r.scrub(v)
	switch {
	case cassette.IsPlaceholder(scrubbed), r.ours(scrubbed), reSwitch.MatchString(scrubbed):
		return scrubbed
	case strings.HasPrefix(key, "filter"):
		if reEngineName.MatchString(scrubbed) {
			return scrubbed
		}
	case reSimpleWord.MatchString(scrubbed):
		return scrubbed
	}
	return r.placeholder("QUERY", v)
}

// Header redacts a credential header's value.
func (r *redactor) Header(name, v string) string {
	if strings.EqualFold(name, "Authorization") {
		scheme, token, found := strings.Cut(v, " ")
		if found {
			return scheme + " " + r.Secret(token)
		}
	}
	return r.Secret(v)
}
