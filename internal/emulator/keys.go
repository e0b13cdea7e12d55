package emulator

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/permissions"
)

// storedKey is an API key, application key or access token with everything
// Datadog keeps about it. Its fields are exported for the state file.
type storedKey struct {
	Key
	Secret     string     `json:"secret"`
	Seq        int        `json:"seq"`
	ModifiedAt time.Time  `json:"modified_at"`
	ModifiedBy string     `json:"modified_by"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"` // access tokens only

	// API keys only.
	Category                string `json:"category,omitempty"`
	RemoteConfigReadEnabled bool   `json:"remote_config_read_enabled,omitempty"`
}

func (k *storedKey) last4() string { return k.Secret[len(k.Secret)-4:] }

// view is the operation an object is rendered for: Datadog returns
// different attributes from each.
type view int

const (
	viewCreated view = iota
	viewRead
	viewList
	viewUpdated
	viewIncluded // a related object in "included"
)

// keyKind holds what differs between API keys, application keys and the
// two kinds of access token; the handlers below are shared.
type keyKind struct {
	kind          string // Key.Kind
	jsonType      string // JSON:API data.type
	notFound      string // error message for an unknown id
	newSecret     func() string
	sorts         []string // accepted ?sort fields (each also with a "-" prefix)
	perOwnerLimit int      // most keys one owner may have; 0 for no limit
	nameOnUpdate  bool     // whether an update must carry a name
	// revocable kinds (access tokens) are revoked rather than deleted:
	// Datadog keeps them, and revoking one again succeeds. They
	// authenticate alone, as bearer tokens.
	revocable     bool
	meta          func(total int) map[string]any
	attributes    func(k *storedKey, v view, now time.Time) map[string]any
	relationships func(k *storedKey) map[string]any
	// includable maps each ?include value to the user it names.
	includable map[string]func(k *storedKey) string
	// apply validates and then sets the kind's own attributes. It returns
	// the message of a 400 answer when they are invalid, leaving k as it was.
	apply func(k *storedKey, attrs keyAttributes, creating bool, now time.Time) (problem string)
}

const (
	maxAppKeysPerUser = 1000
	maxPageSize       = 100
	defaultPageSize   = 10
)

// kinds finds a key's keyKind by Key.Kind.
var kinds = map[string]*keyKind{
	KindAPIKey:              apiKeys,
	KindApplicationKey:      applicationKeys,
	KindPersonalAccessToken: personalAccessTokens,
	KindServiceAccessToken:  serviceAccessTokens,
}

var apiKeys = &keyKind{
	kind:         KindAPIKey,
	jsonType:     "api_keys",
	notFound:     "API key not found",
	newSecret:    newAPIKeySecret,
	sorts:        []string{"created_at", "last4", "modified_at", "name"},
	nameOnUpdate: true, // APIKeyUpdateAttributes requires name
	meta: func(total int) map[string]any {
		// listMeta puts in the organisation's own cap.
		return map[string]any{"max_allowed": defaultMaxAPIKeys, "page": map[string]any{"total_filtered_count": total}}
	},
	attributes: func(k *storedKey, v view, now time.Time) map[string]any {
		a := map[string]any{
			"name":                       k.Name,
			"created_at":                 formatTime(k.CreatedAt),
			"modified_at":                formatTime(k.ModifiedAt),
			"last4":                      k.last4(),
			"category":                   k.Category,
			"remote_config_read_enabled": k.RemoteConfigReadEnabled,
		}
		// Unlike application keys, API key values stay readable to holders
		// of api_keys_read (recorded on GET and PATCH); only lists omit them.
		if v != viewList {
			a["key"] = k.Secret
		}
		if v == viewRead || v == viewList {
			a["date_last_used"] = formatOptionalTime(k.LastUsedAt)
			a["used_in_last_24_hours"] = k.LastUsedAt != nil && now.Sub(*k.LastUsedAt) < 24*time.Hour
			a["last_used_date"] = map[string]any{
				"timestamp":   formatOptionalTime(k.LastUsedAt),
				"description": "Timestamp of when this key was last used in the past ninety (90) days, null if no recent usage",
			}
		}
		return a
	},
	relationships: func(k *storedKey) map[string]any {
		return map[string]any{
			"created_by":       relationship("users", k.OwnerID),
			"modified_by":      relationship("users", k.ModifiedBy),
			"leak_information": leakRelationship(k),
		}
	},
	includable: map[string]func(k *storedKey) string{
		"created_by":  func(k *storedKey) string { return k.OwnerID },
		"modified_by": func(k *storedKey) string { return k.ModifiedBy },
	},
	apply: func(k *storedKey, attrs keyAttributes, creating bool, _ time.Time) string {
		if creating {
			k.Category, k.RemoteConfigReadEnabled = "default", true
		}
		if attrs.Category.set {
			k.Category = attrs.Category.value
		}
		if attrs.RemoteConfigReadEnabled.set {
			k.RemoteConfigReadEnabled = attrs.RemoteConfigReadEnabled.value
		}
		return ""
	},
}

