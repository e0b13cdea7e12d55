package backend

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/DataDog/datadog-api-client-go/v2/api/datadog"
	"github.com/DataDog/datadog-api-client-go/v2/api/datadogV1"
	"github.com/DataDog/datadog-api-client-go/v2/api/datadogV2"
	"github.com/hashicorp/go-cleanhttp"
	"github.com/hashicorp/go-hclog"
)

// Object kinds the plugin creates in Datadog. A lease owns one or two
// objects (an application key and its API key, say), each deleted on revoke.
// Each credential_type of a role is the kind of its lease's main object.
const (
	kindApplicationKey               = "application_key"
	kindServiceAccountApplicationKey = "service_account_application_key"
	kindPersonalAccessToken          = "personal_access_token"
	kindServiceAccessToken           = "service_access_token"
	kindAPIKey                       = "api_key"
)

// datadogAPI is the small slice of the Datadog API the plugin needs. The
// backend talks only to this interface; datadogClient implements it with
// datadog-api-client-go.
//
// Object calls act on an object where it lives: the client reaches its own
// identity's application keys and tokens through the current-user
// endpoints, other users' through the organisation-wide ones, and service
// accounts' through the service account's. A not-found answer counts only
// when asked of such a place (errNotFound); where Datadog may merely hide
// the object from this identity, the call fails instead.
type datadogAPI interface {
	// CheckAPIKey validates the API key alone (GET /api/v1/validate).
	CheckAPIKey(ctx context.Context) error
	// CurrentUser validates both keys and returns who owns the application key.
	CurrentUser(ctx context.Context) (identity, error)
	// ServiceAccount looks a service account up by its user id.
	ServiceAccount(ctx context.Context, id string) (serviceAccount, error)
	// PermissionNames lists every permission (scope) name of the organisation.
	PermissionNames(ctx context.Context) ([]string, error)
	// RolePermissions returns the names of the permissions the roles grant.
	RolePermissions(ctx context.Context, roleIDs []string) (map[string]bool, error)

	// Create makes the object o describes (kind, name, owner, expiry).
	Create(ctx context.Context, o datadogObject, scopes []string) (createdObject, error)
	// Exists reports whether the object is still live in Datadog.
	Exists(ctx context.Context, o datadogObject) (bool, error)
	// State reads what Datadog says of a live object: leaked or not, last
	// use, creation; errNotFound when it is gone.
	State(ctx context.Context, o datadogObject) (objectState, error)
	// Delete removes the object; deleting a missing object returns errNotFound
	// (or nothing, for tokens, whose revocation Datadog accepts twice).
	Delete(ctx context.Context, o datadogObject) error
	// FindByName returns the IDs of the objects of o's kind and owner whose
	// name is exactly o.Name and that were created at or after createdAfter.
	FindByName(ctx context.Context, o datadogObject, createdAfter time.Time) ([]string, error)
	// List returns the objects of o's kind and owner whose name contains
	// o.Name, reading at most maxPages pages of 100.
	List(ctx context.Context, o datadogObject, maxPages int) ([]listedObject, error)
	// ApplicationKeyCount returns how many application keys a service
	// account holds, and Datadog's limit per owner (pool.go).
	ApplicationKeyCount(ctx context.Context, owner string) (total, limit int, err error)
	// APIKeyCount returns how many API keys the organisation holds, and its
	// cap (shared_api_key.go).
	APIKeyCount(ctx context.Context) (total, limit int, err error)

	// SendEvent posts an event to Datadog (POST /api/v1/events).
	SendEvent(ctx context.Context, e auditEventBody) error
}

type identity struct {
	ID      string
	Handle  string
	OrgID   string
	RoleIDs []string
}

type serviceAccount struct {
	ID               string
	IsServiceAccount bool
	Disabled         bool
}

type createdObject struct {
	ID        string
	Secret    string
	ExpiresAt *time.Time // tokens only
}

var errNotFound = errors.New("not found in Datadog")

// errRedirectRefused stops a redirect that would carry the engine's keys
// to another host or in clear text.
var errRedirectRefused = errors.New("redirect not followed: the engine sends its Datadog keys only to the configured host")

