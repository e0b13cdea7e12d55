package acceptance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/DataDog/datadog-api-client-go/v2/api/datadog"
	"github.com/DataDog/datadog-api-client-go/v2/api/datadogV1"
	"github.com/DataDog/datadog-api-client-go/v2/api/datadogV2"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/cassette"
)

// dd is how the suite talks to Datadog: datadog-api-client-go, through the
// proxy, as the consumer of issued credentials and to check and sweep
// objects. Its calls are marked as the suite's (an annotation the proxy
// strips) and paced: at most one every pace.
type dd struct {
	site   string
	normal *ddAPIs
	probe  *ddAPIs // the same, its calls marked as probes (see cassette.NoteProbe)
}

type ddAPIs struct {
	keys     *datadogV2.KeyManagementApi
	sa       *datadogV2.ServiceAccountsApi
	users    *datadogV2.UsersApi
	roles    *datadogV2.RolesApi
	auth     *datadogV1.AuthenticationApi
	dash     *datadogV1.DashboardsApi
	monitors *datadogV1.MonitorsApi
}

// creds is a credential the suite acts with: keys, or an access token as
// a bearer token, or a token alone in DD-APPLICATION-KEY.
type creds struct {
	APIKey, AppKey string
	Bearer         string
}

func newDD(proxyURL, site string, pace time.Duration, gate func(context.Context, string) error) (*dd, error) {
	u, err := url.Parse(proxyURL)
	if err != nil {
		return nil, err
	}
	pacer := &pacedTransport{next: http.DefaultTransport, every: pace, gate: gate}
	build := func(note string) *ddAPIs {
		cfg := datadog.NewConfiguration()
		cfg.Host, cfg.Scheme = u.Host, u.Scheme
		cfg.UserAgent = "vault-plugin-secrets-datadog-acceptance " + cfg.UserAgent
		// Datadog's rate limits are waited out (client-go reads
		// X-RateLimit-Reset); a retried create is named like the first, so
		// a duplicate is swept with the rest.
		cfg.RetryConfiguration.EnableRetry = true
		cfg.RetryConfiguration.MaxRetries = 3
		cfg.HTTPClient = &http.Client{Transport: pacer, Timeout: time.Minute}
		cfg.AddDefaultHeader(cassette.HeaderCaller, "suite")
		if note != "" {
			cfg.AddDefaultHeader(cassette.HeaderNote, note)
		}
		c := datadog.NewAPIClient(cfg)
		return &ddAPIs{
			keys: datadogV2.NewKeyManagementApi(c), sa: datadogV2.NewServiceAccountsApi(c),
			users: datadogV2.NewUsersApi(c), roles: datadogV2.NewRolesApi(c),
			auth: datadogV1.NewAuthenticationApi(c), dash: datadogV1.NewDashboardsApi(c), monitors: datadogV1.NewMonitorsApi(c),
		}
	}
	return &dd{site: site, normal: build(""), probe: build(cassette.NoteProbe)}, nil
}

// pacedTransport spaces the suite's own calls: the suite is a guest in the
// organisation's rate limits, which the engine shares.
type pacedTransport struct {
	next  http.RoundTripper
	every time.Duration
	// gate holds a call while Datadog's rate limit for it is spent.
	gate func(ctx context.Context, path string) error
	mu   sync.Mutex
	last time.Time
}

func (p *pacedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if p.gate != nil {
		if err := p.gate(r.Context(), r.URL.Path); err != nil {
			return nil, err
		}
	}
	p.mu.Lock()
	wait := time.Until(p.last.Add(p.every))
	if wait < 0 {
		wait = 0
	}
	p.last = time.Now().Add(wait)
	p.mu.Unlock()
	if wait > 0 {
		select {
		case <-time.After(wait):
		case <-r.Context().Done():
			return nil, r.Context().Err()
		}
	}
	return p.next.RoundTrip(r)
}

// ctx adds a credential and the site to a context, as client-go takes them.
func (d *dd) ctx(ctx context.Context, c creds) context.Context {
	keys := map[string]datadog.APIKey{}
	if c.APIKey != "" {
		keys["apiKeyAuth"] = datadog.APIKey{Key: c.APIKey}
	}
	if c.AppKey != "" {
		keys["appKeyAuth"] = datadog.APIKey{Key: c.AppKey}
	}
	ctx = context.WithValue(ctx, datadog.ContextAPIKeys, keys)
	if c.Bearer != "" {
		ctx = context.WithValue(ctx, datadog.ContextAccessToken, c.Bearer)
	}
	return context.WithValue(ctx, datadog.ContextServerVariables, map[string]string{"site": d.site})
}

