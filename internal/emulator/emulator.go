// Package emulator is an in-memory emulation of the parts of the Datadog API
// that the secrets engine uses: key management, key validation, the current
// user, the permission list, and a few scope-guarded reads that prove an
// application key's scopes are enforced.
//
// Its answers (paths, status codes, JSON:API bodies and field sets) follow
// real traffic recorded by datadog-api-client-go and the OpenAPI spec shipped
// with it. Permissions are enforced from the spec's x-permission of each
// operation (package permissions), so the emulator refuses what Datadog would
// refuse to a scoped application key.
package emulator

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/permissions"
)

// Options configures an Emulator. The zero value is usable.
type Options struct {
	APIKey    string           // seeded API key (32 lowercase hex); generated when empty
	AppKey    string           // seeded application key (40 chars), unscoped, owned by the seeded user; generated when empty
	UserEmail string           // seeded user's email; default "admin@example.com"
	UserName  string           // default "Emulated Admin"
	Now       func() time.Time // clock; default time.Now
}

// Key describes a live API key or application key, without its secret.
type Key struct {
	ID        string    `json:"id"`
	Kind      string    `json:"kind"` // "api_key" or "application_key"
	Name      string    `json:"name"`
	OwnerID   string    `json:"owner_id"` // for API keys, the user who created it
	Scopes    []string  `json:"scopes"`   // nil = unscoped
	CreatedAt time.Time `json:"created_at"`
}

// Key kinds, as reported in Key.Kind.
const (
	KindAPIKey         = "api_key"
	KindApplicationKey = "application_key"
)

// Emulator is an http.Handler that answers like the Datadog API for one
// organisation with one admin user. It is safe for concurrent use.
type Emulator struct {
	now    func() time.Time
	orgID  string
	user   user // the seeded admin; the only user of the org
	apiKey string
	appKey string
	routes []route

	mu       sync.Mutex
	keys     map[string]*storedKey // by ID, both kinds
	bySecret map[string]*storedKey
	seq      int // creation order, to order keys created within one clock tick
}

// New returns an emulator seeded with one admin user, an API key and an
// unscoped application key of that user.
func New(opts Options) *Emulator {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	e := &Emulator{
		now:      func() time.Time { return now().UTC().Truncate(time.Microsecond) },
		keys:     map[string]*storedKey{},
		bySecret: map[string]*storedKey{},
	}
	created := e.now()
	e.orgID = newUUID()
	e.user = user{
		id:        newUUID(),
		name:      orDefault(opts.UserName, "Emulated Admin"),
		email:     orDefault(opts.UserEmail, "admin@example.com"),
		createdAt: created,
		role:      role{id: newUUID(), name: "Datadog Admin Role", createdAt: created},
	}
	e.apiKey = orDefault(opts.APIKey, newAPIKeySecret())
	e.appKey = orDefault(opts.AppKey, newAppKeySecret())
	e.insert(&storedKey{Key: Key{Kind: KindAPIKey, Name: "Seeded API key", OwnerID: e.user.id}, secret: e.apiKey,
		category: "default", remoteConfigReadEnabled: true})
	e.insert(&storedKey{Key: Key{Kind: KindApplicationKey, Name: "Seeded application key", OwnerID: e.user.id}, secret: e.appKey})
	e.routes = e.buildRoutes()
	return e
}

// orDefault returns value, or fallback when value is empty.
func orDefault(value, fallback string) string {
	if value == "" {
		return fallback
	}
	return value
}

// APIKey returns the seeded API key.
func (e *Emulator) APIKey() string { return e.apiKey }

// AppKey returns the seeded application key.
func (e *Emulator) AppKey() string { return e.appKey }

// UserID returns the seeded user's id.
func (e *Emulator) UserID() string { return e.user.id }

// Keys returns every live API key and application key, oldest first.
func (e *Emulator) Keys() []Key {
	e.mu.Lock()
	defer e.mu.Unlock()
	stored := make([]*storedKey, 0, len(e.keys))
	for _, k := range e.keys {
		stored = append(stored, k)
	}
	slices.SortFunc(stored, func(a, b *storedKey) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return a.seq - b.seq
	})
	keys := make([]Key, len(stored))
	for i, k := range stored {
		keys[i] = k.Key
		keys[i].Scopes = slices.Clone(k.Scopes)
	}
	return keys
}

// DeleteKey deletes a key out of band, as an admin in the Datadog UI would.
// It reports false if no live key has that id.
func (e *Emulator) DeleteKey(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.remove(id)
}

// insert stores a new key, giving it an id and creation time. Callers hold
// e.mu, except New, which runs before e is shared.
func (e *Emulator) insert(k *storedKey) {
	k.ID = newUUID()
	k.CreatedAt = e.now()
	k.modifiedAt = k.CreatedAt
	k.modifiedBy = k.OwnerID
	e.seq++
	k.seq = e.seq
	e.keys[k.ID] = k
	e.bySecret[k.secret] = k
}