// errNotVisible is a not-found answer that proves nothing: Datadog shows
// other users' personal access tokens only to identities with
// org_app_keys_read/write.
var errNotVisible = errors.New("not visible to the configured identity: only an identity with org_app_keys_write can tell whether it still exists")

// apiError is a failed Datadog call with the HTTP status, when there was one,
// and Datadog's own error messages. It never carries request headers or keys.
type apiError struct {
	Op        string
	Status    int // 0 when no HTTP answer was received
	Messages  []string
	RateLimit *rateLimitInfo // on 429
	Err       error
}

func (e *apiError) Error() string {
	switch {
	case e.Status == 0:
		return fmt.Sprintf("Datadog %s: %v", e.Op, e.Err)
	case e.RateLimit != nil:
		return fmt.Sprintf("Datadog %s: HTTP 429: Datadog's rate limit %q (%d requests per %d s) is spent; it resets in %s",
			e.Op, e.RateLimit.Name, e.RateLimit.Limit, e.RateLimit.Period, e.RateLimit.ResetIn)
	case len(e.Messages) > 0:
		return fmt.Sprintf("Datadog %s: HTTP %d: %s", e.Op, e.Status, strings.Join(e.Messages, "; "))
	default:
		return fmt.Sprintf("Datadog %s: HTTP %d", e.Op, e.Status)
	}
}

func (e *apiError) Unwrap() error {
	if e.Status == http.StatusNotFound {
		return errNotFound
	}
	return e.Err
}

// ambiguous reports whether a failed create may still have created the object
// (the request may have reached Datadog), so that it must be looked up by name.
func ambiguous(err error) bool {
	var ae *apiError
	if !errors.As(err, &ae) {
		return true
	}
	return ae.Status == 0 || ae.Status >= 500
}

func httpStatus(err error) int {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

func wrapError(op string, resp *http.Response, err error) error {
	if err == nil {
		return nil
	}
	ae := &apiError{Op: op, Err: err, RateLimit: rateLimitOf(resp)}
	if resp != nil {
		ae.Status = resp.StatusCode
	}
	var oe datadog.GenericOpenAPIError
	if errors.As(err, &oe) {
		var body struct {
			Errors []json.RawMessage `json:"errors"`
		}
		if json.Unmarshal(oe.Body(), &body) == nil {
			for _, raw := range body.Errors {
				ae.Messages = append(ae.Messages, errorText(raw))
			}
		}
	}
	return ae
}

// errorText reads one entry of Datadog's "errors" array, which is either a
// string or a JSON:API error object.
func errorText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var obj struct {
		Title  string `json:"title"`
		Detail string `json:"detail"`
	}
	if json.Unmarshal(raw, &obj) == nil && (obj.Title != "" || obj.Detail != "") {
		return strings.TrimSpace(obj.Title + " " + obj.Detail)
	}
	return string(raw)
}

// datadogClient implements datadogAPI with datadog-api-client-go. It keeps
// no request context: every call takes the caller's.
type datadogClient struct {
	apiKey, appKey string
	accessToken    string // a service access token root, sent as Authorization: Bearer instead of appKey
	site           string
	self           string // user id of the configured identity
	limits         *rateLimits
	logger         hclog.Logger // for a trace of each call, never with a key

	keys            *datadogV2.KeyManagementApi
	users           *datadogV2.UsersApi
	roles           *datadogV2.RolesApi
	serviceAccounts *datadogV2.ServiceAccountsApi
	auth            *datadogV1.AuthenticationApi
}

const maxIdleConnsPerHost = 64

