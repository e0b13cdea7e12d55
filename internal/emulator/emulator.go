// Package emulator is an in-memory emulation of the parts of the Datadog API
// that the secrets engine uses: API keys, application keys (the current
// user's and service accounts'), personal and service access tokens, users,
// service accounts and roles, key validation, the permission list, and a few
// scope-guarded reads that prove a credential's scopes are enforced.
//
// Its answers (paths, status codes, JSON:API bodies and field sets) follow
// real traffic recorded by datadog-api-client-go and the OpenAPI spec shipped
// with it. Permissions are enforced from the spec's x-permission of each
// operation (package permissions), so the emulator refuses what Datadog would
// refuse to a scoped credential.
//
// For tests it adds what Datadog cannot offer: a clock that can be moved,
// rate limits and faults on demand, and an optional state file that keeps
// the organisation across restarts. See docs/emulator.md.
package emulator

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/permissions"
)

// Options configures an Emulator. The zero value is usable.
type Options struct {
	APIKey    string           // seeded API key (32 lowercase hex); generated when empty
	AppKey    string           // seeded application key (40 chars), unscoped, owned by the seeded user; generated when empty
	UserEmail string           // seeded user's email; default "admin@example.com"
	UserName  string           // default "Emulated Admin"
	Now       func() time.Time // clock; default time.Now. Advance moves the emulator ahead of it.

	// RateLimits sets a request budget per endpoint group (see
	// RateLimitGroups). Groups without one are not limited, which is the
	// default for all of them.
	RateLimits map[string]RateLimit
	// FaultSeed seeds the draws of faults with a Probability, so that a run
	// can be repeated.
	FaultSeed uint64
	// StateFile, when set, keeps the organisation (users, roles, keys and
	// tokens with their secrets, the clock's advance) across restarts: it is
	// loaded on start if it exists, and rewritten after every change. A
	// loaded organisation keeps its own seeded keys: APIKey, AppKey,
	// UserEmail and UserName then do not apply.
	StateFile string
	// MaxAppKeysPerUser lowers the most application keys one owner may
	// hold (Datadog's limit, 1000, when 0), so that a test can reach it
	// with a few keys. List answers report it as max_allowed_per_user.
	MaxAppKeysPerUser int
	// OneTimeReadOff makes a new organisation one without One-Time Read
	// mode, as organisations created before August 2025 are unless they
	// turned it on: the current user's application keys then show their
	// secret on GET and PATCH too, not only on create. A loaded state file
	// keeps its own setting; SetOneTimeRead changes it.
	OneTimeReadOff bool
	// MaxAPIKeys is the most API keys the organisation may hold (Datadog's
	// default, 50, when 0; Datadog support raises it on request). List
	// answers report it as meta.max_allowed. Set, it applies to a loaded
	// state file's organisation too, which otherwise keeps its own;
	// SetMaxAPIKeys changes it.
	MaxAPIKeys int
	// PeopleAPIKeys is how many API keys people of a new organisation made
	// before the engine came, besides the seeded one: named like "Datadog
	// Agent – prod", created by the seeded user. 3 when 0; none when
	// negative. A loaded state file keeps its own keys.
	PeopleAPIKeys int
}

// Key describes a live API key, application key or access token, without
// its secret.
type Key struct {
	ID        string     `json:"id"`
	Kind      string     `json:"kind"` // one of the Kind constants
	Name      string     `json:"name"`
	OwnerID   string     `json:"owner_id"` // for API keys, the user who created it
	Scopes    []string   `json:"scopes"`   // nil = unscoped
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at"` // access tokens only; nil = never
	// LastUsedAt is when the key last authenticated a request; nil when
	// never.
	LastUsedAt *time.Time `json:"last_used_at"`
	// Leak is set once Datadog found the key leaked (see MarkLeaked).
	Leak *Leak `json:"leak,omitempty"`
}

