package emulator

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"time"
)

// Leak is what Datadog records of a credential it found leaked (in a
// public repository, say): the LeakedKey that the credential's
// leak_information relationship points to.
type Leak struct {
	ID     string    `json:"id"`
	Date   time.Time `json:"date"`
	Source string    `json:"leak_source"`
}

// defaultLeakSource is the leak_source of a leak marked without one.
const defaultLeakSource = "github"

// MarkLeaked flags a live key or token as leaked, as Datadog does when its
// secret scanning finds one: from then on its leak_information relationship
// points to a LeakedKey dated now, from source ("github" when empty). The
// key keeps working, as in Datadog: revoking it is its owner's job. It
// reports false if no live key has that id; marking a leaked key again
// changes nothing.
func (e *Emulator) MarkLeaked(id, source string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	k := e.org.Keys[id]
	if k == nil || k.RevokedAt != nil {
		return false
	}
	if k.Leak == nil {
		k.Leak = &Leak{ID: newUUID(), Date: e.now(), Source: orDefault(source, defaultLeakSource)}
		e.saveLogged()
	}
	return true
}

// Backdate moves everything that happened to a live key d into the past:
// its creation, last change and last use (not a token's expiry, which is a
// fixed date). A test makes a key look unused for a while with it, without
// waiting. It reports false if no live key has that id.
func (e *Emulator) Backdate(id string, d time.Duration) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	k := e.org.Keys[id]
	if k == nil || k.RevokedAt != nil {
		return false
	}
	k.CreatedAt = k.CreatedAt.Add(-d)
	k.ModifiedAt = k.ModifiedAt.Add(-d)
	if k.LastUsedAt != nil {
		// A new value: Keys hands out the pointer it had.
		used := k.LastUsedAt.Add(-d)
		k.LastUsedAt = &used
	}
	e.saveLogged()
	return true
}

// leakRelationship is a key's leak_information: data null for a clean key.
func leakRelationship(k *storedKey) map[string]any {
	if k.Leak == nil {
		return map[string]any{"data": nil}
	}
	return relationship("leaked_keys", k.Leak.ID)
}

// leakedKeyObject renders a leak as the LeakedKey of an "included" member.
func leakedKeyObject(l *Leak) map[string]any {
	return map[string]any{
		"type": "leaked_keys",
		"id":   l.ID,
		"attributes": map[string]any{
			"date":        l.Date.UTC().Format(time.RFC3339),
			"leak_source": l.Source,
		},
	}
}

// includedLeaks renders the leaks of the keys, each once, for a JSON:API
// "included" member (?include=leak_information).
func includedLeaks(keys []*storedKey) []any {
	included := []any{}
	seen := map[string]bool{}
	for _, k := range keys {
		if k.Leak != nil && !seen[k.Leak.ID] {
			seen[k.Leak.ID] = true
			included = append(included, leakedKeyObject(k.Leak))
		}
	}
	return included
}

// leakedFirst orders keys by whether they leaked, clean ones first, as
// ?sort=leaked asks.
func leakedFirst(a, b *storedKey) int {
	switch {
	case (a.Leak == nil) == (b.Leak == nil):
		return 0
	case a.Leak == nil:
		return -1
	}
	return 1
}

// serveKeyAction answers the admin calls on one key: path is "{id}/leak"
// or "{id}/backdate".
func (e *Emulator) serveKeyAction(r *http.Request, path string) response {
	id, action, _ := strings.Cut(path, "/")
	var done bool
	switch action {
	case "leak":
		var body struct {
			Source string `json:"source"`
		}
		// The body is optional: an empty one marks a leak from the default source.
		raw, err := io.ReadAll(r.Body)
		if err != nil {
			return errorResponse(http.StatusBadRequest, "Invalid body: "+err.Error())
		}
		if len(bytes.TrimSpace(raw)) > 0 {
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&body); err != nil {
				return errorResponse(http.StatusBadRequest, "Invalid JSON body: "+err.Error())
			}
		}
		done = e.MarkLeaked(id, body.Source)
	case "backdate":
		var body struct {
			By jsonDuration `json:"by"`
		}
		if errResp := decodeAdmin(r, &body); errResp != nil {
			return *errResp
		}
		if body.By < 0 {
			return errorResponse(http.StatusBadRequest, "by must not be negative")
		}
		done = e.Backdate(id, time.Duration(body.By))
	default:
		return notFound
	}
	if !done {
		return errorResponse(http.StatusNotFound, "Key not found")
	}
	k, _ := e.key(id)
	return ok(k)
}

// key returns a copy of the live key with that id.
func (e *Emulator) key(id string) (Key, bool) {
	for _, k := range e.Keys() {
		if k.ID == id {
			return k, true
		}
	}
	return Key{}, false
}