var applicationKeys = &keyKind{
	kind:          KindApplicationKey,
	jsonType:      "application_keys",
	notFound:      "Application key not found",
	newSecret:     newAppKeySecret,
	sorts:         []string{"created_at", "last4", "name"},
	perOwnerLimit: maxAppKeysPerUser,
	meta: func(total int) map[string]any {
		return map[string]any{"max_allowed_per_user": maxAppKeysPerUser, "page": map[string]any{"total_filtered_count": total}}
	},
	attributes: func(k *storedKey, v view, _ time.Time) map[string]any {
		a := map[string]any{
			"name":       k.Name,
			"created_at": formatTime(k.CreatedAt),
			"last4":      k.last4(),
			"scopes":     k.Scopes, // nil renders as null: unscoped
		}
		switch v {
		case viewCreated:
			// The secret is shown once, on create (One-Time-Read mode, the
			// default for orgs since 2025; see readableSecret for the others).
			a["key"] = k.Secret
		case viewRead, viewList:
			a["last_used_at"] = formatOptionalTime(k.LastUsedAt)
		}
		return a
	},
	relationships: func(k *storedKey) map[string]any {
		// owned_by is a "users" relationship for service accounts too (recorded).
		return map[string]any{
			"owned_by":         relationship("users", k.OwnerID),
			"leak_information": leakRelationship(k),
		}
	},
	includable: map[string]func(k *storedKey) string{
		"owned_by": func(k *storedKey) string { return k.OwnerID },
	},
	apply: func(k *storedKey, attrs keyAttributes, _ bool, _ time.Time) string {
		if !attrs.Scopes.set {
			return ""
		}
		if !allKnown(attrs.Scopes.value) {
			return "Invalid scopes"
		}
		// Stored as given; null and [] both mean unscoped.
		k.Scopes = nil
		if len(attrs.Scopes.value) > 0 {
			k.Scopes = attrs.Scopes.value
		}
		return ""
	},
}

// allKnown reports whether every scope is a Datadog permission name.
func allKnown(scopes []string) bool {
	return !slices.ContainsFunc(scopes, func(s string) bool { return !permissions.IsKnown(s) })
}

// collection is a key collection as one family of paths exposes it.
type collection struct {
	kind    *keyKind
	path    string // spec path template of the collection
	idParam string // name of the id parameter in the item path
	group   string // rate-limit group
	owners  ownerScope
	// alsoListed are further kinds the collection's list shows: Datadog's
	// "all access tokens of the organisation" holds service access tokens too.
	alsoListed []*keyKind
	creatable  bool
	// includeOwnerOnRead: GET of one item includes its owner even unasked,
	// as recorded for the current_user path.
	includeOwnerOnRead bool
	// updateOmitsOwner: the PATCH answer has no owned_by (recorded for the
	// service-account path).
	updateOmitsOwner bool
}

// ownerScope says whose keys a collection holds, and who owns the keys it
// creates.
type ownerScope int

const (
	orgWide            ownerScope = iota // everyone's; creates for the caller
	callerOwned                          // the caller's own (current_user paths)
	serviceAccountPath                   // the service account in {service_account_id}
)

func (e *Emulator) keyRoutes(c collection) []route {
	item := c.path + "/{" + c.idParam + "}"
	routes := []route{
		{method: http.MethodGet, path: c.path, handle: func(r *request) response { return e.listKeys(c, r) }},
		{method: http.MethodGet, path: item, handle: func(r *request) response { return e.getKey(c, r) }},
		{method: http.MethodPatch, path: item, handle: func(r *request) response { return e.updateKey(c, r) }},
		{method: http.MethodDelete, path: item, handle: func(r *request) response { return e.deleteKey(c, r) }},
	}
	if c.creatable {
		routes = append(routes, route{method: http.MethodPost, path: c.path, handle: func(r *request) response { return e.createKey(c, r) }})
	}
	for i := range routes {
		routes[i].group = c.group
	}
	return routes
}