// newDatadogClient builds a client for the configuration. client-go's own
// retries are off: they would send a create again after a 5xx, leaving a
// duplicate key whose secret nobody saw. call retries what is safe instead.
func newDatadogClient(cfg *datadogConfig, logger hclog.Logger) (datadogAPI, error) {
	c := datadog.NewConfiguration()
	c.UserAgent = "vault-plugin-secrets-datadog/" + Version + " " + c.UserAgent
	c.RetryConfiguration.EnableRetry = false
	httpClient := cleanhttp.DefaultPooledClient()
	// Concurrent creds requests each hold a connection; the default of a
	// few idle ones per host would close and reopen most of them.
	httpClient.Transport.(*http.Transport).MaxIdleConnsPerHost = maxIdleConnsPerHost
	httpClient.Timeout = cfg.requestTimeout()
	httpClient.CheckRedirect = checkRedirect
	c.HTTPClient = httpClient
	if cfg.APIURL != "" {
		host, scheme, err := parseAPIURL(cfg.APIURL)
		if err != nil {
			return nil, err
		}
		c.Host, c.Scheme = host, scheme
	}
	client := datadog.NewAPIClient(c)
	return &datadogClient{
		apiKey:      cfg.APIKey,
		appKey:      cfg.AppKey,
		accessToken: cfg.AccessToken,
		site:        cfg.Site,
		self:        cfg.OwnerID,
		limits:      newRateLimits(logger),
		logger:      logger,

		keys:            datadogV2.NewKeyManagementApi(client),
		users:           datadogV2.NewUsersApi(client),
		roles:           datadogV2.NewRolesApi(client),
		serviceAccounts: datadogV2.NewServiceAccountsApi(client),
		auth:            datadogV1.NewAuthenticationApi(client),
	}, nil
}

// checkRedirect follows a redirect only to the same scheme, host and port:
// Go forwards custom headers such as DD-API-KEY on every redirect, and
// would hand the engine's keys to another host or send them in clear text.
func checkRedirect(req *http.Request, via []*http.Request) error {
	first := via[0].URL
	if req.URL.Scheme != first.Scheme || !strings.EqualFold(req.URL.Host, first.Host) {
		return fmt.Errorf("%w: to %s://%s, from %s://%s", errRedirectRefused, req.URL.Scheme, req.URL.Host, first.Scheme, first.Host)
	}
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	return nil
}

// with adds the credentials and the site to the caller's context, as
// client-go expects them.
func (c *datadogClient) with(ctx context.Context) context.Context {
	keys := map[string]datadog.APIKey{}
	if c.apiKey != "" {
		keys["apiKeyAuth"] = datadog.APIKey{Key: c.apiKey}
	}
	if c.accessToken != "" {
		ctx = context.WithValue(ctx, datadog.ContextAccessToken, c.accessToken)
	} else {
		keys["appKeyAuth"] = datadog.APIKey{Key: c.appKey}
	}
	ctx = context.WithValue(ctx, datadog.ContextAPIKeys, keys)
	return context.WithValue(ctx, datadog.ContextServerVariables, map[string]string{"site": c.site})
}

func (c *datadogClient) CheckAPIKey(ctx context.Context) error {
	return c.call(ctx, "API key validation", true, func(ctx context.Context) (*http.Response, error) {
		_, resp, err := c.auth.Validate(ctx)
		return resp, err
	})
}

func (c *datadogClient) CurrentUser(ctx context.Context) (identity, error) {
	var out datadogV2.UserResponse
	err := c.call(ctx, "current user look-up", true, func(ctx context.Context) (resp *http.Response, err error) {
		out, resp, err = c.users.GetCurrentUser(ctx)
		return resp, err
	})
	if err != nil {
		return identity{}, err
	}
	data := out.GetData()
	attrs := data.GetAttributes()
	rels := data.GetRelationships()
	org := rels.GetOrg()
	orgData := org.GetData()
	if data.GetId() == "" {
		return identity{}, fmt.Errorf("Datadog current user look-up returned no user id")
	}
	me := identity{ID: data.GetId(), Handle: attrs.GetHandle(), OrgID: orgData.GetId()}
	roles := rels.GetRoles()
	for _, r := range roles.GetData() {
		me.RoleIDs = append(me.RoleIDs, r.GetId())
	}
	return me, nil
}

func (c *datadogClient) RolePermissions(ctx context.Context, roleIDs []string) (map[string]bool, error) {
	all, err := c.listPermissions(ctx)
	if err != nil {
		return nil, err
	}
	names := map[string]string{} // by permission id
	for _, p := range all {
		attrs := p.GetAttributes()
		names[p.GetId()] = attrs.GetName()
	}
	granted := map[string]bool{}
	for _, id := range roleIDs {
		var role datadogV2.RoleResponse
		err := c.call(ctx, "role look-up", true, func(ctx context.Context) (resp *http.Response, err error) {
			role, resp, err = c.roles.GetRole(ctx, id)
			return resp, err
		})
		if err != nil {
			return nil, err
		}
		data := role.GetData()
		rels := data.GetRelationships()
		perms := rels.GetPermissions()
		for _, p := range perms.GetData() {
			if name := names[p.GetId()]; name != "" {
				granted[name] = true
			}
		}
	}
	return granted, nil
}