// Key kinds, as reported in Key.Kind.
const (
	KindAPIKey              = "api_key"
	KindApplicationKey      = "application_key"
	KindPersonalAccessToken = "personal_access_token"
	KindServiceAccessToken  = "service_access_token"
)

// Emulator is an http.Handler that answers like the Datadog API for one
// organisation. It is safe for concurrent use.
type Emulator struct {
	base      func() time.Time // Options.Now
	advance   atomic.Int64     // how far the clock is ahead of base, in nanoseconds
	stateFile string
	routes    []route
	appKeyCap int // Options.MaxAppKeysPerUser, or Datadog's limit

	pendingCommits atomic.Int64 // delayed_commit calls answered but not yet applied

	mu       sync.Mutex // guards everything below
	org      *org
	bySecret map[string]*storedKey // live credentials only
	limits   map[string]*bucket    // by rate-limit group
	faults   []*Fault
	faultSeq int
	rng      *rand.Rand
}

// New returns an emulator seeded with one admin user, an API key and an
// unscoped application key of that user, and the API keys people made
// (Options.PeopleAPIKeys). With Options.StateFile it loads
// the organisation from that file, and panics if it cannot: use Open to
// handle the error.
func New(opts Options) *Emulator {
	e, err := Open(opts)
	if err != nil {
		panic(fmt.Sprintf("emulator: %v", err))
	}
	return e
}

// Open is New returning an error when the state file cannot be read or
// written, or opts is invalid.
func Open(opts Options) (*Emulator, error) {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	e := &Emulator{
		base:      now,
		stateFile: opts.StateFile,
		bySecret:  map[string]*storedKey{},
		limits:    map[string]*bucket{},
		rng:       rand.New(rand.NewPCG(opts.FaultSeed, opts.FaultSeed)),
	}
	e.routes = e.buildRoutes()
	if err := e.setAppKeyCap(opts.MaxAppKeysPerUser); err != nil {
		return nil, err
	}
	if opts.MaxAPIKeys != 0 {
		if err := checkAPIKeyCap(opts.MaxAPIKeys); err != nil {
			return nil, err
		}
	}
	for group, limit := range opts.RateLimits {
		if err := e.SetRateLimit(group, limit); err != nil {
			return nil, err
		}
	}
	loaded, err := e.load()
	if err != nil {
		return nil, err
	}
	switch {
	case !loaded:
		if err := e.seed(opts); err != nil {
			return nil, err
		}
	case opts.MaxAPIKeys != 0:
		e.org.MaxAPIKeys = opts.MaxAPIKeys // given, it replaces the file's cap
	default:
		return e, nil // the file stands as it is
	}
	if err := e.save(); err != nil {
		return nil, err
	}
	return e, nil
}

// seed creates the organisation: its roles, the admin user, its keys, and
// the API keys people made.
func (e *Emulator) seed(opts Options) error {
	maxAPIKeys := cmp.Or(opts.MaxAPIKeys, defaultMaxAPIKeys)
	people := peopleAPIKeys(opts)
	if 1+people > maxAPIKeys {
		return fmt.Errorf("the seeded API key and people's %d exceed the organisation's cap of %d API keys", people, maxAPIKeys)
	}
	created := e.now()
	e.org = &org{ID: newUUID(), Users: map[string]*user{}, Roles: map[string]*role{}, Keys: map[string]*storedKey{},
		OneTimeReadOff: opts.OneTimeReadOff, MaxAPIKeys: maxAPIKeys}
	roles := seededRoles() // the Admin role first
	for _, r := range roles {
		r.ID, r.CreatedAt, r.ModifiedAt = newUUID(), created, created
		e.org.Roles[r.ID] = r
	}
	name := orDefault(opts.UserName, "Emulated Admin")
	admin := &user{
		ID:         newUUID(),
		Name:       &name,
		Email:      strings.ToLower(orDefault(opts.UserEmail, "admin@example.com")),
		Verified:   true,
		RoleIDs:    []string{roles[0].ID},
		CreatedAt:  created,
		ModifiedAt: created,
	}
	e.org.Users[admin.ID] = admin
	e.org.AdminID = admin.ID
	e.org.APIKey = orDefault(opts.APIKey, newAPIKeySecret())
	e.org.AppKey = orDefault(opts.AppKey, newAppKeySecret())
	e.insert(&storedKey{Key: Key{Kind: KindAPIKey, Name: "Seeded API key", OwnerID: admin.ID}, Secret: e.org.APIKey,
		Category: "default", RemoteConfigReadEnabled: true})
	e.insert(&storedKey{Key: Key{Kind: KindApplicationKey, Name: "Seeded application key", OwnerID: admin.ID}, Secret: e.org.AppKey})
	// The Agent keys people made before the engine came.
	for i := range people {
		e.insert(&storedKey{Key: Key{Kind: KindAPIKey, Name: peopleAPIKeyName(i), OwnerID: admin.ID}, Secret: newAPIKeySecret(),
			Category: "default", RemoteConfigReadEnabled: true})
	}
	return nil
}