// owner returns whose keys a request addresses: the caller's, or the
// service account's named in the path.
func (e *Emulator) owner(c collection, r *request) (string, *response) {
	if c.owners != serviceAccountPath {
		return r.callerID(), nil
	}
	id := r.params["service_account_id"]
	if u := e.org.Users[id]; u == nil || !u.ServiceAccount {
		resp := errorResponse(http.StatusNotFound, "Service account not found")
		return "", &resp
	}
	return id, nil
}

// holds reports whether k, of any state, belongs to the collection as seen
// for owner.
func (c collection) holds(k *storedKey, owner string, listing bool) bool {
	kindOK := k.Kind == c.kind.kind || listing && slices.ContainsFunc(c.alsoListed, func(kk *keyKind) bool { return kk.kind == k.Kind })
	return kindOK && (c.owners == orgWide || k.OwnerID == owner)
}

// find returns the live key the item path names, or the 404 answer.
func (e *Emulator) find(c collection, r *request) (*storedKey, *response) {
	owner, errResp := e.owner(c, r)
	if errResp != nil {
		return nil, errResp
	}
	k := e.org.Keys[r.params[c.idParam]]
	if k == nil || k.RevokedAt != nil || !c.holds(k, owner, false) {
		resp := errorResponse(http.StatusNotFound, c.kind.notFound)
		return nil, &resp
	}
	return k, nil
}

func (e *Emulator) object(c collection, k *storedKey, v view) map[string]any {
	kind := kinds[k.Kind]
	rel := kind.relationships(k)
	if v == viewUpdated && c.updateOmitsOwner {
		delete(rel, "owned_by")
	}
	attrs := kind.attributes(k, v, e.now())
	if e.readableSecret(c, k, v) {
		attrs["key"] = k.Secret
	}
	return map[string]any{
		"type":          kind.jsonType,
		"id":            k.ID,
		"attributes":    attrs,
		"relationships": rel,
	}
}

// included answers ?include=a,b with the users the named relationships of
// the keys point to; always is a relationship included even unasked.
func (e *Emulator) included(c collection, r *request, keys []*storedKey, always string) ([]any, bool) {
	var names []string
	if always != "" {
		names = append(names, always)
	}
	if q := r.URL.Query().Get("include"); q != "" {
		names = append(names, strings.Split(q, ",")...)
	}
	var userIDs []string
	leaks := false
	for _, name := range names {
		name = strings.TrimSpace(name)
		if name == "leak_information" {
			leaks = true
			continue
		}
		if userOf := c.kind.includable[name]; userOf != nil {
			for _, k := range keys {
				userIDs = append(userIDs, userOf(k))
			}
		}
	}
	if len(userIDs) == 0 && !leaks {
		return nil, false
	}
	included := e.includedUsers(userIDs...)
	if leaks {
		included = append(included, includedLeaks(keys)...)
	}
	return included, true
}

func (e *Emulator) listKeys(c collection, r *request) response {
	owner, errResp := e.owner(c, r)
	if errResp != nil {
		return *errResp
	}
	q := r.URL.Query()
	size, number, errResp := pageParams(q, maxPageSize)
	if errResp != nil {
		return *errResp
	}
	sortBy := q.Get("sort")
	if sortBy == "" {
		sortBy = "name"
	}
	field, descending := strings.CutPrefix(sortBy, "-")
	if !slices.Contains(c.kind.sorts, field) {
		return errorResponse(http.StatusBadRequest, fmt.Sprintf("Invalid sort %q: expected one of %s, optionally prefixed with -", sortBy, strings.Join(c.kind.sorts, ", ")))
	}

	filter := strings.ToLower(q.Get("filter"))
	ownedBy := splitList(q["filter[owned_by]"])
	leakedOnly := q.Get("filter[leaked]") == "true" // false has no effect, as the spec says
	var matched []*storedKey
	for _, k := range e.org.Keys {
		if k.RevokedAt == nil && c.holds(k, owner, true) && strings.Contains(strings.ToLower(k.Name), filter) &&
			(len(ownedBy) == 0 || slices.Contains(ownedBy, k.OwnerID)) && (!leakedOnly || k.Leak != nil) {
			matched = append(matched, k)
		}
	}
	compare := compareBy(field)
	slices.SortFunc(matched, func(a, b *storedKey) int {
		c := compare(a, b)
		if descending {
			c = -c
		}
		if c == 0 {
			c = a.Seq - b.Seq // stable pages when the field ties
		}
		return c
	})

	page := pageOf(matched, size, number)
	data := make([]any, len(page))
	for i, k := range page {
		data[i] = e.object(c, k, viewList)
	}
	body := map[string]any{"data": data, "meta": e.listMeta(c.kind, len(matched))}
	if inc, has := e.included(c, r, page, ""); has {
		body["included"] = inc
	}
	return ok(body)
}

