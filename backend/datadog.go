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

// Object kinds the plugin creates in Datadog. A lease may own several
// objects (an application key and its API key), each deleted on revoke.
const (
	kindApplicationKey = "application_key"
	kindAPIKey         = "api_key"
)

// datadogAPI is the small slice of the Datadog API the plugin needs. The
// backend talks only to this interface; datadogClient implements it with
// datadog-api-client-go.
type datadogAPI interface {
	// CheckAPIKey validates the API key alone (GET /api/v1/validate).
	CheckAPIKey(ctx context.Context) error
	// CurrentUser validates both keys and returns who owns the application key.
	CurrentUser(ctx context.Context) (identity, error)
	// PermissionNames lists every permission (scope) name of the organisation.
	PermissionNames(ctx context.Context) ([]string, error)

	// Create makes a new object of the given kind. Scopes apply to
	// application keys only.
	Create(ctx context.Context, kind, name string, scopes []string) (createdObject, error)
	// Exists reports whether the object is still live in Datadog.
	Exists(ctx context.Context, kind, id string) (bool, error)
	// Delete removes the object; deleting a missing object returns errNotFound.
	Delete(ctx context.Context, kind, id string) error
	// FindByName returns the IDs of objects of the kind whose name is exactly name.
	FindByName(ctx context.Context, kind, name string) ([]string, error)
}

type identity struct {
	ID     string
	Handle string
}

type createdObject struct {
	ID     string
	Secret string
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

func (c *datadogClient) Create(ctx context.Context, kind, name string, scopes []string) (createdObject, error) {
	ctx = c.with(ctx)
	switch kind {
	case kindApplicationKey:
		attrs := datadogV2.NewApplicationKeyCreateAttributes(name)
		attrs.SetScopes(scopes)
		body := datadogV2.NewApplicationKeyCreateRequest(*datadogV2.NewApplicationKeyCreateData(*attrs, datadogV2.APPLICATIONKEYSTYPE_APPLICATION_KEYS))
		out, resp, err := c.keys.CreateCurrentUserApplicationKey(ctx, *body)
		if err != nil {
			return createdObject{}, wrapError("application key creation", resp, err)
		}
		data := out.GetData()
		attrsOut := data.GetAttributes()
		return checkCreated(kind, data.GetId(), attrsOut.GetKey())
	case kindAPIKey:
		body := datadogV2.NewAPIKeyCreateRequest(*datadogV2.NewAPIKeyCreateData(*datadogV2.NewAPIKeyCreateAttributes(name), datadogV2.APIKEYSTYPE_API_KEYS))
		out, resp, err := c.keys.CreateAPIKey(ctx, *body)
		if err != nil {
			return createdObject{}, wrapError("API key creation", resp, err)
		}
		data := out.GetData()
		attrsOut := data.GetAttributes()
		return checkCreated(kind, data.GetId(), attrsOut.GetKey())
	}
	return createdObject{}, fmt.Errorf("unsupported Datadog object kind %q", kind)
}

// checkCreated guards against a create answer that client-go could not
// parse (it silently drops such objects): without an ID the object could
// never be deleted, so the caller must treat it as an ambiguous failure.
func checkCreated(kind, id, secret string) (createdObject, error) {
	if id == "" || secret == "" {
		return createdObject{}, &apiError{Op: kind + " creation", Err: errors.New("Datadog's answer had no id or secret")}
	}
	return createdObject{ID: id, Secret: secret}, nil
}

func (c *datadogClient) Exists(ctx context.Context, kind, id string) (bool, error) {
	ctx = c.with(ctx)
	var resp *http.Response
	var err error
	switch kind {
	case kindApplicationKey:
		_, resp, err = c.keys.GetCurrentUserApplicationKey(ctx, id)
	case kindAPIKey:
		_, resp, err = c.keys.GetAPIKey(ctx, id)
	default:
		return false, fmt.Errorf("unsupported Datadog object kind %q", kind)
	}
	err = wrapError(kind+" look-up", resp, err)
	if errors.Is(err, errNotFound) {
		return false, nil
	}
	return err == nil, err
}

func (c *datadogClient) Delete(ctx context.Context, kind, id string) error {
	ctx = c.with(ctx)
	switch kind {
	case kindApplicationKey:
		resp, err := c.keys.DeleteCurrentUserApplicationKey(ctx, id)
		return wrapError("application key deletion", resp, err)
	case kindAPIKey:
		resp, err := c.keys.DeleteAPIKey(ctx, id)
		return wrapError("API key deletion", resp, err)
	}
	return fmt.Errorf("unsupported Datadog object kind %q", kind)
}

// findPageSize is the largest page Datadog serves for key listings.
const findPageSize = 100

func (c *datadogClient) FindByName(ctx context.Context, kind, name string) ([]string, error) {
	ctx = c.with(ctx)
	var ids []string
	for page := int64(0); ; page++ {
		var names, pageIDs []string
		switch kind {
		case kindApplicationKey:
			opts := datadogV2.NewListCurrentUserApplicationKeysOptionalParameters().
				WithFilter(name).WithPageSize(findPageSize).WithPageNumber(page)
			out, resp, err := c.keys.ListCurrentUserApplicationKeys(ctx, *opts)
			if err != nil {
				return nil, wrapError("application key listing", resp, err)
			}
			for _, k := range out.GetData() {
				attrs := k.GetAttributes()
				names, pageIDs = append(names, attrs.GetName()), append(pageIDs, k.GetId())
			}
		case kindAPIKey:
			opts := datadogV2.NewListAPIKeysOptionalParameters().
				WithFilter(name).WithPageSize(findPageSize).WithPageNumber(page)
			out, resp, err := c.keys.ListAPIKeys(ctx, *opts)
			if err != nil {
				return nil, wrapError("API key listing", resp, err)
			}
			for _, k := range out.GetData() {
				attrs := k.GetAttributes()
				names, pageIDs = append(names, attrs.GetName()), append(pageIDs, k.GetId())
			}
		default:
			return nil, fmt.Errorf("unsupported Datadog object kind %q", kind)
		}
		for i, n := range names {
			if n == name { // Datadog's filter matches substrings
				ids = append(ids, pageIDs[i])
			}
		}
		if len(names) < findPageSize {
			return ids, nil
		}
	}
}
