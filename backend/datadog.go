package backend

import (
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
type datadogAPI interface {
	// CheckAPIKey validates the API key alone (GET /api/v1/validate).
	CheckAPIKey(ctx context.Context) error
	// CurrentUser validates both keys and returns who owns the application key.
	CurrentUser(ctx context.Context) (identity, error)
	// ServiceAccount looks a service account up by its user id.
	ServiceAccount(ctx context.Context, id string) (serviceAccount, error)
	// PermissionNames lists every permission (scope) name of the organisation.
	PermissionNames(ctx context.Context) ([]string, error)

	// Create makes the object o describes (kind, name, owner, expiry).
	Create(ctx context.Context, o datadogObject, scopes []string) (createdObject, error)
	// Exists reports whether the object is still live in Datadog.
	Exists(ctx context.Context, o datadogObject) (bool, error)
	// Delete removes the object; deleting a missing object returns errNotFound
	// (or nothing, for tokens, whose revocation Datadog accepts twice).
	Delete(ctx context.Context, o datadogObject) error
	// FindByName returns the IDs of objects like o whose name is exactly o.Name.
	FindByName(ctx context.Context, o datadogObject) ([]string, error)
}

type identity struct {
	ID     string
	Handle string
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

// apiError is a failed Datadog call with the HTTP status, when there was one,
// and Datadog's own error messages. It never carries request headers or keys.
type apiError struct {
	Op       string
	Status   int // 0 when no HTTP answer was received
	Messages []string
	Err      error
}

func (e *apiError) Error() string {
	switch {
	case e.Status == 0:
		return fmt.Sprintf("Datadog %s: %v", e.Op, e.Err)
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
	ae := &apiError{Op: op, Err: err}
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
	site           string
	client         *datadog.APIClient
	keys           *datadogV2.KeyManagementApi
	users          *datadogV2.UsersApi
	roles          *datadogV2.RolesApi
	auth           *datadogV1.AuthenticationApi

	serviceAccounts *datadogV2.ServiceAccountsApi
}

// newDatadogClient builds a client for the configuration. Retries are off:
// a blindly retried create can leave a duplicate key whose secret nobody saw,
// so failures are handled by the callers (look-up by name, WAL rollback).
func newDatadogClient(cfg *datadogConfig) (datadogAPI, error) {
	c := datadog.NewConfiguration()
	c.UserAgent = "vault-plugin-secrets-datadog/" + Version + " " + c.UserAgent
	c.RetryConfiguration.EnableRetry = false
	httpClient := cleanhttp.DefaultPooledClient()
	httpClient.Timeout = 30 * time.Second
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
		apiKey: cfg.APIKey,
		appKey: cfg.AppKey,
		site:   cfg.Site,
		client: client,
		keys:   datadogV2.NewKeyManagementApi(client),
		users:  datadogV2.NewUsersApi(client),
		roles:  datadogV2.NewRolesApi(client),
		auth:   datadogV1.NewAuthenticationApi(client),

		serviceAccounts: datadogV2.NewServiceAccountsApi(client),
	}, nil
}

// with adds the credentials and the site to the caller's context, as
// client-go expects them.
func (c *datadogClient) with(ctx context.Context) context.Context {
	ctx = context.WithValue(ctx, datadog.ContextAPIKeys, map[string]datadog.APIKey{
		"apiKeyAuth": {Key: c.apiKey},
		"appKeyAuth": {Key: c.appKey},
	})
	return context.WithValue(ctx, datadog.ContextServerVariables, map[string]string{"site": c.site})
}

func (c *datadogClient) CheckAPIKey(ctx context.Context) error {
	_, resp, err := c.auth.Validate(c.with(ctx))
	return wrapError("API key validation", resp, err)
}

func (c *datadogClient) CurrentUser(ctx context.Context) (identity, error) {
	out, resp, err := c.users.GetCurrentUser(c.with(ctx))
	if err != nil {
		return identity{}, wrapError("current user look-up", resp, err)
	}
	data := out.GetData()
	attrs := data.GetAttributes()
	if data.GetId() == "" {
		return identity{}, fmt.Errorf("Datadog current user look-up returned no user id")
	}
	return identity{ID: data.GetId(), Handle: attrs.GetHandle()}, nil
}

func (c *datadogClient) PermissionNames(ctx context.Context) ([]string, error) {
	opts := datadogV2.NewListPermissionsOptionalParameters().WithIncludeScopes(true)
	out, resp, err := c.roles.ListPermissions(c.with(ctx), *opts)
	if err != nil {
		return nil, wrapError("permission listing", resp, err)
	}
	names := make([]string, 0, len(out.GetData()))
	for _, p := range out.GetData() {
		attrs := p.GetAttributes()
		if name := attrs.GetName(); name != "" {
			names = append(names, name)
		}
	}
	return names, nil
}

func (c *datadogClient) ServiceAccount(ctx context.Context, id string) (serviceAccount, error) {
	out, resp, err := c.users.GetUser(c.with(ctx), id)
	if err != nil {
		return serviceAccount{}, wrapError("service account look-up", resp, err)
	}
	data := out.GetData()
	attrs := data.GetAttributes()
	return serviceAccount{ID: data.GetId(), IsServiceAccount: attrs.GetServiceAccount(), Disabled: attrs.GetDisabled()}, nil
}

func (c *datadogClient) Create(ctx context.Context, o datadogObject, scopes []string) (createdObject, error) {
	ctx = c.with(ctx)
	op := describeKind(o.Kind) + " creation"
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
		if err != nil {
			return createdObject{}, wrapError(op, resp, err)
		}
		data := out.GetData()
		attrsOut := data.GetAttributes()
		return checkCreated(op, createdObject{ID: data.GetId(), Secret: attrsOut.GetKey()})
	case kindPersonalAccessToken:
		attrs := datadogV2.NewPersonalAccessTokenCreateAttributes(*o.ExpiresAt, o.Name, scopes)
		body := datadogV2.NewPersonalAccessTokenCreateRequest(*datadogV2.NewPersonalAccessTokenCreateData(*attrs, datadogV2.PERSONALACCESSTOKENSTYPE_PERSONAL_ACCESS_TOKENS))
		out, resp, err := c.keys.CreatePersonalAccessToken(ctx, *body)
		if err != nil {
			return createdObject{}, wrapError(op, resp, err)
		}
		data := out.GetData()
		attrsOut := data.GetAttributes()
		return checkCreated(op, createdObject{ID: data.GetId(), Secret: attrsOut.GetKey(), ExpiresAt: expiry(attrsOut.GetExpiresAtOk())})
	case kindServiceAccessToken:
		attrs := datadogV2.NewServiceAccountAccessTokenCreateAttributes(o.Name, scopes)
		if o.ExpiresAt != nil {
			attrs.SetExpiresAt(*o.ExpiresAt)
		}
		body := datadogV2.NewServiceAccountAccessTokenCreateRequest(*datadogV2.NewServiceAccountAccessTokenCreateData(*attrs, datadogV2.SERVICEACCESSTOKENSTYPE_SERVICE_ACCESS_TOKENS))
		out, resp, err := c.serviceAccounts.CreateServiceAccountAccessToken(ctx, o.Owner, *body)
		if err != nil {
			return createdObject{}, wrapError(op, resp, err)
		}
		data := out.GetData()
		attrsOut := data.GetAttributes()
		return checkCreated(op, createdObject{ID: data.GetId(), Secret: attrsOut.GetKey(), ExpiresAt: expiry(attrsOut.GetExpiresAtOk())})
	case kindAPIKey:
		body := datadogV2.NewAPIKeyCreateRequest(*datadogV2.NewAPIKeyCreateData(*datadogV2.NewAPIKeyCreateAttributes(o.Name), datadogV2.APIKEYSTYPE_API_KEYS))
		out, resp, err := c.keys.CreateAPIKey(ctx, *body)
		if err != nil {
			return createdObject{}, wrapError(op, resp, err)
		}
		data := out.GetData()
		attrsOut := data.GetAttributes()
		return checkCreated(op, createdObject{ID: data.GetId(), Secret: attrsOut.GetKey()})
	}
	return createdObject{}, fmt.Errorf("unsupported Datadog object kind %q", o.Kind)
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

func (c *datadogClient) Exists(ctx context.Context, o datadogObject) (bool, error) {
	ctx = c.with(ctx)
	var resp *http.Response
	var err error
	switch o.Kind {
	case kindApplicationKey:
		_, resp, err = c.keys.GetCurrentUserApplicationKey(ctx, o.ID)
	case kindServiceAccountApplicationKey:
		_, resp, err = c.serviceAccounts.GetServiceAccountApplicationKey(ctx, o.Owner, o.ID)
	case kindPersonalAccessToken:
		_, resp, err = c.keys.GetPersonalAccessToken(ctx, o.ID)
	case kindServiceAccessToken:
		_, resp, err = c.serviceAccounts.GetServiceAccountAccessToken(ctx, o.Owner, o.ID)
	case kindAPIKey:
		_, resp, err = c.keys.GetAPIKey(ctx, o.ID)
	default:
		return false, fmt.Errorf("unsupported Datadog object kind %q", o.Kind)
	}
	err = wrapError(describeKind(o.Kind)+" look-up", resp, err)
	if errors.Is(err, errNotFound) {
		return false, nil
	}
	return err == nil, err
}

func (c *datadogClient) Delete(ctx context.Context, o datadogObject) error {
	ctx = c.with(ctx)
	var resp *http.Response
	var err error
	switch o.Kind {
	case kindApplicationKey:
		resp, err = c.keys.DeleteCurrentUserApplicationKey(ctx, o.ID)
	case kindServiceAccountApplicationKey:
		resp, err = c.serviceAccounts.DeleteServiceAccountApplicationKey(ctx, o.Owner, o.ID)
	case kindPersonalAccessToken:
		resp, err = c.keys.RevokePersonalAccessToken(ctx, o.ID)
	case kindServiceAccessToken:
		resp, err = c.serviceAccounts.RevokeServiceAccountAccessToken(ctx, o.Owner, o.ID)
	case kindAPIKey:
		resp, err = c.keys.DeleteAPIKey(ctx, o.ID)
	default:
		return fmt.Errorf("unsupported Datadog object kind %q", o.Kind)
	}
	return wrapError(describeKind(o.Kind)+" deletion", resp, err)
}

// findPageSize is the largest page Datadog serves for key listings.
const findPageSize = 100

// named is one entry of a listing: what FindByName compares.
type named struct{ id, name string }

func (c *datadogClient) FindByName(ctx context.Context, o datadogObject) ([]string, error) {
	ctx = c.with(ctx)
	var ids []string
	for page := int64(0); ; page++ {
		entries, err := c.listPage(ctx, o, page)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if e.name == o.Name { // Datadog's filter matches substrings
				ids = append(ids, e.id)
			}
		}
		if len(entries) < findPageSize {
			return ids, nil
		}
	}
}

// listPage lists one page of objects of o's kind (and owner) filtered by o's name.
func (c *datadogClient) listPage(ctx context.Context, o datadogObject, page int64) ([]named, error) {
	var entries []named
	add := func(id, name string) { entries = append(entries, named{id, name}) }
	switch o.Kind {
	case kindApplicationKey, kindServiceAccountApplicationKey:
		var out datadogV2.ListApplicationKeysResponse
		var resp *http.Response
		var err error
		if o.Kind == kindApplicationKey {
			opts := datadogV2.NewListCurrentUserApplicationKeysOptionalParameters().WithFilter(o.Name).WithPageSize(findPageSize).WithPageNumber(page)
			out, resp, err = c.keys.ListCurrentUserApplicationKeys(ctx, *opts)
		} else {
			opts := datadogV2.NewListServiceAccountApplicationKeysOptionalParameters().WithFilter(o.Name).WithPageSize(findPageSize).WithPageNumber(page)
			out, resp, err = c.serviceAccounts.ListServiceAccountApplicationKeys(ctx, o.Owner, *opts)
		}
		if err != nil {
			return nil, wrapError("application key listing", resp, err)
		}
		for _, k := range out.GetData() {
			attrs := k.GetAttributes()
			add(k.GetId(), attrs.GetName())
		}
	case kindPersonalAccessToken:
		opts := datadogV2.NewListPersonalAccessTokensOptionalParameters().WithFilter(o.Name).WithPageSize(findPageSize).WithPageNumber(page)
		out, resp, err := c.keys.ListPersonalAccessTokens(ctx, *opts)
		if err != nil {
			return nil, wrapError("personal access token listing", resp, err)
		}
		for _, t := range out.GetData() {
			attrs := t.GetAttributes()
			add(t.GetId(), attrs.GetName())
		}
	case kindServiceAccessToken:
		opts := datadogV2.NewListServiceAccountAccessTokensOptionalParameters().WithFilter(o.Name).WithPageSize(findPageSize).WithPageNumber(page)
		out, resp, err := c.serviceAccounts.ListServiceAccountAccessTokens(ctx, o.Owner, *opts)
		if err != nil {
			return nil, wrapError("service access token listing", resp, err)
		}
		for _, t := range out.GetData() {
			attrs := t.GetAttributes()
			add(t.GetId(), attrs.GetName())
		}
	case kindAPIKey:
		opts := datadogV2.NewListAPIKeysOptionalParameters().WithFilter(o.Name).WithPageSize(findPageSize).WithPageNumber(page)
		out, resp, err := c.keys.ListAPIKeys(ctx, *opts)
		if err != nil {
			return nil, wrapError("API key listing", resp, err)
		}
		for _, k := range out.GetData() {
			attrs := k.GetAttributes()
			add(k.GetId(), attrs.GetName())
		}
	default:
		return nil, fmt.Errorf("unsupported Datadog object kind %q", o.Kind)
	}
	return entries, nil
}