// answer is the outcome of one call: its status (0: no answer) and
// Datadog's error messages.
type answer struct {
	Status int
	Errors []string
	Err    error
}

func (a answer) String() string {
	switch {
	case a.Status == 0:
		return fmt.Sprintf("no answer (%v)", a.Err)
	case len(a.Errors) > 0:
		b, _ := json.Marshal(map[string]any{"errors": a.Errors})
		return fmt.Sprintf("%d %s", a.Status, b)
	}
	return fmt.Sprint(a.Status)
}

func answerOf(resp *http.Response, err error) answer {
	a := answer{Err: err}
	if resp != nil {
		a.Status = resp.StatusCode
	}
	var oe datadog.GenericOpenAPIError
	if errors.As(err, &oe) {
		var body struct {
			Errors []json.RawMessage `json:"errors"`
		}
		if json.Unmarshal(oe.Body(), &body) == nil {
			for _, raw := range body.Errors {
				var s string
				if json.Unmarshal(raw, &s) != nil {
					s = string(raw)
				}
				a.Errors = append(a.Errors, s)
			}
		}
	}
	return a
}

// Consumer calls: one call in a credential's scopes, one outside.

// readDashboards needs dashboards_read.
func (d *dd) readDashboards(ctx context.Context, c creds, probe bool) answer {
	api := d.normal
	if probe {
		api = d.probe
	}
	_, resp, err := api.dash.ListDashboards(d.ctx(ctx, c), *datadogV1.NewListDashboardsOptionalParameters().WithCount(1))
	return answerOf(resp, err)
}

// readMonitors needs monitors_read.
func (d *dd) readMonitors(ctx context.Context, c creds) answer {
	_, resp, err := d.normal.monitors.ListMonitors(d.ctx(ctx, c), *datadogV1.NewListMonitorsOptionalParameters().WithPageSize(1))
	return answerOf(resp, err)
}

// validateAPIKey checks an API key alone (GET /api/v1/validate).
func (d *dd) validateAPIKey(ctx context.Context, apiKey string, probe bool) answer {
	api := d.normal
	if probe {
		api = d.probe
	}
	_, resp, err := api.auth.Validate(d.ctx(ctx, creds{APIKey: apiKey}))
	return answerOf(resp, err)
}

// validateKeys checks a credential (GET /api/v2/validate_keys).
func (d *dd) validateKeys(ctx context.Context, c creds, probe bool) answer {
	api := d.normal
	if probe {
		api = d.probe
	}
	_, resp, err := api.keys.ValidateAPIKey(d.ctx(ctx, c))
	return answerOf(resp, err)
}

// waitFor repeats a probe until ok says its answer is the awaited one, or
// the timeout passes, then makes the same call once more, not as a probe:
// the answer a replay holds to. It returns the confirming answer, how long
// the wait took, and how many probes were answered otherwise.
func waitFor(ctx context.Context, timeout, every time.Duration, probe func(probe bool) answer, ok func(answer) bool) (answer, time.Duration, int) {
	start := time.Now()
	misses := 0
	for {
		a := probe(true)
		if ok(a) || ctx.Err() != nil || time.Since(start) > timeout {
			break
		}
		misses++
		select {
		case <-ctx.Done():
		case <-time.After(every):
		}
	}
	took := time.Since(start)
	return probe(false), took, misses
}

// Objects the suite makes itself and sweeps, through the caller given.

func (d *dd) createAppKey(ctx context.Context, c creds, name string, scopes []string) (id, secret string, a answer) {
	attrs := datadogV2.NewApplicationKeyCreateAttributes(name)
	if scopes != nil {
		attrs.SetScopes(scopes)
	}
	body := *datadogV2.NewApplicationKeyCreateRequest(*datadogV2.NewApplicationKeyCreateData(*attrs, datadogV2.APPLICATIONKEYSTYPE_APPLICATION_KEYS))
	out, resp, err := d.normal.keys.CreateCurrentUserApplicationKey(d.ctx(ctx, c), body)
	data := out.GetData()
	attrsOut := data.GetAttributes()
	return data.GetId(), attrsOut.GetKey(), answerOf(resp, err)
}