func (c *datadogClient) PermissionNames(ctx context.Context) ([]string, error) {
	all, err := c.listPermissions(ctx)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(all))
	for _, p := range all {
		attrs := p.GetAttributes()
		if name := attrs.GetName(); name != "" {
			names = append(names, name)
		}
	}
	return names, nil
}

func (c *datadogClient) listPermissions(ctx context.Context) ([]datadogV2.Permission, error) {
	var out datadogV2.PermissionsResponse
	err := c.call(ctx, "permission listing", true, func(ctx context.Context) (resp *http.Response, err error) {
		out, resp, err = c.roles.ListPermissions(ctx, *datadogV2.NewListPermissionsOptionalParameters().WithIncludeScopes(true))
		return resp, err
	})
	return out.GetData(), err
}

func (c *datadogClient) ServiceAccount(ctx context.Context, id string) (serviceAccount, error) {
	var out datadogV2.UserResponse
	err := c.call(ctx, "service account look-up", true, func(ctx context.Context) (resp *http.Response, err error) {
		out, resp, err = c.users.GetUser(ctx, id)
		return resp, err
	})
	if err != nil {
		return serviceAccount{}, err
	}
	data := out.GetData()
	attrs := data.GetAttributes()
	return serviceAccount{ID: data.GetId(), IsServiceAccount: attrs.GetServiceAccount(), Disabled: attrs.GetDisabled()}, nil
}

func (c *datadogClient) Create(ctx context.Context, o datadogObject, scopes []string) (createdObject, error) {
	var created createdObject
	err := c.call(ctx, describeKind(o.Kind)+" creation", false, func(ctx context.Context) (*http.Response, error) {
		switch o.Kind {
		case kindApplicationKey, kindServiceAccountApplicationKey:
			attrs := datadogV2.NewApplicationKeyCreateAttributes(o.Name)
			attrs.SetScopes(scopes)
			body := *datadogV2.NewApplicationKeyCreateRequest(*datadogV2.NewApplicationKeyCreateData(*attrs, datadogV2.APPLICATIONKEYSTYPE_APPLICATION_KEYS))
			var out datadogV2.ApplicationKeyResponse
			var resp *http.Response
			var err error
			if o.Kind == kindApplicationKey {
				out, resp, err = c.keys.CreateCurrentUserApplicationKey(ctx, body)
			} else {
				out, resp, err = c.serviceAccounts.CreateServiceAccountApplicationKey(ctx, o.Owner, body)
			}
			data := out.GetData()
			attrsOut := data.GetAttributes()
			created = createdObject{ID: data.GetId(), Secret: attrsOut.GetKey()}
			return resp, err
		case kindPersonalAccessToken:
			attrs := datadogV2.NewPersonalAccessTokenCreateAttributes(*o.ExpiresAt, o.Name, scopes)
			body := datadogV2.NewPersonalAccessTokenCreateRequest(*datadogV2.NewPersonalAccessTokenCreateData(*attrs, datadogV2.PERSONALACCESSTOKENSTYPE_PERSONAL_ACCESS_TOKENS))
			out, resp, err := c.keys.CreatePersonalAccessToken(ctx, *body)
			data := out.GetData()
			attrsOut := data.GetAttributes()
			created = createdObject{ID: data.GetId(), Secret: attrsOut.GetKey(), ExpiresAt: expiry(attrsOut.GetExpiresAtOk())}
			return resp, err
		case kindServiceAccessToken:
			attrs := datadogV2.NewServiceAccountAccessTokenCreateAttributes(o.Name, scopes)
			if o.ExpiresAt != nil {
				attrs.SetExpiresAt(*o.ExpiresAt)
			}
			body := datadogV2.NewServiceAccountAccessTokenCreateRequest(*datadogV2.NewServiceAccountAccessTokenCreateData(*attrs, datadogV2.SERVICEACCESSTOKENSTYPE_SERVICE_ACCESS_TOKENS))
			out, resp, err := c.serviceAccounts.CreateServiceAccountAccessToken(ctx, o.Owner, *body)
			data := out.GetData()
			attrsOut := data.GetAttributes()
			created = createdObject{ID: data.GetId(), Secret: attrsOut.GetKey(), ExpiresAt: expiry(attrsOut.GetExpiresAtOk())}
			return resp, err
		case kindAPIKey:
			body := datadogV2.NewAPIKeyCreateRequest(*datadogV2.NewAPIKeyCreateData(*datadogV2.NewAPIKeyCreateAttributes(o.Name), datadogV2.APIKEYSTYPE_API_KEYS))
			out, resp, err := c.keys.CreateAPIKey(ctx, *body)
			data := out.GetData()
			attrsOut := data.GetAttributes()
			created = createdObject{ID: data.GetId(), Secret: attrsOut.GetKey()}
			return resp, err
		}
		return nil, fmt.Errorf("unsupported Datadog object kind %q", o.Kind)
	})
	if err != nil {
		return createdObject{}, err
	}
	return checkCreated(describeKind(o.Kind)+" creation", created)
}