// orDefault returns value, or fallback when value is empty.
func orDefault(value, fallback string) string {
	if value == "" {
		return fallback
	}
	return value
}

// APIKey returns the seeded API key.
func (e *Emulator) APIKey() string { return e.org.APIKey }

// AppKey returns the seeded application key.
func (e *Emulator) AppKey() string { return e.org.AppKey }

// UserID returns the seeded user's id.
func (e *Emulator) UserID() string { return e.org.AdminID }

// Now returns the emulator's current time.
func (e *Emulator) Now() time.Time { return e.now() }

// Advance moves the emulator's clock forward (or back, for a negative d),
// so that tokens expire and rate-limit windows end without waiting.
func (e *Emulator) Advance(d time.Duration) {
	e.advance.Add(int64(d))
	e.mu.Lock()
	defer e.mu.Unlock()
	e.saveLogged()
}

func (e *Emulator) now() time.Time {
	return e.base().Add(time.Duration(e.advance.Load())).UTC().Truncate(time.Microsecond)
}

// Keys returns every live API key, application key and access token,
// oldest first. Keys of disabled users are listed: they still exist in
// Datadog, though they no longer authenticate.
func (e *Emulator) Keys() []Key {
	e.mu.Lock()
	defer e.mu.Unlock()
	var stored []*storedKey
	for _, k := range e.org.Keys {
		if k.RevokedAt == nil {
			stored = append(stored, k)
		}
	}
	slices.SortFunc(stored, func(a, b *storedKey) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return a.Seq - b.Seq
	})
	keys := make([]Key, len(stored))
	for i, k := range stored {
		keys[i] = k.Key
		keys[i].Scopes = slices.Clone(k.Scopes)
		if k.Leak != nil {
			leak := *k.Leak
			keys[i].Leak = &leak
		}
	}
	return keys
}

// DeleteKey deletes a key or revokes a token out of band, as an admin in the
// Datadog UI would. It reports false if no live key has that id.
func (e *Emulator) DeleteKey(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	k := e.org.Keys[id]
	if k == nil || k.RevokedAt != nil {
		return false
	}
	e.remove(k)
	e.saveLogged()
	return true
}

// insert stores a new key, giving it an id and creation time. Callers hold
// e.mu, except seed, which runs before e is shared.
func (e *Emulator) insert(k *storedKey) {
	k.ID = newUUID()
	k.CreatedAt = e.now()
	k.ModifiedAt = k.CreatedAt
	k.ModifiedBy = k.OwnerID
	e.org.Seq++
	k.Seq = e.org.Seq
	e.org.Keys[k.ID] = k
	e.bySecret[k.Secret] = k
	if k.Kind == KindAPIKey {
		e.noteAPIKeyPeak()
	}
}

