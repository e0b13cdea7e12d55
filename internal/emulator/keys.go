package emulator

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/permissions"
)

// storedKey is an API key or application key with everything Datadog keeps
// about it.
type storedKey struct {
	Key
	secret     string
	seq        int
	modifiedAt time.Time
	modifiedBy string
	lastUsedAt *time.Time

	// API keys only.
	category                string
	remoteConfigReadEnabled bool
}

func (k *storedKey) last4() string { return k.secret[len(k.secret)-4:] }

// view is the operation a key is rendered for: Datadog returns different
// attributes from each.
type view int

const (
	viewCreated view = iota
	viewRead
	viewList
	viewUpdated
)

// keyKind holds what differs between API keys and application keys; the
// handlers below are shared.
type keyKind struct {
	kind          string // Key.Kind
	jsonType      string // JSON:API data.type
	notFound      string // error message for an unknown id
	newSecret     func() string
	sorts         []string // accepted ?sort fields (each also with a "-" prefix)
	perOwnerLimit int      // most keys one user may own; 0 for no limit
	nameOnUpdate  bool     // whether an update must carry a name
	meta          func(total int) map[string]any
	attributes    func(k *storedKey, v view, now time.Time) map[string]any
	relationships func(k *storedKey) map[string]any
	// includable maps each ?include value to the user it names.
	includable map[string]func(k *storedKey) string
	// apply validates and then sets the kind's own attributes. It returns
	// the message of a 400 answer when they are invalid, leaving k as it was.
	apply func(k *storedKey, attrs keyAttributes, creating bool) (problem string)
}

const (
	maxAppKeysPerUser = 1000
	maxAPIKeys        = 200 // reported in list meta as Datadog does; not enforced
	maxPageSize       = 100
	defaultPageSize   = 10
)

var apiKeys = &keyKind{
	kind:         KindAPIKey,
	jsonType:     "api_keys",
	notFound:     "API key not found",
	newSecret:    newAPIKeySecret,
	sorts:        []string{"created_at", "last4", "modified_at", "name"},
	nameOnUpdate: true, // APIKeyUpdateAttributes requires name
	meta: func(total int) map[string]any {
		return map[string]any{"max_allowed": maxAPIKeys, "page": map[string]any{"total_filtered_count": total}}
	},
	attributes: func(k *storedKey, v view, now time.Time) map[string]any {
		a := map[string]any{
			"name":                       k.Name,
			"created_at":                 formatTime(k.CreatedAt),
			"modified_at":                formatTime(k.modifiedAt),
			"last4":                      k.last4(),
			"category":                   k.category,
			"remote_config_read_enabled": k.remoteConfigReadEnabled,
		}
		// Unlike application keys, API key values stay readable to holders
		// of api_keys_read (recorded on GET and PATCH); only lists omit them.
		if v != viewList {
			a["key"] = k.secret
		}
		if v == viewRead || v == viewList {
			a["date_last_used"] = formatOptionalTime(k.lastUsedAt)
			a["used_in_last_24_hours"] = k.lastUsedAt != nil && now.Sub(*k.lastUsedAt) < 24*time.Hour
			a["last_used_date"] = map[string]any{
				"timestamp":   formatOptionalTime(k.lastUsedAt),
				"description": "Timestamp of when this key was last used in the past ninety (90) days, null if no recent usage",
			}
		}
		return a
	},
	relationships: func(k *storedKey) map[string]any {
		return map[string]any{
			"created_by":       relationship("users", k.OwnerID),
			"modified_by":      relationship("users", k.modifiedBy),
			"leak_information": map[string]any{"data": nil},
		}
	},
	includable: map[string]func(k *storedKey) string{
		"created_by":  func(k *storedKey) string { return k.OwnerID },
		"modified_by": func(k *storedKey) string { return k.modifiedBy },
	},
	apply: func(k *storedKey, attrs keyAttributes, creating bool) string {
		if creating {
			k.category, k.remoteConfigReadEnabled = "default", true
		}
		if attrs.Category.set {
			k.category = attrs.Category.value
		}
		if attrs.RemoteConfigReadEnabled.set {
			k.remoteConfigReadEnabled = attrs.RemoteConfigReadEnabled.value
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
			// default for orgs since 2025).
			a["key"] = k.secret
		case viewRead, viewList:
			a["last_used_at"] = formatOptionalTime(k.lastUsedAt)
		}
		return a
	},
	relationships: func(k *storedKey) map[string]any {
		return map[string]any{
			"owned_by":         relationship("users", k.OwnerID),
			"leak_information": map[string]any{"data": nil},
		}
	},
	includable: map[string]func(k *storedKey) string{
		"owned_by": func(k *storedKey) string { return k.OwnerID },
	},
	apply: func(k *storedKey, attrs keyAttributes, _ bool) string {
		if !attrs.Scopes.set {
			return ""
		}
		for _, s := range attrs.Scopes.value {
			if !permissions.IsKnown(s) {
				return "Invalid scopes"
			}
		}
		// Stored as given; null and [] both mean unscoped.
		k.Scopes = nil
		if len(attrs.Scopes.value) > 0 {
			k.Scopes = attrs.Scopes.value
		}
		return ""
	},
}

// collection is a key collection as one family of paths exposes it.
type collection struct {
	kind       *keyKind
	path       string // spec path template of the collection
	idParam    string // name of the id parameter in the item path
	callerOnly bool   // current_user paths: only the caller's own keys exist
	creatable  bool
	// includeOwnerOnRead: GET of one item includes its owner even unasked,
	// as recorded for the current_user path.
	includeOwnerOnRead bool
}

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
	return routes
}