func (d *dd) createSAAppKey(ctx context.Context, c creds, sa, name string, scopes []string) (id string, a answer) {
	attrs := datadogV2.NewApplicationKeyCreateAttributes(name)
	attrs.SetScopes(scopes)
	body := *datadogV2.NewApplicationKeyCreateRequest(*datadogV2.NewApplicationKeyCreateData(*attrs, datadogV2.APPLICATIONKEYSTYPE_APPLICATION_KEYS))
	out, resp, err := d.normal.sa.CreateServiceAccountApplicationKey(d.ctx(ctx, c), sa, body)
	data := out.GetData()
	return data.GetId(), answerOf(resp, err)
}

func (d *dd) deleteAppKey(ctx context.Context, c creds, id string) answer {
	resp, err := d.normal.keys.DeleteCurrentUserApplicationKey(d.ctx(ctx, c), id)
	return answerOf(resp, err)
}

// appKeyLastUsed reads one of the caller's application keys: its last use
// (nil: never), or the answer when it failed.
func (d *dd) appKeyLastUsed(ctx context.Context, c creds, id string) (*time.Time, answer) {
	out, resp, err := d.normal.keys.GetCurrentUserApplicationKey(d.ctx(ctx, c), id)
	a := answerOf(resp, err)
	if err != nil {
		return nil, a
	}
	data := out.GetData()
	attrs := data.GetAttributes()
	t, ok := attrs.GetLastUsedAtOk()
	if !ok || t == nil {
		return nil, a
	}
	return t, a
}

func (d *dd) createSAT(ctx context.Context, c creds, sa, name string, scopes []string, expires *time.Time) (id, secret string, a answer) {
	attrs := datadogV2.NewServiceAccountAccessTokenCreateAttributes(name, scopes)
	if expires != nil {
		attrs.SetExpiresAt(*expires)
	}
	body := datadogV2.NewServiceAccountAccessTokenCreateRequest(*datadogV2.NewServiceAccountAccessTokenCreateData(*attrs, datadogV2.SERVICEACCESSTOKENSTYPE_SERVICE_ACCESS_TOKENS))
	out, resp, err := d.normal.sa.CreateServiceAccountAccessToken(d.ctx(ctx, c), sa, *body)
	data := out.GetData()
	attrsOut := data.GetAttributes()
	return data.GetId(), attrsOut.GetKey(), answerOf(resp, err)
}

// tokenInfo is what a listing says of an access token.
type tokenInfo struct {
	ID, Name, PublicPortion string
	Scopes                  []string
	ExpiresAt               *time.Time
}

// serviceAccountTokens lists a service account's access tokens whose name
// contains filter ("" for all), at most 10 pages.
func (d *dd) serviceAccountTokens(ctx context.Context, c creds, sa, filter string) ([]tokenInfo, answer) {
	var all []tokenInfo
	for page := int64(0); page < 10; page++ {
		opts := datadogV2.NewListServiceAccountAccessTokensOptionalParameters().WithPageSize(100).WithPageNumber(page)
		if filter != "" {
			opts = opts.WithFilter(filter)
		}
		out, resp, err := d.normal.sa.ListServiceAccountAccessTokens(d.ctx(ctx, c), sa, *opts)
		if err != nil {
			return nil, answerOf(resp, err)
		}
		for _, t := range out.GetData() {
			attrs := t.GetAttributes()
			info := tokenInfo{ID: t.GetId(), Name: attrs.GetName(), PublicPortion: attrs.GetPublicPortion(), Scopes: attrs.GetScopes()}
			if exp, ok := attrs.GetExpiresAtOk(); ok && exp != nil {
				info.ExpiresAt = exp
			}
			all = append(all, info)
		}
		if len(out.GetData()) < 100 {
			break
		}
	}
	return all, answer{Status: http.StatusOK}
}

// findToken finds a token in a listing by the part of its secret listings
// show (its start).
func findToken(tokens []tokenInfo, secret string) (tokenInfo, bool) {
	for _, t := range tokens {
		if t.PublicPortion != "" && (strings.HasPrefix(secret, t.PublicPortion) || strings.Contains(secret, t.PublicPortion)) {
			return t, true
		}
	}
	return tokenInfo{}, false
}