// pageParams reads Datadog's paging parameters: page[size] (1 to max,
// default 10) and page[number] (from 0).
func pageParams(q url.Values, max int) (size, number int, errResp *response) {
	size, err := queryInt(q.Get("page[size]"), defaultPageSize)
	if err != nil || size < 1 || size > max {
		resp := errorResponse(http.StatusBadRequest, fmt.Sprintf("page[size] must be an integer between 1 and %d", max))
		return 0, 0, &resp
	}
	number, err = queryInt(q.Get("page[number]"), 0)
	if err != nil || number < 0 {
		resp := errorResponse(http.StatusBadRequest, "page[number] must be a non-negative integer")
		return 0, 0, &resp
	}
	return size, number, nil
}

func pageOf[T any](items []T, size, number int) []T {
	return items[min(number*size, len(items)):min((number+1)*size, len(items))]
}

func queryInt(s string, fallback int) (int, error) {
	if s == "" {
		return fallback, nil
	}
	return strconv.Atoi(s)
}

// splitList reads a query list given either as repeated parameters or
// comma-separated.
func splitList(values []string) []string {
	var out []string
	for _, v := range values {
		for _, item := range strings.Split(v, ",") {
			if item = strings.TrimSpace(item); item != "" {
				out = append(out, item)
			}
		}
	}
	return out
}

func compareBy(field string) func(a, b *storedKey) int {
	optionalTime := func(t *time.Time) time.Time {
		if t == nil {
			return time.Time{}
		}
		return *t
	}
	switch field {
	case "created_at":
		return func(a, b *storedKey) int { return a.CreatedAt.Compare(b.CreatedAt) }
	case "modified_at":
		return func(a, b *storedKey) int { return a.ModifiedAt.Compare(b.ModifiedAt) }
	case "expires_at":
		return func(a, b *storedKey) int { return optionalTime(a.ExpiresAt).Compare(optionalTime(b.ExpiresAt)) }
	case "last_used_at":
		return func(a, b *storedKey) int { return optionalTime(a.LastUsedAt).Compare(optionalTime(b.LastUsedAt)) }
	case "last4":
		return func(a, b *storedKey) int { return strings.Compare(a.last4(), b.last4()) }
	case "leaked":
		return leakedFirst
	default:
		return func(a, b *storedKey) int { return strings.Compare(a.Name, b.Name) }
	}
}

func (e *Emulator) getKey(c collection, r *request) response {
	k, errResp := e.find(c, r)
	if errResp != nil {
		return *errResp
	}
	body := map[string]any{"data": e.object(c, k, viewRead)}
	always := ""
	if c.includeOwnerOnRead {
		always = "owned_by"
	}
	if inc, has := e.included(c, r, []*storedKey{k}, always); has {
		body["included"] = inc
	}
	return ok(body)
}

func (e *Emulator) createKey(c collection, r *request) response {
	owner, errResp := e.owner(c, r)
	if errResp != nil {
		return *errResp
	}
	data, errResp := decodeDocument[keyAttributes](r, c.kind.jsonType)
	if errResp != nil {
		return *errResp
	}
	if data.ID != "" {
		return errorResponse(http.StatusBadRequest, "data.id must not be set when creating a key")
	}
	if !data.Attributes.Name.set || data.Attributes.Name.value == "" {
		return errorResponse(http.StatusBadRequest, "data.attributes.name is required")
	}
	k := &storedKey{
		Key:    Key{Kind: c.kind.kind, Name: data.Attributes.Name.value, OwnerID: owner},
		Secret: c.kind.newSecret(),
	}
	if problem := c.kind.apply(k, data.Attributes, true, e.now()); problem != "" {
		return errorResponse(http.StatusBadRequest, problem)
	}
	// A valid request that an access token may not make: 403, after the
	// body's own 400s.
	if refused := e.contained(r, k, true, true); refused != nil {
		return *refused
	}
	if limit := e.perOwnerLimit(c.kind); limit > 0 && e.countOwnedBy(k.Kind, k.OwnerID) >= limit {
		return errorResponse(http.StatusBadRequest, fmt.Sprintf("Cannot create more than %d application keys per user; delete unused keys first", limit))
	}
	if refused := e.apiKeyCapReached(c.kind); refused != nil {
		return *refused
	}
	e.insert(k)
	return response{status: http.StatusCreated, body: map[string]any{"data": e.object(c, k, viewCreated)}}
}