func expiry(t *time.Time, ok bool) *time.Time {
	if !ok || t == nil {
		return nil
	}
	return t
}

// checkCreated guards against a create answer that client-go could not
// parse (it silently drops such objects): without an ID the object could
// never be deleted, so the caller must treat it as an ambiguous failure.
func checkCreated(op string, created createdObject) (createdObject, error) {
	if created.ID == "" || created.Secret == "" {
		return createdObject{}, &apiError{Op: op, Err: errors.New("Datadog's answer had no id or secret")}
	}
	return created, nil
}

// ownedBySelf reports whether the object belongs to the configured
// identity, so that the current-user endpoints reach it. Objects recorded
// before owners were recorded were all the configured identity's.
func (c *datadogClient) ownedBySelf(o datadogObject) bool {
	return o.Owner == "" || o.Owner == c.self
}

// deletePermission is the Datadog permission that deleting o takes from
// the identity whose user id is self (the x-permission of the endpoint that
// reaches o from there).
func deletePermission(o datadogObject, self string) string {
	own := o.Owner == "" || o.Owner == self
	switch o.Kind {
	case kindApplicationKey, kindPersonalAccessToken:
		if own {
			return "user_app_keys"
		}
		return "org_app_keys_write"
	case kindServiceAccountApplicationKey, kindServiceAccessToken:
		return "service_account_write"
	case kindAPIKey:
		return "api_keys_delete"
	}
	return ""
}

// notFoundHere turns a 404 into errNotFound only where it proves the
// object is gone: Datadog lists personal access tokens of other users
// only to identities with org_app_keys_read/write, and answers 404 to the
// others even for a live token.
func (c *datadogClient) notFoundHere(o datadogObject, err error) error {
	if errors.Is(err, errNotFound) && o.Kind == kindPersonalAccessToken && !c.ownedBySelf(o) {
		return fmt.Errorf("personal access token %s of user %s (Datadog answered 404 to user %s): %w", o.ID, o.Owner, c.self, errNotVisible)
	}
	return err
}

func (c *datadogClient) Exists(ctx context.Context, o datadogObject) (bool, error) {
	err := c.call(ctx, describeKind(o.Kind)+" look-up", true, func(ctx context.Context) (resp *http.Response, err error) {
		switch {
		case o.Kind == kindApplicationKey && c.ownedBySelf(o):
			_, resp, err = c.keys.GetCurrentUserApplicationKey(ctx, o.ID)
		case o.Kind == kindApplicationKey:
			_, resp, err = c.keys.GetApplicationKey(ctx, o.ID)
		case o.Kind == kindServiceAccountApplicationKey:
			_, resp, err = c.serviceAccounts.GetServiceAccountApplicationKey(ctx, o.Owner, o.ID)
		case o.Kind == kindPersonalAccessToken:
			_, resp, err = c.keys.GetPersonalAccessToken(ctx, o.ID)
		case o.Kind == kindServiceAccessToken:
			_, resp, err = c.serviceAccounts.GetServiceAccountAccessToken(ctx, o.Owner, o.ID)
		case o.Kind == kindAPIKey:
			_, resp, err = c.keys.GetAPIKey(ctx, o.ID)
		default:
			err = fmt.Errorf("unsupported Datadog object kind %q", o.Kind)
		}
		return resp, err
	})
	err = c.notFoundHere(o, err)
	if errors.Is(err, errNotFound) {
		return false, nil
	}
	return err == nil, err
}