func (e *Emulator) remove(id string) bool {
	k, ok := e.keys[id]
	if !ok {
		return false
	}
	delete(e.keys, id)
	delete(e.bySecret, k.secret)
	return true
}

// request is what a route handler gets: the HTTP request, its path
// parameters, and the authenticated caller.
type request struct {
	*http.Request
	params map[string]string
	appKey *storedKey // nil on routes that take an API key only
}

// response is what a route handler returns. A nil body sends no body.
type response struct {
	status int
	body   any
}

func ok(body any) response { return response{http.StatusOK, body} }

// errorResponse is Datadog's usual error body, {"errors":["..."]}.
func errorResponse(status int, messages ...string) response {
	return response{status, map[string]any{"errors": messages}}
}

var (
	notFound  = errorResponse(http.StatusNotFound, "Not found")
	forbidden = errorResponse(http.StatusForbidden, "Forbidden")
)

// route binds a method and a spec path template to a handler. The template
// is also the key under which the spec states the permission the operation
// requires.
type route struct {
	method     string
	path       string
	apiKeyOnly bool // authenticated by the API key alone (GET /api/v1/validate)
	handle     func(*request) response
}

// match reports whether the route serves path, and extracts its parameters.
func (rt route) match(path string) (map[string]string, bool) {
	want := strings.Split(strings.Trim(rt.path, "/"), "/")
	got := strings.Split(strings.Trim(path, "/"), "/")
	if len(want) != len(got) {
		return nil, false
	}
	params := map[string]string{}
	for i, w := range want {
		if strings.HasPrefix(w, "{") && strings.HasSuffix(w, "}") && got[i] != "" {
			params[strings.Trim(w, "{}")] = got[i]
		} else if w != got[i] {
			return nil, false
		}
	}
	return params, true
}

func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, adminPrefix) {
		writeResponse(w, e.serveAdmin(r))
		return
	}
	// A known path with another method is answered like an unknown path:
	// Datadog answers 404 there too rather than 405.
	for _, rt := range e.routes {
		if rt.method != r.Method {
			continue
		}
		if params, found := rt.match(r.URL.Path); found {
			writeResponse(w, e.serve(rt, &request{Request: r, params: params}))
			return
		}
	}
	writeResponse(w, notFound)
}

// serve authenticates and authorises the request, then runs the handler,
// all under the lock so that each request sees and leaves a consistent state.
func (e *Emulator) serve(rt route, req *request) response {
	e.mu.Lock()
	defer e.mu.Unlock()

	// Datadog answers 403 Forbidden for a missing or wrong key; the spec's
	// 401 (documented only on some operations such as validate_keys) is for
	// malformed bearer tokens, which the emulator does not take.
	apiKey := e.lookup(req.Header.Get("DD-API-KEY"), KindAPIKey)
	if apiKey == nil {
		return forbidden
	}
	e.markUsed(apiKey)
	if !rt.apiKeyOnly {
		req.appKey = e.lookup(req.Header.Get("DD-APPLICATION-KEY"), KindApplicationKey)
		if req.appKey == nil {
			return forbidden
		}
		e.markUsed(req.appKey)
		if need, stated := permissions.Required(rt.method, rt.path); stated && !need.SatisfiedBy(e.grantedTo(req.appKey)) {
			return forbidden
		}
	}
	return rt.handle(req)
}

func (e *Emulator) lookup(secret, kind string) *storedKey {
	if k := e.bySecret[secret]; secret != "" && k != nil && k.Kind == kind {
		return k
	}
	return nil
}

func (e *Emulator) markUsed(k *storedKey) {
	now := e.now()
	k.lastUsedAt = &now
}

// grantedTo returns the permission test for requests made with appKey: its
// scopes, or, when unscoped, all of its owner's permissions. A scope never
// grants more than the owner has.
func (e *Emulator) grantedTo(appKey *storedKey) func(string) bool {
	return func(permission string) bool {
		if !e.userHas(appKey.OwnerID, permission) {
			return false
		}
		return appKey.Scopes == nil || slices.Contains(appKey.Scopes, permission)
	}
}

// userHas reports whether a user holds a permission. The only user is the
// seeded admin, who holds every permission.
func (e *Emulator) userHas(userID, _ string) bool {
	return userID == e.user.id
}

func writeResponse(w http.ResponseWriter, resp response) {
	if resp.body == nil {
		w.WriteHeader(resp.status)
		return
	}
	body, err := json.Marshal(resp.body)
	if err != nil { // only on a bug: every body is built from plain values
		resp.status, body = http.StatusInternalServerError, []byte(`{"errors":["Internal Server Error"]}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(resp.status)
	w.Write(body)
}
