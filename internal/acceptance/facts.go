package acceptance

import (
	"fmt"
	"strings"
	"sync"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/cassette"
)

// A fact is something the emulator assumes of Datadog (docs/emulator.md
// marks what is assumed, and what only the recordings or the documentation
// say). The suite checks each one explicitly wherever the run meets it
// and reports whether it holds against the Datadog it ran against, and
// what it saw: a run against a real organisation tells which assumptions
// hold.
type factDef struct {
	name     string
	expected string // what the emulator does
}

var factDefs = []factDef{
	{"new key works at once", "a key or token authenticates on its first call after its creation"},
	{"deleted key refused at once", "a deleted key or revoked token is refused on the first call after the deletion"},
	{"wrong application key: 403 Forbidden", `403 {"errors":["Forbidden"]}`},
	{"out of scope: 403 Forbidden", `403 {"errors":["Forbidden"]}`},
	{"revoked token as bearer: 401 Unauthorized", `401 {"errors":["Unauthorized"]} (assumed: the spec documents 401 only on validate_keys)`},
	{"revoked token in DD-APPLICATION-KEY: 403 Forbidden", `403 {"errors":["Forbidden"]} (assumed: not recorded)`},
	{"token alone in DD-APPLICATION-KEY works", "a PAT or SAT sent as DD-APPLICATION-KEY with no DD-API-KEY authenticates"},
	{"unknown scope: 400 Invalid scopes", `400 {"errors":["Invalid scopes"]}`},
	{"application key deleted twice: 404", `404 {"errors":["Application key not found"]}`},
	{"API key cap in meta.max_allowed", "GET /api/v2/api_keys answers meta.max_allowed (the cap) and meta.page.total_filtered_count (the count)"},
	{"API key cap refusal", `400 {"errors":["API key limit reached: this organisation may hold at most N API keys"]} (assumed: never recorded)`},
	{"last use reported at once", "last_used_at is set by the first call (the engine assumes at most config's last_use_lag, 1h by default)"},
	{"token cannot create application keys: 403", "403 (documented; the wording is the emulator's own)"},
	{"token grants only its own scopes: 403", "403 (documented; the wording is the emulator's own)"},
	{"token cannot outlive its maker: 403", "403 (documented; the wording is the emulator's own)"},
}

// facts collects what the run saw of each fact.
type facts struct {
	mu  sync.Mutex
	obs map[string]*factObs
}

type factObs struct {
	holds, differs []string
	notChecked     string
}

func newFacts() *facts { return &facts{obs: map[string]*factObs{}} }

func (f *facts) get(name string) *factObs {
	o := f.obs[name]
	if o == nil {
		o = &factObs{}
		f.obs[name] = o
	}
	return o
}

// observe notes one sighting of a fact: whether it held, and what was seen.
func (f *facts) observe(name string, held bool, seen string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o := f.get(name)
	if held {
		o.holds = append(o.holds, seen)
	} else {
		o.differs = append(o.differs, seen)
	}
}

// skip notes why a fact could not be checked in this run.
func (f *facts) skip(name, why string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.get(name).notChecked = why
}

// expectAnswer observes a fact about a status and an error body.
func (f *facts) expectAnswer(name string, a answer, status int, message string) {
	held := a.Status == status && (message == "" || len(a.Errors) == 1 && a.Errors[0] == message)
	f.observe(name, held, a.String())
}

// results lists every fact in order, judged.
func (f *facts) results() []cassette.Fact {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []cassette.Fact
	for _, def := range factDefs {
		r := cassette.Fact{Name: def.name, Expected: def.expected}
		o := f.obs[def.name]
		switch {
		case o == nil || len(o.holds)+len(o.differs) == 0:
			r.Result = "not checked"
			r.Seen = "not met in this run"
			if o != nil && o.notChecked != "" {
				r.Seen = o.notChecked
			}
		case len(o.differs) > 0:
			r.Result = "differs"
			r.Seen = summarize(o.differs, len(o.holds)+len(o.differs))
		default:
			r.Result = "holds"
			r.Seen = summarize(o.holds, len(o.holds))
		}
		out = append(out, r)
	}
	return out
}

// summarize shows the distinct sightings, and how many there were.
func summarize(seen []string, total int) string {
	var distinct []string
	for _, s := range seen {
		found := false
		for _, d := range distinct {
			found = found || d == s
		}
		if !found {
			distinct = append(distinct, s)
		}
	}
	if len(distinct) > 3 {
		distinct = append(distinct[:3], "…")
	}
	text := strings.Join(distinct, "; ")
	if total > 1 {
		text = fmt.Sprintf("%s (%d of %d sightings)", text, len(seen), total)
	}
	return text
}