// apiKeyCap reads the organisation's API key count and cap from an
// unfiltered list of one key, and says whether meta.max_allowed was there.
func (d *dd) apiKeyCap(ctx context.Context, c creds) (count, max int, hasMax bool, a answer) {
	out, resp, err := d.normal.keys.ListAPIKeys(d.ctx(ctx, c), *datadogV2.NewListAPIKeysOptionalParameters().WithPageSize(1))
	a = answerOf(resp, err)
	if err != nil {
		return 0, 0, false, a
	}
	meta := out.GetMeta()
	if m, ok := meta.GetMaxAllowedOk(); ok && m != nil {
		max, hasMax = int(*m), true
	}
	page := meta.GetPage()
	count = int(page.GetTotalFilteredCount())
	return count, max, hasMax, a
}

func (d *dd) currentUser(ctx context.Context, c creds) (id string, a answer) {
	out, resp, err := d.normal.users.GetCurrentUser(d.ctx(ctx, c))
	data := out.GetData()
	return data.GetId(), answerOf(resp, err)
}

func newListRolesFilter(name string) *datadogV2.ListRolesOptionalParameters {
	return datadogV2.NewListRolesOptionalParameters().WithFilter(name)
}

// createServiceAccount makes a service account with a role (the emulator
// mode's stand-in for the one a user hands the suite).
func (s *suite) createServiceAccount(ctx context.Context, name, roleID string) (string, answer) {
	attrs := datadogV2.NewServiceAccountCreateAttributes(name+"@example.com", true)
	attrs.SetName(name)
	data := datadogV2.NewServiceAccountCreateData(*attrs, datadogV2.USERSTYPE_USERS)
	role := datadogV2.NewRelationshipToRoleData()
	role.SetId(roleID)
	role.SetType(datadogV2.ROLESTYPE_ROLES)
	rel := datadogV2.NewRelationshipToRoles()
	rel.SetData([]datadogV2.RelationshipToRoleData{*role})
	userRel := datadogV2.NewUserRelationships()
	userRel.SetRoles(*rel)
	data.SetRelationships(*userRel)
	out, resp, err := s.dd.normal.sa.CreateServiceAccount(s.dd.ctx(ctx, s.t.given.keys()), *datadogV2.NewServiceAccountCreateRequest(*data))
	d := out.GetData()
	return d.GetId(), answerOf(resp, err)
}

// appKeyScopes reads the scopes of one of the caller's application keys.
func (d *dd) appKeyScopes(ctx context.Context, c creds, id string) ([]string, answer) {
	out, resp, err := d.normal.keys.GetCurrentUserApplicationKey(d.ctx(ctx, c), id)
	data := out.GetData()
	attrs := data.GetAttributes()
	return attrs.GetScopes(), answerOf(resp, err)
}

// getAppKey says whether one of the caller's application keys exists.
func (d *dd) getAppKey(ctx context.Context, c creds, id string) answer {
	_, resp, err := d.normal.keys.GetCurrentUserApplicationKey(d.ctx(ctx, c), id)
	return answerOf(resp, err)
}

func (d *dd) createAPIKey(ctx context.Context, c creds, name string) (string, answer) {
	body := datadogV2.NewAPIKeyCreateRequest(*datadogV2.NewAPIKeyCreateData(*datadogV2.NewAPIKeyCreateAttributes(name), datadogV2.APIKEYSTYPE_API_KEYS))
	out, resp, err := d.normal.keys.CreateAPIKey(d.ctx(ctx, c), *body)
	data := out.GetData()
	return data.GetId(), answerOf(resp, err)
}

// countNamed counts the API keys and the caller's application keys whose
// name contains name.
func (d *dd) countNamed(ctx context.Context, c creds, name string) (int, error) {
	cctx := d.ctx(ctx, c)
	keys, resp, err := d.normal.keys.ListAPIKeys(cctx, *datadogV2.NewListAPIKeysOptionalParameters().WithFilter(name).WithPageSize(100))
	if err != nil {
		return 0, fmt.Errorf("listing API keys: %s", answerOf(resp, err))
	}
	apps, resp, err := d.normal.keys.ListCurrentUserApplicationKeys(cctx, *datadogV2.NewListCurrentUserApplicationKeysOptionalParameters().WithFilter(name).WithPageSize(100))
	if err != nil {
		return 0, fmt.Errorf("listing application keys: %s", answerOf(resp, err))
	}
	return len(keys.GetData()) + len(apps.GetData()), nil
}