// remove deletes a key, or revokes a token: Datadog keeps revoked tokens,
// which is why revoking one twice succeeds.
func (e *Emulator) remove(k *storedKey) {
	delete(e.bySecret, k.Secret)
	if kinds[k.Kind].revocable {
		now := e.now()
		k.RevokedAt = &now
		return
	}
	delete(e.org.Keys, k.ID)
}

// request is what a route handler gets: the HTTP request, its path
// parameters, and the authenticated caller.
type request struct {
	*http.Request
	params map[string]string
	cred   *storedKey // the application key or token; nil on routes that take an API key only
}

// callerID is the user (or service account) the request acts as.
func (r *request) callerID() string { return r.cred.OwnerID }

// response is what a route handler returns. A nil body sends no body.
type response struct {
	status int
	body   any
	header http.Header
}

func ok(body any) response { return response{status: http.StatusOK, body: body} }

// errorResponse is Datadog's usual error body, {"errors":["..."]}.
func errorResponse(status int, messages ...string) response {
	return response{status: status, body: map[string]any{"errors": messages}}
}

var (
	notFound     = errorResponse(http.StatusNotFound, "Not found")
	forbidden    = errorResponse(http.StatusForbidden, "Forbidden")
	unauthorized = errorResponse(http.StatusUnauthorized, "Unauthorized")
	noContent    = response{status: http.StatusNoContent}
)

// route binds a method and a spec path template to a handler. The template
// is also the key under which the spec states the operation's id and the
// permission it requires.
type route struct {
	method      string
	path        string
	operationID string
	group       string // rate-limit group, as in X-RateLimit-Name
	apiKeyOnly  bool   // authenticated by the API key alone (GET /api/v1/validate)
	handle      func(*request) response
}

// match reports whether the route serves path, and extracts its parameters.
func (rt *route) match(path string) (map[string]string, bool) {
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
	for i := range e.routes {
		rt := &e.routes[i]
		if rt.method != r.Method {
			continue
		}
		if params, found := rt.match(r.URL.Path); found {
			e.serveWithFaults(w, rt, &request{Request: r, params: params})
			return
		}
	}
	writeResponse(w, notFound)
}

// serveWithFaults serves the request, or fails it as an injected fault
// says.
func (e *Emulator) serveWithFaults(w http.ResponseWriter, rt *route, req *request) {
	f := e.drawFault(rt)
	if f.Latency > 0 {
		select {
		case <-time.After(f.Latency):
		case <-req.Context().Done():
			return
		}
	}
	switch f.Action {
	case FaultError:
		writeResponse(w, f.errorResponse())
		return
	case FaultRateLimit:
		writeResponse(w, e.injectedRateLimit(rt.group))
		return
	case FaultReset:
		dropConnection(w)
		return
	case FaultDelayedCommit:
		// The body is read now: once this handler returns it is gone.
		// A body that cannot be read never fully reached Datadog, so
		// there is nothing to commit.
		if later, err := detached(req); err == nil {
			e.commitLater(rt, later, f.Delay)
		}
		writeResponse(w, f.errorResponse())
		return
	}
	resp := e.serve(rt, req)
	switch f.Action {
	case FaultCommitThenError:
		resp = f.errorResponse()
	case FaultCommitThenReset:
		dropConnection(w)
		return
	}
	writeResponse(w, resp)
}

// serve rate-limits, authenticates and authorises the request, then runs
// the handler, all under the lock so that each request sees and leaves a
// consistent state.
func (e *Emulator) serve(rt *route, req *request) response {
	e.mu.Lock()
	defer e.mu.Unlock()
	if req.Method != http.MethodGet {
		defer e.saveLogged() // before the deferred Unlock: the snapshot is consistent
	}

	limitHeader, allowed := e.takeRate(rt.group)
	resp := rateLimited
	if allowed {
		resp = e.authorizeAndHandle(rt, req)
	}
	if limitHeader != nil {
		if resp.header == nil {
			resp.header = http.Header{}
		}
		for k, v := range limitHeader {
			resp.header[k] = v
		}
	}
	return resp
}