func (e *Emulator) visible(c collection, r *request, k *storedKey) bool {
	return k.Kind == c.kind.kind && (!c.callerOnly || k.OwnerID == r.appKey.OwnerID)
}

func (e *Emulator) find(c collection, r *request) (*storedKey, bool) {
	k, found := e.keys[r.params[c.idParam]]
	if !found || !e.visible(c, r, k) {
		return nil, false
	}
	return k, true
}

func (e *Emulator) object(c collection, k *storedKey, v view) map[string]any {
	return map[string]any{
		"type":          c.kind.jsonType,
		"id":            k.ID,
		"attributes":    c.kind.attributes(k, v, e.now()),
		"relationships": c.kind.relationships(k),
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
	for _, name := range names {
		if userOf := c.kind.includable[strings.TrimSpace(name)]; userOf != nil {
			for _, k := range keys {
				userIDs = append(userIDs, userOf(k))
			}
		}
	}
	if len(userIDs) == 0 {
		return nil, false
	}
	return e.includedUsers(userIDs...), true
}

func (e *Emulator) listKeys(c collection, r *request) response {
	q := r.URL.Query()
	size, err := queryInt(q.Get("page[size]"), defaultPageSize)
	if err != nil || size < 1 || size > maxPageSize {
		return errorResponse(http.StatusBadRequest, fmt.Sprintf("page[size] must be an integer between 1 and %d", maxPageSize))
	}
	number, err := queryInt(q.Get("page[number]"), 0)
	if err != nil || number < 0 {
		return errorResponse(http.StatusBadRequest, "page[number] must be a non-negative integer")
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
	var matched []*storedKey
	for _, k := range e.keys {
		if e.visible(c, r, k) && strings.Contains(strings.ToLower(k.Name), filter) {
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
			c = a.seq - b.seq // stable pages when the field ties
		}
		return c
	})

	page := matched[min(number*size, len(matched)):min((number+1)*size, len(matched))]
	data := make([]any, len(page))
	for i, k := range page {
		data[i] = e.object(c, k, viewList)
	}
	body := map[string]any{"data": data, "meta": c.kind.meta(len(matched))}
	if inc, has := e.included(c, r, page, ""); has {
		body["included"] = inc
	}
	return ok(body)
}

func queryInt(s string, fallback int) (int, error) {
	if s == "" {
		return fallback, nil
	}
	return strconv.Atoi(s)
}

func compareBy(field string) func(a, b *storedKey) int {
	switch field {
	case "created_at":
		return func(a, b *storedKey) int { return a.CreatedAt.Compare(b.CreatedAt) }
	case "modified_at":
		return func(a, b *storedKey) int { return a.modifiedAt.Compare(b.modifiedAt) }
	case "last4":
		return func(a, b *storedKey) int { return strings.Compare(a.last4(), b.last4()) }
	default:
		return func(a, b *storedKey) int { return strings.Compare(a.Name, b.Name) }
	}
}

func (e *Emulator) getKey(c collection, r *request) response {
	k, found := e.find(c, r)
	if !found {
		return errorResponse(http.StatusNotFound, c.kind.notFound)
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
	data, errResp := decodeDocument(r, c.kind.jsonType)
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
		Key:    Key{Kind: c.kind.kind, Name: data.Attributes.Name.value, OwnerID: r.appKey.OwnerID},
		secret: c.kind.newSecret(),
	}
	if problem := c.kind.apply(k, data.Attributes, true); problem != "" {
		return errorResponse(http.StatusBadRequest, problem)
	}
	if limit := c.kind.perOwnerLimit; limit > 0 && e.countOwnedBy(k.Kind, k.OwnerID) >= limit {
		return errorResponse(http.StatusBadRequest, fmt.Sprintf("Cannot create more than %d application keys per user; delete unused keys first", limit))
	}
	e.insert(k)
	return response{http.StatusCreated, map[string]any{"data": e.object(c, k, viewCreated)}}
}

func (e *Emulator) countOwnedBy(kind, ownerID string) int {
	n := 0
	for _, k := range e.keys {
		if k.Kind == kind && k.OwnerID == ownerID {
			n++
		}
	}
	return n
}

func (e *Emulator) updateKey(c collection, r *request) response {
	k, found := e.find(c, r)
	if !found {
		return errorResponse(http.StatusNotFound, c.kind.notFound)
	}
	data, errResp := decodeDocument(r, c.kind.jsonType)
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
	if problem := c.kind.apply(k, data.Attributes, false); problem != "" {
		return errorResponse(http.StatusBadRequest, problem)
	}
	if name.set {
		k.Name = name.value
	}
	k.modifiedAt = e.now()
	k.modifiedBy = r.appKey.OwnerID
	return ok(map[string]any{"data": e.object(c, k, viewUpdated)})
}

func (e *Emulator) deleteKey(c collection, r *request) response {
	k, found := e.find(c, r)
	if !found {
		return errorResponse(http.StatusNotFound, c.kind.notFound)
	}
	e.remove(k.ID)
	return response{status: http.StatusNoContent}
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

// keyAttributes are the writable attributes of both kinds of key; each kind
// reads the ones it has.
type keyAttributes struct {
	Name                    optional[string]   `json:"name"`
	Scopes                  optional[[]string] `json:"scopes"`
	Category                optional[string]   `json:"category"`
	RemoteConfigReadEnabled optional[bool]     `json:"remote_config_read_enabled"`
}

type resourceData struct {
	Type       string        `json:"type"`
	ID         string        `json:"id"`
	Attributes keyAttributes `json:"attributes"`
}

// decodeDocument reads a JSON:API request body whose data must have the
// given type.
func decodeDocument(r *request, jsonType string) (*resourceData, *response) {
	var doc struct {
		Data *resourceData `json:"data"`
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