func (c *datadogClient) Delete(ctx context.Context, o datadogObject) error {
	err := c.call(ctx, describeKind(o.Kind)+" deletion", true, func(ctx context.Context) (resp *http.Response, err error) {
		switch {
		case o.Kind == kindApplicationKey && c.ownedBySelf(o):
			resp, err = c.keys.DeleteCurrentUserApplicationKey(ctx, o.ID)
		case o.Kind == kindApplicationKey:
			resp, err = c.keys.DeleteApplicationKey(ctx, o.ID)
		case o.Kind == kindServiceAccountApplicationKey:
			resp, err = c.serviceAccounts.DeleteServiceAccountApplicationKey(ctx, o.Owner, o.ID)
		case o.Kind == kindPersonalAccessToken:
			resp, err = c.keys.RevokePersonalAccessToken(ctx, o.ID)
		case o.Kind == kindServiceAccessToken:
			resp, err = c.serviceAccounts.RevokeServiceAccountAccessToken(ctx, o.Owner, o.ID)
		case o.Kind == kindAPIKey:
			resp, err = c.keys.DeleteAPIKey(ctx, o.ID)
		default:
			err = fmt.Errorf("unsupported Datadog object kind %q", o.Kind)
		}
		return resp, err
	})
	return c.notFoundHere(o, err)
}

// Name look-ups are bounded: Datadog's filter matches substrings, so a
// name could match many objects, and a look-up runs inside a request or a
// rollback that must end.
const (
	listPageSize = 100 // the largest page Datadog serves
	findMaxPages = 10
	findTimeout  = 30 * time.Second
)

// listedObject is one entry of a listing.
type listedObject struct {
	datadogObject           // Owner "" when the listing does not say
	CreatedAt     time.Time // zero when it does not parse
	// Visible is the part of the secret Datadog shows in listings: an
	// application key's last 4 characters, an access token's public
	// portion (its start). Empty for other kinds.
	Visible string
	// Scopes of an access token (identifyRoot stores the root's: Datadog
	// lets a token create only tokens within them); nil for other kinds.
	Scopes []string
}

func (c *datadogClient) FindByName(ctx context.Context, o datadogObject, createdAfter time.Time) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, findTimeout)
	defer cancel()
	entries, err := c.List(ctx, o, findMaxPages)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range entries {
		if e.Name == o.Name && (e.Owner == "" || o.Owner == "" || e.Owner == o.Owner) && !e.CreatedAt.Before(createdAfter) {
			ids = append(ids, e.ID)
		}
	}
	return ids, nil
}

func (c *datadogClient) List(ctx context.Context, o datadogObject, maxPages int) ([]listedObject, error) {
	if o.Kind == kindPersonalAccessToken && !c.ownedBySelf(o) {
		return nil, fmt.Errorf("personal access tokens of user %s, listed by user %s: %w", o.Owner, c.self, errNotVisible)
	}
	var all []listedObject
	for page := int64(0); page < int64(maxPages); page++ {
		entries, err := c.listPage(ctx, o, page)
		if err != nil {
			return nil, err
		}
		all = append(all, entries...)
		if len(entries) < listPageSize {
			return all, nil
		}
	}
	return nil, fmt.Errorf("more than %d Datadog %ss match the name %q; not acting on any of them", maxPages*listPageSize, describeKind(o.Kind), o.Name)
}