func (e *Emulator) authorizeAndHandle(rt *route, req *request) response {
	cred, failed := e.authenticate(rt, req.Request)
	if failed != nil {
		return *failed
	}
	req.cred = cred
	if cred != nil {
		if need, stated := permissions.Required(rt.method, rt.path); stated && !need.SatisfiedBy(e.grantedTo(cred)) {
			return forbidden
		}
	}
	return rt.handle(req)
}

// authenticate finds the credential a request acts with: an application
// key paired with a valid API key, or an access token, sent as
// "Authorization: Bearer" or, as Datadog also accepts, in
// DD-APPLICATION-KEY (the API key is then not evaluated).
//
// Datadog answers 403 for a missing or wrong API or application key. For a
// bearer token that is unknown, revoked or expired the emulator answers 401,
// the status the spec gives for a failed token (validate_keys: "401 or
// 403"); for such a token in DD-APPLICATION-KEY, 403, as for any wrong
// application key there (assumed: not recorded). A credential whose owner
// is disabled is known but refused: 403.
func (e *Emulator) authenticate(rt *route, r *http.Request) (*storedKey, *response) {
	appSecret := r.Header.Get("DD-APPLICATION-KEY")
	if !rt.apiKeyOnly {
		if token, isBearer := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); isBearer {
			return e.authenticateToken(strings.TrimSpace(token), &unauthorized)
		}
		if isTokenSecret(appSecret) {
			return e.authenticateToken(appSecret, &forbidden)
		}
	}
	apiKey := e.lookup(r.Header.Get("DD-API-KEY"), KindAPIKey)
	if apiKey == nil {
		return nil, &forbidden
	}
	e.markUsed(apiKey)
	if rt.apiKeyOnly {
		return nil, nil
	}
	appKey := e.lookup(appSecret, KindApplicationKey)
	if appKey == nil || !e.active(appKey.OwnerID) {
		return nil, &forbidden
	}
	e.markUsed(appKey)
	return appKey, nil
}

// authenticateToken finds a live access token, or answers failed.
func (e *Emulator) authenticateToken(secret string, failed *response) (*storedKey, *response) {
	k := e.bySecret[secret]
	if secret == "" || k == nil || !kinds[k.Kind].revocable {
		return nil, failed
	}
	if k.ExpiresAt != nil && !e.now().Before(*k.ExpiresAt) {
		return nil, failed
	}
	if !e.active(k.OwnerID) {
		return nil, &forbidden
	}
	e.markUsed(k)
	return k, nil
}

func (e *Emulator) lookup(secret, kind string) *storedKey {
	if k := e.bySecret[secret]; secret != "" && k != nil && k.Kind == kind {
		return k
	}
	return nil
}

func (e *Emulator) markUsed(k *storedKey) {
	now := e.now()
	k.LastUsedAt = &now
}

// grantedTo returns the permission test for requests made with a
// credential: its scopes, or, when unscoped, all of its owner's
// permissions. A scope never grants more than the owner has.
func (e *Emulator) grantedTo(cred *storedKey) func(string) bool {
	return func(permission string) bool {
		if !e.userHas(cred.OwnerID, permission) {
			return false
		}
		return cred.Scopes == nil || slices.Contains(cred.Scopes, permission)
	}
}

func writeResponse(w http.ResponseWriter, resp response) {
	for k, v := range resp.header {
		w.Header()[k] = v
	}
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

// StatusRecorder notes the status of an answer for a handler that wraps
// the emulator (a request log, a counter). Status stays 0 when the
// emulator dropped the connection instead of answering, as a fault may.
type StatusRecorder struct {
	http.ResponseWriter
	Status int
}

func (s *StatusRecorder) WriteHeader(status int) {
	s.Status = status
	s.ResponseWriter.WriteHeader(status)
}

// Unwrap lets the emulator take over the connection (to drop it, as a
// fault) through http.ResponseController.
func (s *StatusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