func (e *Emulator) countOwnedBy(kind, ownerID string) int {
	n := 0
	for _, k := range e.org.Keys {
		if k.Kind == kind && k.OwnerID == ownerID && k.RevokedAt == nil {
			n++
		}
	}
	return n
}

func (e *Emulator) updateKey(c collection, r *request) response {
	k, errResp := e.find(c, r)
	if errResp != nil {
		return *errResp
	}
	data, errResp := decodeDocument[keyAttributes](r, c.kind.jsonType)
	if errResp != nil {
		return *errResp
	}
	if data.ID != k.ID {
		return errorResponse(http.StatusBadRequest, "data.id must match the key id in the path")
	}
	name := data.Attributes.Name
	if (name.set || c.kind.nameOnUpdate) && name.value == "" {
		return errorResponse(http.StatusBadRequest, "data.attributes.name is required")
	}
	// Applied to a copy first: an access token's update may yet be refused.
	updated := *k
	if problem := c.kind.apply(&updated, data.Attributes, false, e.now()); problem != "" {
		return errorResponse(http.StatusBadRequest, problem)
	}
	if refused := e.contained(r, &updated, false, data.Attributes.Scopes.set); refused != nil {
		return *refused
	}
	*k = updated
	if name.set {
		k.Name = name.value
	}
	k.ModifiedAt = e.now()
	k.ModifiedBy = r.callerID()
	return ok(map[string]any{"data": e.object(c, k, viewUpdated)})
}

func (e *Emulator) deleteKey(c collection, r *request) response {
	owner, errResp := e.owner(c, r)
	if errResp != nil {
		return *errResp
	}
	k := e.org.Keys[r.params[c.idParam]]
	switch {
	case k == nil || !c.holds(k, owner, false):
		return errorResponse(http.StatusNotFound, c.kind.notFound)
	case k.RevokedAt == nil:
		e.remove(k)
	}
	return noContent // also for a token revoked before
}

// optional records whether a JSON member was present at all, to tell an
// absent member from an explicit null.
type optional[T any] struct {
	set   bool
	value T
}

func (o *optional[T]) UnmarshalJSON(b []byte) error {
	o.set = true
	return json.Unmarshal(b, &o.value)
}

// keyAttributes are the writable attributes of every kind of key; each kind
// reads the ones it has.
type keyAttributes struct {
	Name                    optional[string]     `json:"name"`
	Scopes                  optional[[]string]   `json:"scopes"`
	Category                optional[string]     `json:"category"`
	RemoteConfigReadEnabled optional[bool]       `json:"remote_config_read_enabled"`
	ExpiresAt               optional[*time.Time] `json:"expires_at"`
}

// resourceData is the data member of a JSON:API request body.
type resourceData[A any] struct {
	Type          string `json:"type"`
	ID            string `json:"id"`
	Attributes    A      `json:"attributes"`
	Relationships struct {
		Roles       optional[toMany] `json:"roles"`
		Permissions optional[toMany] `json:"permissions"`
	} `json:"relationships"`
}

type toMany struct {
	Data []struct {
		ID   string `json:"id"`
		Type string `json:"type"`
	} `json:"data"`
}

// decodeDocument reads a JSON:API request body whose data must have the
// given type.
func decodeDocument[A any](r *request, jsonType string) (*resourceData[A], *response) {
	var doc struct {
		Data *resourceData[A] `json:"data"`
	}
	if err := json.NewDecoder(r.Body).Decode(&doc); err != nil {
		resp := errorResponse(http.StatusBadRequest, "Invalid JSON body: "+err.Error())
		return nil, &resp
	}
	if doc.Data == nil {
		resp := errorResponse(http.StatusBadRequest, "data is required")
		return nil, &resp
	}
	if doc.Data.Type != jsonType {
		resp := errorResponse(http.StatusBadRequest, fmt.Sprintf("data.type must be %q, not %q", jsonType, doc.Data.Type))
		return nil, &resp
	}
	return doc.Data, nil
}