// listPage lists one page of objects of o's kind (and owner) whose name
// contains o.Name.
func (c *datadogClient) listPage(ctx context.Context, o datadogObject, page int64) ([]listedObject, error) {
	var entries []listedObject
	add := func(id, name, owner string, created time.Time, visible string, expires *time.Time) {
		entries = append(entries, listedObject{datadogObject{Kind: o.Kind, ID: id, Name: name, Owner: owner, Home: o.Home, ExpiresAt: expires}, created, visible, nil})
	}
	err := c.call(ctx, describeKind(o.Kind)+" listing", true, func(ctx context.Context) (*http.Response, error) {
		entries = entries[:0]
		switch o.Kind {
		case kindApplicationKey, kindServiceAccountApplicationKey:
			var out datadogV2.ListApplicationKeysResponse
			var resp *http.Response
			var err error
			switch {
			case o.Kind == kindServiceAccountApplicationKey:
				opts := datadogV2.NewListServiceAccountApplicationKeysOptionalParameters().WithFilter(o.Name).WithPageSize(listPageSize).WithPageNumber(page)
				out, resp, err = c.serviceAccounts.ListServiceAccountApplicationKeys(ctx, o.Owner, *opts)
			case c.ownedBySelf(o):
				opts := datadogV2.NewListCurrentUserApplicationKeysOptionalParameters().WithFilter(o.Name).WithPageSize(listPageSize).WithPageNumber(page)
				out, resp, err = c.keys.ListCurrentUserApplicationKeys(ctx, *opts)
			default:
				opts := datadogV2.NewListApplicationKeysOptionalParameters().WithFilter(o.Name).WithFilterOwnedBy(o.Owner).WithPageSize(listPageSize).WithPageNumber(page)
				out, resp, err = c.keys.ListApplicationKeys(ctx, *opts)
			}
			for _, k := range out.GetData() {
				attrs := k.GetAttributes()
				rels := k.GetRelationships()
				owner := rels.GetOwnedBy()
				add(k.GetId(), attrs.GetName(), owner.Data.GetId(), parseDatadogTime(attrs.GetCreatedAt()), attrs.GetLast4(), nil)
			}
			return resp, err
		case kindPersonalAccessToken:
			opts := datadogV2.NewListPersonalAccessTokensOptionalParameters().WithFilter(o.Name).WithFilterOwnedBy([]string{cmp.Or(o.Owner, c.self)}).WithPageSize(listPageSize).WithPageNumber(page)
			out, resp, err := c.keys.ListPersonalAccessTokens(ctx, *opts)
			for _, t := range out.GetData() {
				attrs := t.GetAttributes()
				rels := t.GetRelationships()
				owner := rels.GetOwnedBy()
				add(t.GetId(), attrs.GetName(), owner.Data.GetId(), attrs.GetCreatedAt(), attrs.GetPublicPortion(), expiry(attrs.GetExpiresAtOk()))
				entries[len(entries)-1].Scopes = attrs.GetScopes()
			}
			return resp, err
		case kindServiceAccessToken:
			opts := datadogV2.NewListServiceAccountAccessTokensOptionalParameters().WithFilter(o.Name).WithPageSize(listPageSize).WithPageNumber(page)
			out, resp, err := c.serviceAccounts.ListServiceAccountAccessTokens(ctx, o.Owner, *opts)
			for _, t := range out.GetData() {
				attrs := t.GetAttributes()
				add(t.GetId(), attrs.GetName(), o.Owner, attrs.GetCreatedAt(), attrs.GetPublicPortion(), expiry(attrs.GetExpiresAtOk()))
				entries[len(entries)-1].Scopes = attrs.GetScopes()
			}
			return resp, err
		case kindAPIKey:
			opts := datadogV2.NewListAPIKeysOptionalParameters().WithFilter(o.Name).WithPageSize(listPageSize).WithPageNumber(page)
			out, resp, err := c.keys.ListAPIKeys(ctx, *opts)
			for _, k := range out.GetData() {
				attrs := k.GetAttributes()
				rels := k.GetRelationships()
				creator := rels.GetCreatedBy()
				add(k.GetId(), attrs.GetName(), creator.Data.GetId(), parseDatadogTime(attrs.GetCreatedAt()), "", nil)
			}
			return resp, err
		}
		return nil, fmt.Errorf("unsupported Datadog object kind %q", o.Kind)
	})
	return entries, err
}

// parseDatadogTime reads a timestamp Datadog sends as a string; one that
// does not parse is the zero time, which no created-after check accepts.
func parseDatadogTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t
}
